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
//! [`run`] is the whole server: it serves probes at once, loads the model in the background
//! (`/ready` turns 200 when warmed up) and on shutdown goes not-ready, stops accepting, drains,
//! flushes the batcher and joins the engine, all within `GRACEFUL_SHUTDOWN_TIMEOUT`.

pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod imaging;
pub mod telemetry;

pub mod batching;
mod body;
mod conn;
mod grpc;
mod http;
mod infer;
mod model_control;
pub mod precision;
mod serve;
mod v2;

pub use http::{intake, predict};
pub use telemetry::trace;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hyper::header::HeaderMap;
use parking_lot::RwLock;

pub use config::Config;
pub use error::ApiError;
pub use serve::{run, run_with, BackendWrapper, Hooks, Listeners, ServeError};

use batching::admission::Admission;
use batching::queue::Pending;
use imaging::pool::BlockingPool;
use telemetry::metrics::Metrics;

/// The loaded model's side of the server: where requests go and how answers are labelled.
pub(crate) struct Pipeline {
    requests: crossbeam_channel::Sender<Pending>,
    classes: usize,
    labels: &'static [&'static str],
    /// Whether every engine lane can run batches.
    health: Arc<engine::Health>,
    /// Set if the batcher thread died.
    batcher_died: Arc<AtomicBool>,
    /// The model's content version (`model_control::version_of`).
    version: String,
    /// Names of the network's input and output tensors, as in the file.
    io: (String, String),
    /// Largest batch: `MAX_BATCH_SIZE`, or less when the file fixes its batch dimension.
    max_batch: usize,
}

/// State shared by every connection.
pub(crate) struct App {
    config: Config,
    metrics: Metrics,
    admission: Arc<Admission>,
    decode: BlockingPool,
    pipeline: RwLock<Option<Arc<Pipeline>>>,
    draining: AtomicBool,
    /// SIGTERM arrived: not ready, still serving (`SHUTDOWN_DELAY_SECONDS`), then draining.
    stopping: AtomicBool,
    ids: (RandomState, AtomicU64),
    /// The subscriber this server's futures and threads run under (logs and spans).
    dispatch: tracing::Dispatch,
    /// The span export pipeline, when tracing is on (flushed last at shutdown).
    tracing: Option<trace::Tracing>,
    /// Reloads happen one at a time.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// The repository load that has not started yet, which new load requests join.
    pending_load: parking_lot::Mutex<Option<model_control::SharedReload>>,
    /// Batcher threads: the serving one and any retired by a reload that are still finishing.
    batchers: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Triton's statistics of the v2 models.
    v2_stats: v2::stats::Stats,
    /// The `model_info` series of the serving model.
    model_labels: parking_lot::Mutex<Option<telemetry::metrics::ModelLabels>>,
    hooks: Hooks,
}

impl App {
    /// The shared state, with the trace pipeline started when tracing is on.
    fn new(config: Config, hooks: Hooks) -> Result<Self, ServeError> {
        let metrics = Metrics::new();
        let queue = config.batching.max_queue_size;
        let tracing = match config.telemetry.trace.enabled {
            true => Some(trace::Tracing::start(
                &config.telemetry.trace,
                metrics.spans_dropped.clone(),
            )?),
            false => None,
        };
        let dispatch = telemetry::dispatch(&config.telemetry, tracing.as_ref());
        #[cfg(feature = "cuda")]
        if let config::Device::Cuda(gpu) = config.model.device {
            metrics.register_gpu(gpu);
        }
        let app = Self {
            admission: Admission::new(queue, metrics.queue_depth.clone()),
            decode: BlockingPool::new("decode", config.model.decode_threads, queue)?,
            metrics,
            config,
            pipeline: RwLock::new(None),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            ids: (RandomState::new(), AtomicU64::new(0)),
            dispatch,
            tracing,
            reloading: Arc::default(),
            pending_load: parking_lot::Mutex::default(),
            batchers: parking_lot::Mutex::default(),
            model_labels: parking_lot::Mutex::default(),
            v2_stats: Default::default(),
            hooks,
        };
        Ok(app)
    }

