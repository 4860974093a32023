#!/usr/bin/env bash
# The first GPU minutes, as one device call (docs/GPU.md): runs on the GPU machine from the
# repository root with .gpu-bin/ carried (scripts/gpu/build.sh), or here without a GPU (the
# rehearsal CI runs: every GPU step is skipped and named).
#
#   scripts/gpu/on-device.sh [--quick] [--untimed] [--eager]
#     --quick    versions, plan-check and bench-engine at batch 1, 32 and 256 only
#     --untimed  plan B: every convolution on IMPLICIT_PRECOMP_GEMM, no algorithm timed
#     --eager    plan B: every step launched, no CUDA graphs
#   REHEARSE_AS_IF_GPU=1 runs the GPU steps without a GPU (each fails fast; CI checks the flow).
#   DEADLINE_S (default 300): the whole run ends by then. Steps run in order of value, each
#   capped at the time left; a step that cannot get its minimum is skipped, and the summary
#   says so and why. The documented call is timeout_s≈330, which leaves a rerun in 15 minutes.
#
# $OUT gets at most 8 files, all at its top: summary.txt (every step, its rc and time, every
# JSON result line, what was skipped and why), logs.tgz (every log, conv-algos.tsv; rebuilt
# after every step through logs.tgz.part and a rename), and the JSON results: plan-check.jsonl,
# bench-engine.jsonl, torch-peer.jsonl, loadtest-c1.json, loadtest-c256.json.
set -uo pipefail
START=$(date +%s)
DEADLINE_S="${DEADLINE_S:-300}"
RESERVE_S=4 # kept for the last summary and archive
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
bin="$PWD/.gpu-bin"
quick=0 plan_b=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --untimed | --eager) plan_b+=("$a") ;;
    *) echo "unknown flag $a (--quick, --untimed, --eager)" >&2; exit 2 ;;
  esac
done
SKIPPED=()

left() { echo $((DEADLINE_S - ($(date +%s) - START) - RESERVE_S)); }
note() { echo "$*" | tee -a "$SUMMARY"; }
pack() { # every log, atomically: $OUT never holds half an archive under the final name
  tar -czf "$OUT/logs.tgz.part" -C "$WORK" logs 2>/dev/null && mv -f "$OUT/logs.tgz.part" "$OUT/logs.tgz"
}
skip() { # skip NAME WHY
  SKIPPED+=("$1: $2")
  note "SKIP $1: $2"
}
# step NAME MIN_S MAX_S CMD...: runs CMD for at most MAX_S seconds (less if the deadline is
# nearer), logging to logs/NAME.log; skipped when fewer than MIN_S seconds are left. Every JSON
# line it prints goes into the summary.
step() {
  local name=$1 min=$2 max=$3
  shift 3
  local l
  l=$(left)
  if ((l < min)); then
    skip "$name" "needs at least ${min}s, ${l}s left before DEADLINE_S=${DEADLINE_S}"
    return 99
  fi
  local secs=$((l < max ? l : max)) t0
  t0=$(date +%s)
  note "== $name (at most ${secs}s)"
  timeout --kill-after=2 "$secs" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  grep -E '^\{' "$LOGS/$name.log" >>"$SUMMARY"
  tail -n 3 "$LOGS/$name.log" | grep -vE '^\{' | sed 's/^/   | /' >>"$SUMMARY"
  [ $rc = 124 ] || [ $rc = 137 ] && note "   cut off at ${secs}s"
  note "   rc=$rc in $(($(date +%s) - t0))s"
  pack
  return $rc
}
collect() { # collect FILE LOG...: the JSON lines of LOGs into $OUT/FILE (no file when none)
  local file=$1 lines
  shift
  lines="$(cat "$@" 2>/dev/null | grep -E '^\{')" && echo "$lines" >"$OUT/$file"
}
gpu_step() { # gpu_step NAME MIN MAX CMD...: a step that needs the GPU
  if [ "$gpu" = 1 ]; then step "$@"; else skip "$1" "no GPU (nvidia-smi found none)"; fi
}

