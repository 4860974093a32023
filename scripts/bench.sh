#!/usr/bin/env bash
# The gateway end to end against ONNX Runtime alone on the same model file, in one run on this
# machine: builds the release binaries, starts the gateway on the built-in model and runs
# scripts/bench_vs_ort.py (interleaved rounds, per-round ratios; see its docstring).
# Usage: scripts/bench.sh [ROUNDS] [SECONDS_PER_STEP] [-- more bench_vs_ort.py options]
# Environment: IMAGE (default ijg-testorig.jpg), ENGINE_THREADS (default 2, both sides).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
rounds="${1:-12}"; secs="${2:-3}"; shift $(( $# > 2 ? 2 : $# )); [ "${1:-}" = "--" ] && shift
threads="${ENGINE_THREADS:-2}"
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so"
cargo build --release -q -p inference-gateway -p loadtest
cargo build --release -q -p models --example ort_alone
model="$(ls "$root"/.cache/models/resnet50-seed50-v*.onnx 2>/dev/null | sort | tail -n1 || true)"
if [ -z "$model" ]; then
  ./target/release/inference-gateway generate-model --out /tmp/bench-model.onnx >/dev/null; model=/tmp/bench-model.onnx
fi
img="${IMAGE:-$root/testdata/images/good/ijg-testorig.jpg}"
port=18000
MODEL_PATH="$model" PORT=$port GRPC_PORT=0 HOST=127.0.0.1 LOG_LEVEL=WARN MAX_BATCH_SIZE=8 \
  ENGINE_THREADS="$threads" ./target/release/inference-gateway & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
python3 scripts/bench_vs_ort.py --model "$model" --image "$img" --port "$port" \
  --rounds "$rounds" --seconds "$secs" --threads "$threads" "$@"
