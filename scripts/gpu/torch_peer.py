"""The peer figure for the CUDA engine, on the same GPU the same day: torchvision's ResNet50
(random weights: only speed is measured), BatchNorm folded into the convolutions, fp16,
channels-last, cuDNN autotuning on, replayed as a CUDA graph. Prints one JSON line per batch
size: images/s and milliseconds per batch. Usage: torch_peer.py BATCH...
"""
import json
import sys
import time

import torch
import torchvision
from torch.fx.experimental.optimization import fuse


def bench(model, n, seconds=3.0):
    x = torch.randn(n, 3, 224, 224, device="cuda", dtype=torch.half).to(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
        graph.replay()
        torch.cuda.synchronize()
        runs, start = 0, time.perf_counter()
        while runs < 5 or time.perf_counter() - start < seconds:
            graph.replay()
            runs += 1
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    return {"peer": "pytorch-fp16-channels-last-graph", "torch": torch.__version__,
            "batch": n, "images_per_s": runs * n / wall, "batch_ms": wall * 1000 / runs}


def main():
    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50(weights=None).eval()
    model = fuse(model).half().cuda().to(memory_format=torch.channels_last)
    for n in [int(a) for a in sys.argv[1:]] or [1, 8, 32, 128, 256]:
        print(json.dumps(bench(model, n)), flush=True)


if __name__ == "__main__":
    main()
