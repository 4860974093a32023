#!/usr/bin/env bash
# Validates deploy/ and the root deploy files with real tools (run by .ci/run):
# generated files up to date; every kustomize overlay renders and validates strictly against the
# Kubernetes 1.30 schemas; custom resources, the KServe runtimes and InferenceService among them,
# against their CRD types; promtool on the rules (check and unit tests) and the Prometheus config;
# the compose files; the Dockerfiles (hadolint); the ECS task definition (botocore's ECS model);
# secrets wired from the Secret, Secrets Manager and an env file; the monitoring stack's Helm
# values. Tools: scripts/e2e/install-tools.sh.
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

step "secrets: API_KEYS from the Secret in every overlay (required outside development), none in plain text"
python3 scripts/e2e/check_secret_refs.py "$out"/*.yaml
kubernetes-validate --strict -k 1.30.0 --quiet deploy/k8s/secret.example.yaml && echo "   secret.example.yaml valid"

step "monitoring stack Helm values: keys known to the pinned charts, and what the manifests need from them"
python3 scripts/e2e/check_helm_values.py "$out"/*.yaml

step "custom resources against their CRD types (unknown fields rejected)"
(cd deploy/crd-check && cargo build -q --locked)
deploy/crd-check/target/debug/crd-check "$out"/*.yaml

step "KServe runtimes and example InferenceService against KServe's CRD types (core container fields included)"
deploy/crd-check/target/debug/crd-check deploy/kserve/*.yaml

step "promtool: rules, rule unit tests, Prometheus config"
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml
sed "s#/etc/prometheus/rules/\*.yml#$root/deploy/prometheus/rules/*.yml#" deploy/prometheus/prometheus.yml > "$out/prometheus.yml"
promtool check config "$out/prometheus.yml"

step "compose files"
# docker-compose.yml reads its secrets from .env.secrets (git-ignored): checked with the example,
# and it must refuse to start without the file.
export GATEWAY_SECRETS_FILE=.env.secrets.example
for f in docker-compose.yml docker-compose.dev.yml; do docker-compose -f "$f" config -q && echo "   $f ok"; done
if GATEWAY_SECRETS_FILE=.env.secrets.absent docker-compose -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml starts without its secrets file" >&2; exit 1
fi
echo "   docker-compose.yml refuses to start without its secrets file"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.dev.yml

step "Dockerfiles (hadolint)"
hadolint Dockerfile Dockerfile.dev Dockerfile.cuda Dockerfile.tensorrt && echo "   ok"

step "ECS task definition (botocore's ECS API model)"
python3 scripts/e2e/validate_ecs.py deploy/ecs/*.json

step "Grafana dashboard and provisioning are well-formed"
python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["panels"] and all(p["targets"] for p in b["panels"]); print("   %d panels" % len(b["panels"]))' deploy/grafana/dashboards/inference-gateway.json
python3 -c 'import yaml,sys; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' deploy/grafana/provisioning/*/*.yml
echo "all static deploy checks passed"
