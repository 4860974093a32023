//! Distributed tracing on the OpenTelemetry SDK: W3C trace context in, OTLP/HTTP protobuf out.
//!
//! Data flow: the server's code makes ordinary `tracing` spans ([`spans`]: the request, its
//! decode, preprocess and queue wait, and one span per executed batch with links to the spans
//! of its requests). `tracing-opentelemetry` turns them into SDK spans; the SDK's
//! [`Sampler`] decides which are recorded; an ended span goes through [`export::Bounded`] (which
//! counts what it must drop) to the SDK's `BatchSpanProcessor`, whose own thread hands batches
//! to the exporter [`Tracing::new`] is given: the server gives `opentelemetry-otlp`'s HTTP
//! exporter on a blocking `reqwest` client (`inference_gateway::otlp`). A full queue or a failing collector drops spans, counted in
//! `trace_spans_dropped_total`, never requests; shutdown waits at most its deadline.
//!
//! Configuration is read once with the rest ([`TraceConfig`]) and handed to the SDK's builders;
//! the SDK itself reads `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (percent-decoded once, by it).

pub mod export;
mod sampler;
pub mod spans;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use crate::config::trace::{Root, Sampler, TraceConfig};
use crate::telemetry::metrics::ReasonLabel;

/// The running trace pipeline: the SDK's provider (its batch thread) and the tracer spans are
/// made with.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::Tracer,
}

impl Tracing {
    /// The batch processor thread and the provider over `exporter` (the transport that sends
    /// spans is the caller's choice). `dropped` counts spans lost, by reason (`queue_full`,
    /// `export_failed`).
    pub fn new<E>(exporter: E, config: &TraceConfig, dropped: Family<ReasonLabel, Counter>) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        let processor = export::bounded(exporter, config.max_queue, dropped, |exporter| {
            let batch = BatchConfigBuilder::default()
                // Room for every span the bound admits: the SDK's own queue never drops.
                .with_max_queue_size(config.max_queue + config.max_batch)
                .with_max_export_batch_size(config.max_batch.min(config.max_queue))
                .with_scheduled_delay(config.delay)
                .build();
            BatchSpanProcessor::new(exporter, batch)
        });
        let resource = Resource::builder_empty()
            .with_attributes(
                config
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(config.sampler.to_sdk())
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("inference-gateway");
        Tracing { provider, tracer }
    }

    /// The tracer `tracing-opentelemetry` records spans with.
    pub fn tracer(&self) -> &opentelemetry_sdk::trace::Tracer {
        &self.tracer
    }

    /// Exports what is queued and stops the batch thread, waiting at most `deadline` (a hung
    /// collector cannot hold shutdown longer). Blocks: call it off the async runtime.
    pub fn shutdown(&self, deadline: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(deadline) {
            tracing::warn!(error = %e, "spans not flushed at shutdown");
        }
    }
}
