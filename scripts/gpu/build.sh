#!/usr/bin/env bash
# Builds, here (no CUDA toolkit needed: cudarc loads the libraries at run time), everything the
# device machine runs, into .gpu-bin/ (carried by the device tool, at most 64 MiB; this script
# fails above 56 MiB): inference-gateway (--features cuda, stripped), loadtest, the kernels' GPU
# test, libonnxruntime (to regenerate the built-in model there and compute the CPU reference),
# the good test images, the PyTorch peer. Then, in one device call (docs/GPU.md):
#   run(command="scripts/gpu/on-device.sh", carry=[".gpu-bin"], timeout_s=330)
# `--dev` builds the dev profile instead (the CI rehearsal: quicker, reuses CI's build).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
profile=release
[ "${1:-}" = --dev ] && profile=dev
dir=release
[ $profile = dev ] && dir=debug
LIMIT_MIB=56
./scripts/setup.sh >/dev/null
rm -rf .gpu-bin && mkdir -p .gpu-bin/images
cargo build -q --profile "$profile" -p inference-gateway --features cuda -p loadtest
cp "target/$dir/inference-gateway" "target/$dir/loadtest" .gpu-bin/
cargo test -q --profile "$profile" -p kernels --features cuda --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        dest = ".gpu-bin/kernels-" + m["target"]["name"]
        shutil.copy(m["executable"], dest)
        print("built", dest)
'
strip .gpu-bin/inference-gateway .gpu-bin/loadtest .gpu-bin/kernels-* 2>/dev/null || true
cp .cache/onnxruntime/libonnxruntime.so.* .gpu-bin/
ln -sf "$(cd .gpu-bin && ls libonnxruntime.so.1.* | head -1)" .gpu-bin/libonnxruntime.so
cp "$root"/testdata/images/good/* .gpu-bin/images/
cp scripts/gpu/torch_peer.py .gpu-bin/
sha256sum "$(ls .cache/models/resnet50-seed50-v*.onnx | sort -V | tail -1)" 2>/dev/null | cut -d' ' -f1 >.gpu-bin/model.sha256 || true
mib=$(($(du -sbL .gpu-bin | cut -f1) / 1048576))
ls -la .gpu-bin
echo ".gpu-bin: ${mib} MiB (limit ${LIMIT_MIB} MiB; the device tool carries 64)"
if [ "$mib" -gt "$LIMIT_MIB" ]; then
  echo "error: .gpu-bin is ${mib} MiB, over ${LIMIT_MIB} MiB" >&2
  exit 1
fi
