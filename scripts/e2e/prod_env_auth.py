"""The production overlay, as a pod would run it, refuses /predict without a key.

Renders deploy/k8s/overlays/production with `kubectl kustomize`, builds the gateway container's
environment as the kubelet does (envFrom, then env in order; configMapKeyRef from the rendered
ConfigMaps, secretKeyRef from the placeholder values of deploy/k8s/secret.example.yaml, fieldRef
for the pod's name and namespace, $(VAR) expansion), overrides only what cannot work on this
machine (and prints each override), starts the real binary with nothing else in its environment,
and checks:

- POST /predict without a key → 401; with a wrong key → 401;
- with `Authorization: Bearer` the first key → 200; with `x-api-key` the second → 200 (both keys of
  the list are valid at once, which key rotation relies on);
- /health, /ready and /metrics answer without a key (the kubelet's probes and Prometheus send none);
- SIGTERM → exit 0.

Usage: python3 scripts/e2e/prod_env_auth.py [--gateway BIN]   (run by scripts/e2e/deploy_live.py)
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from harness import IMAGES, ROOT, check, conclude, free_port, get, wait_until  # noqa: E402
from harness import predict as harness_predict  # noqa: E402

OVERLAY = os.path.join(ROOT, "deploy", "k8s", "overlays", "production")
EXAMPLE_SECRET = os.path.join(ROOT, "deploy", "k8s", "secret.example.yaml")
IMAGE = os.path.join(IMAGES, "good", "ijg-testorig.jpg")
REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(value, env):
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, others stay."""
    return REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def pod_env(docs, secret, pod_name):
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "inference-gateway")
    container = next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "inference-gateway")
    namespace = deploy["metadata"].get("namespace", "default")
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    secrets = {secret["metadata"]["name"]: secret.get("stringData") or {}}
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}

    def lookup(store, ref, what):
        data = store.get(ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise SystemExit(f"the pod would not start: {what} {ref['name']}/{ref['key']} is missing")
        return data[ref["key"]]

    env = {}
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            env.update(configmaps[src["configMapRef"]["name"]])
        elif "secretRef" in src:
            env.update(secrets[src["secretRef"]["name"]])
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        vf = var["valueFrom"]
        if "configMapKeyRef" in vf:
            value = lookup(configmaps, vf["configMapKeyRef"], "ConfigMap key")
        elif "secretKeyRef" in vf:
            value = lookup(secrets, vf["secretKeyRef"], "Secret key")
        elif "fieldRef" in vf:
            value = fields[vf["fieldRef"]["fieldPath"]]
        else:
            raise SystemExit(f"{var['name']}: valueFrom {list(vf)} not modelled")
        if value is not None:
            env[var["name"]] = value
    return env, container, namespace


def predict(port, headers=None):
    return harness_predict(f"http://127.0.0.1:{port}", open(IMAGE, "rb").read(), headers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    args = ap.parse_args()
    docs = [d for d in yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", OVERLAY], check=True,
                                                         capture_output=True, text=True).stdout) if d]
    secret = yaml.safe_load(open(EXAMPLE_SECRET))
    env, container, namespace = pod_env(docs, secret, "inference-gateway-6d4c9b7f5-x2x7q")
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container.get("env") or []
            if "secretKeyRef" in v.get("valueFrom", {})}
    check("API_KEYS" in refs and not refs["API_KEYS"].get("optional", False),
          f"production takes API_KEYS from a required secretKeyRef {refs.get('API_KEYS')}")
    keys = [k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip()]
    check(len(keys) >= 2, f"the example Secret holds {len(keys)} keys (two let a rotation overlap)")

    port = free_port()
    overrides = {
        "HOST": ("127.0.0.1", "listen on loopback only, not 0.0.0.0"),
        "PORT": (str(port), "a free port"),
        "GRPC_PORT": ("0", "gRPC off: kserve_tritonclient.py checks it; 8001 may be taken here"),
        "MODEL_DEVICE": ("cpu", "no GPU on this machine (production runs the CUDA image)"),
        "MODEL_PATH": (None, "the image's model file is not here: the built-in model"),
        "MODEL_CACHE_DIR": (os.path.join(ROOT, ".cache", "models"), "where scripts/setup.sh keeps the built-in model"),
        "ORT_DYLIB_PATH": (os.path.join(ROOT, ".cache", "onnxruntime", "libonnxruntime.so"), "the image's /opt path is not here"),
        "ENABLE_TRACING": ("false", "no collector at jaeger-collector.monitoring here"),
    }
    print(f"production environment ({namespace}): {len(env)} variables from the rendered overlay")
    for name, (value, why) in overrides.items():
        before = env.get(name)
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
        if before != value:
            show = lambda v: "unset" if v is None else repr(v)  # noqa: E731
            print(f"  override {name}: {show(before)} -> {show(value)} ({why})")
    shown = {k: ("<secret>" if k in refs else v) for k, v in sorted(env.items())}
    print("  environment: " + ", ".join(f"{k}={v}" for k, v in shown.items()), flush=True)

    tmp = tempfile.mkdtemp(prefix="e2e-prod-auth-")
    log = open(os.path.join(tmp, "gateway.log"), "w")
    # Nothing from this shell: only the pod's environment (and PATH); a temporary working
    # directory, so no developer's .env is read either.
    gw = subprocess.Popen([args.gateway], env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                          cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            if gw.poll() is not None:
                raise SystemExit(f"the gateway exited ({gw.returncode}) with the production environment; "
                                 f"log: {os.path.join(tmp, 'gateway.log')}")
            return get(f"http://127.0.0.1:{port}/ready")[0] == 200

        wait_until(ready, 240, "the gateway to be ready with the production environment")
        status, body = predict(port)
        check(status == 401, f"POST /predict without a key -> {status} {body}")
        status, body = predict(port, {"Authorization": "Bearer not-a-key"})
        check(status == 401, f"POST /predict with a wrong key -> {status}")
        status, body = predict(port, {"Authorization": f"Bearer {keys[0]}"})
        check(status == 200 and len(body.get("predictions", [])) == 5,
              f"POST /predict with Authorization: Bearer <first key> -> {status}")
        status, body = predict(port, {"x-api-key": keys[-1]})
        check(status == 200, f"POST /predict with x-api-key: <second key> -> {status}")
        for path in ("/health", "/ready", "/metrics"):
            check(get(f"http://127.0.0.1:{port}{path}")[0] == 200, f"GET {path} without a key -> 200")
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
        code = gw.wait(timeout=60)
    check(code == 0, f"SIGTERM -> exit {code}")
    logged = open(os.path.join(tmp, "gateway.log")).read()
    check(not any(k in logged for k in keys), "no key appears in the server's log")
    conclude(tmp, "production-environment auth checks")


if __name__ == "__main__":
    main()
