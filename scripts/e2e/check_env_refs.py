"""Every `$(VAR)` in a container's env values refers to a variable defined earlier in the same
container's `env` list. Kubernetes expands only those (envFrom variables too), and leaves any
other reference as literal text, with no error anywhere. The schema validators cannot see this.

Usage: check_env_refs.py RENDERED.yaml...   (kustomize output; exits 1 naming each bad reference)
"""
import re
import sys

import yaml

REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def containers(doc):
    spec = (doc or {}).get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or {}
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        yield c


def check(doc):
    problems = []
    for c in containers(doc):
        defined = set()
        for var in c.get("env") or []:
            for ref in REF.findall(str(var.get("value", ""))):
                if ref not in defined:
                    problems.append(
                        f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}: "
                        f"{var['name']} refers to $({ref}), which is not defined before it")
            defined.add(var["name"])
    return problems


def main(paths):
    problems = []
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                problems += [f"{path}: {p}" for p in check(doc)]
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"   env references ok in {len(paths)} rendered file(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
