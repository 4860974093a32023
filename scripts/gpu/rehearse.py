#!/usr/bin/env python3
"""The device script rehearsed without a GPU (CI): scripts/gpu/on-device.sh run three ways against
.gpu-bin/ (scripts/gpu/build.sh --dev), each checked for what the device tool brings back:

1. as it runs on a machine without a GPU: every GPU step is skipped and named, with its reason;
2. with DEADLINE_S=20: it ends within 30 s, still with a summary;
3. with REHEARSE_AS_IF_GPU=1: every GPU step runs and fails fast (no GPU here), so the flow of a
   broken GPU node is exercised: rc recorded, the server found dead before ready, no hang.

Each time $OUT must hold at most 8 files, none in a folder (the tool brings back 8 files, two
folders deep at most), and a summary that ends with "done".

Usage: scripts/gpu/build.sh --dev && python3 scripts/gpu/rehearse.py
"""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
GPU_STEPS = ["kernels-gpu", "plan-check-cuda", "bench-engine", "torch-peer", "bench-engine-eager",
             "server-loadtest"]


def run(env_extra, limit):
    out = pathlib.Path(tempfile.mkdtemp(prefix="gpu-out-"))
    env = dict(os.environ, OUT=str(out), **env_extra)
    start = time.monotonic()
    proc = subprocess.run(["scripts/gpu/on-device.sh"], cwd=ROOT, env=env, timeout=limit + 60,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    files = [p for p in out.rglob("*")]
    summary = (out / "summary.txt").read_text() if (out / "summary.txt").exists() else ""
    print(f"--- {env_extra or 'no GPU'}: {wall:.0f} s, exit {proc.returncode}, "
          f"{len(files)} files: {sorted(p.name for p in files)}")
    problems = []
    if len(files) > 8:
        problems.append(f"{len(files)} files in $OUT, more than 8")
    if any(p.is_dir() or p.parent != out for p in files):
        problems.append("$OUT holds a folder")
    if not summary.rstrip().splitlines()[-1:] or "== done" not in summary.rstrip().splitlines()[-1]:
        problems.append("the summary does not end with its done line")
    if wall > limit:
        problems.append(f"took {wall:.0f} s, more than {limit} s")
    return summary, problems


def main():
    failures = []
    summary, problems = run({}, 240)
    for step in GPU_STEPS:
        if f"SKIP {step}: no GPU" not in summary:
            problems.append(f"the summary does not name {step} as skipped for want of a GPU")
    failures += problems
    summary, problems = run({"DEADLINE_S": "20"}, 30)
    failures += problems
    summary, problems = run({"REHEARSE_AS_IF_GPU": "1", "DEADLINE_S": "150"}, 165)
    for step in GPU_STEPS[:-1]:
        if f"== {step} " not in summary:
            problems.append(f"as if on a GPU, {step} did not run")
    if "the server exited before ready" not in summary:
        problems.append("as if on a GPU, the dead server was not noticed")
    failures += problems
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("the device script's rehearsal holds: at most 8 files, skips named, deadline kept")


if __name__ == "__main__":
    main()
