//! What the server tells its operators: `metrics` (every metric in one typed struct, both
//! exposition formats), [`trace`] (spans exported over OTLP/HTTP from their own thread), and the
//! logging set up here: `LOG_FORMAT=json` writes one object per line, `text` is for people.

pub(crate) mod metrics;
pub mod trace;

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber. Returns `false` if one was already installed (tests).
pub fn init_logging(config: &TelemetryConfig) -> bool {
    let builder = tracing_subscriber::fmt()
        .with_max_level(config.log_level)
        .with_target(false);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
            .is_ok(),
        LogFormat::Text => builder.try_init().is_ok(),
    }
}
