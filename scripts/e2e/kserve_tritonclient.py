"""Triton's own Python client (tritonclient[http], unchanged) against the real server: server
and model health, metadata, config and statistics; a batch of encoded test images to `resnet50_image` with
`class_count=5` gives each file the top-1 that `/predict` gives it; an unknown model and a wrong
shape are refused with the protocol's errors. Run by .ci/run.

Usage: python3 scripts/e2e/kserve_tritonclient.py [--gateway BIN]
Needs: pip install "tritonclient[http]" numpy
"""

import argparse
import json
import os
import sys
import tempfile
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, os.path.dirname(__file__))
from harness import IMAGES, ROOT, check, conclude, free_port, get, start_gateway, stop, wait_until  # noqa: E402


def predict_top1(port, path):
    boundary = "----kservecheck"
    data = open(path, "rb").read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n".encode()
            + data + f"\r\n--{boundary}--\r\n".encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["predictions"][0]["class_id"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="e2e-kserve-")
    port = free_port()
    gateway = start_gateway(args.gateway, port, open(os.path.join(tmp, "gateway.log"), "w"), MAX_BATCH_SIZE="8")
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway to be ready")
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
        check(client.is_server_live() and client.is_server_ready(), "server live and ready")
        check(client.is_model_ready("resnet50_image"), "resnet50_image ready")
        meta = client.get_model_metadata("resnet50_image")
        check(meta["inputs"][0] == {"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}, f"metadata {meta['inputs']}")
        config = client.get_model_config("resnet50_image")
        check(config["max_batch_size"] == 8, f"config max_batch_size {config['max_batch_size']}")

        good = os.path.join(IMAGES, "good")
        files = [os.path.join(good, f) for f in sorted(os.listdir(good)) if not f.startswith("README")][:6]
        batch = np.array([[open(f, "rb").read()] for f in files], dtype=np.object_)
        inp = httpclient.InferInput("IMAGE", list(batch.shape), "BYTES")
        inp.set_data_from_numpy(batch, binary_data=True)
        out = httpclient.InferRequestedOutput("logits", binary_data=True, class_count=5)
        result = client.infer("resnet50_image", [inp], outputs=[out])
        classes = result.as_numpy("logits")
        check(classes.shape == (len(files), 5), f"classification output shape {classes.shape}")
        same = 0
        for f, row in zip(files, classes):
            top = int(row[0].decode().split(":")[1])
            want = predict_top1(port, f)
            same += top == want
            if top != want:
                print(f"  {os.path.basename(f)}: v2 {row[0].decode()} vs /predict {want}")
        check(same == len(files), f"top-1 equals /predict's for every file ({same}/{len(files)})")

        raw = client.infer("resnet50_image", [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=True)])
        logits = raw.as_numpy("logits")
        check(logits.shape == (len(files), 1000) and logits.dtype == np.float32, f"FP32 logits {logits.shape} {logits.dtype}")

        stats = client.get_inference_statistics("resnet50_image")["model_stats"][0]
        check(int(stats["inference_count"]) == 2 * len(files)
              and int(stats["inference_stats"]["success"]["count"]) == 2,
              f"statistics count the images and requests ({stats['inference_count']} images)")
        for model, what in (("densenet_image", "an unknown model"),):
            try:
                client.infer(model, [inp])
                check(False, f"{what} is refused")
            except InferenceServerException as e:
                check("densenet_image" in str(e), f"{what} is refused: {e}")
        wrong = httpclient.InferInput("IMAGE", [2, 3], "BYTES")
        wrong.set_data_from_numpy(np.array([[b"a", b"b", b"c"], [b"d", b"e", b"f"]], dtype=np.object_))
        try:
            client.infer("resnet50_image", [wrong])
            check(False, "a wrong shape is refused")
        except InferenceServerException as e:
            check("shape" in str(e), f"a wrong shape is refused: {e}")
    finally:
        code = stop(gateway, None)
    check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
    conclude(tmp, "KServe v2 (tritonclient) checks")


if __name__ == "__main__":
    main()
