#!/usr/bin/env bash
# Fetches the pinned ONNX Runtime shared library (from the PyPI `onnxruntime` wheel; the `ort`
# crate's own binary download is unreachable here) into .cache/onnxruntime/, and nasm where it
# is missing. Idempotent.
set -euo pipefail
ORT_VERSION="1.31.1"
WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256="${ORT_WHEEL_SHA256:-5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/onnxruntime"
lib="$dest/libonnxruntime.so.${ORT_VERSION}"

# libjpeg-turbo's SIMD decoder (mozjpeg-sys's nasm_simd feature; bit-exact with its C code and
# 2.4x faster here) is assembled by nasm when the gateway builds.
if [ "$(uname -m)" = "x86_64" ] && ! command -v nasm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing nasm (apt-get), which assembles libjpeg-turbo's SIMD code"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nasm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nasm >/dev/null; }
  else
    echo "scripts/setup.sh: the build needs nasm (libjpeg-turbo's SIMD code): sudo apt-get install nasm, or brew install nasm" >&2
    exit 1
  fi
fi

if [ -f "$lib" ] && [ -e "$dest/libonnxruntime.so" ]; then
  echo "ONNX Runtime ${ORT_VERSION} already in $dest"
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
  echo "scripts/setup.sh: only x86_64 Linux is scripted; set ORT_DYLIB_PATH to your libonnxruntime.so" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "scripts/setup.sh: python3 (with pip) is needed to fetch the wheel" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --implementation cp --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime==${ORT_VERSION}"
echo "${WHEEL_SHA256}  $tmp/${WHEEL}" | sha256sum -c --quiet -
mkdir -p "$dest"
python3 "$root/scripts/extract_wheel_libs.py" "$tmp/$WHEEL" "onnxruntime/capi/libonnxruntime" "$dest"
ln -sf "libonnxruntime.so.${ORT_VERSION}" "$dest/libonnxruntime.so"
echo "ONNX Runtime ${ORT_VERSION} installed in $dest"
