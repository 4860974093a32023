#!/usr/bin/env bash
# The cost of telemetry: two release gateways on the same model, one with metrics and tracing on
# (sampler always_on, exporting to a local sink, /metrics scraped every second) and one
# with both off, driven in alternating rounds (A B B A …) by loadtest at the same concurrency, on
# this machine whose speed drifts minute to minute. Prints the per-round and median ratio of
# images/s (on ÷ off). Usage: scripts/bench-telemetry.sh [ROUNDS] [SECONDS] [CONCURRENCY]
# The OTLP sink is loadtest's trivial hyper server (it answers 200 to every export and costs
# almost no CPU), so the numbers are the gateway's own cost; scripts/e2e/observability.py is
# where the exported spans are checked.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
rounds="${1:-6}"; secs="${2:-10}"; conc="${3:-8}"
export ORT_DYLIB_PATH="$root/.cache/onnxruntime/libonnxruntime.so"
cargo build --release -q -p inference-gateway -p loadtest --example trivial_server
gw=./target/release/inference-gateway; lt=./target/release/loadtest
on=18101; off=18102; otlp=18103
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
./target/release/examples/trivial_server "$otlp" 1 & pids+=($!)
common=(HOST=127.0.0.1 GRPC_PORT=0 LOG_LEVEL=WARN MAX_BATCH_SIZE=8 MODEL_CACHE_DIR="$root/.cache/models")
env "${common[@]}" PORT=$on ENABLE_METRICS=true ENABLE_TRACING=true OTEL_TRACES_SAMPLER=always_on \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp" OTEL_BSP_SCHEDULE_DELAY=1000 "$gw" & pids+=($!)
env "${common[@]}" PORT=$off ENABLE_METRICS=false ENABLE_TRACING=false "$gw" & pids+=($!)
for p in $on $off; do until curl -sf "127.0.0.1:$p/ready" >/dev/null; do sleep 0.3; done; done
( while sleep 1; do curl -s "127.0.0.1:$on/metrics" >/dev/null || true; done ) & pids+=($!)
run() {  # port, loadtest args… → 2xx/s
  local json; json="$(mktemp)"; local port=$1; shift
  "$lt" --url "http://127.0.0.1:$port$1" "${@:2}" --warmup 2s --threads 1 --no-scrape -q --json "$json" >/dev/null
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['goodput_rps'])" "$json"
}
rounds_of() {  # label, loadtest args… : alternating rounds, per-round and median ratio on/off
  local label=$1; shift; local ratios=() a b
  for r in $(seq "$rounds"); do
    if (( r % 2 )); then a=$(run $on "$@"); b=$(run $off "$@"); else b=$(run $off "$@"); a=$(run $on "$@"); fi
    ratios+=("$(python3 -c "print(f'{$a / $b:.3f}')")")
    printf '%s round %s: telemetry on %.1f/s, off %.1f/s, ratio %s\n' "$label" "$r" "$a" "$b" "${ratios[-1]}"
  done
  python3 -c "import statistics,sys; v=list(map(float, sys.argv[2:])); print(f'{sys.argv[1]}: median on/off {statistics.median(v):.3f} (mean {statistics.mean(v):.3f}, {len(v)} rounds)')" "$label" "${ratios[@]}"
}
# The product path: /predict, images cycled, every request traced (spans: server, decode,
# preprocess, queue, and the batch span).
rounds_of predict /predict --images testdata/images/good -c "$conc" -d "${secs}s"
# The worst case for overhead: a trivial route where telemetry is a large share of the work
# (traced because the client sends a sampled traceparent; metrics and exemplar recorded).
tp="traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
rounds_of health /health -H "$tp" -c 32 -d 5s
curl -s "127.0.0.1:$on/metrics" | grep -E '^trace_spans_dropped_total' || echo "no spans dropped"
# CPU seconds each process used over the whole run (sink, gateway on, gateway off).
ps -o cputime=,args= -p "$(IFS=,; echo "${pids[*]:0:3}")" | sed 's/^/cpu /' 
