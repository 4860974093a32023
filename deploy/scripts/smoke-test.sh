#!/usr/bin/env bash
# Post-deployment smoke test (the guide's four checks, made strict):
#   deploy/scripts/smoke-test.sh http://GATEWAY [IMAGE]
# health → 200, ready → 200, predict → 200 with 5 predictions, metrics → http_requests_total.
# IMAGE defaults to a test image of the repository's testdata/; API_KEY (env) is sent when set.
set -euo pipefail
url="${1:?usage: smoke-test.sh http://GATEWAY [IMAGE]}"
url="${url%/}"
here="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
image="${2:-$here/../../testdata/images/good/ijg-testorig.jpg}"
auth=()
if [ -n "${API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $API_KEY"); fi
echo "Running smoke tests for $url"

echo "Test 1: health check"
curl -fsS --max-time 5 "$url/health"; echo

echo "Test 2: readiness check"
curl -fsS --max-time 5 "$url/ready"; echo

echo "Test 3: prediction"
answer="$(curl -fsS --max-time 30 "${auth[@]}" -X POST -F "file=@$image" "$url/predict")"
echo "$answer"
count="$(printf '%s' "$answer" | grep -o '"class_id"' | wc -l)"
if [ "$count" -ne 5 ]; then echo "expected 5 predictions, got $count" >&2; exit 1; fi

echo "Test 4: metrics endpoint"
# Read whole, then searched: `curl | grep -q` fails under pipefail when grep stops reading
# before curl has written the (large) exposition ("curl: (23) Failed writing body").
metrics="$(curl -fsS --max-time 5 "$url/metrics")"
grep -q '^http_requests_total{' <<<"$metrics" \
  || { echo "http_requests_total missing from /metrics" >&2; exit 1; }
echo "http_requests_total present"

echo "All smoke tests passed!"
