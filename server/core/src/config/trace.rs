//! What tracing is configured to do: where spans go, how they are batched, and which are
//! sampled. `config::otel` reads it from `ENABLE_TRACING` and the `OTEL_*` variables;
//! `telemetry::trace` hands it to the SDK.

use std::path::PathBuf;
use std::time::Duration;

/// Where spans go and how they are batched (from `ENABLE_TRACING` and the `OTEL_*` variables).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceConfig {
    /// `ENABLE_TRACING` (and not `OTEL_SDK_DISABLED`, not `OTEL_TRACES_EXPORTER=none`).
    pub enabled: bool,
    /// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; default `http://localhost:4318/v1/traces`.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` (ms; default 10 s): one export, retries included.
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `gzip` or `none` (default).
    pub gzip: bool,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`: the PEM roots an `https` collector is
    /// verified against (instead of the system's).
    pub certificate: Option<PathBuf>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE` and `…_CLIENT_KEY` (PEM): mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
    /// `service.name` (`OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`,
    /// else `APP_NAME`), `service.version` (likewise, else `APP_VERSION`), and the rest of
    /// `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded).
    pub resource: Vec<(String, String)>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE` (default 2048).
    pub max_queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (default 512).
    pub max_batch: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms; default 5000).
    pub delay: Duration,
}

/// Whether a new request span is recorded and exported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, decided by the trace id alone.
    Ratio(f64),
    /// `parentbased_*`: follow the caller's decision; for new traces use the inner sampler.
    ParentBased(Root),
}

/// The root sampler of a parent-based one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    /// `parentbased_always_on` (the OpenTelemetry default).
    AlwaysOn,
    /// `parentbased_always_off`.
    AlwaysOff,
    /// `parentbased_traceidratio`.
    Ratio(f64),
}

impl Sampler {
    /// Parses the variables' values (`arg` is the ratio, default 1.0).
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg {
                None => Ok(1.0),
                Some(a) => match a.trim().parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "OTEL_TRACES_SAMPLER_ARG={a:?}: expected a ratio from 0 to 1"
                    )),
                },
            }
        };
        Ok(
            match name.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                None | Some("parentbased_always_on") => Sampler::ParentBased(Root::AlwaysOn),
                Some("always_on") => Sampler::AlwaysOn,
                Some("always_off") => Sampler::AlwaysOff,
                Some("traceidratio") => Sampler::Ratio(ratio()?),
                Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
                Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(ratio()?)),
                Some(other) => {
                    return Err(format!(
                    "OTEL_TRACES_SAMPLER={other:?}: expected always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ))
                }
            },
        )
    }
}