    /// Serves `pipeline` from now on: requests that hold the previous one finish on it, and its
    /// batcher stops when the last lets go. `model_info` follows.
    /// Returns `false` (and drops `pipeline`) when the server is shutting down.
    fn install(&self, pipeline: Pipeline, thread: std::thread::JoinHandle<()>) -> bool {
        let labels = telemetry::metrics::ModelLabels {
            device: self.config.model.device.to_string(),
            model: self.config.model.name.clone(),
            precision: self.config.model.precision.precision.label(),
            version: pipeline.version.clone(),
        };
        {
            let mut slot = self.pipeline.write();
            if self.draining() {
                drop(slot);
                self.retire(pipeline, thread);
                return false;
            }
            *slot = Some(Arc::new(pipeline));
        }
        let previous = self.model_labels.lock().replace(labels.clone());
        if let Some(old) = previous.filter(|old| *old != labels) {
            self.metrics.model_info.remove(&old);
        }
        self.metrics.model_info.get_or_create(&labels).set(1);
        let mut threads = self.batchers.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        true
    }

    /// A pipeline built and not used (a refused reload): its batcher stops once it is dropped.
    fn retire(&self, pipeline: Pipeline, thread: std::thread::JoinHandle<()>) {
        drop(pipeline);
        self.batchers.lock().push(thread);
    }

    /// Shutting down.
    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The pipeline, when loaded and not draining.
    fn pipeline(&self) -> Result<Arc<Pipeline>, ApiError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(ApiError::NotReady("draining"));
        }
        self.pipeline
            .read()
            .clone()
            .ok_or(ApiError::NotReady("the model is loading"))
    }

    /// Alive: every engine lane thread is running (a dead one needs a process restart, which
    /// a liveness probe failing on 503 brings about).
    fn alive(&self) -> Result<(), ApiError> {
        let Some(p) = self.pipeline.read().clone() else {
            return Ok(());
        };
        if p.health.any_dead() {
            return Err(ApiError::NotReady(
                "an engine lane died or lost its GPU; restart the process",
            ));
        }
        if p.batcher_died.load(Ordering::Acquire) {
            return Err(ApiError::NotReady(
                "the batcher thread died; restart the process",
            ));
        }
        Ok(())
    }

    /// Ready: loaded, warmed up, not draining, and every engine lane up.
    fn ready(&self) -> Result<(), ApiError> {
        self.alive()?;
        if self.stopping.load(Ordering::Acquire) {
            return Err(ApiError::NotReady("shutting down"));
        }
        let pipeline = self.pipeline()?;
        if !pipeline.health.all_up() {
            return Err(ApiError::NotReady("an engine lane is restarting"));
        }
        Ok(())
    }

    /// The client's `x-request-id` when it is sane (1–128 of `[A-Za-z0-9._:-]`), else a new one.
    fn request_id(&self, headers: &HeaderMap) -> String {
        let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let sane = |s: &&str| {
            (1..=128).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        };
        match given.filter(sane) {
            Some(id) => id.to_string(),
            None => {
                let n = self.ids.1.fetch_add(1, Ordering::Relaxed);
                format!(
                    "{:016x}{:016x}",
                    self.ids.0.hash_one(n),
                    self.ids.0.hash_one(!n)
                )
            }
        }
    }

    /// Checks the API key when keys are configured (constant-time per key).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let keys = &self.config.http.api_keys;
        if keys.is_empty() {
            return Ok(());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| header("x-api-key"))
            .ok_or(ApiError::Unauthorized)?;
        let matched = keys.iter().fold(false, |acc, k| {
            acc | constant_time_eq(k.as_bytes(), presented.trim().as_bytes())
        });
        matched.then_some(()).ok_or(ApiError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(vars: &[(&str, &str)]) -> App {
        let map: std::collections::HashMap<_, _> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        App::new(
            Config::from_lookup(|k| map.get(k).cloned()).unwrap(),
            Hooks::default(),
        )
        .unwrap()
    }

    #[test]
    fn request_ids_are_echoed_when_sane_and_made_otherwise() {
        let app = app(&[]);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123.X:y_z".parse().unwrap());
        assert_eq!(app.request_id(&h), "abc-123.X:y_z");
        h.insert("x-request-id", "bad id\twith<script>".parse().unwrap());
        let made = app.request_id(&h);
        assert_eq!(made.len(), 32);
        assert_ne!(made, app.request_id(&HeaderMap::new()));
    }

    #[test]
    fn api_keys_accept_bearer_or_header_and_refuse_others() {
        let app = app(&[("API_KEYS", "k1,secret2")]);
        let with = |name: &str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            app.authorize(&h)
        };
        assert!(with("authorization", "Bearer secret2").is_ok());
        assert!(with("x-api-key", "k1").is_ok());
        assert!(with("authorization", "Bearer k2").is_err());
        assert!(with("x-api-key", "k").is_err());
        assert!(app.authorize(&HeaderMap::new()).is_err());
        assert!(self::app(&[]).authorize(&HeaderMap::new()).is_ok());
    }
}
