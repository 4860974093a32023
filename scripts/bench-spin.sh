#!/usr/bin/env bash
# ONNX Runtime's intra-op spinning on vs off, under open-loop Poisson load on this machine: two
# release gateways on the same model (ENGINE_SPIN=true | false), driven by `loadtest` in
# alternating rounds (A B B A …), the 12 test images cycled. Prints p50/p90/p99 per round.
# Usage: scripts/bench-spin.sh [ROUNDS] [SECONDS] [RATE]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
rounds="${1:-4}"; secs="${2:-15}"; rate="${3:-13}"
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so"
cargo build --release -q -p inference-gateway -p loadtest
model="$(ls "$root"/.cache/models/resnet50-seed50-v*.onnx | sort | tail -n1)"
images="$root/testdata/images/good"
start() { ENGINE_SPIN=$1 MODEL_PATH="$model" PORT=$2 GRPC_PORT=0 HOST=127.0.0.1 LOG_LEVEL=WARN ./target/release/inference-gateway & }
start true 18011; on=$!; start false 18012; off=$!
trap 'kill $on $off 2>/dev/null || true' EXIT
until curl -sf 127.0.0.1:18011/ready >/dev/null && curl -sf 127.0.0.1:18012/ready >/dev/null; do sleep 0.3; done
run() {
  ./target/release/loadtest --url "http://127.0.0.1:$2/predict" --images "$images" -r "$rate" \
    --arrivals poisson -d "${secs}s" --warmup 2s -q --json /tmp/bench-spin.json >/dev/null
  python3 - "$1" "$r" <<'PY'
import json, sys
d = json.load(open("/tmp/bench-spin.json")); l = d["latency_ms"]; s = d["server"] or {}
print(f"round {sys.argv[2]} spin={sys.argv[1]:5}: {d['ok']} ok, {d['throughput_rps']:.2f}/s, "
      f"p50 {l['p50']:.0f} ms, p90 {l['p90']:.0f} ms, p99 {l['p99']:.0f} ms, "
      f"mean batch {s.get('mean_batch_size', 0):.2f}, statuses {d['statuses']}")
PY
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run true 18011; run false 18012; else run false 18012; run true 18011; fi
done
