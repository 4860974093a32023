#!/usr/bin/env bash
# Installs what the end-to-end checks need: Prometheus and promtool (Debian package), and the
# official OTLP protobuf schema for the trace receiver (PyPI). Idempotent.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq prometheus >/dev/null \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq prometheus >/dev/null; }
fi
python3 -c 'import opentelemetry.proto, google.protobuf' 2>/dev/null \
  || python3 -m pip install --quiet opentelemetry-proto protobuf
prometheus --version 2>&1 | head -n1
