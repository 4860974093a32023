#!/usr/bin/env bash
# The gateway end to end against ONNX Runtime alone on the same model file, in one run on this
# machine. This machine's speed drifts by ±20% from minute to minute, so the two are measured in
# interleaved short rounds (ORT batch 1 | gateway 1 client | ORT batch 8 | gateway concurrency 8)
# and compared round by round. Usage: scripts/bench.sh [ROUNDS] [SECONDS_PER_STEP]
# Needs `hey` (apt-get install hey).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
rounds="${1:-4}"; secs="${2:-6}"
command -v hey >/dev/null || { echo "bench.sh: install hey (apt-get install hey)" >&2; exit 1; }
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so"
cargo build --release -q -p inference-gateway
cargo build --release -q -p engine --example ort_alone
model="$(ls "$root"/.cache/models/resnet50-seed50-v*.onnx 2>/dev/null | sort | tail -n1 || true)"
if [ -z "$model" ]; then
  ./target/release/inference-gateway generate-model --out /tmp/bench-model.onnx >/dev/null; model=/tmp/bench-model.onnx
fi
img="${IMAGE:-$root/../shared/testdata/images/good/ijg-testorig.jpg}"
port=18000
MODEL_PATH="$model" PORT=$port HOST=127.0.0.1 LOG_LEVEL=WARN MAX_BATCH_SIZE=8 ./target/release/inference-gateway & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
url="http://127.0.0.1:$port/predict"
hey -n 20 -c 2 -m POST -T image/jpeg -D "$img" "$url" >/dev/null   # warm-up
log="$(mktemp)"
for r in $(seq "$rounds"); do
  ./target/release/examples/ort_alone "$model" 1 "$secs" | sed "s/^/round $r /" | tee -a "$log"
  hey -z "${secs}s" -c 1 -m POST -T image/jpeg -D "$img" "$url" \
    | awk -v r="$r" '/Requests\/sec/{rps=$2} /50% in/{p50=$3} END{printf "round %s gateway c=1: %.1f images/s, median latency %.1f ms\n", r, rps, p50*1000}' | tee -a "$log"
  ./target/release/examples/ort_alone "$model" 8 "$secs" | sed "s/^/round $r /" | tee -a "$log"
  hey -z "${secs}s" -c 8 -m POST -T image/jpeg -D "$img" "$url" \
    | awk -v r="$r" '/Requests\/sec/{rps=$2} /50% in/{p50=$3} /\[[0-9]+\]/{codes=codes" "$1$2} END{printf "round %s gateway c=8: %.1f images/s, median latency %.1f ms, statuses%s\n", r, rps, p50*1000, codes}' | tee -a "$log"
done
curl -s "127.0.0.1:$port/metrics" | grep -E "^inference_batch_size_(sum|count)"
python3 - "$log" <<'PY'
import re, statistics, sys
rows = open(sys.argv[1]).read().splitlines()
def pick(pattern, group):
    return [float(m.group(group)) for l in rows if (m := re.search(pattern, l))]
ort1 = pick(r"batch=1 .*?([\d.]+) images/s, median batch latency ([\d.]+)", 2)
gw1 = pick(r"c=1: [\d.]+ images/s, median latency ([\d.]+)", 1)
ort8 = pick(r"batch=8 .*?: ([\d.]+) images/s", 1)
gw8 = pick(r"c=8: ([\d.]+) images/s", 1)
lat = [g / o for g, o in zip(gw1, ort1)]
thr = [g / o for g, o in zip(gw8, ort8)]
print(f"single client median latency / ORT batch-1 latency, per round: {[round(x, 3) for x in lat]}, median {statistics.median(lat):.3f}")
print(f"gateway c=8 images/s / ORT batch-8 images/s, per round: {[round(x, 3) for x in thr]}, median {statistics.median(thr):.3f}")
PY
