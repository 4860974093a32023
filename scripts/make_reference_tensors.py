#!/usr/bin/env python3
"""Writes the Pillow reference inputs the preprocessing test compares against.

For each good image under testdata/images/good (every format), and the TIFF samples
under server/tests/data/tiff, and the large photos under server/tests/data/large: open with Pillow, apply the EXIF orientation
(ImageOps.exif_transpose), convert to RGB (saved as NAME.rgb.npy: the decoded image), then
torchvision's Resize(256) + CenterCrop(224) on a PIL image, written out inline so torchvision is
not needed (saved as NAME.npy):
  - Resize: shorter side 256, longer int(256 * long / short), Image.BILINEAR (antialiased).
  - CenterCrop: top/left = int(round((size - 224) / 2)).
Both are uint8 HWC .npy files; the preprocessing test compares the server's bytes with them.

Usage: python3 -m pip install pillow numpy && python3 scripts/make_reference_tensors.py
"""
import pathlib
import sys

import numpy as np
from PIL import Image, ImageOps

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "testdata/images/good"
OUT = ROOT / "server/tests/data/pillow"


def torchvision_resize_crop(img: Image.Image) -> np.ndarray:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 256, int(256 * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize(size, Image.BILINEAR)
    top = int(round((img.size[1] - 224) / 2.0))
    left = int(round((img.size[0] - 224) / 2.0))
    return np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.uint8)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tiffs = ROOT / "server/tests/data/tiff"
    paths = sorted(p for p in SRC.iterdir() if p.is_file())
    paths += sorted(tiffs.glob("*.tif")) if tiffs.is_dir() else []
    large = sorted((ROOT / "server/tests/data/large").glob("*.jpg"))
    for path in paths + large:
        with Image.open(path) as img:
            mode = img.mode
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            crop = torchvision_resize_crop(rgb)
        assert crop.shape == (224, 224, 3), crop.shape
        if path not in large:  # the decoded large images would be megabytes: crops only
            np.save(OUT / f"{path.name}.rgb.npy", np.asarray(rgb, dtype=np.uint8))
        np.save(OUT / f"{path.name}.npy", crop)
        print(f"{path.name}: {mode} {img.size} -> {crop.shape}")


if __name__ == "__main__":
    main()
