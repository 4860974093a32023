"""Checks the monitoring stack's Helm values (deploy/k8s/monitoring/*-values.yaml) without Helm
or the charts, which these machines cannot fetch, and none of which ships a values.schema.json
at the pinned versions:

1. each file is YAML;
2. every key it sets is one the chart knows at the pinned version: a key of the chart's default
   values.yaml or one its templates read (`.Values.a.b`), from the index in
   scripts/e2e/helm-values/CHART-VERSION.keys, generated from the chart's source (--index below).
   Below a key whose contents the chart passes on whole (`toYaml .Values.x`, marked `/*`) or whose
   default has no known children (`{}`, a list), nothing is checked: that is free-form to the
   chart (a selector, a volume claim, an env list);
3. the settings the gateway's manifests depend on, against the rendered overlays:
   kube-prometheus-stack's Prometheus selects our ServiceMonitor and PrometheusRule (the chart's
   selector logic, modelled on its template), keeps exemplars, and retains at least the longest
   window of the SLO rules; Grafana's datasources have the uids the dashboard and the exemplar
   links use; Jaeger is one all-in-one whose OTLP/HTTP Service is the host and port the gateway
   exports to; prometheus-adapter and Flagger query a Prometheus Service that the stack creates,
   and the adapter serves the metric the HPA scales on.

Usage: check_helm_values.py RENDERED.yaml...        (kustomize output of the overlays)
       check_helm_values.py --index CHART_DIR       (print an index from a chart's source folder:
                                                     values.yaml and templates/, e.g. `helm pull
                                                     --untar` or a checkout of the chart's repo)
"""

import glob
import json
import os
import re
import sys
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MONITORING = os.path.join(ROOT, "deploy", "k8s", "monitoring")
NAMESPACE = "monitoring"
# values file -> (chart, pinned version, Helm release name in deploy/README.md's commands)
CHARTS = {
    "kube-prometheus-stack-values.yaml": ("kube-prometheus-stack", "88.5.3", "kube-prometheus-stack"),
    "jaeger-values.yaml": ("jaeger", "3.4.1", "jaeger"),
    "prometheus-adapter-values.yaml": ("prometheus-adapter", "5.3.0", "prometheus-adapter"),
}
problems = []


def fail(what):
    problems.append(what)


# ---- the index: keys a chart knows -------------------------------------------------------------

