"""Triton's perf_analyzer, unchanged, against the real server: `-m resnet50` (random FP32
tensors) over `-i http` and `-i grpc` at `--concurrency-range 4` runs to completion, and the
server's `inference_batch_size` histogram shows its requests batched (mean > 1.5 over each run).
Run by .ci/run; scripts/e2e/install-perf-analyzer.sh installs the tool.

Usage: python3 scripts/e2e/perf_analyzer_check.py [--gateway BIN] [--perf-analyzer PATH]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import ROOT, batch_totals, check, conclude, free_port, get, start_gateway, stop, wait_until  # noqa: E402


def run_perf_analyzer(tool, protocol, url, out_csv, log):
    cmd = [tool, "-m", "resnet50", "-u", url, "-i", protocol, "--concurrency-range", "4",
           "--measurement-interval", "3000", "--stability-percentage", "60", "--max-trials", "6",
           "-f", out_csv]
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    return done.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    ap.add_argument("--perf-analyzer", default=os.path.join(ROOT, ".cache", "perf_analyzer", "perf_analyzer"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="e2e-perf-analyzer-")
    port, grpc_port = free_port(), free_port()
    gateway = start_gateway(args.gateway, port, open(os.path.join(tmp, "gateway.log"), "w"),
                            MAX_BATCH_SIZE="8", GRPC_PORT=str(grpc_port))
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway to be ready")
        for protocol, url in (("http", f"127.0.0.1:{port}"), ("grpc", f"127.0.0.1:{grpc_port}")):
            before = batch_totals(port)
            out_csv = os.path.join(tmp, f"{protocol}.csv")
            with open(os.path.join(tmp, f"perf_analyzer-{protocol}.log"), "w") as log:
                code = run_perf_analyzer(args.perf_analyzer, protocol, url, out_csv, log)
            print(open(os.path.join(tmp, f"perf_analyzer-{protocol}.log")).read()[-1500:], flush=True)
            check(code == 0, f"perf_analyzer -i {protocol} --concurrency-range 4 runs to completion (exit {code})")
            after = batch_totals(port)
            images, batches = after[0] - before[0], after[1] - before[1]
            mean = images / batches if batches else 0.0
            check(mean > 1.5, f"{protocol}: its requests ran batched (mean batch {mean:.2f} over {batches:.0f} batches)")
            if os.path.exists(out_csv):
                row = next(csv.DictReader(open(out_csv)))
                print(f"  {protocol}: {row['Inferences/Second']} inferences/s, p99 {int(row['p99 latency']) / 1000:.1f} ms",
                      flush=True)
    finally:
        code = stop(gateway, None)
    check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
    conclude(tmp, "perf_analyzer checks")


if __name__ == "__main__":
    main()
