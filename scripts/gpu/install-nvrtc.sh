#!/usr/bin/env bash
# Fetches NVRTC (CUDA 13.0, the driver-580 toolkit of the device machine) from its PyPI wheel
# into .cache/nvrtc/, so CI compiles every CUDA kernel to CUBIN without a GPU or a driver:
#   LD_LIBRARY_PATH="$PWD/.cache/nvrtc" REQUIRE_NVRTC=1 cargo test -p kernels --features cuda
# Idempotent.
set -euo pipefail
VERSION="13.0.88"
WHEEL="nvidia_cuda_nvrtc-${VERSION}-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl"
SHA256="${NVRTC_WHEEL_SHA256:-ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.cache/nvrtc"
if [ -f "$dest/libnvrtc.so.13" ]; then
  echo "NVRTC ${VERSION} already in $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps -d "$tmp" "nvidia-cuda-nvrtc==${VERSION}"
echo "${SHA256}  $tmp/${WHEEL}" | sha256sum -c --quiet -
mkdir -p "$dest"
python3 "$root/scripts/extract_wheel_libs.py" "$tmp/$WHEEL" "nvidia/cu13/lib/libnvrtc" "$dest"
echo "NVRTC ${VERSION} installed in $dest"
