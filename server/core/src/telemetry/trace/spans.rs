//! The spans the server makes, as `tracing` spans that `tracing-opentelemetry` exports.
//!
//! A request's span continues the caller's W3C `traceparent` (through the SDK's
//! `TraceContextPropagator`); its children (`decode`, `preprocess` in [`crate::imaging`],
//! `queue` from enqueue to batch start) nest under it as ordinary `tracing` children. A batch
//! serves many traces, so its span ([`batch`]) starts a trace of its own, linked to the span of
//! every recorded request in it. Spans are made under target `gateway`, which the export layer
//! selects.

use std::borrow::Cow;
use std::net::SocketAddr;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The name of a batch span (the sampler always records it).
pub const BATCH_SPAN: &str = "inference.batch";

/// `METHOD route`, static for the routes and methods that carry traffic.
fn span_name(method: &'static str, route: &'static str) -> Cow<'static, str> {
    match (method, route) {
        ("POST", "/predict") => Cow::Borrowed("POST /predict"),
        ("GET", "/health") => Cow::Borrowed("GET /health"),
        ("GET", "/ready") => Cow::Borrowed("GET /ready"),
        ("GET", "/metrics") => Cow::Borrowed("GET /metrics"),
        _ => Cow::Owned(format!("{method} {route}")),
    }
}

/// The server span of one request, continuing the caller's `traceparent` when it is valid
/// (`headers` reads the request's headers, whatever the transport). `quiet` requests (probes,
/// scrapes) get no span unless the caller sends a `traceparent`.
pub fn request(
    method: &'static str,
    route: &'static str,
    headers: &dyn Extractor,
    peer: SocketAddr,
    port: u16,
    quiet: bool,
) -> Span {
    let traced = headers.get("traceparent").is_some();
    if quiet && !traced {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "gateway::http",
        "request",
        otel.name = span_name(method, route).as_ref(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        url.scheme = "http",
        network.protocol.version = "1.1",
        server.port = i64::from(port),
        client.address = %peer.ip(),
        request.id = Empty,
        user_agent.original = Empty,
        error.type = Empty,
    );
    if traced {
        let parent = TraceContextPropagator::new().extract(headers);
        // Only fails when no export layer is installed; the span is then not exported anyway.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the answer on a request span: its status, and error status from 500 up.
pub fn respond(span: &Span, status: u16, request_id: &str, user_agent: Option<&str>) {
    // Integers go in as i64: tracing-opentelemetry records other integer types as text.
    span.record("http.response.status_code", i64::from(status));
    span.record("request.id", request_id);
    if let Some(ua) = user_agent {
        span.record("user_agent.original", ua);
    }
    if status >= 500 {
        span.record("error.type", tracing::field::display(status));
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace and span id of a span that has them (recorded or not; absent with tracing off),
/// and whether it is recorded and exported.
pub fn ids(span: &Span) -> Option<(TraceId, SpanId, bool)> {
    let sc = span_context(span);
    sc.is_valid()
        .then(|| (sc.trace_id(), sc.span_id(), sc.is_sampled()))
}

/// What a batch span links to: the span of a recorded request.
pub fn link(span: &Span) -> Option<SpanContext> {
    let sc = span_context(span);
    sc.is_sampled().then_some(sc)
}

fn span_context(span: &Span) -> SpanContext {
    if span.is_none() {
        return SpanContext::empty_context();
    }
    span.context().span().span_context().clone()
}

/// The span of a request's wait in the queue: from now until the batcher starts its batch.
pub fn queue() -> Span {
    tracing::info_span!(target: "gateway::batching", "queue", inference.batch_size = Empty)
}

/// The span of one executed batch: a new trace, linked to `links` (the recorded requests).
pub fn batch(links: Vec<SpanContext>, size: usize, lane: usize, device: &str) -> Span {
    let span = tracing::info_span!(
        target: "gateway::batching",
        parent: None,
        BATCH_SPAN,
        inference.batch_size = size as i64,
        inference.device = device,
        inference.lane = lane as i64,
        inference.traced_requests = links.len() as i64,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    for l in links {
        span.add_link(l);
    }
    span
}

/// Marks a batch span failed.
pub fn batch_failed(span: &Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", tracing::field::display(error));
}
