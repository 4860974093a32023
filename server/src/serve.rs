//! Starting, serving and stopping: [`run`] accepts connections at once, builds the engine in the
//! background, and shuts down in order within `GRACEFUL_SHUTDOWN_TIMEOUT`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::{Backend, BackendFactory, CpuBackend, Lanes, ModelSource};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber;

use crate::batching::batcher::{self, BatcherConfig};
use crate::config::{Config, Device};
use crate::{http, App, Pipeline};

/// Batch buffers per CPU lane: one. With a single CPU lane a second, pre-formed batch would only
/// be smaller than what waits when the lane frees up.
const CPU_BUFFERS_PER_LANE: usize = 1;
/// Batch buffers per GPU lane: two, so the next batch fills while the GPU runs this one.
#[cfg(feature = "cuda")]
const GPU_BUFFERS_PER_LANE: usize = 2;

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model could not be found, generated or accepted.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// Threads or sockets.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Tracing is on and its exporter could not be built (a certificate, the endpoint).
    #[error("tracing: {0}")]
    Trace(#[from] crate::trace::TraceError),
    /// `MODEL_PRECISION=int8` and the model could not be quantised, or was refused.
    #[error("int8: {0}")]
    Precision(#[from] crate::precision::PrecisionError),
}

/// Wraps each lane's freshly built backend: `(lane, backend) → backend` (fault-injection tests).
pub type BackendWrapper = Arc<
    dyn Fn(usize, Box<dyn Backend>) -> Result<Box<dyn Backend>, engine::EngineError> + Send + Sync,
>;

/// Called by the batcher thread with the number of each batch it starts (fault-injection
/// tests: a panic here kills the batcher thread).
pub type BatcherFault = Arc<dyn Fn(usize) + Send + Sync>;

/// Seams for tests of [`run_with`]; [`run`] uses none.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Wraps every backend a lane builds (at start and after a failure).
    pub wrap_backend: Option<BackendWrapper>,
    /// Runs in the batcher thread before each batch starts.
    pub batcher_fault: Option<BatcherFault>,
    /// Told `(route, status)` of every response the server produces, as it is logged (tests
    /// count accepted requests exactly with it).
    pub on_response: Option<Arc<dyn Fn(&'static str, u16) + Send + Sync>>,
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
    let app = Arc::new(App::new(config, hooks)?);
    let dispatch = app.dispatch.clone();
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
    let Listeners {
        http: listener,
        grpc,
    } = listeners;
    let grpc = grpc.map(|l| crate::grpc::spawn(app.clone(), l));
    if let Some(t) = app
        .config
        .telemetry
        .trace
        .enabled
        .then_some(&app.config.telemetry.trace)
    {
        tracing::info!(endpoint = %t.endpoint, sampler = ?t.sampler, "exporting traces");
    }
    let loader = tokio::task::spawn_blocking({
        let app = app.clone();
        move || start_pipeline(&app)
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown, loader);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let _watcher = watch_model(&app, reload_tx.clone());
    let worker = crate::model_control::reload_worker(app.clone(), reload_rx);
    let worker = tokio::spawn(worker.with_current_subscriber());
    #[cfg(unix)]
    reload_on_sighup(reload_tx)?;
    let cap = crate::conn::Cap::new(app.config.http.conn.max_connections);
    let mut loaded = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => accept(&app, accepted, &graceful, &cap),
            first = &mut loader, if !loaded => {
                let (pipeline, thread) = first.map_err(|e| std::io::Error::other(e.to_string()))??;
                app.install(pipeline, thread);
                loaded = true;
                tracing::info!(model = %app.config.model.name, "ready");
            }
            () = &mut shutdown => break,
        }
    }
    let delay = app.config.http.conn.shutdown_delay;
    if !delay.is_zero() {
        app.stopping.store(true, Ordering::Release);
        tracing::info!(
            delay_s = delay.as_secs_f64(),
            "shutting down: not ready, still serving"
        );
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                accepted = listener.accept() => accept(&app, accepted, &graceful, &cap),
                () = &mut until => break,
            }
        }
    }
    drain(&app, listener, graceful, grpc).await;
    worker.abort();
    if app.tracing.is_some() {
        // Last: the spans of every drained request are queued by now.
        let grace = app
            .config
            .http
            .graceful_shutdown_timeout
            .min(Duration::from_secs(5));
        let app = app.clone();
        let flush = move || app.tracing.as_ref().map(|t| t.shutdown(grace));
        let _ = tokio::task::spawn_blocking(flush).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves one accepted HTTP connection under the open-connection cap; past it, the client reads
/// a 503 `too_many_connections` and the connection closes.
fn accept(
    app: &Arc<App>,
    accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    graceful: &GracefulShutdown,
    cap: &crate::conn::Cap,
) {
    let (mut stream, peer) = match accepted {
        Ok(a) => a,
        Err(e) => return tracing::warn!(error = %e, "accept failed"),
    };
    let Some(slot) = cap.try_take() else {
        app.metrics.reject("too_many_connections");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let refusal = stream.write_all(crate::conn::HTTP_REFUSAL);
            let _ = tokio::time::timeout(Duration::from_secs(1), refusal).await;
        });
        return;
    };
    let _ = stream.set_nodelay(true);
    let conn = &app.config.http.conn;
    let (head_timeout, stream) = (
        conn.handshake_timeout,
        crate::conn::Counted::new(stream, slot, conn.send_timeout),
    );
    let app = app.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(http::handle(app, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    let conn = graceful.watch(conn);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        .with_current_subscriber(),
    );
}

