#!/usr/bin/env bash
# Fuzzes the /predict intake path (fuzz/fuzz_targets/request.rs) with libFuzzer for SECONDS
# (default 60), the corpus seeded from testdata/images and the TIFF samples of
# server/tests/data/tiff (each image raw and as a multipart body). A crash leaves its input in fuzz/artifacts/request/ and fails the run.
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
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none request corpus/request -- \
  -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
