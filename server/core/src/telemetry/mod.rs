//! What the server tells its operators: [`metrics`] (every metric in one typed struct, served as
//! OpenMetrics), [`trace`] (spans exported over OTLP/HTTP by the OpenTelemetry SDK) and logs.
//!
//! Spans and logs are one instrumentation system, `tracing`: one [`dispatch`] per server holds
//! the log layer (`LOG_FORMAT=json`: one object per line; `text` is for people; events only,
//! at `LOG_LEVEL`) and, with tracing on, the `tracing-opentelemetry` layer (the server's spans,
//! and warnings and errors as events on them). Each server's futures and threads run under its
//! own dispatch, so tests can run several servers in one process, each with its own exporter.

pub mod metrics;
pub mod trace;

use tracing::{Dispatch, Level};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, TelemetryConfig};

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

fn log_layer(config: &TelemetryConfig) -> Boxed {
    let level = config.log_level;
    let events = filter_fn(move |m| m.is_event() && *m.level() <= level);
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    match config.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(events)
            .boxed(),
        LogFormat::Text => fmt.with_filter(events).boxed(),
    }
}

/// The subscriber one server's code runs under: logs, plus span export when `tracing` is given.
pub fn dispatch(config: &TelemetryConfig, tracing: Option<&trace::Tracing>) -> Dispatch {
    let mut layers = vec![log_layer(config)];
    if let Some(t) = tracing {
        let ours = filter_fn(|m| {
            if m.is_span() {
                m.target().starts_with("gateway")
            } else {
                *m.level() <= Level::WARN
            }
        });
        let otel = tracing_opentelemetry::layer()
            .with_tracer(t.tracer().clone())
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            // Spans are read through their handles (`spans::ids`), never through
            // `Context::current()`: no OTel context push and pop on every enter and exit.
            .with_context_activation(false)
            .with_filter(ours);
        layers.push(otel.boxed());
    }
    Dispatch::new(Registry::default().with(layers))
}

/// Installs the process-wide subscriber (logs only: a server's spans go through its own
/// [`dispatch`]). Returns `false` if one was already installed (tests).
pub fn init_logging(config: &TelemetryConfig) -> bool {
    tracing::dispatcher::set_global_default(dispatch(config, None)).is_ok()
}
