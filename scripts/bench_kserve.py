#!/usr/bin/env python3
"""KServe v2 against /predict, on one release server in one run: Triton's perf_analyzer on the
tensor model `resnet50` (random FP32 tensors: no decoding on our side) over HTTP and over
gRPC, perf_analyzer on `resnet50_image` with a JPEG over gRPC, and the bundled `loadtest` on
`/predict` with the same JPEG, all closed loop at the same concurrency (default 4). This
machine's speed drifts minute to minute, so the four run in short interleaved rounds (the order
rotates each round) and each is summarised by its median over the rounds.

Per run: requests/s, p50/p99 latency as the client saw it, the server's CPU seconds per
request (its /proc utime + stime over the run ÷ the images it inferred: one per request here),
and the mean batch size (`inference_batch_size` over the run). The clients share the two cores
with the server, as they would on one host.

Usage: python3 scripts/bench_kserve.py [--rounds 3] [--seconds 4] [--concurrency 4]
Needs: cargo build --release -p inference-gateway -p loadtest; scripts/e2e/install-perf-analyzer.sh
"""

import argparse
import base64
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RELEASE = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "e2e"))
from harness import batch_totals as metrics  # noqa: E402


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def perf_analyzer(tool, model, protocol, url, conc, seconds, tmp, input_data=None):
    out = os.path.join(tmp, "pa.csv")
    cmd = [tool, "-m", model, "-u", url, "-i", protocol, "--concurrency-range", str(conc),
           "--measurement-interval", str(int(seconds * 1000)), "--stability-percentage", "999",
           "--max-trials", "3", "-f", out]
    if input_data:
        cmd += ["--input-data", input_data]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    row = next(csv.DictReader(open(out)))
    return float(row["Inferences/Second"]), int(row["p50 latency"]) / 1e3, int(row["p99 latency"]) / 1e3


def loadtest(url, image, conc, seconds, tmp):
    out = os.path.join(tmp, "lt.json")
    subprocess.run([os.path.join(RELEASE, "loadtest"), "--url", url, "--body", image, "--content-type",
                    "image/jpeg", "-c", str(conc), "-d", f"{3 * seconds}s", "--warmup", "1s", "--quiet",
                    "--no-scrape", "--json", out], check=True, capture_output=True, timeout=600)
    r = json.load(open(out))
    assert r["errors"] == 0, r["statuses"]
    return r["goodput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer window (3 per run)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--image", default=os.path.join(ROOT, "testdata", "images", "good",
                                                     "ijg-testorig.jpg"))
    ap.add_argument("--perf-analyzer", default=os.path.join(ROOT, ".cache", "perf_analyzer", "perf_analyzer"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-kserve-")
    port, grpc = 18100, 18101
    env = dict(os.environ, PORT=str(port), GRPC_PORT=str(grpc), HOST="127.0.0.1", LOG_LEVEL="WARN",
               MAX_BATCH_SIZE="8", MODEL_CACHE_DIR=os.path.join(ROOT, ".cache", "models"),
               ORT_DYLIB_PATH=os.path.join(ROOT, ".cache", "onnxruntime", "libonnxruntime.so"))
    server = subprocess.Popen([os.path.join(RELEASE, "inference-gateway")], env=env,
                              stdout=open(os.path.join(tmp, "gateway.log"), "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        data = os.path.join(tmp, "image.json")
        # perf_analyzer sends `b64` content as the raw tensor: one BYTES element is its 4-byte
        # little-endian length, then the file.
        jpeg = open(a.image, "rb").read()
        b64 = base64.b64encode(len(jpeg).to_bytes(4, "little") + jpeg).decode()
        json.dump({"data": [{"IMAGE": {"b64": b64, "shape": [1]}}]}, open(data, "w"))
        pa, c, s = a.perf_analyzer, a.concurrency, a.seconds
        runs = {
            "perf_analyzer resnet50 (FP32) HTTP": lambda: perf_analyzer(pa, "resnet50", "http", f"127.0.0.1:{port}", c, s, tmp),
            "perf_analyzer resnet50 (FP32) gRPC": lambda: perf_analyzer(pa, "resnet50", "grpc", f"127.0.0.1:{grpc}", c, s, tmp),
            "perf_analyzer resnet50_image (JPEG) gRPC": lambda: perf_analyzer(pa, "resnet50_image", "grpc", f"127.0.0.1:{grpc}", c, s, tmp, data),
            "loadtest /predict (JPEG)": lambda: loadtest(f"http://127.0.0.1:{port}/predict", a.image, c, s, tmp),
        }
        names = list(runs)
        results = {n: [] for n in names}
        for r in range(a.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                m0, cpu0 = metrics(port), cpu_seconds(server.pid)
                rps, p50, p99 = runs[n]()
                m1, cpu1 = metrics(port), cpu_seconds(server.pid)
                images, batches = m1[0] - m0[0], m1[1] - m0[1]
                row = (rps, p50, p99, 1e3 * (cpu1 - cpu0) / max(images, 1), images / max(batches, 1))
                results[n].append(row)
                print(f"round {r + 1} {n}: {rps:.1f}/s p50 {p50:.0f} ms p99 {p99:.0f} ms, "
                      f"{row[3]:.1f} ms CPU/request, batch {row[4]:.2f}", flush=True)
        print(f"\nmedians of {a.rounds} rounds, concurrency {c}, MAX_BATCH_SIZE=8, {os.cpu_count()} cores:")
        print("| client and path | requests/s | p50 ms | p99 ms | server CPU ms/request | mean batch |")
        print("|---|---|---|---|---|---|")
        for n in names:
            med = [statistics.median(col) for col in zip(*results[n])]
            print(f"| {n} | {med[0]:.1f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.1f} | {med[4]:.2f} |")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
