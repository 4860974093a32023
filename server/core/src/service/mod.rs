//! The protocol-neutral service: [`App`], the one handle both transports call, with the
//! readiness of the model, the API key check, request ids, and what every answer records
//! ([`record`]); the repository API's logic ([`repository`]). Keys and ids arrive here as plain
//! strings: reading them out of a request's headers is each transport's business.

pub mod record;
pub mod repository;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::batching::admission::{Admission, Permit};
use crate::batching::batcher::BatcherFault;
use crate::config::Config;
use crate::error::ApiError;
use crate::imaging::pool::BlockingPool;
pub use crate::lifecycle::Pipeline;
use crate::lifecycle::{BackendWrapper, Models, Parts};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace;
use crate::v2::stats::Stats;

/// State shared by every connection.
pub struct App {
    /// The configuration, read once at start.
    pub config: Config,
    /// Every metric the server exports.
    pub metrics: Metrics,
    /// Places in the queue: admitted inputs hold one each.
    pub admission: Arc<Admission>,
    /// The bounded pool that decodes and preprocesses images.
    pub decode: BlockingPool,
    /// The model slot and its loads.
    pub models: Arc<Models>,
    ids: (RandomState, AtomicU64),
    /// The span export pipeline, when tracing is on (flushed last at shutdown).
    pub tracing: Option<trace::Tracing>,
    /// Triton's statistics of the v2 models.
    pub v2_stats: Stats,
    /// Told `(route, status)` of every answer (a test seam).
    pub on_response: Option<ResponseHook>,
}

/// Told `(route, status)` of every response the server produces, as it is logged.
pub type ResponseHook = Arc<dyn Fn(&'static str, u16) + Send + Sync>;

/// Seams for tests of [`crate::run_with`]; [`crate::run`] uses none.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Wraps every backend a lane builds (at start and after a failure).
    pub wrap_backend: Option<BackendWrapper>,
    /// Runs in the batcher thread before each batch starts.
    pub batcher_fault: Option<BatcherFault>,
    /// Told `(route, status)` of every response the server produces, as it is logged (tests
    /// count accepted requests exactly with it).
    pub on_response: Option<ResponseHook>,
}

/// The server's telemetry, as `serve` wired it.
pub struct Telemetry {
    /// Every metric the server exports.
    pub metrics: Metrics,
    /// The span export pipeline, when tracing is on.
    pub tracing: Option<trace::Tracing>,
    /// The subscriber the server's futures and threads run under.
    pub dispatch: tracing::Dispatch,
}

impl App {
    /// The shared state, over the telemetry `serve` wired; the model slot empty.
    pub fn new(config: Config, telemetry: Telemetry, hooks: Hooks) -> std::io::Result<Self> {
        let Telemetry {
            metrics,
            tracing,
            dispatch,
        } = telemetry;
        let queue = config.batching.max_queue_size;
        let admission = Admission::new(queue, metrics.queue_depth.clone());
        let models = Models::new(Parts {
            config: config.clone(),
            metrics: metrics.clone(),
            admission: admission.clone(),
            dispatch: dispatch.clone(),
            wrap_backend: hooks.wrap_backend,
            batcher_fault: hooks.batcher_fault,
        });
        let app = Self {
            admission,
            decode: BlockingPool::new("decode", config.model.decode_threads, queue)?,
            metrics,
            config,
            models: Arc::new(models),
            ids: (RandomState::new(), AtomicU64::new(0)),
            tracing,
            v2_stats: Default::default(),
            on_response: hooks.on_response,
        };
        Ok(app)
    }

    /// Shutting down.
    pub fn draining(&self) -> bool {
        self.models.slot().draining()
    }

    /// The pipeline, when loaded and not draining.
    pub fn pipeline(&self) -> Result<Arc<Pipeline>, ApiError> {
        self.models.slot().pipeline()
    }

    /// Alive: every engine lane and the batcher are running.
    pub fn alive(&self) -> Result<(), ApiError> {
        self.models.slot().alive()
    }

    /// Ready: loaded, warmed up, not shutting down, and every engine lane up.
    pub fn ready(&self) -> Result<(), ApiError> {
        self.models.slot().ready()
    }

    /// A place in the queue for one input, or 429 at once (`MAX_QUEUE_SIZE`).
    pub fn admit(&self) -> Result<Permit, ApiError> {
        self.admission
            .try_admit()
            .ok_or(ApiError::QueueFull(self.admission.limit()))
    }

    /// The deadline of a request that arrived at `started` (`REQUEST_TIMEOUT` later).
    pub fn deadline(&self, started: Instant) -> Instant {
        started + self.config.http.request_timeout
    }

    /// `work`'s result, or 504 once the deadline of a request that arrived at `started` passes
    /// (`work` is dropped then: what it waits for is cancelled).
    pub async fn by_deadline<T>(
        &self,
        started: Instant,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout_at(self.deadline(started).into(), work)
            .await
            .map_err(|_| ApiError::Deadline(self.config.http.request_timeout))?
    }

    /// The client's `x-request-id` when it is sane (1–128 of `[A-Za-z0-9._:-]`), else a new one.
    pub fn request_id(&self, given: Option<&str>) -> String {
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

    /// Checks the key a client `presented` when keys are configured (constant-time per key).
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), ApiError> {
        let keys = &self.config.http.api_keys;
        if keys.is_empty() {
            return Ok(());
        }
        let presented = presented.ok_or(ApiError::Unauthorized)?;
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
        let config = Config::from_lookup(|k| map.get(k).cloned()).unwrap();
        let telemetry = Telemetry {
            metrics: Metrics::new(),
            tracing: None,
            dispatch: tracing::Dispatch::none(),
        };
        App::new(config, telemetry, Hooks::default()).unwrap()
    }

    #[test]
    fn request_ids_are_echoed_when_sane_and_made_otherwise() {
        let app = app(&[]);
        assert_eq!(app.request_id(Some("abc-123.X:y_z")), "abc-123.X:y_z");
        let made = app.request_id(Some("bad id\twith<script>"));
        assert_eq!(made.len(), 32);
        assert_ne!(made, app.request_id(None));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_cut_off_with_504_and_a_full_queue_refuses_at_once() {
        let app = app(&[("REQUEST_TIMEOUT", "3"), ("MAX_QUEUE_SIZE", "1")]);
        let started = Instant::now();
        let quick = app.by_deadline(started, async { Ok(7) }).await;
        assert_eq!(quick.unwrap(), 7);
        let slow = app.by_deadline(started, std::future::pending::<Result<(), ApiError>>());
        let err = slow.await.unwrap_err();
        assert!(
            matches!(err, ApiError::Deadline(d) if d.as_secs() == 3),
            "{err}"
        );
        let _held = app.admit().unwrap();
        assert!(matches!(app.admit(), Err(ApiError::QueueFull(1))));
    }

    #[test]
    fn api_keys_are_checked_when_configured() {
        let app = app(&[("API_KEYS", "k1,secret2")]);
        assert!(app.authorize(Some("secret2")).is_ok());
        assert!(app.authorize(Some(" k1 ")).is_ok());
        assert!(app.authorize(Some("k2")).is_err());
        assert!(app.authorize(Some("k")).is_err());
        assert!(app.authorize(None).is_err());
        assert!(self::app(&[]).authorize(None).is_ok());
    }
}
