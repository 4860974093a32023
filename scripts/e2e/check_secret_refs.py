"""The gateway's secrets come from the guide's Secret, in every rendered overlay:

- each inference-gateway container takes API_KEYS from secretKeyRef inference-gateway-secrets /
  api-keys: optional only where the Deployment is labelled environment=development, required
  everywhere else (a pod without the Secret does not start rather than serve /predict to anyone);
- OTEL_EXPORTER_OTLP_HEADERS, where set, from the same Secret (optional: not every collector
  wants authentication);
- neither appears as a plain value in a container's env or in any ConfigMap;
- every key referenced exists in the example Secret (deploy/k8s/secret.example.yaml), which is
  itself part of no overlay (it holds placeholders).

Usage: check_secret_refs.py RENDERED.yaml...   (kustomize output; exits 1 naming each problem)
"""
import os
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "inference-gateway-secrets"
SECRET_VARS = {"API_KEYS": "api-keys", "OTEL_EXPORTER_OTLP_HEADERS": "otlp-headers"}


def example_keys():
    doc = yaml.safe_load(open(os.path.join(ROOT, "deploy", "k8s", "secret.example.yaml")))
    assert doc["kind"] == "Secret" and doc["metadata"]["name"] == SECRET, doc["metadata"]
    return set((doc.get("stringData") or {}) | (doc.get("data") or {}))


def check(path, docs, keys):
    problems, seen = [], 0
    for d in docs:
        where = f"{path}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Secret" and d["metadata"]["name"] == SECRET:
            problems.append(f"{where}: the placeholder Secret is rendered into an overlay")
        if d["kind"] == "ConfigMap":
            for var in SECRET_VARS:
                if var in (d.get("data") or {}):
                    problems.append(f"{where}: {var} in a ConfigMap (plain text)")
        if d["kind"] != "Deployment":
            continue
        dev = (d["metadata"].get("labels") or {}).get("environment") == "development"
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] != "inference-gateway":
                continue
            seen += 1
            env = {e["name"]: e for e in c.get("env") or []}
            for var, key in SECRET_VARS.items():
                e = env.get(var)
                if e is None:
                    if var == "API_KEYS":
                        problems.append(f"{where}: no API_KEYS: /predict would be open")
                    continue
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if "value" in e or not ref:
                    problems.append(f"{where}: {var} is not taken from a Secret")
                    continue
                if ref.get("name") != SECRET or ref.get("key") != key:
                    problems.append(f"{where}: {var} from {ref.get('name')}/{ref.get('key')}, not {SECRET}/{key}")
                if ref.get("key") not in keys:
                    problems.append(f"{where}: {var}'s key {ref.get('key')} is not in secret.example.yaml")
                optional = bool(ref.get("optional", False))
                if var == "API_KEYS" and optional != dev:
                    problems.append(f"{where}: API_KEYS optional={optional}; it must be "
                                    + ("optional in development" if dev else "required outside development"))
    if not seen:
        problems.append(f"{path}: no inference-gateway container found")
    return problems, seen


def main(paths):
    keys, problems = example_keys(), []
    for path in paths:
        with open(path) as f:
            found, seen = check(path, [d for d in yaml.safe_load_all(f) if d], keys)
        problems += found
        if not found:
            print(f"   {os.path.basename(path)}: API_KEYS from {SECRET} in {seen} container(s)")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
