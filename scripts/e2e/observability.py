"""End-to-end observability check against real tools (run by .ci/run).

Starts the gateway (JSON logs, tracing on), a real Prometheus scraping it every second (with
exemplar storage), and an https OTLP/HTTP receiver (a self-signed certificate the gateway trusts
through OTEL_EXPORTER_OTLP_CERTIFICATE; gzip; an auth header) that decodes with the official
opentelemetry-proto schema; drives load with the bundled `loadtest` (a fixed `traceparent`) plus some bad requests;
then asserts through Prometheus' HTTP API, a strict OpenMetrics parser, the receiver's spans and
the log lines. Exits non-zero with the failed checks listed.

Usage: python3 scripts/e2e/observability.py [--gateway BIN] [--loadtest BIN]
Needs: prometheus and promtool on PATH (apt-get install prometheus), pip install opentelemetry-proto protobuf prometheus-client; openssl.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import (  # noqa: E402
    IMAGES, ROOT, check, conclude, free_port, get, prom_query, start_gateway, start_prometheus, stop, wait_until,
)
from otlp_receiver import Receiver  # noqa: E402
from prometheus_client.openmetrics.parser import text_string_to_metric_families  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
HISTOGRAMS = [
    "http_request_duration_seconds",
    "inference_batch_size",
    "inference_queue_wait_seconds",
    "inference_stage_duration_seconds",
]


def drive_load(loadtest, port):
    url = f"http://127.0.0.1:{port}/predict"
    traceparent = f"traceparent: 00-{TRACE_ID}-{PARENT_ID}-01"
    cmd = [loadtest, "--url", url, "--images", os.path.join(IMAGES, "good"), "-c", "4", "-d", "8s",
           "--warmup", "1s", "-H", traceparent, "-q", "--slo", "errors<1%"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    print(run.stdout, flush=True)
    check(run.returncode == 0, "load ran with < 1% errors")
    for path in sorted(os.listdir(os.path.join(IMAGES, "bad")))[:3]:
        data = open(os.path.join(IMAGES, "bad", path), "rb").read()
        req = urllib.request.Request(url, data=data, headers={"content-type": "image/jpeg"})
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError:
            pass
    try:
        get(f"http://127.0.0.1:{port}/no/such/path")
    except urllib.error.HTTPError:
        pass


def check_prometheus(prom, port):
    check(prom_query(prom, 'up{job="gateway"}') == [1.0], "Prometheus scrapes the gateway (OpenMetrics parsed)")
    rate = sum(prom_query(prom, "sum(rate(http_requests_total[30s]))"))
    check(rate > 0, f"request rate through Prometheus > 0 ({rate:.2f}/s)")
    for h in HISTOGRAMS:
        n = sum(prom_query(prom, f"sum({h}_count)"))
        check(n > 0, f"{h} has observations ({n:.0f})")
    rejects = sum(prom_query(prom, 'sum(inference_requests_rejected_total{reason="bad_input"})'))
    check(rejects > 0, f"bad inputs counted as rejects ({rejects:.0f})")
    routes = prom_query(prom, 'count(count by (route) (http_requests_total))')
    check(routes and routes[0] <= 5, f"route label is bounded ({routes})")
    check(prom_query(prom, "model_info") == [1.0], "model_info is 1")
    check(sum(prom_query(prom, "process_resident_memory_bytes")) > 0, "process metrics exported")
    now = time.time()
    url = f"http://127.0.0.1:{prom}/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {"query": "http_request_duration_seconds_bucket", "start": now - 300, "end": now + 5})
    data = json.loads(get(url)[1])["data"]
    ids = {e["labels"].get("trace_id") for series in data for e in series["exemplars"]}
    check(TRACE_ID in ids, f"latency exemplars lead to the client's trace ({len(ids)} trace ids)")
    om = {"Accept": "application/openmetrics-text; version=1.0.0"}  # what Prometheus asks for
    text = get(f"http://127.0.0.1:{port}/metrics", headers=om)[1].decode()
    # promtool 2.42 reads only the classic format; the Prometheus project's Python client has a
    # strict OpenMetrics parser (it refuses what the specification does).
    try:
        families = list(text_string_to_metric_families(text))
        problems = ""
    except ValueError as e:
        families, problems = [], str(e)
    check(not problems and families, f"the exposition is valid OpenMetrics ({len(families)} families) {problems!r}")
    counters = [f.name for f in families if f.type == "counter"]
    check("http_requests" in counters and "inference_requests_rejected" in counters, "counters typed as counters")


def check_spans(receiver):
    spans = receiver.spans()
    check(receiver.bad == 0, f"every export decoded ({receiver.requests} exports)")
    servers = [s for s in spans if s["trace_id"] == TRACE_ID and s["kind"] == 2]
    check(len(servers) > 0, f"server spans in the client's trace ({len(servers)})")
    check(all(s["parent_span_id"] == PARENT_ID for s in servers), "their parent is the client's span")
    check(all(s["resource"].get("service.name") == "inference-gateway-e2e" for s in spans),
          "service.name from OTEL_RESOURCE_ATTRIBUTES (it wins over APP_NAME, as the spec says)")
    check(all(s["resource"].get("deployment.environment") == "e2e,ci" for s in spans),
          "resource attributes percent-decoded once")
    headers = receiver.headers or {}
    check(headers.get("authorization") == "Bearer e2e%2Ctoken",
          f"OTEL_EXPORTER_OTLP_HEADERS sent, decoded once ({headers.get('authorization')!r})")
    check(headers.get("content-encoding") == "gzip", "exports are gzip-compressed (OTEL_EXPORTER_OTLP_COMPRESSION)")
    check(all(s["resource"].get("service.version") == "e2e-1" for s in spans), "service.version = APP_VERSION")
    ok_servers = [s for s in servers if s["attributes"].get("http.response.status_code") == 200]
    by_parent = {}
    for s in spans:
        by_parent.setdefault(s["parent_span_id"], []).append(s["name"])
    nested = [s for s in ok_servers if sorted(by_parent.get(s["span_id"], [])) == ["decode", "preprocess", "queue"]]
    check(ok_servers and len(nested) == len(ok_servers), f"request span is the parent of decode, preprocess, queue ({len(nested)}/{len(ok_servers)})")
    attrs = ok_servers[0]["attributes"] if ok_servers else {}
    check(attrs.get("http.request.method") == "POST" and attrs.get("http.route") == "/predict", "semantic-convention attributes")
    linked = {sid for s in spans if s["name"] == "inference.batch" for (tid, sid) in s["links"] if tid == TRACE_ID}
    covered = sum(1 for s in ok_servers if s["span_id"] in linked)
    check(ok_servers and covered == len(ok_servers), f"batch spans link back to every request ({covered}/{len(ok_servers)})")
    batches = [s for s in spans if s["name"] == "inference.batch"]
    check(all("inference.batch_size" in b["attributes"] and b["attributes"].get("inference.device") == "cpu" for b in batches), "batch spans carry size and device")


def check_logs(path):
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    parsed = []
    for l in lines:
        try:
            parsed.append(json.loads(l))
        except ValueError:
            check(False, f"log line is JSON: {l[:120]!r}")
            return
    access = [p for p in parsed if p.get("message") == "request"]
    check(len(access) > 0, f"one access-log line per request ({len(access)})")
    keys = {"timestamp", "level", "message", "request_id", "route", "status", "latency_ms"}
    check(all(keys <= set(p) for p in access), "access lines carry time, level, request id, route, status, latency")
    traced = [p for p in access if p.get("route") == "/predict"]
    check(traced and all({"trace_id", "span_id"} <= set(p) for p in traced),
          "every /predict line carries its trace and span id (probes are untraced)")
    check(any(p.get("trace_id") == TRACE_ID for p in access), "the client's trace id appears in the logs")


def tls_files(tmp, ca, cert, key):
    """A throwaway CA and a collector certificate for 127.0.0.1 signed by it (rustls, like any
    WebPKI verifier, refuses a CA certificate presented as the server's own)."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    ca_key, csr, ext = (os.path.join(tmp, f) for f in ("ca.key", "collector.csr", "san.ext"))
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=e2e test CA",
        "-keyout", ca_key, "-out", ca)
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
        "-extfile", ext, "-out", cert)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    ap.add_argument("--loadtest", default=os.path.join(ROOT, "target", "debug", "loadtest"))
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install prometheus")
    tmp = tempfile.mkdtemp(prefix="e2e-obs-")
    ca, cert, key = (os.path.join(tmp, f) for f in ("ca.pem", "collector.pem", "collector.key"))
    tls_files(tmp, ca, cert, key)
    receiver = Receiver()
    otlp_port = receiver.start(tls=(cert, key))
    port, prom_port = free_port(), free_port()
    log_path = os.path.join(tmp, "gateway.log")
    gateway = start_gateway(
        args.gateway, port, open(log_path, "w"),
        APP_NAME="not-the-service-name", APP_VERSION="e2e-1", ENABLE_TRACING="true",
        OTEL_RESOURCE_ATTRIBUTES="service.name=inference-gateway-e2e,deployment.environment=e2e%2Cci",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"https://127.0.0.1:{otlp_port}", OTEL_EXPORTER_OTLP_CERTIFICATE=ca,
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20e2e%252Ctoken", OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    prom = None
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway to be ready")
        prom = start_prometheus(tmp, prom_port, port)
        wait_until(lambda: prom_query(prom_port, 'up{job="gateway"}') == [1.0], 60, "Prometheus' first scrape")
        drive_load(args.loadtest, port)
        time.sleep(3)  # three more scrapes, and the exporter's 200 ms schedule
        check_prometheus(prom_port, port)
        check_spans(receiver)
    finally:
        code = stop(gateway, prom)
    check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
    check_logs(log_path)
    conclude(tmp, "observability checks")


if __name__ == "__main__":
    main()
