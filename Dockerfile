# syntax=docker/dockerfile:1
# The production image: a release build on the full Rust image, then a slim Debian runtime with
# the binaries, the pinned ONNX Runtime library and the built-in model generated at build time
# (no download, no write at start). Runs as uid 1000.

FROM rust:1.95-bookworm AS build
# python3-pip fetches the pinned onnxruntime wheel (scripts/setup.sh); nasm assembles
# libjpeg-turbo's SIMD code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh \
 && cargo build --release --locked -p inference-gateway -p loadtest \
 && mkdir -p /out/models \
 && ORT_DYLIB_PATH=/src/.cache/onnxruntime/libonnxruntime.so \
    ./target/release/inference-gateway generate-model --out /out/models/resnet50-builtin.onnx

FROM debian:bookworm-slim
# curl is for the HEALTHCHECK only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 gateway \
 && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /src/target/release/inference-gateway /src/target/release/loadtest /usr/local/bin/
COPY --from=build /src/.cache/onnxruntime/ /opt/onnxruntime/
COPY --from=build /out/models/ /opt/inference-gateway/models/
ENV HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json \
    ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so \
    MODEL_PATH=/opt/inference-gateway/models/resnet50-builtin.onnx \
    MODEL_CACHE_DIR=/tmp/models
USER 1000:1000
EXPOSE 8000 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["/usr/local/bin/inference-gateway"]
