#!/usr/bin/env bash
# Runs on the GPU machine (device tool): points the loader at the CUDA 13 / cuDNN 9 wheels of
# that machine's Python, prints what it finds, and runs every test binary in .gpu-bin/ (built
# here by scripts/gpu/build.sh), each with --nocapture so skips and timings are visible.
set -uo pipefail
sp="$(python3 -c 'import site; print(site.getsitepackages()[0])')"
export LD_LIBRARY_PATH="$sp/nvidia/cu13/lib:$sp/nvidia/cudnn/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv,noheader || true
ls "$sp/nvidia/cu13/lib" "$sp/nvidia/cudnn/lib" 2>&1 | grep -E 'nvrtc|cublasLt|cudnn\.so' | head
status=0
for t in .gpu-bin/*; do
  echo "== $t"
  "$t" --nocapture --test-threads=1 || status=1
done
exit $status
