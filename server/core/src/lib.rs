//! gateway-core: everything the inference gateway does that no transport needs to know about.
//! It has no HTTP or gRPC dependency; `inference-gateway`'s `http` and `grpc` modules call it
//! and never each other.
//!
//! The modules' layers, each importing only those below it: [`config`] ← [`telemetry`] ←
//! {[`imaging`], [`batching`]} ← [`lifecycle`] (pipelines, the model slot, reloads, int8) ←
//! [`service`] (the one handle both transports call: readiness, the key check on a plain
//! string, request ids, the request record, the repository logic; with [`v2`]'s model logic,
//! [`infer`] and [`predict`]). [`error`] sits beside them all: error kinds with a code and a
//! reject reason, and no status numbers (each transport maps them in one place).
//!
//! Data flow of one image: admitted (`batching::admission`) → decoded, oriented, resized and
//! cropped on the bounded decode pool ([`imaging`]) → the batcher's queue → the batcher thread
//! copies it into a lane's batch buffer → an engine lane runs it → the logits come back over a
//! oneshot → softmax/top-k ([`predict`]). [`telemetry`] (metrics, traces, logs) watches all of
//! it.

pub mod batching;
pub mod config;
pub mod error;
pub mod imaging;
pub mod infer;
pub mod lifecycle;
pub mod predict;
pub mod service;
pub mod telemetry;
pub mod v2;

pub use batching::batcher::BatcherFault;
pub use config::Config;
pub use error::ApiError;
pub use lifecycle::{precision, BackendWrapper};
pub use service::{App, Hooks, ResponseHook};
