"""The deploy/ material against a running gateway and a real Prometheus (run by .ci/run):

- deploy/scripts/smoke-test.sh passes;
- Prometheus loads deploy/prometheus/rules (the SLO rules) and, after some load, every recording
  rule returns data;
- every query of the Grafana dashboard returns data (the GPU panels are skipped, with a note,
  where no GPU exists);
- prometheus-adapter's metricsQuery for http_requests_per_second, filled in as the adapter would
  for the pod, gives a positive rate under load (the series carry namespace and pod labels, as a
  ServiceMonitor scrape adds them);
- the production overlay's rendered environment, with the example Secret's keys, refuses
  /predict without a key (prod_env_auth.py, run with the same --gateway).

Usage: python3 scripts/e2e/deploy_live.py [--gateway BIN] [--loadtest BIN]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from harness import (  # noqa: E402
    IMAGES, ROOT, check, conclude, free_port, get, prom_query, start_gateway, start_prometheus, stop, wait_until,
)

DEPLOY = os.path.join(ROOT, "deploy")
POD = {"namespace": "ml-inference", "pod": "inference-gateway-7d9f-abcde"}


def recording_rules():
    names = []
    for path in glob.glob(os.path.join(DEPLOY, "prometheus", "rules", "*.yml")):
        for group in yaml.safe_load(open(path))["groups"]:
            names += [r["record"] for r in group["rules"] if "record" in r]
    return sorted(set(names))


def dashboard_queries():
    board = json.load(open(os.path.join(DEPLOY, "grafana", "dashboards", "inference-gateway.json")))
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def adapter_query():
    values = yaml.safe_load(open(os.path.join(DEPLOY, "k8s", "monitoring", "prometheus-adapter-values.yaml")))
    rule = values["rules"]["custom"][0]
    series = rule["seriesQuery"].split("{")[0]
    matchers = f'namespace="{POD["namespace"]}",pod=~"{POD["pod"]}"'
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "namespace,pod"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    ap.add_argument("--loadtest", default=os.path.join(ROOT, "target", "debug", "loadtest"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="e2e-deploy-")
    port, prom_port = free_port(), free_port()
    gateway = start_gateway(args.gateway, port, open(os.path.join(tmp, "gateway.log"), "w"))
    rules = glob.glob(os.path.join(DEPLOY, "prometheus", "rules", "*.yml"))
    prom = None
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway to be ready")
        smoke = subprocess.run([os.path.join(DEPLOY, "scripts", "smoke-test.sh"), f"http://127.0.0.1:{port}"],
                               capture_output=True, text=True, timeout=120)
        print(smoke.stdout[-600:], flush=True)
        check(smoke.returncode == 0, f"smoke-test.sh passes {smoke.stderr.strip()!r}")
        prom = start_prometheus(tmp, prom_port, port, rule_files=rules, labels=POD)
        wait_until(lambda: prom_query(prom_port, 'up{job="gateway"}') == [1.0], 60, "Prometheus' first scrape")
        load = subprocess.run(
            [args.loadtest, "--url", f"http://127.0.0.1:{port}/predict", "--images", os.path.join(IMAGES, "good"),
             "-c", "2", "-d", "8s", "--warmup", "0s", "-q"], capture_output=True, text=True, timeout=120)
        check(load.returncode == 0, "load ran")
        rate = prom_query(prom_port, adapter_query())  # while the last requests are recent
        check(len(rate) == 1 and rate[0] > 0, f"adapter query gives http_requests_per_second > 0 ({rate})")
        time.sleep(3)  # a few rule evaluations after the last scrape
        for name in recording_rules():
            got = prom_query(prom_port, name)
            check(len(got) > 0 and all(v == v for v in got), f"recording rule {name} returns data {got}")
        for title, expr in dashboard_queries():
            if "gpu_" in expr:
                print(f"skip {title}: GPU metrics are absent without a GPU", flush=True)
                continue
            got = prom_query(prom_port, expr)
            check(len(got) > 0, f"dashboard '{title}' query returns data: {expr}")
        alerts = json.loads(get(f"http://127.0.0.1:{prom_port}/api/v1/rules?type=alert")[1])["data"]["groups"]
        firing = [r["name"] for g in alerts for r in g["rules"] if r["state"] != "inactive"]
        check(len(alerts) > 0 and not firing, f"SLO alerts loaded, none firing on a healthy gateway {firing}")
    finally:
        stop(gateway, prom)
    auth = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "prod_env_auth.py"),
                           "--gateway", args.gateway], timeout=420)
    check(auth.returncode == 0, "production overlay's environment: /predict needs a key (prod_env_auth.py)")
    conclude(tmp, "live deploy checks")


if __name__ == "__main__":
    main()
