"""Helpers shared by the end-to-end checks: ports, HTTP, waiting, the gateway and Prometheus."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = os.path.join(ROOT, "testdata", "images")
failures = []


def stop(gateway, prom):
    """SIGTERM to the gateway (its exit status is returned) and to Prometheus, if started."""
    gateway.terminate()
    code = gateway.wait(timeout=60)
    if prom:
        prom.terminate()
        prom.wait(timeout=30)
    return code


def conclude(tmp, what):
    """Exit 1 with a count if any check failed, else say that `what` passed."""
    if failures:
        print(f"\n{len(failures)} check(s) failed; logs in {tmp}", flush=True)
        sys.exit(1)
    print(f"\nall {what} passed", flush=True)


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def predict(base_url, data, headers=None, query="", timeout=60):
    """POST /predict with `data` as the multipart field `file`: (status, parsed JSON body)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    url = f"{base_url}/predict" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def batch_totals(port):
    """(sum, count) of the gateway's inference_batch_size histogram now."""
    text = get(f"http://127.0.0.1:{port}/metrics", timeout=10)[1].decode()
    total = {}
    for key in ("sum", "count"):
        m = re.search(rf"^inference_batch_size_{key} ([0-9.e+]+)", text, re.M)
        total[key] = float(m.group(1)) if m else 0.0
    return total["sum"], total["count"]


def wait_until(fn, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if fn():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def prom_query(prom, expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(get(url)[1])
    assert body["status"] == "success", body
    return [float(r["value"][1]) for r in body["data"]["result"]]


def start_gateway(binary, port, log, **extra):
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        GRPC_PORT="0",  # off unless a check asks for it: gateways started side by side would share 8001
        HOST="127.0.0.1",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        MODEL_CACHE_DIR=os.path.join(ROOT, ".cache", "models"),
        ORT_DYLIB_PATH=os.path.join(ROOT, ".cache", "onnxruntime", "libonnxruntime.so"),
    )
    env.update(extra)
    return subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def start_prometheus(tmp, prom_port, target_port, rule_files=(), labels=None):
    """Prometheus scraping the gateway every second (job `gateway`), evaluating `rule_files`
    every second; `labels` are attached to the scraped series (e.g. a k8s namespace and pod)."""
    cfg = os.path.join(tmp, "prometheus.yml")
    target = f"      - targets: ['127.0.0.1:{target_port}']\n"
    if labels:
        target += "        labels:\n" + "".join(f"          {k}: '{v}'\n" for k, v in labels.items())
    rules = "".join(f"  - {os.path.abspath(r)}\n" for r in rule_files)
    with open(cfg, "w") as f:
        f.write(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n  - job_name: gateway\n    static_configs:\n" + target
        )
    args = [
        "prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--enable-feature=exemplar-storage",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prom.log"), "w"))


