#!/usr/bin/env python3
"""The gateway end to end against ONNX Runtime alone on the same model file, side by side.

Run through scripts/bench.sh, which builds the binaries first. This machine's speed drifts by
±20% from minute to minute, so the two are measured in short interleaved rounds, in ABBA order
(odd rounds measure the gateway first, even rounds ONNX Runtime first), and compared round by
round:

  latency:    the gateway's median end-to-end latency for one closed-loop client (HTTP, decode,
              resize, queue, normalise, ONNX Runtime, top-k, JSON) ÷ ONNX Runtime's own median
              batch-1 run time.                                  Target (issue 2): ≤ 1.10.
  throughput: the gateway's images/s for 8 closed-loop clients ÷ the best images/s of ONNX
              Runtime alone at batch 1 or batch 8 in the same round. Target: ≥ 0.95.

The gateway's c=8 step measures a fixed count of requests (a multiple of 8), so whole batches
are timed: a fixed duration would cut a 0.4 s batch and add ±8% of noise. The per-round ratios
are summarised by their median with a bootstrap 90% interval.
"""

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"


def ort_alone(model, batch, seconds, threads):
    out = subprocess.run(
        [str(RELEASE / "examples" / "ort_alone"), model, str(batch), str(seconds), str(threads)],
        check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"([\d.]+) images/s, median batch latency ([\d.]+) ms", out)
    return {"images_per_s": float(m.group(1)), "median_ms": float(m.group(2))}


def loadtest(url, image, concurrency, amount):
    report = Path("/tmp/bench-vs-ort-loadtest.json")
    subprocess.run(
        [str(RELEASE / "loadtest"), "--url", url, "--body", image, "--content-type", "image/jpeg",
         "-c", str(concurrency), *amount, "-q", "--no-scrape", "--json", str(report)],
        check=True, stdout=subprocess.DEVNULL,
    )
    d = json.loads(report.read_text())
    if d["errors"]:
        sys.exit(f"bench: the gateway answered errors: {d['statuses']} {d['failures']}")
    return {"images_per_s": d["throughput_rps"], "median_ms": d["latency_ms"]["p50"]}


def median_interval(xs, rng, resamples=2000):
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    return meds[int(0.05 * resamples)], meds[int(0.95 * resamples) - 1]


def metric_lines(port, prefix):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        return [l for l in r.read().decode().splitlines() if l.startswith(prefix)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=3.0, help="per ORT step and gateway c=1 step")
    ap.add_argument("--batches", type=int, default=6, help="batches of 8 timed per gateway c=8 step")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, both sides")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument("--json", help="write every measurement and the summary here")
    a = ap.parse_args()

    url = f"http://127.0.0.1:{a.port}/predict"
    loadtest(url, a.image, 2, ["-n", "16", "--warmup", "0s"])  # warm-up
    rounds = []
    for r in range(1, a.rounds + 1):
        row = {}
        steps = [
            ("ort_b1", lambda: ort_alone(a.model, 1, a.seconds, a.threads)),
            ("gw_c1", lambda: loadtest(url, a.image, 1, ["-d", f"{a.seconds}s", "--warmup", "0.5s"])),
            ("ort_b8", lambda: ort_alone(a.model, 8, a.seconds, a.threads)),
            ("gw_c8", lambda: loadtest(url, a.image, 8, ["-n", str(8 * a.batches), "--warmup", "0s"])),
        ]
        if r % 2 == 1:  # ABBA: the gateway first in odd rounds
            steps = [steps[1], steps[0], steps[3], steps[2]]
        for name, step in steps:
            row[name] = step()
        row["latency_ratio"] = row["gw_c1"]["median_ms"] / row["ort_b1"]["median_ms"]
        best = max(row["ort_b1"]["images_per_s"], row["ort_b8"]["images_per_s"])
        row["throughput_ratio"] = row["gw_c8"]["images_per_s"] / best
        rounds.append(row)
        print(
            f"round {r:2}: ORT b1 {row['ort_b1']['median_ms']:6.1f} ms {row['ort_b1']['images_per_s']:5.1f}/s | "
            f"gateway c=1 {row['gw_c1']['median_ms']:6.1f} ms | ORT b8 {row['ort_b8']['images_per_s']:5.1f}/s | "
            f"gateway c=8 {row['gw_c8']['images_per_s']:5.1f}/s | "
            f"latency {row['latency_ratio']:.3f} throughput {row['throughput_ratio']:.3f}",
            flush=True,
        )

    rng = random.Random(1)
    summary = {}
    for key, target in (("latency_ratio", "<= 1.10"), ("throughput_ratio", ">= 0.95")):
        xs = [row[key] for row in rounds]
        lo, hi = median_interval(xs, rng)
        summary[key] = {"median": statistics.median(xs), "interval90": [lo, hi], "target": target,
                        "per_round": xs}
        print(f"{key}: median {statistics.median(xs):.3f} (bootstrap 90% interval {lo:.3f}–{hi:.3f}), "
              f"target {target}; per round {[round(x, 3) for x in xs]}")
    batches = metric_lines(a.port, "inference_batch_size_")
    print("server batch sizes (c=1 and c=8 steps together):", *batches, sep="\n  ")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rounds,
             "summary": summary, "settings": vars(a)}, indent=1))


if __name__ == "__main__":
    main()
