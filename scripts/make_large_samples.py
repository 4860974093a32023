#!/usr/bin/env python3
"""Writes two large photo-like JPEGs (server/tests/data/large/) for the preprocessing test's
large downscales: the 2048×1536 landscape and the 1200×1800 portrait the Resize(256) step shrinks
8× and 4.7×. They are one of the good test photos enlarged, with seeded film-grain noise and a
sharp diagonal grid, so the antialiasing filter has real detail to average. Then run
make_reference_tensors.py (which stores only their 224×224 crops: the decoded images would be
megabytes).

Usage: python3 -m pip install pillow numpy && python3 scripts/make_large_samples.py
"""
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "testdata/images/good/progressive-cat.jpg"
OUT = ROOT / "server/tests/data/large"


def photo(size, seed):
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(SRC).convert("RGB").resize(size, Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    grid = ((xx + yy) // 6 % 2 * 24 - 12)[..., None]
    noisy = base + grid + rng.normal(0, 9, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    photo((2048, 1536), 1).save(OUT / "landscape-2048x1536.jpg", quality=60)
    photo((1200, 1800), 2).save(OUT / "portrait-1200x1800.jpg", quality=60, progressive=True)
    for p in sorted(OUT.glob("*.jpg")):
        print(p.name, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
