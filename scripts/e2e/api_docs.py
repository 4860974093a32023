#!/usr/bin/env python3
"""The API's description, checked from the outside against the release binary (run by .ci/run):

1. `/openapi.json` validates as OpenAPI 3.1 (openapi-spec-validator).
2. schemathesis, driven by that document, sends generated requests to every operation: no 5xx,
   no status, content type, header or body the document does not describe.
3. `/metrics`: a scraper that asks for nothing gets the text format 0.0.4, which `promtool check
   metrics` lints clean; Prometheus' own `Accept` gets OpenMetrics with exemplars.
4. A headless Chromium (Debian's, driven by Playwright) opens `/docs`, sends a test image to
   `/predict` through Swagger UI's "Try it out", and reads the top-5 the page shows; the page
   loads nothing from anywhere but the server.

Tools: scripts/e2e/install-tools.sh (schemathesis, openapi-spec-validator, playwright, chromium,
promtool).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import IMAGES, ROOT, check, conclude, free_port, get, start_gateway, wait_until  # noqa: E402

# Prometheus 2.x's scrape `Accept`.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
# The built-in model's answer for this image (server/tests/data/golden-top1.tsv).
IMAGE, TOP1_CLASS, TOP1_LABEL = "ijg-testorig.jpg", 455, "bottlecap"
# What the document promises, checked on every generated request. `positive_data_acceptance` is
# left out: a request the schema allows may still be refused for what no schema can say (bytes
# that are not an image, a tensor of the wrong size).
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "unsupported_method",
])


def document(base):
    from openapi_spec_validator import validate

    doc = json.loads(get(f"{base}/openapi.json")[1])
    try:
        validate(doc)
        problem = ""
    except Exception as e:  # noqa: BLE001 - the validator's own error says what is wrong
        problem = str(e).splitlines()[0]
    check(not problem and doc["openapi"].startswith("3.1"),
          f"/openapi.json is valid OpenAPI {doc['openapi']} ({len(doc['paths'])} paths) {problem}")
    wanted = ["/predict", "/health", "/ready", "/metrics", "/v2", "/v2/models/{model}/infer",
              "/v2/repository/index", "/docs"]
    check(all(p in doc["paths"] for p in wanted), "it covers /predict, probes, metrics, v2, repository, docs")
    check(set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}, "and the API-key schemes")


def metrics(base, tmp):
    status, text = get(f"{base}/metrics")
    path = os.path.join(tmp, "metrics.txt")
    with open(path, "wb") as f:
        f.write(text)
    lint = subprocess.run(["promtool", "check", "metrics"], stdin=open(path, "rb"),
                          capture_output=True, text=True)
    check(status == 200 and lint.returncode == 0 and b"# EOF" not in text,
          f"/metrics without Accept: text 0.0.4 that promtool lints clean {lint.stdout}{lint.stderr}")
    import urllib.request

    req = urllib.request.Request(f"{base}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(req, timeout=5) as r:
        content_type, body = r.headers["content-type"], r.read()
    check(content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n"),
          f"Prometheus' Accept gets OpenMetrics ({content_type})")


def schemathesis(base, tmp, examples):
    cmd = [shutil.which("schemathesis") or "schemathesis", "run", f"{base}/openapi.json",
           "--checks", CHECKS, "--max-examples", str(examples), "--workers", "1",
           "--request-timeout", "30", "--seed", "20261207", "--no-color"]
    log = os.path.join(tmp, "schemathesis.log")
    with open(log, "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=1200).returncode
    tail = open(log).read().splitlines()[-25:]
    print("\n".join("   " + line for line in tail))
    check(code == 0, f"schemathesis: every generated request answered as documented (log {log})")


def browser(base, chromium):
    from playwright.sync_api import sync_playwright

    elsewhere, errors = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        page = b.new_page()
        page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else elsewhere.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/docs", wait_until="networkidle")
        op = page.locator("#operations-predict-predict")
        op.locator(".opblock-summary").first.click()
        # The page opens in "Try it out" mode (tryItOutEnabled); a page without it shows the button.
        try_it = op.get_by_role("button", name="Try it out")
        if try_it.count():
            try_it.click()
        op.locator('input[type="file"]').set_input_files(os.path.join(IMAGES, "good", IMAGE))
        op.get_by_role("button", name="Execute").click()
        answer = op.locator(".live-responses-table tr.response")
        answer.first.wait_for(timeout=60_000)
        status = answer.locator(".response-col_status").first.inner_text().strip()
        shown = answer.locator(".response-col_description pre").first.inner_text()
        b.close()
    try:
        predictions = json.loads(shown)["predictions"]
    except (ValueError, KeyError):
        predictions = []
    check(status == "200" and len(predictions) == 5,
          f"/docs: Try it out on /predict with {IMAGE} shows 200 and a top-5 ({status})")
    top = predictions[0] if predictions else {}
    check(top.get("class_id") == TOP1_CLASS and top.get("label") == TOP1_LABEL,
          f"   its top-1 is the server's answer: {top}")
    check(not elsewhere, f"the page loads nothing from elsewhere {elsewhere}")
    check(not errors, f"and logs no error {errors}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inference-gateway"))
    ap.add_argument("--examples", type=int, default=25, help="schemathesis examples per operation")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="api-docs-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "gateway.log"), "w")
    gateway = start_gateway(args.binary, port, log, LOG_LEVEL="WARN")
    try:
        wait_until(lambda: get(f"{base}/ready")[0] == 200, 120, "the gateway to be ready")
        print("== the document", flush=True)
        document(base)
        print("== /metrics content negotiation", flush=True)
        metrics(base, tmp)
        print("== /docs in headless Chromium", flush=True)
        browser(base, args.chromium)
        print("== schemathesis", flush=True)
        schemathesis(base, tmp, args.examples)
        check(gateway.poll() is None and get(f"{base}/ready")[0] == 200, "the gateway still serves")
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
    conclude(tmp, "API description checks")


if __name__ == "__main__":
    main()
