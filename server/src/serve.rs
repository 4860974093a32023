//! The composition root: [`run`] wires telemetry, the model slot, the service, both transports
//! and the reload triggers; accepts connections at once, loads the model in the background, and
//! shuts down in order within `GRACEFUL_SHUTDOWN_TIMEOUT`. Every background task it starts is
//! stopped or joined before it returns, whether it returns on shutdown or on a failed first load.

mod triggers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber;

use crate::config::Config;
use crate::lifecycle::LoadError;
use crate::service::{App, Hooks, Telemetry};
use crate::telemetry::{self, metrics::Metrics};
use crate::{grpc, http};

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first model could not be loaded (found, generated, accepted, quantised, started).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Threads or sockets.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Tracing is on and its exporter could not be built (a certificate, the endpoint).
    #[error("tracing: {0}")]
    Trace(#[from] crate::otlp::TraceError),
}

/// The sockets the server answers on: HTTP (`/predict`, probes, metrics, KServe v2 REST) and,
/// optionally, KServe v2 gRPC. A bare `TcpListener` is HTTP only.
pub struct Listeners {
    /// HTTP/1.1.
    pub http: TcpListener,
    /// gRPC (HTTP/2), when served.
    pub grpc: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Self {
        Listeners { http, grpc: None }
    }
}

/// Serves on `listeners` until `shutdown` resolves, then drains and stops.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with(config, listeners, shutdown, Hooks::default()).await
}

/// [`run`] with test [`Hooks`].
pub async fn run_with(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
    hooks: Hooks,
) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let tracing = match config.telemetry.trace.enabled {
        true => Some(crate::otlp::start(
            &config.telemetry.trace,
            metrics.spans_dropped.clone(),
        )?),
        false => None,
    };
    let dispatch = telemetry::dispatch(&config.telemetry, tracing.as_ref());
    #[cfg(feature = "cuda")]
    if let crate::config::Device::Cuda(gpu) = config.model.device {
        metrics.register_gpu(gpu);
    }
    let telemetry = Telemetry {
        metrics,
        tracing,
        dispatch: dispatch.clone(),
    };
    let app = Arc::new(App::new(config, telemetry, hooks)?);
    serve(app, listeners.into(), shutdown)
        .with_subscriber(dispatch)
        .await
}

/// The server's life under its own subscriber: accept until `shutdown`, then drain and stop.
async fn serve(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    // First: if it fails, nothing has been started yet.
    let triggers = triggers::start(&app)?;
    let Listeners {
        http: listener,
        grpc,
    } = listeners;
    let grpc = grpc.map(|l| grpc::spawn(app.clone(), l));
    if let Some(t) = app
        .config
        .telemetry
        .trace
        .enabled
        .then_some(&app.config.telemetry.trace)
    {
        tracing::info!(endpoint = %t.endpoint, sampler = ?t.sampler, "exporting traces");
    }
    let models = app.models.clone();
    let loader = async move { models.load_first().await };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown, loader);
    let cap = crate::conn::Cap::new(app.config.http.conn.max_connections);
    let mut loaded = false;
    let outcome = loop {
        tokio::select! {
            accepted = listener.accept() => http::accept(&app, accepted, &graceful, &cap),
            first = &mut loader, if !loaded => match first {
                Ok(()) => {
                    loaded = true;
                    tracing::info!(model = %app.config.model.name, "ready");
                }
                Err(e) => break Err(ServeError::from(e)),
            },
            () = &mut shutdown => break Ok(()),
        }
    };
    if outcome.is_ok() {
        delay(&app, &listener, &graceful, &cap).await;
    }
    drain(&app, listener, graceful, grpc).await;
    triggers.stop().await;
    flush_traces(&app).await;
    tracing::info!("stopped");
    outcome
}

/// `SHUTDOWN_DELAY_SECONDS`: not ready, still accepting and serving, for load balancers that
/// learn only from `/ready`.
async fn delay(
    app: &Arc<App>,
    listener: &TcpListener,
    graceful: &GracefulShutdown,
    cap: &crate::conn::Cap,
) {
    let delay = app.config.http.conn.shutdown_delay;
    if delay.is_zero() {
        return;
    }
    app.models.slot().stop();
    tracing::info!(
        delay_s = delay.as_secs_f64(),
        "shutting down: not ready, still serving"
    );
    let until = tokio::time::sleep(delay);
    tokio::pin!(until);
    loop {
        tokio::select! {
            accepted = listener.accept() => http::accept(app, accepted, graceful, cap),
            () = &mut until => break,
        }
    }
}

/// Last: the spans of every drained request are queued by now.
async fn flush_traces(app: &Arc<App>) {
    if app.tracing.is_none() {
        return;
    }
    let grace = app
        .config
        .http
        .graceful_shutdown_timeout
        .min(Duration::from_secs(5));
    let app = app.clone();
    let flush = move || app.tracing.as_ref().map(|t| t.shutdown(grace));
    let _ = tokio::task::spawn_blocking(flush).await;
}

/// Not-ready first, stop accepting, drain HTTP and gRPC, flush the batcher, join the engine.
async fn drain(
    app: &App,
    listener: TcpListener,
    graceful: GracefulShutdown,
    grpc: Option<grpc::Grpc>,
) {
    let grace = app.config.http.graceful_shutdown_timeout;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: not ready, draining"
    );
    app.models.slot().drain();
    drop(listener);
    let grpc = async {
        if let Some(g) = grpc {
            g.shutdown(deadline).await;
        }
    };
    let http = async {
        if tokio::time::timeout_at(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at the shutdown deadline; closing them");
        }
    };
    tokio::join!(http, grpc);
    // The batcher sees its queue close once handlers let go. Join it, and any batcher a reload
    // retired that is still finishing its last batches.
    let threads = app.models.slot().close();
    let joined =
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())));
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        tracing::warn!("the engine did not finish before the shutdown deadline");
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::imaging::DecodeError;

    /// A refusal is counted under the same `status` label whichever transport it came by.
    #[test]
    fn both_transports_label_a_refusal_alike() {
        use engine::EngineError as E;
        let kinds = [
            ApiError::bad_request("x", "m"),
            ApiError::Unauthorized,
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::ImageTooLarge("x".into()),
            DecodeError::Unsupported("12-bit".into()).into(),
            ApiError::QueueFull(1),
            ApiError::DecodeBusy,
            ApiError::NotReady("x"),
            ApiError::Deadline(std::time::Duration::from_secs(1)),
            ApiError::NotFound,
            ApiError::ModelNotFound("m".into()),
            ApiError::MethodNotAllowed,
            ApiError::NotImplemented("X"),
            ApiError::Engine(E::Restarting("x".into())),
            ApiError::Engine(E::DeviceLost("x".into())),
            ApiError::Engine(E::ShutDown),
            ApiError::Engine(E::Inference("x".into())),
        ];
        for e in kinds {
            let http = crate::http::status::status(&e).as_u16();
            assert_eq!(crate::grpc::status::label(&e), http, "{e:?}");
        }
    }
}
