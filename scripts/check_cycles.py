#!/usr/bin/env python3
"""No import cycle between the modules (files) of any crate in the workspace; the layers of the
server and its core kept; and gateway-core free of HTTP and gRPC crates (docs/ARCHITECTURE.md,
"Dependency rules").

  python3 scripts/check_cycles.py            # exits 1 naming each cycle or broken rule

A file's dependencies are the modules its paths name: `use` statements (braces expanded) and
inline `crate::…`, `super::…`, `self::…` paths, each resolved to the deepest module that exists
as a file. Re-exports (`pub use`, `pub(crate) use`) and `mod` declarations are a module's facade,
not a dependency, and a trailing `#[cfg(test)] mod tests` is left out (it may use anything).
"""

import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CRATES = ["server", "server/core", "engine", "models", "kernels", "loadtest", "benches"]
# Crates the protocol-neutral core must not depend on, even through another crate.
TRANSPORT_CRATES = {"hyper", "http", "http-body", "h2", "tonic", "multer", "reqwest", "axum", "tower"}

# The layers of the server and its core: a module must not import the modules listed for it
# (leaves such as error, body, headers and conn sit below everything).
LAYERS = {
    "lifecycle": {"service", "http", "grpc", "serve"},
    "service": {"http", "grpc", "serve"},
    "v2": {"http", "grpc", "serve"},
    "http": {"grpc", "serve", "lifecycle", "batching"},
    "grpc": {"http", "serve", "lifecycle", "batching"},
    "batching": {"lifecycle", "service", "v2", "http", "grpc", "serve"},
    "imaging": {"lifecycle", "service", "v2", "http", "grpc", "serve", "batching"},
    "telemetry": {"lifecycle", "service", "v2", "http", "grpc", "serve", "batching", "imaging"},
    "config": {"lifecycle", "service", "v2", "http", "grpc", "serve", "batching", "imaging", "telemetry"},
}


def modules(src):
    """{module path tuple: file} for the library rooted at src/lib.rs (src/main.rs and its
    modules count as the module `<main>` when both roots exist)."""
    found = {}
    has_lib = os.path.exists(os.path.join(src, "lib.rs"))
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel == ["lib"] or (rel == ["main"] and not has_lib):
                rel = []
            elif rel == ["main"]:
                rel = ["<main>"]
            found[tuple(rel)] = os.path.join(dirpath, f)
    # Another crate's modules re-exported at the root (`pub use gateway_core::{a, b}`) are
    # modules of this one for the rules.
    root = found.get(())
    if root:
        for m in re.finditer(r"use\s+gateway_core::\{([^}]*)\};", open(root, encoding="utf-8").read()):
            for name in m.group(1).split(","):
                found.setdefault((name.strip(),), f"gateway_core::{name.strip()}")
    return found


def root_aliases(mods):
    """Names the crate root re-exports from its modules (`pub use serve::run;` makes
    `crate::run` a path into `serve`): {name: module}."""
    root = mods.get(())
    aliases = {}
    if not root:
        return aliases
    text = re.sub(r"//[^\n]*", "", open(root, encoding="utf-8").read())
    for m in re.finditer(r"(?m)^\s*pub(\([^)]*\))?\s+use\s+([^;]+);", text):
        for p in expand(re.sub(r"\s+", "", m.group(2))):
            parts = p.split(" as ")[0].split("::")
            if parts[0] in ("crate", "self"):
                parts = parts[1:]
            if len(parts) < 2 or (parts[0],) not in mods:
                continue
            aliases[p.split(" as ")[-1].split("::")[-1]] = resolve((), "crate::" + "::".join(parts), mods, {})
    return aliases


def expand(path):
    """`a::{b, c::{d, e}}` → [`a::b`, `a::c::d`, `a::c::e`]."""
    i = path.find("{")
    if i < 0:
        return [path]
    depth, j = 0, i
    for j in range(i, len(path)):
        depth += {"{": 1, "}": -1}.get(path[j], 0)
        if depth == 0:
            break
    inner, parts, start, depth = path[i + 1:j], [], 0, 0
    for k, ch in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    out = []
    for p in parts:
        p = p.strip()
        if p:
            out += expand(path[:i] + p + path[j + 1:])
    return out


def references(text, is_root):
    """The `crate`/`super`/`self` paths a file depends on, each with whether it is a re-export
    (`pub use`): the crate root's re-exports are its facade, not dependencies."""
    text = re.sub(r"//[^\n]*", "", text)
    tests = re.search(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)
    if tests:
        text = text[:tests.start()]
    paths = []
    for m in re.finditer(r"(?m)^\s*(pub(\([^)]*\))?\s+)?use\s+([^;]+);", text):
        if m.group(1) and is_root:
            continue
        for p in expand(re.sub(r"\s+", "", m.group(3))):
            paths.append((p.split(" as ")[0], bool(m.group(1))))
    body = re.sub(r"(?m)^\s*(pub(\([^)]*\))?\s+)?use\s+[^;]+;", "", text)
    paths += [(p, False) for p in re.findall(r"\b(?:crate|super|self)(?:::\w+)+", body)]
    return [(p, r) for p, r in paths if p.split("::")[0] in ("crate", "super", "self")]


def resolve(here, path, mods, aliases):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
        if rest and (rest[0],) not in mods and rest[0] in aliases:
            base, rest = aliases[rest[0]], rest[1:]
    else:
        base = here
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        rest = parts
    target = base
    for name in rest:
        if target + (name,) in mods:
            target = target + (name,)
        else:
            break
    return target


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def core_has_no_transport():
    """`cargo tree` of gateway-core's normal dependencies names no HTTP or gRPC crate."""
    import subprocess

    out = subprocess.run(["cargo", "tree", "-p", "gateway-core", "-e", "normal", "--all-features", "--prefix", "none"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = sorted({line.split()[0] for line in out.splitlines() if line.strip()} & TRANSPORT_CRATES)
    if found:
        print(f"FAIL gateway-core depends on {', '.join(found)} (see cargo tree -p gateway-core -i NAME)")
        return 1
    print(f"ok   gateway-core: no HTTP or gRPC crate among its dependencies ({', '.join(sorted(TRANSPORT_CRATES))})")
    return 0


def main():
    failures = core_has_no_transport()
    for crate in CRATES:
        src = os.path.join(ROOT, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        aliases = root_aliases(mods)
        graph, edges = {}, {}
        for mod, path in mods.items():
            if not path.endswith(".rs"):
                continue  # another crate's
            text = open(path, encoding="utf-8").read()
            for ref, reexport in references(text, mod == ()):
                target = resolve(mod, ref, mods, aliases)
                if reexport and target[:len(mod)] == mod:
                    continue  # a module's facade over its own children
                if target != mod and target != ():
                    graph.setdefault(mod, set()).add(target)
                    edges.setdefault((mod, target), ref)
        for comp in cycles(graph):
            failures += 1
            names = ", ".join("::".join(m) or "(root)" for m in comp)
            print(f"FAIL {crate}: import cycle between {names}")
            for a in comp:
                for b in comp:
                    if (a, b) in edges:
                        print(f"       {mods[a][len(ROOT) + 1:]} -> {'::'.join(b)} ({edges[(a, b)]})")
        if crate in ("server", "server/core"):
            for (a, b), ref in sorted(edges.items()):
                if a and b and b[0] in LAYERS.get(a[0], ()):
                    failures += 1
                    print(f"FAIL server: {a[0]} must not import {b[0]}: {mods[a][len(ROOT) + 1:]} uses {ref}")
        if not failures:
            print(f"ok   {crate}: {len(mods)} modules, no import cycle, layers kept")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
