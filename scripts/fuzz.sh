#!/usr/bin/env bash
# Fuzzes, with libFuzzer, SECONDS (default 60) per target:
# - request: the /predict intake path, seeded from testdata/images and the TIFF samples of
#   server/tests/data/tiff (each image raw and as a multipart body);
# - v2_http: the KServe v2 HTTP infer body (JSON and binary), seeded with requests as
#   tritonclient sends them;
# - grpc_infer: the gRPC ModelInfer message (wire scan, prost, input cut), seeded with messages
#   encoded by tritonclient's own protobuf classes (when installed; else from the v2 seeds' bytes).
# A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run.
# Needs cargo-fuzz (cargo install cargo-fuzz). The toolchain here is stable, so the sanitizer is
# off and RUSTC_BOOTSTRAP lets cargo-fuzz pass its coverage flags; panics and 5xx still fail.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo install cargo-fuzz" >&2; exit 1; }
corpus=fuzz/corpus/request
mkdir -p "$corpus"
python3 - "$corpus" <<'PY'
import os, sys
out = sys.argv[1]
repo = os.path.join(os.path.dirname(os.path.abspath(out)), "..", "..")
root = os.path.join(repo, "testdata", "images")
n = 0
dirs = [(sub, os.path.join(root, sub)) for sub in ("good", "bad", "unsupported")]
dirs.append(("tiff", os.path.join(repo, "server", "tests", "data", "tiff")))  # the TIFF decoder too
for sub, d in dirs:
    for name in sorted(os.listdir(d)):
        if name.startswith("README"):
            continue
        data = open(os.path.join(d, name), "rb").read()
        if len(data) > 256 * 1024:
            continue
        framed = (b"--fuzzboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
                  + data + b"\r\n--fuzzboundary--\r\n")
        for prefix, body in ((0, data), (1, framed)):
            open(os.path.join(out, f"{sub}-{name}-{prefix}"), "wb").write(bytes([prefix]) + body)
            n += 1
print(f"seeded {n} inputs from {root}")
PY
mkdir -p fuzz/corpus/v2_http fuzz/corpus/grpc_infer
python3 - fuzz/corpus <<'PY'
import json, os, struct, sys
out = sys.argv[1]
img = open(os.path.join(out, "..", "..", "testdata", "images", "good", "ijg-testorig.jpg"), "rb").read()
reqs = [
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [0.5] * 64}]},
    {"id": "7", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
     "outputs": [{"name": "logits", "parameters": {"classification": 5}}]},
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [[1], 3], "data": [[1, 2], [3]]}],
     "parameters": {"binary_data_output": True}},
]
for i, r in enumerate(reqs):
    open(os.path.join(out, "v2_http", f"json-{i}"), "wb").write(b"\xff" + json.dumps(r).encode())
head = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                "parameters": {"binary_data_size": len(img) + 4}}],
                   "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
if len(head) < 0x80:
    open(os.path.join(out, "v2_http", "binary"), "wb").write(bytes([len(head)]) + head + struct.pack("<I", len(img)) + img)
try:
    from tritonclient.grpc import service_pb2 as pb
    m = pb.ModelInferRequest(model_name="resnet50_image", id="1")
    t = m.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    m.raw_input_contents.append(struct.pack("<I", len(img)) + img)
    o = m.outputs.add(name="logits")
    o.parameters["classification"].int64_param = 5
    open(os.path.join(out, "grpc_infer", "image"), "wb").write(m.SerializeToString())
    m = pb.ModelInferRequest(model_name="resnet50")
    t = m.inputs.add(name="input", datatype="FP32", shape=[1, 3, 224, 224])
    t.contents.fp32_contents.extend([0.25] * 64)
    open(os.path.join(out, "grpc_infer", "tensor"), "wb").write(m.SerializeToString())
except ImportError:
    open(os.path.join(out, "grpc_infer", "empty"), "wb").write(b"")
print("seeded the v2_http and grpc_infer corpora")
PY
cd fuzz
for target in request v2_http grpc_infer; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
