//! The span exporter: `opentelemetry-otlp` over OTLP/HTTP protobuf on a blocking `reqwest`
//! client (rustls; no reactor needed on the SDK's batch thread), with the configured roots and
//! client identity. The rest of the trace pipeline is the core's (`telemetry::trace`).

use std::path::Path;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::trace::TraceConfig;
use crate::telemetry::metrics::ReasonLabel;
use crate::telemetry::trace::Tracing;

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A certificate or key file named by the configuration.
    #[error("{var}: {path}: {reason}")]
    Tls {
        /// The variable that named it.
        var: &'static str,
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The SDK refused the exporter's configuration.
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
}

/// Starts the trace pipeline exporting to `config.endpoint`.
pub fn start(
    config: &TraceConfig,
    dropped: Family<ReasonLabel, Counter>,
) -> Result<Tracing, TraceError> {
    let client = http_client(config)?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout);
    if config.gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = builder
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    Ok(Tracing::new(exporter, config, dropped))
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TraceError> {
    std::fs::read(path).map_err(|e| TraceError::Tls {
        var,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The blocking `reqwest` client the exporter sends with: rustls (ring), the export timeout,
/// and, when configured, only the given roots and a client identity. Built on a thread of its
/// own, as a blocking client must not be made or dropped inside the async runtime.
fn http_client(config: &TraceConfig) -> Result<reqwest::blocking::Client, TraceError> {
    // Another part of the process may have chosen first; either provider serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls_err = |var, path: &Path| {
        let path = path.display().to_string();
        move |e: reqwest::Error| TraceError::Tls {
            var,
            path,
            reason: e.to_string(),
        }
    };
    let mut builder = reqwest::blocking::Client::builder().timeout(config.timeout);
    if let Some(path) = &config.certificate {
        let var = "OTEL_EXPORTER_OTLP_CERTIFICATE";
        let roots =
            reqwest::Certificate::from_pem_bundle(&read(var, path)?).map_err(tls_err(var, path))?;
        builder = builder.tls_certs_only(roots);
    }
    if let Some((cert, key)) = &config.client_identity {
        let var = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
        let mut pem = read(var, cert)?;
        pem.extend(read("OTEL_EXPORTER_OTLP_CLIENT_KEY", key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(tls_err(var, cert))?;
        builder = builder.identity(identity);
    }
    std::thread::scope(|s| s.spawn(|| builder.build()).join())
        .map_err(|_| TraceError::Exporter("building the HTTP client panicked".into()))?
        .map_err(|e| TraceError::Exporter(e.to_string()))
}
