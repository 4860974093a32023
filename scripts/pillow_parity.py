#!/usr/bin/env python3
"""The user's check of a serving stack: the same images through Pillow + torchvision's
preprocessing + ONNX Runtime (the offline pipeline) and through the running server's /predict,
with the same ONNX model. Prints one line per image and fails unless every top-1 agrees and the
top-1 probabilities are within 0.002.

Usage: python3 -m pip install pillow numpy onnxruntime
       MODEL_PATH=model.onnx inference-gateway &   # then:
       python3 scripts/pillow_parity.py model.onnx IMAGE_DIR... [--url http://127.0.0.1:8000]
"""
import argparse
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "e2e"))
import harness  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def pillow_input(path):
    """torchvision: Resize(256) + CenterCrop(224) + ToTensor + Normalize, on a Pillow image."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    size = (256, int(256 * long / short)) if w <= h else (int(256 * long / short), 256)
    img = img.resize(size, Image.BILINEAR)
    top, left = int(round((img.size[1] - 224) / 2.0)), int(round((img.size[0] - 224) / 2.0))
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def server_top1(url, path):
    status, body = harness.predict(url, path.read_bytes(), query="top_k=1", timeout=300)
    if status != 200:
        sys.exit(f"{path}: /predict answered {status}: {body}")
    p = body["predictions"][0]
    return p["class_id"], p["probability"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    a = ap.parse_args()
    session = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    bad = 0
    paths = sorted(p for d in a.dirs for p in pathlib.Path(d).iterdir() if p.is_file())
    for path in paths:
        logits = session.run(None, {name: pillow_input(path)})[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        want = int(probs.argmax()), float(probs.max())
        got = server_top1(a.url, path)
        ok = got[0] == want[0] and abs(got[1] - want[1]) <= 0.002
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {path.name}: Pillow+ORT {want[0]} {want[1]:.4f}, server {got[0]} {got[1]:.4f}")
    print(f"{len(paths) - bad} of {len(paths)} agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
