#!/usr/bin/env python3
"""Writes server/tests/data/golden-top1.tsv: the built-in model's top-1 class and probability for
each good test image, through a running server's /predict (CPU engine). Run it when the model,
the decoders or the preprocessing change on purpose, and say why in the commit.

Usage: python3 scripts/golden_top1.py --url http://127.0.0.1:8000 [--out server/tests/data/golden-top1.tsv]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = os.path.join(ROOT, "testdata", "images", "good")
HEADER = """# The built-in model's (seed 50) top-1 for each good test image, through /predict (CPU engine). Regenerate
# (scripts/golden_top1.py) when the model, the decoders or the preprocessing change on purpose; columns: file, class_id, probability, gap to the second.
"""


def predict(url, path):
    status, body = harness.predict(url, open(path, "rb").read())
    if status != 200:
        sys.exit(f"{path}: /predict answered {status}: {body}")
    return body["predictions"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--out", default=os.path.join(ROOT, "server", "tests", "data", "golden-top1.tsv"))
    a = ap.parse_args()
    rows = []
    for name in sorted(os.listdir(GOOD)):
        if name.startswith("README"):
            continue
        p = predict(a.url, os.path.join(GOOD, name))
        rows.append(f"{name}\t{p[0]['class_id']}\t{p[0]['probability']:.4f}\t{p[0]['probability'] - p[1]['probability']:.4f}\n")
    with open(a.out, "w") as f:
        f.write(HEADER + "".join(rows))
    print("".join(rows), end="")


if __name__ == "__main__":
    main()
