#!/usr/bin/env python3
"""Writes the JPEGs and Pillow references of `PREPROCESS=draft` (server/tests/data/draft/).

Each JPEG is a synthetic photo (gradients, edges and fine texture, seeded) written by Pillow in
one of the layouts that matter to DCT scaling: 4:2:0, 4:2:2, 4:4:4, grey, progressive, CMYK,
sizes that are not multiples of 8 or 16, a portrait, and a landscape stored with EXIF
orientation 6. Sizes are picked so that Pillow's draft reduces them by 2, 4 and 8.

The reference of each (and of the large photos in server/tests/data/large) is Pillow's draft
pipeline, which the server must equal byte for byte:
    im = Image.open(f); w, h = torchvision Resize(256) size of im.size
    im.draft('RGB', (2w, 2h)); im = ImageOps.exif_transpose(im).convert('RGB')
    Resize(256) + CenterCrop(224) as scripts/make_reference_tensors.py does.
references.tsv holds, per file, the DCT scale draft chose, the decoded size and the SHA-256 of
the 224x224x3 crop (set DUMP=1 to also write the crops as .npy for a byte-wise diff).

Usage: python3 -m pip install pillow numpy && python3 scripts/make_draft_references.py
"""
import hashlib
import os
import pathlib

import numpy as np
from PIL import Image, ImageOps

from make_reference_tensors import torchvision_resize_crop

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "server/tests/data/draft"

# name, (width, height), Pillow save options, mode
CASES = [
    ("s2-420-1366x1027.jpg", (1366, 1027), dict(quality=80, subsampling=2), "RGB"),
    ("s4-422-2731x2053.jpg", (2731, 2053), dict(quality=50, subsampling=1), "RGB"),
    ("s8-grey-4100x4097.jpg", (4100, 4097), dict(quality=40), "L"),
    ("s2-444-progressive-1100x1030.jpg", (1100, 1030), dict(quality=80, subsampling=0, progressive=True), "RGB"),
    ("s2-portrait-1030x1501.jpg", (1030, 1501), dict(quality=80, subsampling=2), "RGB"),
    ("s2-exif6-2100x1500.jpg", (2100, 1500), dict(quality=60, subsampling=2, exif=True), "RGB"),
    ("s2-cmyk-1100x1030.jpg", (1100, 1030), dict(quality=60), "CMYK"),
    ("s1-1023x1023.jpg", (1023, 1023), dict(quality=80, subsampling=2), "RGB"),
]


def photo(w, h, seed):
    """Smooth light, hard edges and fine texture: what DCT scaling and resampling meet in photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.5, 3, 2)
        img[..., c] = 128 + 90 * np.sin(2 * np.pi * (fx * x / w + fy * y / h + c / 3))
    # Hard-edged discs and bars.
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.15) * min(w, h)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    # Fine texture in a band (a few pixels' period), and a little noise everywhere.
    band = (y > 0.4 * h) & (y < 0.6 * h)
    img[band] += (40 * np.sin(x * 1.7) * np.cos(y * 1.3))[band][:, None]
    img[band] += rng.normal(0, 4, img[band].shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def exif_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def write_sources():
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, (w, h), opts, mode) in enumerate(CASES):
        opts = dict(opts)
        if opts.pop("exif", False):
            opts["exif"] = exif_orientation(6)
        im = Image.fromarray(photo(w, h, seed=i)).convert(mode)
        im.save(OUT / name, "JPEG", **opts)


def draft_crop(path):
    with Image.open(path) as im:
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        long = int(256 * long / short)
        tw, th = (256, long) if w <= h else (long, 256)
        im.draft("RGB", (2 * tw, 2 * th))
        scale = next(s for s in (1, 2, 4, 8) if -(-w // s) == im.size[0])
        size = im.size
        rgb = ImageOps.exif_transpose(im).convert("RGB")
        return scale, size, torchvision_resize_crop(rgb)


def main():
    if not os.environ.get("KEEP_SOURCES"):
        write_sources()
    paths = sorted(OUT.glob("*.jpg")) + sorted((ROOT / "server/tests/data/large").glob("*.jpg"))
    lines = ["# file\tdraft scale\tdecoded size\tsha256 of Pillow's draft 224x224x3 crop"]
    for path in paths:
        scale, (w, h), crop = draft_crop(path)
        assert crop.shape == (224, 224, 3)
        digest = hashlib.sha256(crop.tobytes()).hexdigest()
        lines.append(f"{path.name}\t{scale}\t{w}x{h}\t{digest}")
        if os.environ.get("DUMP"):
            np.save(OUT / f"{path.name}.draft.npy", crop)
        print(lines[-1], f"({path.stat().st_size // 1024} KiB)")
    (OUT / "references.tsv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
