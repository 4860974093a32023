"""Triton's own Python clients (tritonclient[http,grpc], unchanged) against the real server,
over HTTP and over gRPC: server and model health, metadata, config and statistics; a batch of
encoded test images to `resnet50_image` with `class_count=5` gives each file the top-1 that
`/predict` gives it; a Pillow-preprocessed FP32 tensor to `resnet50` gives the argmax `/predict`
gives that image; a wrong shape, an unknown model and a missing API key are refused with the
protocol's errors; gRPC calls in flight at SIGTERM are answered.
Run by .ci/run.

Usage: python3 scripts/e2e/kserve_tritonclient.py [--gateway BIN]
Needs: pip install "tritonclient[http,grpc]" numpy pillow
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image, ImageOps
from tritonclient.utils import InferenceServerException

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from harness import IMAGES, ROOT, check, conclude, free_port, get, predict, start_gateway, stop, wait_until  # noqa: E402
from make_reference_tensors import torchvision_resize_crop  # noqa: E402

KEY = {"authorization": "Bearer e2e-key"}  # copied per call: tritonclient.http adds to the dict it is given
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def predict_top1(port, path):
    status, body = predict(f"http://127.0.0.1:{port}", open(path, "rb").read(), dict(KEY))
    check(status == 200, f"/predict {os.path.basename(path)}: {status}")
    return body["predictions"][0]["class_id"] if status == 200 else None


def pillow_tensor(path):
    """torchvision's ResNet50 preprocessing done with Pillow: [3, 224, 224] FP32, normalised."""
    with Image.open(path) as img:
        crop = torchvision_resize_crop(ImageOps.exif_transpose(img).convert("RGB"))
    return ((crop.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def refused(what, call, says):
    try:
        call()
        check(False, f"{what} is refused")
    except InferenceServerException as e:
        check(says in str(e), f"{what} is refused: {str(e)[:160]}")


def protocol_checks(name, mod, client, files, expected):
    """Everything the issue asks, through one client (`mod` is tritonclient.http or .grpc)."""
    grpc = mod is grpcclient
    meta_kw = {"as_json": True} if grpc else {}
    check(client.is_server_live() and client.is_server_ready(), f"{name}: server live and ready")
    check(client.is_model_ready("resnet50_image") and client.is_model_ready("resnet50"), f"{name}: both models ready")
    meta = client.get_model_metadata("resnet50_image", **meta_kw)
    check(meta["inputs"][0]["name"] == "IMAGE" and meta["inputs"][0]["datatype"] == "BYTES"
          and [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 1], f"{name}: image metadata {meta['inputs']}")
    meta = client.get_model_metadata("resnet50", **meta_kw)
    check([int(d) for d in meta["inputs"][0]["shape"]] == [-1, 3, 224, 224] and meta["inputs"][0]["datatype"] == "FP32",
          f"{name}: tensor metadata {meta['inputs']}")
    config = client.get_model_config("resnet50", **meta_kw)
    config = config.get("config", config)
    check(int(config["max_batch_size"]) == 8, f"{name}: config max_batch_size {config['max_batch_size']}")

    batch = np.array([[open(f, "rb").read()] for f in files], dtype=np.object_)
    inp = mod.InferInput("IMAGE", list(batch.shape), "BYTES")
    inp.set_data_from_numpy(batch) if grpc else inp.set_data_from_numpy(batch, binary_data=True)
    out = mod.InferRequestedOutput("logits", class_count=5) if grpc else \
        mod.InferRequestedOutput("logits", binary_data=True, class_count=5)
    refused(f"{name}: an inference without the API key", lambda: client.infer("resnet50_image", [inp]),
            "UNAUTHENTICATED" if grpc else "401")
    classes = client.infer("resnet50_image", [inp], outputs=[out], headers=dict(KEY)).as_numpy("logits")
    check(classes.shape == (len(files), 5), f"{name}: classification output shape {classes.shape}")
    tops = [int(row[0].decode().split(":")[1]) for row in classes]
    check(tops == expected, f"{name}: image top-1 equals /predict's for every file ({tops} vs {expected})")

    tensors = np.stack([pillow_tensor(f) for f in files])
    tin = mod.InferInput("input", list(tensors.shape), "FP32")
    tin.set_data_from_numpy(tensors) if grpc else tin.set_data_from_numpy(tensors, binary_data=True)
    logits = client.infer("resnet50", [tin], headers=dict(KEY)).as_numpy("logits")
    check(logits.shape == (len(files), 1000) and logits.dtype == np.float32, f"{name}: FP32 logits {logits.shape}")
    argmax = [int(i) for i in logits.argmax(axis=1)]
    check(argmax == expected, f"{name}: Pillow tensor argmax equals /predict's ({argmax} vs {expected})")

    refused(f"{name}: an unknown model", lambda: client.infer("densenet_image", [inp], headers=dict(KEY)), "densenet_image")
    wrong = mod.InferInput("input", [1, 224, 224, 3], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 224, 224, 3), dtype=np.float32))
    refused(f"{name}: a wrong shape", lambda: client.infer("resnet50", [wrong], headers=dict(KEY)), "shape")
    stats = client.get_inference_statistics("resnet50", **meta_kw)["model_stats"][0]
    check(int(stats["inference_count"]) >= len(files) and int(stats["inference_stats"]["fail"]["count"]) >= 1,
          f"{name}: statistics count the tensor model's inputs and failures ({stats['inference_count']})")


def calls_in_flight(client, files):
    """Starts 8 gRPC inferences of 6 images each without waiting for them: SIGTERM comes while
    they are queued or running, and each must still be answered. Returns their outcomes."""
    import queue
    batch = np.array([[open(f, "rb").read()] for f in files], dtype=np.object_)
    outcomes = []
    for _ in range(8):
        done = queue.Queue()
        inp = grpcclient.InferInput("IMAGE", list(batch.shape), "BYTES")
        inp.set_data_from_numpy(batch)
        client.async_infer("resnet50_image", [inp], headers=dict(KEY),
                           callback=lambda result, error, done=done: done.put(error or result))
        outcomes.append(done)
    time.sleep(0.5)  # received and admitted (48 images fit MAX_QUEUE_SIZE), most not yet run
    return outcomes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="e2e-kserve-")
    port, grpc_port = free_port(), free_port()
    gateway = start_gateway(args.gateway, port, open(os.path.join(tmp, "gateway.log"), "w"),
                            MAX_BATCH_SIZE="8", GRPC_PORT=str(grpc_port), API_KEYS="e2e-key")
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/ready")[0] == 200, 180, "the gateway to be ready")
        good = os.path.join(IMAGES, "good")
        files = [os.path.join(good, f) for f in sorted(os.listdir(good)) if not f.startswith("README")][:6]
        expected = [predict_top1(port, f) for f in files]
        protocol_checks("http", httpclient, httpclient.InferenceServerClient(url=f"127.0.0.1:{port}"), files, expected)
        grpc = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        protocol_checks("grpc", grpcclient, grpc, files, expected)
        in_flight = calls_in_flight(grpc, files)
    finally:
        code = stop(gateway, None)
    if "in_flight" in locals():
        answers = [r.get(timeout=60) for r in in_flight]
        errors = [str(e)[:120] for e in answers if isinstance(e, Exception)]
        check(not errors, f"grpc: {len(answers)} calls in flight at SIGTERM all answered ({errors[:2]})")
    check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
    conclude(tmp, "KServe v2 (tritonclient over HTTP and gRPC) checks")


if __name__ == "__main__":
    main()
