#!/usr/bin/env bash
# Builds, here (no CUDA toolkit needed: cudarc loads the libraries at run time), everything the
# device machine runs, into .gpu-bin/ (carried by the device tool; keep it under 64 MiB):
#   inference-gateway (release, --features cuda, stripped), loadtest, the kernels' GPU test,
#   libonnxruntime (to regenerate the built-in model there and compute the CPU reference),
#   the good test images. Then, in one device call (docs/GPU.md):
#   run(command="scripts/gpu/on-device.sh", carry=[".gpu-bin"], timeout_s=560)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$root"
./scripts/setup.sh >/dev/null
rm -rf .gpu-bin && mkdir -p .gpu-bin/images
cargo build --release -p inference-gateway --features cuda -p loadtest
cp target/release/inference-gateway target/release/loadtest .gpu-bin/
cargo test --release -p kernels --features cuda --no-run --message-format=json 2>/dev/null \
  | python3 -c '
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
sha256sum "$(ls .cache/models/resnet50-seed50-v*.onnx | sort -V | tail -1)" 2>/dev/null | cut -d' ' -f1 > .gpu-bin/model.sha256 || true
du -sh .gpu-bin
ls -la .gpu-bin
