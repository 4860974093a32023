#!/usr/bin/env bash
# Builds, here, the GPU test binaries (feature `cuda`; no CUDA toolkit needed: cudarc loads the
# libraries at run time) into .gpu-bin/, which the device tool carries to the GPU machine.
# Then run there, in one call (see docs/GPU.md):
#   device run  carry=[".gpu-bin"]  command="scripts/gpu/on-device.sh"
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$root"
mkdir -p .gpu-bin
rm -f .gpu-bin/*
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
ls -la .gpu-bin
