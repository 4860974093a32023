"""Copies the shared libraries of a Python wheel whose paths start with PREFIX into DEST (flat):
how scripts/setup.sh and scripts/gpu/install-nvrtc.sh take native libraries out of PyPI wheels.

Usage: python3 scripts/extract_wheel_libs.py WHEEL PREFIX DEST
"""
import os
import sys
import zipfile


def main(wheel, prefix, dest):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            if name.startswith(prefix) and ".so" in base:
                with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                    out.write(src.read())


if __name__ == "__main__":
    main(*sys.argv[1:4])
