#!/usr/bin/env bash
# Is `loadtest` the bottleneck? Drives a trivial endpoint with wrk and with loadtest, same
# connections and threads, in interleaved rounds (this 2-core VM's speed drifts minute to minute),
# and prints loadtest's requests/s as a fraction of wrk's per round and their median.
# Usage: scripts/loadtest-vs-wrk.sh [ROUNDS] [SECONDS] [CONNECTIONS]. Needs wrk (apt-get install wrk).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
rounds="${1:-5}"; secs="${2:-5}"; conns="${3:-64}"
command -v wrk >/dev/null || { echo "loadtest-vs-wrk.sh: install wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p loadtest --bin loadtest --example trivial_server
port=18080
./target/release/examples/trivial_server "$port" 1 & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.5
url="http://127.0.0.1:$port/"
ratios=()
for r in $(seq "$rounds"); do
  w=$(wrk -t2 -c"$conns" -d"${secs}s" "$url" | awk '/Requests\/sec/{print $2}')
  json="$(mktemp)"
  ./target/release/loadtest --url "$url" -c "$conns" -d "${secs}s" --warmup 0s --threads 2 \
    --no-scrape -q --json "$json" >/dev/null
  l=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$json")
  ratio=$(python3 -c "print(f'{$l / $w:.3f}')")
  ratios+=("$ratio")
  printf 'round %s: wrk %.0f req/s, loadtest %.0f req/s, ratio %s\n' "$r" "$w" "$l" "$ratio"
done
python3 -c "import statistics,sys; print('median loadtest/wrk:', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
