//! inference-gateway: an HTTP server that classifies images with ResNet50 at high throughput.
//!
//! Data flow of `POST /predict`, and the modules in its order: hyper (tokio, `WORKERS` threads)
//! → `http` checks readiness, the API key, the content type and `top_k`, then takes an admission
//! permit (`batching::admission`; no room → 429 at once) → the body is read up to
//! `MAX_BODY_BYTES` and its image taken out ([`intake`]) → the image is decoded, oriented,
//! resized and cropped on the bounded decode pool ([`imaging`]) → the u8 224×224×3 image joins
//! the batcher's queue → the batcher thread (`batching`) copies it straight into a lane's batch
//! buffer when the batch starts → an engine lane runs it → the logits come back over a oneshot →
//! softmax/top-k ([`predict`]) → JSON. The request's deadline (`REQUEST_TIMEOUT`) bounds all of
//! it; a client that leaves closes its oneshot and is dropped before it costs compute.
//! [`telemetry`] (metrics, traces, logs) watches all of it.
//!
//! The KServe v2 protocol enters the same path from HTTP (`http::kserve`) and gRPC (`grpc`,
//! tonic on `GRPC_PORT`) through `v2`: N inputs are N admissions; encoded images take the
//! decode pool, a client's FP32 tensors go straight to the queue, and a batch holds one kind.
//! With `MODEL_PRECISION=int8` the model is quantised at load ([`precision`]) before its lanes
//! are built.
//!
//! The protocol-neutral work lives in the `gateway-core` crate (config, telemetry, imaging,
//! batching, the model's lifecycle, the service); this crate holds the transports over it:
//! `http` and `grpc` (which never import each other), the connection handling both share, the
//! OTLP exporter, and `serve` (the composition root) ← `main`. Its modules are re-exported
//! here under their old paths. `scripts/check_cycles.py` keeps the module graph acyclic and the
//! layers in order in CI.
//!
//! [`run`] is the whole server: it serves probes at once, loads the model in the background
//! (`/ready` turns 200 when warmed up) and on shutdown goes not-ready, stops accepting, drains,
//! flushes the batcher and joins the engine, all within `GRACEFUL_SHUTDOWN_TIMEOUT`.

pub use gateway_core::{batching, config, error, imaging, lifecycle, predict, telemetry};
pub(crate) use gateway_core::{infer, service, v2};
#[doc(hidden)]
pub mod fuzzing;

mod body;
mod conn;
mod grpc;
mod headers;
mod http;
pub mod otlp;
mod serve;

pub use http::intake;
pub use lifecycle::precision;
pub use telemetry::trace;

pub use batching::batcher::BatcherFault;
pub use config::Config;
pub use error::ApiError;
pub use lifecycle::BackendWrapper;
pub use serve::{run, run_with, Listeners, ServeError};
pub use service::{Hooks, ResponseHook};