def index_chart(chart_dir):
    """Dotted key paths of the chart's defaults and of the templates' .Values references;
    `path/*` where a template passes the value on whole."""
    keys, whole = set(), set()

    def walk(node, prefix):
        for k, v in node.items():
            path = f"{prefix}{k}"
            keys.add(path)
            if isinstance(v, dict):
                walk(v, path + ".")

    walk(yaml.safe_load(open(os.path.join(chart_dir, "values.yaml"))) or {}, "")
    for path in glob.glob(os.path.join(chart_dir, "templates", "**", "*"), recursive=True):
        if not os.path.isfile(path):
            continue
        text = open(path, errors="replace").read()
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            parts = ref.lstrip(".").split(".")
            keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        for ref in re.findall(r"toYaml\s*\(?\s*\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            whole.add(ref.lstrip("."))
    return sorted(keys), sorted(whole)


def load_index(chart, version):
    path = os.path.join(HERE, "helm-values", f"{chart}-{version}.keys")
    keys, whole = set(), set()
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        (whole if line.endswith("/*") else keys).add(line.removesuffix("/*"))
    return keys, whole


def unknown_keys(values, keys, whole):
    has_children = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    out = []

    def walk(node, prefix):
        for k, v in node.items():
            path = f"{prefix}{k}"
            if path not in keys:
                out.append(path)
                continue
            if isinstance(v, dict) and path not in whole and path in has_children:
                walk(v, path + ".")

    walk(values, "")
    return out


# ---- helpers -----------------------------------------------------------------------------------

def duration_s(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, rest = 0.0, text
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text):
        total += int(n) * units[u]
        rest = rest.replace(f"{n}{u}", "", 1)
    if rest or not total:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return total


def longest_rule_window():
    longest = ("0s", 0)
    for path in glob.glob(os.path.join(ROOT, "deploy", "prometheus", "rules", "*.yml")):
        for group in yaml.safe_load(open(path))["groups"]:
            for rule in group["rules"]:
                for w in re.findall(r"\[([0-9a-z]+)(?::[0-9a-z]*)?\]", rule["expr"]):
                    if duration_s(w) > longest[1]:
                        longest = (w, duration_s(w))
    return longest


def selects(selector, labels):
    """A LabelSelector (matchLabels only, as ours are) against an object's labels."""
    if selector is None:
        return False
    if selector.get("matchExpressions"):
        raise ValueError("matchExpressions not modelled; use matchLabels")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def effective_selector(spec, kind, release):
    """kube-prometheus-stack's templates/prometheus/prometheus.yaml: a non-empty selector as
    given; else the release label when *SelectorNilUsesHelmValues; else {} (everything), except
    that a null ruleSelector is left out (nothing)."""
    sel = spec.get(f"{kind}Selector")
    if sel:
        return sel
    if spec.get(f"{kind}SelectorNilUsesHelmValues", True):
        return {"matchLabels": {"release": release}}
    if kind == "rule" and sel is None:
        return None
    return {}


def host_port(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or {"http": 80, "https": 443}[u.scheme]


def svc_dns(name):
    return {f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"}


# ---- what the deploy depends on ----------------------------------------------------------------

def check_kube_prometheus_stack(v, release, docs):
    spec = v["prometheus"]["prometheusSpec"]
    for kind, objs in (("serviceMonitor", docs["ServiceMonitor"]), ("rule", docs["PrometheusRule"])):
        sel = effective_selector(spec, kind, release)
        ns_sel = spec.get(f"{kind}NamespaceSelector")
        if ns_sel != {}:
            fail(f"kube-prometheus-stack: {kind}NamespaceSelector must be {{}} (every namespace), is {ns_sel!r}")
        for o in objs:
            if not selects(sel, o["metadata"].get("labels") or {}):
                fail(f"kube-prometheus-stack: the {kind} selector {sel!r} does not select "
                     f"{o['kind']}/{o['metadata']['name']} (labels {o['metadata'].get('labels')})")
        print(f"   {kind} selector {json.dumps(sel)} selects all {len(objs)} rendered {kind} object(s)")
    if "exemplar-storage" not in (spec.get("enableFeatures") or []):
        fail("kube-prometheus-stack: prometheusSpec.enableFeatures lacks exemplar-storage")
    window, window_s = longest_rule_window()
    retention = spec.get("retention", "10d")
    if duration_s(retention) < window_s:
        fail(f"kube-prometheus-stack: retention {retention} is shorter than the SLO rules' {window} window")
    if not (spec.get("storageSpec") or {}).get("volumeClaimTemplate"):
        fail("kube-prometheus-stack: no storageSpec.volumeClaimTemplate: the 30-day history would die with the pod")
    print(f"   exemplar storage on; retention {retention} >= the rules' longest window {window}; persistent volume")
    g = v.get("grafana") or {}
    board = json.load(open(os.path.join(ROOT, "deploy", "grafana", "dashboards", "inference-gateway.json")))
    uids = {p["datasource"]["uid"] for p in board["panels"]}
    ds = g.get("sidecar", {}).get("datasources", {})
    if uids != {ds.get("uid", "prometheus")}:
        fail(f"grafana: the dashboard's datasource uids {uids} != the chart's Prometheus datasource uid {ds.get('uid')}")
    ex = ds.get("exemplarTraceIdDestinations") or {}
    jaeger = [d for d in g.get("additionalDataSources") or [] if d.get("type") == "jaeger"]
    if ex.get("traceIdLabelName") != "trace_id":
        fail("grafana: exemplarTraceIdDestinations.traceIdLabelName must be trace_id (the gateway's exemplar label)")
    if not jaeger or ex.get("datasourceUid") != jaeger[0].get("uid"):
        fail("grafana: exemplarTraceIdDestinations.datasourceUid must be the uid of a jaeger datasource")
    return jaeger[0]["url"] if jaeger else None


def check_jaeger(v, release, docs, grafana_jaeger_url):
    want = {("allInOne", "enabled"): True, ("storage", "type"): "memory", ("provisionDataStore", "cassandra"): False,
            ("agent", "enabled"): False, ("collector", "enabled"): False, ("query", "enabled"): False}
    for (a, b), value in want.items():
        if (v.get(a) or {}).get(b) != value:
            fail(f"jaeger: {a}.{b} must be {value!r} (one all-in-one, in memory)")
    for k in ("fullnameOverride", "nameOverride"):
        if v.get(k):
            fail(f"jaeger: {k} renames the Services the gateway and Grafana address")
    # The chart's names: jaeger.fullname is the release name when it contains "jaeger"; the
    # all-in-one's Services are FULLNAME-collector (4317, 4318) and FULLNAME-query (16686).
    full = release if "jaeger" in release else f"{release}-jaeger"
    endpoints = {c["data"]["jaeger-endpoint"] for c in docs["ConfigMap"] if "jaeger-endpoint" in (c.get("data") or {})}
    for url in sorted(endpoints):
        host, port = host_port(url)
        if host not in svc_dns(f"{full}-collector") or port != 4318:
            fail(f"jaeger: the gateway exports to {url}; the all-in-one's OTLP/HTTP is {full}-collector.{NAMESPACE}:4318")
    if grafana_jaeger_url:
        host, port = host_port(grafana_jaeger_url)
        if host not in svc_dns(f"{full}-query") or port != 16686:
            fail(f"grafana: the Jaeger datasource {grafana_jaeger_url} is not {full}-query.{NAMESPACE}:16686")
    print(f"   one all-in-one; the gateway's endpoint(s) {sorted(endpoints)} = {full}-collector:4318")


def check_adapter(v, kps_release, docs):
    # Services kube-prometheus-stack creates for its Prometheus: the operator's prometheus-operated
    # (whatever the release) and FULLNAME-prometheus.
    full = kps_release if "kube-prometheus-stack" in kps_release else f"{kps_release}-kube-prometheus-stack"
    services = svc_dns("prometheus-operated") | svc_dns(f"{full[:26].rstrip('-')}-prometheus")
    host, _ = host_port(v["prometheus"]["url"])
    hosts = {host}
    if host not in services or v["prometheus"].get("port", 9090) != 9090:
        fail(f"prometheus-adapter: prometheus.url {v['prometheus']['url']} is no Service of the stack's Prometheus")
    served = {r["name"]["as"] for r in v["rules"]["custom"]}
    for hpa in docs["HorizontalPodAutoscaler"]:
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "Pods" and m["pods"]["metric"]["name"] not in served:
                fail(f"prometheus-adapter: the HPA's metric {m['pods']['metric']['name']} is not served ({served})")
    for t in docs["MetricTemplate"]:
        host, port = host_port(t["spec"]["provider"]["address"])
        hosts.add(host)
        if host not in services or port != 9090:
            fail(f"Flagger MetricTemplate/{t['metadata']['name']}: {t['spec']['provider']['address']} "
                 f"is no Service of the stack's Prometheus ({sorted(s for s in services if s.endswith('.local'))})")
    print(f"   adapter and Flagger query {sorted(hosts)}; the adapter serves {sorted(served)}")


def main(argv):
    if argv[:1] == ["--index"]:
        keys, whole = index_chart(argv[1])
        print("\n".join(keys + [w + "/*" for w in whole]))
        return 0
    docs = {k: [] for k in ("ServiceMonitor", "PrometheusRule", "ConfigMap", "HorizontalPodAutoscaler", "MetricTemplate")}
    for path in argv:
        for d in yaml.safe_load_all(open(path)):
            if d and d.get("kind") in docs:
                docs[d["kind"]].append(d)
    values = {}
    for name, (chart, version, release) in CHARTS.items():
        try:
            values[name] = yaml.safe_load(open(os.path.join(MONITORING, name)))
        except (OSError, yaml.YAMLError) as e:
            fail(f"{name}: {e}")
            continue
        keys, whole = load_index(chart, version)
        bad = unknown_keys(values[name], keys, whole)
        for k in bad:
            fail(f"{name}: {k} is not a key of {chart} {version}")
        print(f"   {name}: YAML; every key known to {chart} {version}" if not bad else f"   {name}: {len(bad)} unknown key(s)")
    if len(values) == len(CHARTS):
        kps = CHARTS["kube-prometheus-stack-values.yaml"][2]
        url = check_kube_prometheus_stack(values["kube-prometheus-stack-values.yaml"], kps, docs)
        check_jaeger(values["jaeger-values.yaml"], CHARTS["jaeger-values.yaml"][2], docs, url)
        check_adapter(values["prometheus-adapter-values.yaml"], kps, docs)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
