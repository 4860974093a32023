#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with .gpu-bin/ carried (built
# here by scripts/gpu/build.sh). Each step has its own timeout and writes to $OUT as it goes, so
# a step that hangs costs only its own time. Where there is no GPU (the rehearsal here), every
# GPU step says why it is skipped and the rest runs.
set -uo pipefail
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
bin="$PWD/.gpu-bin"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
step() { # step NAME SECONDS CMD...: runs CMD under a timeout, output to $OUT/NAME.log
  local name=$1 secs=$2; shift 2
  log "$name (≤ ${secs}s)"
  timeout --kill-after=5 "$secs" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?; tail -n 4 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
  echo "   rc=$rc" | tee -a "$OUT/summary.txt"; return $rc
}
sp="$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || echo /nonexistent)"
export LD_LIBRARY_PATH="$sp/nvidia/cu13/lib:$sp/nvidia/cudnn/lib:$bin:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$bin/libonnxruntime.so" MODEL_CACHE_DIR="$PWD/.cache/models" LOG_LEVEL=WARN RUST_BACKTRACE=0
gpu=1
if ! nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv,noheader >"$OUT/versions.txt" 2>&1; then
  gpu=0; log "no GPU here (nvidia-smi failed): GPU steps are skipped"
fi
{ uname -a; nproc; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.backends.cudnn.version())' 2>&1;
  ls "$sp/nvidia/cu13/lib" "$sp/nvidia/cudnn/lib" 2>&1 | grep -E 'nvrtc|cublasLt|cudnn\.so' | head; } >>"$OUT/versions.txt"
cat "$OUT/versions.txt" | tee -a "$OUT/summary.txt"

for t in "$bin"/kernels-*; do
  step "$(basename "$t")" 60 "$t" --nocapture --test-threads=1
done

model="$MODEL_CACHE_DIR/resnet50-seed50-v4.onnx"
if [ ! -f "$model" ]; then
  mkdir -p "$MODEL_CACHE_DIR"
  step generate-model 120 "$bin/inference-gateway" generate-model --out "$model"
fi
want="$(cat "$bin/model.sha256" 2>/dev/null)"; got="$(sha256sum "$model" | cut -d' ' -f1)"
log "model sha256 $got (built here: ${want:-unknown}) $([ "$want" = "$got" ] && echo same || echo DIFFERENT)"

if [ $gpu = 1 ]; then
  step plan-check-cuda 240 "$bin/inference-gateway" plan-check --device cuda --model "$model" \
    --images "$bin/images" --varied 256 --batch 32 --json "$OUT/plan-check-cuda.jsonl"
  step bench-engine 150 "$bin/inference-gateway" bench-engine --device cuda --model "$model" \
    --batches 1,8,32,128,256 --seconds 3
  step bench-engine-eager 90 "$bin/inference-gateway" bench-engine --device cuda --model "$model" \
    --batches 1,32,256 --seconds 2 --eager
  step torch-peer 150 python3 "$bin/torch_peer.py" 1 8 32 128 256
  PORT=18080 GRPC_PORT=0 MODEL_DEVICE=cuda MAX_BATCH_SIZE=256 MAX_QUEUE_SIZE=1024 MODEL_PATH="$model" \
    DECODE_THREADS="$(nproc)" WORKERS=4 "$bin/inference-gateway" >"$OUT/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 240); do curl -sf localhost:18080/ready >/dev/null 2>&1 && break; sleep 0.5; done
  curl -s localhost:18080/metrics | grep -E '^model_info|^gpu_' >>"$OUT/summary.txt"
  step loadtest-c1 40 "$bin/loadtest" --url http://127.0.0.1:18080/predict --images "$bin/images" \
    -c 1 -d 15s --warmup 3s --json "$OUT/loadtest-c1.json"
  step loadtest-c256 50 "$bin/loadtest" --url http://127.0.0.1:18080/predict --images "$bin/images" \
    -c 256 -d 20s --warmup 5s --json "$OUT/loadtest-c256.json"
  kill -TERM $srv; wait $srv
  tail -n 20 "$OUT/server.log" >>"$OUT/summary.txt"
else
  log "skipping plan-check --device cuda, bench-engine, the PyTorch peer and the server under load: no GPU"
  step plan-check-twin 240 "$bin/inference-gateway" plan-check --device twin --model "$model" \
    --images "$bin/images" --varied 4 --json "$OUT/plan-check-twin.jsonl"
  step bench-engine-twin 60 "$bin/inference-gateway" bench-engine --device twin --model "$model" \
    --batches 1 --seconds 1
fi
log "done"
