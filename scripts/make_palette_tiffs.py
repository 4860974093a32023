#!/usr/bin/env python3
"""Writes the palette-colour TIFF samples (server/tests/data/tiff/palette*.tif) from the seeded
synthetic photo the other 101x75 TIFF samples use (make_draft_references.photo(101, 75, seed=5)):

  palette8-deflate-orient6.tif  Pillow's own P mode (200 colours), Adobe deflate, orientation 6
  palette4-lzw.tif              4-bit indices, LZW          (written here, then `tiffcp -c lzw`)
  palette2-none.tif             2-bit indices, uncompressed (written here)
  palette1-packbits.tif         1-bit indices, PackBits     (written here, then `tiffcp -c packbits`)

Pillow writes palette TIFFs at 8 bits only, so the 1-, 2- and 4-bit files are written by the small
writer below. Their colour map entries are `8-bit value * 257 + 3`: not multiples of 256, so a
reader must keep each entry's high byte, as Pillow does. palette8-lzw.tif (Pillow
`convert('P')`, LZW) is older and kept as it is. Then run make_reference_tensors.py (or write the
five references alone: it reads every file in that folder).

Usage: python3 -m pip install pillow numpy && python3 scripts/make_palette_tiffs.py (needs tiffcp:
apt-get install libtiff-tools)
"""
import pathlib
import struct
import subprocess
import tempfile

import numpy as np
from PIL import Image

from make_draft_references import photo

OUT = pathlib.Path(__file__).resolve().parent.parent / "server/tests/data/tiff"


def palette_tiff(path, idx, bits, cmap):
    """An uncompressed little-endian palette TIFF of `bits`-bit indices (rows padded to whole
    bytes, first pixel in the high bits) with colour map `cmap` (3 x 2**bits uint16)."""
    h, w = idx.shape
    per = 8 // bits
    rows = np.zeros((h, (w * bits + 7) // 8), np.uint8)
    for x in range(w):
        rows[:, x // per] |= (idx[:, x].astype(np.uint8) << (8 - bits * (x % per + 1))).astype(np.uint8)
    data = rows.tobytes()
    cmap_bytes = np.asarray(cmap, "<u2").tobytes()
    cmap_at = 8 + len(data) + (len(data) & 1)
    ifd_at = cmap_at + len(cmap_bytes)
    entries = [
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, 3),
        (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, len(data)),
        (284, 3, 1, 1), (320, 3, 3 << bits, cmap_at),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        inline = struct.pack("<H", value) + b"\0\0" if typ == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + inline
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + data + b"\0" * (len(data) & 1) + cmap_bytes + ifd)


def main() -> None:
    src = Image.fromarray(photo(101, 75, seed=5))
    p8 = src.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    p8.save(OUT / "palette8-deflate-orient6.tif", compression="tiff_adobe_deflate", tiffinfo={274: 6})
    with tempfile.TemporaryDirectory() as tmp:
        for bits, name, compression in [(4, "palette4-lzw", "lzw"), (2, "palette2-none", None),
                                        (1, "palette1-packbits", "packbits")]:
            colors = 1 << bits
            p = src.convert("P", palette=Image.Palette.ADAPTIVE, colors=colors)
            pal = np.array(p.getpalette()[: 3 * colors]).reshape(colors, 3).T.astype(np.uint16)
            raw = pathlib.Path(tmp) / f"{name}.tif"
            palette_tiff(raw, np.asarray(p), bits, pal * 257 + 3)
            if compression:
                subprocess.run(["tiffcp", "-c", compression, str(raw), str(OUT / f"{name}.tif")], check=True)
            else:
                (OUT / f"{name}.tif").write_bytes(raw.read_bytes())
    for f in sorted(OUT.glob("palette*.tif")):
        with Image.open(f) as im:
            print(f.name, im.mode, im.size)


if __name__ == "__main__":
    main()