/// Not-ready first, stop accepting, drain HTTP and gRPC, flush the batcher, join the engine.
async fn drain(
    app: &App,
    listener: TcpListener,
    graceful: GracefulShutdown,
    grpc: Option<crate::grpc::Grpc>,
) {
    let grace = app.config.http.graceful_shutdown_timeout;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: not ready, draining"
    );
    {
        // Under the pipeline lock: a reload finishing now either swapped in before this (and is
        // drained like the rest) or sees `draining` and drops its new pipeline.
        let _slot = app.pipeline.write();
        app.draining.store(true, Ordering::Release);
    }
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
    app.pipeline.write().take();
    let threads = std::mem::take(&mut *app.batchers.lock());
    let joined =
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())));
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        tracing::warn!("the engine did not finish before the shutdown deadline");
    }
}

/// With `RELOAD=true`, watches `MODEL_PATH`; the watcher lives as long as the value returned.
fn watch_model(
    app: &App,
    tx: tokio::sync::mpsc::Sender<&'static str>,
) -> Option<Box<dyn notify::Watcher + Send>> {
    if !app.config.model.reload {
        return None;
    }
    let Some(path) = &app.config.model.path else {
        tracing::warn!(
            "RELOAD=true watches MODEL_PATH, which is not set: the built-in model is not watched"
        );
        return None;
    };
    match crate::model_control::watch(path, tx) {
        Ok(w) => {
            tracing::info!(path = %path.display(), "watching the model file (RELOAD=true)");
            Some(w)
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot watch the model file; SIGHUP and the repository API still reload");
            None
        }
    }
}

/// `SIGHUP` asks for a reload (as it does of nginx or Prometheus).
#[cfg(unix)]
fn reload_on_sighup(tx: tokio::sync::mpsc::Sender<&'static str>) -> std::io::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(
        async move {
            while hup.recv().await.is_some() {
                let _ = tx.try_send("sighup");
            }
        }
        .with_current_subscriber(),
    );
    Ok(())
}

