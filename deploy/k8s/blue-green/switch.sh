#!/usr/bin/env bash
# Points the live Service at one colour: deploy/k8s/blue-green/switch.sh VERSION [NAMESPACE]
# e.g. switch.sh 2.0.0 (go green), switch.sh 1.0.0 (roll back to blue).
# Refuses unless that version's deployment is fully rolled out and passes the smoke test.
set -euo pipefail
version="${1:?usage: switch.sh VERSION [NAMESPACE]}"; ns="${2:-ml-inference}"
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(kubectl get deploy -n "$ns" -l "app=inference-gateway,version=$version" -o name | head -n1)"
[ -n "$deploy" ] || { echo "no deployment with version=$version in $ns" >&2; exit 1; }
kubectl rollout status -n "$ns" "$deploy" --timeout=300s
svc="${deploy#deployment.apps/}"
kubectl run -n "$ns" "smoke-$RANDOM" --rm -i --restart=Never --image=curlimages/curl:8.5.0 -- \
  curl -fsS "http://$svc/ready" >/dev/null
kubectl patch service inference-gateway -n "$ns" \
  -p "{\"spec\":{\"selector\":{\"app\":\"inference-gateway\",\"version\":\"$version\"}}}"
echo "inference-gateway now serves version $version; verify with $here/../../scripts/smoke-test.sh"
