#!/usr/bin/env python3
"""Host cost of a phone photo, ours against Pillow's, on this machine in one run.

For each photo (a folder of JPEGs, or two generated 12 MP ones: 4032x3024, 4:2:0, 2-4 MB):
  - the server's decode + preprocess per photo from `Server-Timing`, `PREPROCESS` exact and draft
    (sequential requests to a release gateway started here, median of --rounds);
  - Pillow on the same file in this process: Image.open + decode + Resize(256) + CenterCrop(224)
    (what the reference pipeline does), and its draft pipeline (`draft('RGB', (2w, 2h))` first),
    median of --rounds;
  - the ratios the issue asks for: draft / exact, and exact / Pillow;
  - optionally (--loadtest S) photos/s end to end for S seconds in each mode with `loadtest`.

Usage: cargo build --release -p inference-gateway -p loadtest && python3 scripts/bench_photos.py
"""

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "e2e"))
from harness import ROOT, free_port, get, start_gateway, wait_until  # noqa: E402


def photo_12mp(path, noise, quality):
    """A photo-like 12 MP JPEG: smooth light, edges and sensor-like noise of `noise` levels
    (seeded). The entropy-coded share of a JPEG's decode grows with its noise, and DCT scaling
    saves only the rest, so two are made: a clean one and a grainy one."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(12)
    h, w = 3024, 4032
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        img[..., c] = 120 + 80 * np.sin(2 * np.pi * (x / w * (1 + c) + y / h * (2 - c) / 2))
    for _ in range(40):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(50, 600)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] *= rng.uniform(0.5, 1.3)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality, subsampling=2)


def server_ms(base, data, mode, rounds):
    """Median decode + preprocess ms from Server-Timing, and the decode-mode it reports."""
    host, desc = [], ""
    for _ in range(rounds):
        req = urllib.request.Request(f"{base}/predict?preprocess={mode}", data=data, method="POST",
                                     headers={"content-type": "image/jpeg"})
        with urllib.request.urlopen(req, timeout=60) as r:
            timing = r.headers["server-timing"]
        parts = dict(p.strip().split(";", 1) for p in timing.split(","))
        dur = lambda k: float(parts[k].split("dur=")[1])  # noqa: E731
        host.append(dur("decode") + dur("preprocess"))
        desc = parts.get("decode-mode", "")
    return statistics.median(host), desc


def pillow_ms(data, draft, rounds):
    from PIL import Image

    def once():
        start = time.perf_counter()
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        long = int(256 * long / short)
        size = (256, long) if w <= h else (long, 256)
        if draft:
            im.draft("RGB", (2 * size[0], 2 * size[1]))
        im = im.convert("RGB")
        im = im.resize(size, Image.BILINEAR)
        top, left = int(round((im.size[1] - 224) / 2)), int(round((im.size[0] - 224) / 2))
        im.crop((left, top, left + 224, top + 224)).load()
        return (time.perf_counter() - start) * 1e3

    return statistics.median(once() for _ in range(rounds))


def photos_per_second(base, mode, folder, seconds):
    cmd = [os.path.join(ROOT, "target", "release", "loadtest"), "--url", f"{base}/predict?preprocess={mode}",
           "--images", folder, "--concurrency", "4", "--duration", f"{seconds}s"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
    line = next((l for l in out.splitlines() if "req/s" in l or "throughput" in l.lower()), out.strip()[-200:])
    return line.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", help="a folder of JPEG photos (default: one generated 12 MP photo)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inference-gateway"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--loadtest", type=int, default=0, metavar="S", help="also photos/s for S seconds per mode")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="photos-")
    folder = args.photos
    if not folder:
        folder = os.path.join(tmp, "photos")
        os.makedirs(folder)
        photo_12mp(os.path.join(folder, "12mp-clean.jpg"), noise=1.5, quality=95)
        photo_12mp(os.path.join(folder, "12mp-grainy.jpg"), noise=6, quality=92)
    photos = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "gateway.log"), "w")
    gw = start_gateway(args.binary, port, log, LOG_LEVEL="WARN", MAX_IMAGE_PIXELS="50000000", MAX_BODY_BYTES=str(64 << 20))
    try:
        wait_until(lambda: get(f"{base}/ready")[0] == 200, 120, "the gateway")
        print(f"machine: {os.cpu_count()} cores; {args.rounds} rounds each, medians (ms per photo, host work only)")
        print("photo | size | ours exact | ours draft (scale) | Pillow | Pillow draft | draft/exact | exact/Pillow")
        for p in photos:
            data = open(p, "rb").read()
            from PIL import Image
            size = Image.open(io.BytesIO(data)).size
            exact, _ = server_ms(base, data, "exact", args.rounds)
            draft, desc = server_ms(base, data, "draft", args.rounds)
            pil = pillow_ms(data, False, args.rounds)
            pil_draft = pillow_ms(data, True, args.rounds)
            print(f"{os.path.basename(p)} | {size[0]}x{size[1]}, {len(data) / 1e6:.1f} MB | {exact:.1f} | "
                  f"{draft:.1f} ({desc.split('=')[-1]}) | {pil:.1f} | {pil_draft:.1f} | "
                  f"{draft / exact:.2f} | {exact / pil:.2f}", flush=True)
        if args.loadtest:
            for mode in ("exact", "draft"):
                print(f"loadtest {mode}: {photos_per_second(base, mode, folder, args.loadtest)}", flush=True)
    finally:
        gw.terminate()
        gw.wait(timeout=60)


if __name__ == "__main__":
    main()
