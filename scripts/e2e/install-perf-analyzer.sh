#!/usr/bin/env bash
# Installs Triton's perf_analyzer into .cache/perf_analyzer (idempotent), as TOOLING.md says it
# works on these machines: the binary from the tritonclient 2.41.0 wheel (newer wheels no longer
# ship it), libb64.so.0d from Debian's libb64-0d, and libcudart.so.12 from the
# nvidia-cuda-runtime-cu12 wheel (it links against it even with no GPU). Prints the path of a
# wrapper that sets LD_LIBRARY_PATH and runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.cache/perf_analyzer"
wrapper="$dest/perf_analyzer"
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then echo "$wrapper"; exit 0; fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest/bin" "$dest/lib"
python3 -m pip download --quiet --no-deps tritonclient==2.41.0 -d "$tmp" >&2
python3 -m pip download --quiet --no-deps 'nvidia-cuda-runtime-cu12==12.*' -d "$tmp" >&2
(cd "$tmp" && unzip -q -o tritonclient-2.41.0-*.whl 'tritonclient-2.41.0.data/data/bin/perf_analyzer' \
  && unzip -q -o nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' \
  && apt-get download libb64-0d >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null 2>&1 || true; apt-get download libb64-0d >/dev/null; })
dpkg -x "$tmp"/libb64-0d_*.deb "$tmp/b64"
cp "$tmp/tritonclient-2.41.0.data/data/bin/perf_analyzer" "$dest/bin/"
cp "$tmp/nvidia/cuda_runtime/lib/libcudart.so.12" "$tmp"/b64/usr/lib/*/libb64.so.0d "$dest/lib/"
chmod +x "$dest/bin/perf_analyzer"
cat > "$wrapper" <<'WRAP'
#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
WRAP
chmod +x "$wrapper"
"$wrapper" --version >&2
echo "$wrapper"