/// The lane backend factory for the configured device, and how many batch buffers each lane
/// gets.
fn backends(
    app: &App,
    model: &models::LoadedModel,
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))] max_batch: usize,
) -> Result<(BackendFactory, usize), ServeError> {
    let mc = &app.config.model;
    match mc.device {
        Device::Cpu => {
            let cpu = engine::CpuConfig {
                spinning: mc.engine_spin,
                // The bytes that were checked and hashed: a lane rebuilt later gets the same
                // model even if the file has been replaced since.
                ..engine::CpuConfig::new(
                    ModelSource::Bytes(model.bytes.clone()),
                    mc.engine_threads,
                    models::IMAGENET_NORMALIZATION,
                )
            };
            let factory: BackendFactory =
                Arc::new(move |_lane| Ok(Box::new(CpuBackend::new(&cpu)?) as Box<dyn Backend>));
            Ok((factory, CPU_BUFFERS_PER_LANE))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            let prepared = Arc::new(models::prepare_for_gpu_from(&model.bytes)?);
            let cfg = engine::gpu::cuda::CudaConfig {
                ordinal: ordinal as usize,
                max_batch,
                normalization: models::IMAGENET_NORMALIZATION,
                tune_cache: Some(mc.cache_dir.join("conv-algos.tsv")),
                graphs: true,
            };
            let factory: BackendFactory =
                Arc::new(move |lane| engine::gpu::cuda::backend(prepared.clone(), &cfg, lane));
            Ok((factory, GPU_BUFFERS_PER_LANE))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(engine::EngineError::DeviceUnavailable(
            "this build has no CUDA engine (build with --features cuda)".into(),
        )
        .into()),
    }
}

/// Loads (or generates) the model, starts the lanes (warmed up) and the batcher, logging under
/// the server's subscriber (it runs on a blocking thread). Blocking.
pub(crate) fn start_pipeline(app: &App) -> Result<(Pipeline, JoinHandle<()>), ServeError> {
    tracing::dispatcher::with_default(&app.dispatch, || build_pipeline(app))
}

fn build_pipeline(app: &App) -> Result<(Pipeline, JoinHandle<()>), ServeError> {
    let started = Instant::now();
    let mc = &app.config.model;
    engine::init_onnx_runtime(&mc.ort_dylib)?;
    let mut model = models::load(
        mc.path.as_deref(),
        &mc.cache_dir,
        mc.seed,
        mc.engine_threads,
    )?;
    // The file's version, whatever precision its lanes run at.
    let version = crate::model_control::version_of(&model.bytes);
    model.bytes = crate::precision::engine_bytes(mc, &model.bytes, model.origin == "builtin")?;
    let sig = &model.signature;
    let max_batch = app
        .config
        .batching
        .max_batch_size
        .min(sig.fixed_batch.unwrap_or(usize::MAX));
    let (factory, buffers_per_lane) = backends(app, &model, max_batch)?;
    let warmup = if mc.warmup {
        engine::warmup_batch_sizes(max_batch)
    } else {
        Vec::new()
    };
    let factory = match app.hooks.wrap_backend.clone() {
        Some(wrap) => Arc::new(move |lane| wrap(lane, factory(lane)?)) as BackendFactory,
        None => factory,
    };
    let mut lanes = Lanes::start(1, factory, max_batch, buffers_per_lane, &warmup)?;
    let health = lanes.health();
    let classes = lanes.classes();
    let buffers = lanes.take_buffers();
    let (tx, rx) = crossbeam_channel::bounded(app.config.batching.max_queue_size);
    let config = BatcherConfig {
        max_batch,
        max_delay: app.config.batching.max_batch_delay,
        fault: app.hooks.batcher_fault.clone(),
    };
    let telemetry = batcher::Telemetry {
        metrics: app.metrics.clone(),
        dispatch: app.dispatch.clone(),
        device: mc.device.to_string().into(),
    };
    let (thread, batcher_died) =
        batcher::spawn(config, lanes, buffers, rx, app.admission.clone(), telemetry)?;
    tracing::info!(
        precision = mc.precision.precision.label(),
        path = %model.path.display(),
        input = %sig.input,
        output = %sig.output,
        classes,
        max_batch,
        device = %mc.device,
        warmup = ?warmup,
        version = %version,
        elapsed_s = started.elapsed().as_secs_f64(),
        "model loaded"
    );
    let labels: &'static [&'static str] = if classes == models::NUM_CLASSES {
        models::imagenet_labels()
    } else {
        &[]
    };
    Ok((
        Pipeline {
            requests: tx,
            classes,
            labels,
            health,
            batcher_died,
            version,
            io: (sig.input.clone(), sig.output.clone()),
            max_batch,
        },
        thread,
    ))
}
