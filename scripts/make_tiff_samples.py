#!/usr/bin/env python3
"""Writes the TIFF samples the decoding tests use (server/tests/data/tiff/), from one of the good
test photos, small so they can live in the repository: 8-bit RGB (LZW), 16-bit RGB (deflate),
8-bit grey (PackBits), 16-bit grey (uncompressed), YCbCr JPEG-compressed, and a two-page file
(the first page is what a server classifies). Then run make_reference_tensors.py.

Usage: python3 -m pip install pillow numpy tifffile && python3 scripts/make_tiff_samples.py
"""
import pathlib

import numpy as np
import tifffile
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "testdata/images/good/progressive-cat.jpg"
OUT = ROOT / "server/tests/data/tiff"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    photo = Image.open(SRC).convert("RGB").resize((96, 72), Image.BILINEAR)
    photo.save(OUT / "rgb8-lzw.tif", compression="tiff_lzw")
    # Pillow cannot write 16-bit RGB; tifffile can (and Pillow reads it).
    rgb16 = np.asarray(photo, dtype=np.uint16) * 257 + np.uint16(100)
    tifffile.imwrite(OUT / "rgb16-deflate.tif", rgb16, photometric="rgb", compression="zlib")
    photo.convert("L").save(OUT / "grey8-packbits.tif", compression="packbits")
    grey16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    tifffile.imwrite(OUT / "grey16.tif", grey16, photometric="minisblack")
    photo.save(OUT / "ycbcr-jpeg.tif", compression="jpeg")
    second = photo.transpose(Image.Transpose.ROTATE_180)
    photo.save(OUT / "two-pages.tif", save_all=True, append_images=[second], compression="tiff_lzw")
    for p in sorted(OUT.glob("*.tif")):
        with Image.open(p) as img:
            print(p.name, img.mode, img.size, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
