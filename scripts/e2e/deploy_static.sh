#!/usr/bin/env bash
# Validates deploy/ and the root deploy files with real tools (run by .ci/run):
# generated files up to date; every kustomize overlay renders and validates strictly against the
# Kubernetes 1.30 schemas; custom resources against their CRD types; promtool on the rules (check
# and unit tests) and the Prometheus config; the compose files; the Dockerfiles (hadolint); the
# ECS task definition (botocore's ECS model). Tools: scripts/e2e/install-tools.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$root"
out="$(mktemp -d)"
step() { echo "-- $*"; }

step "generated files are up to date"
python3 deploy/generate.py --check

command -v kubectl >/dev/null || { echo "kubectl is needed to render the overlays (kubectl kustomize)" >&2; exit 1; }
for dir in deploy/k8s/overlays/development deploy/k8s/overlays/staging deploy/k8s/overlays/production deploy/k8s/blue-green; do
  name="$(basename "$dir")"
  step "kustomize $dir"
  kubectl kustomize "$dir" > "$out/$name.yaml"
  echo "   $(grep -c '^kind:' "$out/$name.yaml") objects"
  kubernetes-validate --strict -k 1.30.0 --quiet "$out/$name.yaml"
done

step "every \$(VAR) in a container's env refers to a variable defined before it"
python3 scripts/e2e/check_env_refs.py "$out"/*.yaml

step "custom resources against their CRD types (unknown fields rejected)"
(cd deploy/crd-check && cargo build -q --locked)
deploy/crd-check/target/debug/crd-check "$out"/*.yaml

step "promtool: rules, rule unit tests, Prometheus config"
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml
sed "s#/etc/prometheus/rules/\*.yml#$root/deploy/prometheus/rules/*.yml#" deploy/prometheus/prometheus.yml > "$out/prometheus.yml"
promtool check config "$out/prometheus.yml"

step "compose files"
for f in docker-compose.yml docker-compose.dev.yml; do docker-compose -f "$f" config -q && echo "   $f ok"; done
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.dev.yml

step "Dockerfiles (hadolint)"
hadolint Dockerfile Dockerfile.dev Dockerfile.cuda && echo "   ok"

step "ECS task definition (botocore's ECS API model)"
python3 scripts/e2e/validate_ecs.py deploy/ecs/*.json

step "Grafana dashboard and provisioning are well-formed"
python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["panels"] and all(p["targets"] for p in b["panels"]); print("   %d panels" % len(b["panels"]))' deploy/grafana/dashboards/inference-gateway.json
python3 -c 'import yaml,sys; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' deploy/grafana/provisioning/*/*.yml
echo "all static deploy checks passed"
