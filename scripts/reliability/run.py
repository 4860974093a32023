"""Load reliability figures for RELIABILITY.md, against a release gateway on this machine.

  python3 scripts/reliability/run.py burst   # capacity, then 5x capacity for 20 s, then recovery
  python3 scripts/reliability/run.py soak [MINUTES]   # ~80% of capacity; RSS, fds, statuses over time

burst: the surplus must be shed with 429 at once, accepted requests must finish within
REQUEST_TIMEOUT, and single requests must be back to their pre-burst latency within a second.
soak: RSS within 10% of its post-warm-up value, open file descriptors constant, no 5xx.
Builds nothing: run `cargo build --release -p inference-gateway -p loadtest` first.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from harness import IMAGES, ROOT, free_port, get, start_gateway, wait_until  # noqa: E402

GOOD = os.path.join(IMAGES, "good")
LOADTEST = os.path.join(ROOT, "target", "release", "loadtest")
GATEWAY = os.path.join(ROOT, "target", "release", "inference-gateway")
TIMEOUT_S = 10


def loadtest(port, *args):
    out = tempfile.mktemp(suffix=".json")
    cmd = [LOADTEST, "--url", f"http://127.0.0.1:{port}/predict", "--images", GOOD, "--threads", "1",
           "-q", "--json", out, *args]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return json.load(open(out))


def one_request(port):
    body = open(os.path.join(GOOD, "ijg-testorig.jpg"), "rb").read()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, headers={"content-type": "image/jpeg"})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
        r.read()
    return time.monotonic() - t


def proc_stats(pid):
    rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def start(port, log):
    gw = start_gateway(GATEWAY, port, log, LOG_LEVEL="WARN", MAX_QUEUE_SIZE="16",
                       REQUEST_TIMEOUT=str(TIMEOUT_S), MAX_BATCH_SIZE="8")
    wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway")
    return gw


def capacity(port):
    r = loadtest(port, "-c", "8", "-d", "10s", "--warmup", "3s")
    return r["goodput_rps"], r


def burst(port):
    cap, base = capacity(port)
    baseline = statistics.median(one_request(port) for _ in range(10))
    print(f"capacity (closed loop, 8 clients): {cap:.1f} images/s; single-request median {baseline * 1000:.0f} ms")
    rate = 5 * cap
    r = loadtest(port, "--rate", f"{rate:.1f}", "--arrivals", "poisson", "--connections", "512",
                 "-d", "20s", "--warmup", "0s", "--timeout", f"{TIMEOUT_S + 5}s")
    end = time.monotonic()
    lat, failed = r["latency_ms"], r["failed_latency_ms"] or {}
    print(f"burst at {rate:.0f}/s (5x) for 20 s: {r['requests']} requests, statuses {r['statuses']}, failures {r['failures']}")
    print(f"  accepted (200): p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms (REQUEST_TIMEOUT {TIMEOUT_S} s)")
    print(f"  shed (non-2xx): p50 {failed.get('p50', 0):.1f} ms, p99 {failed.get('p99', 0):.1f} ms, max {failed.get('max', 0):.1f} ms")
    print(f"  server: {r['server']}")
    probes = []
    while time.monotonic() - end < 5:
        probes.append((time.monotonic() - end, one_request(port)))
    recovered = next((t for t, l in probes if l < 1.5 * baseline), None)
    print(f"  after the burst: first request within 1.5x baseline at +{recovered:.2f} s; "
          f"probe latencies {[round(l * 1000) for _, l in probes[:8]]} ms")
    ok = (r["statuses"].get("429", 0) > 0 and not any(s.startswith("5") for s in r["statuses"])
          and not r["failures"] and lat["max"] < TIMEOUT_S * 1000 and failed.get("p99", 0) < 100
          and recovered is not None and recovered < 1.0)
    return ok


def soak(port, pid, minutes):
    cap, _ = capacity(port)
    rate = 0.8 * cap
    print(f"capacity {cap:.1f} images/s; soaking at {rate:.1f}/s (80%) for {minutes} min")
    out = tempfile.mktemp(suffix=".json")
    cmd = [LOADTEST, "--url", f"http://127.0.0.1:{port}/predict", "--images", GOOD, "--threads", "1", "-q",
           "--rate", f"{rate:.1f}", "--arrivals", "poisson", "-d", f"{minutes}m", "--warmup", "0s", "--json", out]
    lt = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples, t0 = [], time.monotonic()
    while lt.poll() is None:
        time.sleep(10)
        if lt.poll() is not None:
            break  # only samples taken under load (the client's connections close at the end)
        rss, fds = proc_stats(pid)
        samples.append((time.monotonic() - t0, rss, fds))
    r = json.load(open(out))
    samples = samples[:-1] or samples  # the last may catch the client closing its connections
    warm = [s for s in samples if s[0] >= 60] or samples
    rss0, rss_end = warm[0][1], samples[-1][1]
    rss_max = max(s[1] for s in warm)
    fds = sorted({s[2] for s in samples})
    print(f"  {r['requests']} requests, statuses {r['statuses']}, failures {r['failures']}, p99 {r['latency_ms']['p99']:.0f} ms")
    print(f"  RSS after warm-up {rss0 / 2**20:.1f} MiB, at the end {rss_end / 2**20:.1f} MiB, max {rss_max / 2**20:.1f} MiB "
          f"({(rss_max / rss0 - 1) * 100:+.1f}%); open fds seen {fds}")
    print("  samples (s, MiB, fds): " + ", ".join(f"({t:.0f}, {rss / 2**20:.0f}, {f})" for t, rss, f in samples[::6]))
    return (rss_max <= 1.10 * rss0 and max(fds) - min(fds) <= 2
            and not any(s.startswith("5") for s in r["statuses"]) and not r["failures"])


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "burst"
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="reliability-")
    gw = start(port, open(os.path.join(tmp, "gateway.log"), "w"))
    try:
        ok = burst(port) if what == "burst" else soak(port, gw.pid, float(sys.argv[2]) if len(sys.argv) > 2 else 10)
    finally:
        gw.terminate()
        gw.wait(timeout=60)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