# 1. Versions, the libraries found (not assumed), ldd of the binary.
export LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
find_lib() { # the first folder holding $1: the Python's nvidia wheels, then /usr/local/cuda
  local sites d
  sites="$(python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)"
  for d in $(for s in $sites; do echo "$s"/nvidia/*/lib; done) /usr/local/cuda/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/$1" ] && { echo "$d"; return 0; }
  done
  return 1
}
{
  echo "== versions"
  uname -srm; echo "cores $(nproc)"
  nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv,noheader 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.backends.cudnn.version())' 2>&1 | tail -1
  for lib in libcudnn.so.9 libcublasLt.so.13 libnvrtc.so.13; do
    if d="$(find_lib "$lib")"; then
      echo "found $lib in $d"
      LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
    else
      echo "MISSING $lib (no site-packages/nvidia/*/lib or /usr/local/cuda holds it)"
    fi
  done
  echo "ldd $bin/inference-gateway:"; ldd "$bin/inference-gateway" 2>&1 | sed 's/^/  /'
} >"$LOGS/versions.log" 2>&1 # a group, not a subshell: the loader path set above stays
export LD_LIBRARY_PATH
cat "$LOGS/versions.log" >>"$SUMMARY"
cat "$LOGS/versions.log"
gpu=1
nvidia-smi -L >/dev/null 2>&1 || gpu=0
# The rehearsal's second form: every GPU step runs and fails as it would on a broken GPU node.
[ "${REHEARSE_AS_IF_GPU:-}" = 1 ] && { gpu=1; note "REHEARSE_AS_IF_GPU=1: GPU steps run (and fail) here"; }
[ $gpu = 0 ] && note "no GPU here (nvidia-smi found none): every GPU step is skipped"
[ ${#plan_b[@]} -gt 0 ] && note "plan B: ${plan_b[*]}"
# Panics show their backtrace; errors (anyhow) only their chain.
export ORT_DYLIB_PATH="$bin/libonnxruntime.so" MODEL_CACHE_DIR="$PWD/.cache/models" LOG_LEVEL=INFO \
  RUST_BACKTRACE=1 RUST_LIB_BACKTRACE=0
pack

# 2. The kernels against their references (REQUIRE_GPU: a skip is a failure there).
if [ $quick = 0 ]; then
  for t in "$bin"/kernels-*; do
    [ -e "$t" ] || continue
    REQUIRE_GPU=1 gpu_step "$(basename "$t")" 10 60 "$t" --nocapture --test-threads=1
  done
else
  skip kernel-tests "--quick"
fi

# The built-in model, regenerated from its seed, its hash against the one built here.
model="$MODEL_CACHE_DIR/resnet50-seed50-v4.onnx"
if [ ! -f "$model" ]; then
  mkdir -p "$MODEL_CACHE_DIR"
  step generate-model 20 180 "$bin/inference-gateway" generate-model --out "$model"
fi
want="$(cat "$bin/model.sha256" 2>/dev/null)"
got="$(sha256sum "$model" 2>/dev/null | cut -d' ' -f1)"
note "model sha256 ${got:-absent} (built here: ${want:-unknown}) $([ -n "$got" ] && [ "$want" = "$got" ] && echo same || echo DIFFERENT)"

# 3. The plan against ONNX Runtime (and, step by step, against the twin).
gpu_step plan-check-cuda 30 150 "$bin/inference-gateway" plan-check --device cuda --model "$model" \
  --images "$bin/images" --varied 64 --batch 32 --json "$OUT/plan-check.jsonl" "${plan_b[@]}"
[ -f "$LOGS/plan-check-cuda.log" ] && cp "$MODEL_CACHE_DIR/conv-algos.tsv" "$LOGS/" 2>/dev/null

# 4. Model-only images/s per batch size, and 5. the PyTorch peer on the same GPU.
batches=1,8,32,128,256
[ $quick = 1 ] && batches=1,32,256
gpu_step bench-engine 20 100 "$bin/inference-gateway" bench-engine --device cuda --model "$model" \
  --batches "$batches" --seconds 2 "${plan_b[@]}"
collect bench-engine.jsonl "$LOGS"/bench-engine*.log
if [ $quick = 0 ]; then
  gpu_step torch-peer 30 100 python3 "$bin/torch_peer.py" 1 8 32 128 256
  collect torch-peer.jsonl "$LOGS/torch-peer.log"
  # 6. Eager against graphs (plan B's cost, measured).
  gpu_step bench-engine-eager 15 50 "$bin/inference-gateway" bench-engine --device cuda --model "$model" \
    --batches 1,32,256 --seconds 1 --eager
  collect bench-engine.jsonl "$LOGS"/bench-engine*.log
else
  skip torch-peer "--quick"
  skip bench-engine-eager "--quick"
fi

# 7. The server under loadtest.
server() {
  # A port nothing else holds: a stray server on a fixed port would answer /ready for ours.
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  local env=(PORT="$port" HOST=127.0.0.1 GRPC_PORT=0 MODEL_DEVICE=cuda MAX_BATCH_SIZE=256 MAX_QUEUE_SIZE=1024
    MODEL_PATH="$model" DECODE_THREADS="$(nproc)" WORKERS=4)
  for f in "${plan_b[@]}"; do
    [ "$f" = --eager ] && env+=(CUDA_GRAPHS=false)
    [ "$f" = --untimed ] && env+=(CUDNN_TUNE=false)
  done
  env "${env[@]}" "$bin/inference-gateway" >"$LOGS/server.log" 2>&1 &
  local srv=$! ready=0
  while [ "$(left)" -gt 25 ]; do
    kill -0 $srv 2>/dev/null || { note "   the server exited before ready"; break; }
    curl -sf 127.0.0.1:$port/ready >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.5
  done
  grep -E 'CUDA engine built|CUDA graphs|convolution|cudnn|ready|rror' "$LOGS/server.log" |
    grep -v 'request_id' | head -20 | sed 's/\x1b\[[0-9;]*m//g; s/^/   | /' >>"$SUMMARY"
  if [ $ready = 1 ]; then
    curl -s 127.0.0.1:$port/metrics | grep -E '^model_info|^gpu_' >>"$SUMMARY"
    step loadtest-c1 15 30 "$bin/loadtest" --url http://127.0.0.1:$port/predict --images "$bin/images" \
      -c 1 -d 12s --warmup 3s --json "$OUT/loadtest-c1.json"
    step loadtest-c256 20 40 "$bin/loadtest" --url http://127.0.0.1:$port/predict --images "$bin/images" \
      -c 256 -d 15s --warmup 5s --json "$OUT/loadtest-c256.json"
  else
    skip loadtest "the server was not ready (logs.tgz: logs/server.log)"
  fi
  kill -TERM $srv 2>/dev/null
  for _ in $(seq 1 20); do kill -0 $srv 2>/dev/null || break; sleep 0.5; done
  kill -KILL $srv 2>/dev/null
  wait $srv 2>/dev/null
  grep -v 'request_id' "$LOGS/server.log" | tail -n 5 | sed 's/\x1b\[[0-9;]*m//g; s/^/   | /' >>"$SUMMARY"
}
if [ $quick = 1 ]; then
  skip server-loadtest "--quick"
elif [ $gpu = 0 ]; then
  skip server-loadtest "no GPU (nvidia-smi found none)"
elif [ "$(left)" -lt 60 ]; then
  skip server-loadtest "needs at least 60s, $(left)s left before DEADLINE_S=${DEADLINE_S}"
else
  note "== server (MODEL_DEVICE=cuda) under loadtest"
  server
fi

# Without a GPU: the same binaries on the CPU twin, so the rehearsal runs them.
if [ $gpu = 0 ]; then
  step plan-check-twin 10 120 "$bin/inference-gateway" plan-check --device twin --model "$model" \
    --images "$bin/images" --varied 4 --json "$OUT/plan-check.jsonl"
  step bench-engine-twin 10 30 "$bin/inference-gateway" bench-engine --device twin --model "$model" \
    --batches 1 --seconds 1
  collect bench-engine.jsonl "$LOGS/bench-engine-twin.log"
fi

note "== skipped: ${#SKIPPED[@]}"
for s in "${SKIPPED[@]}"; do note "   $s"; done
note "== done in $(($(date +%s) - START))s (DEADLINE_S=${DEADLINE_S})"
pack
rm -f "$OUT/logs.tgz.part"
rm -rf "$WORK"
