//! What every answer records, whatever its transport: the request metrics (with the trace as
//! exemplar), the server span's answer, the access-log line, the response hook; and the log
//! lines of a refusal.

use std::time::Duration;

use tracing::Span;

use super::App;
use crate::batching::queue::InferOutput;
use crate::error::ApiError;
use crate::telemetry::trace::spans;

/// What [`finish`] records about an answered request.
pub struct Done<'a> {
    /// The request's method (`POST` for every gRPC call).
    pub method: &'static str,
    /// The route template, or the gRPC method's full path.
    pub route: &'static str,
    /// The HTTP status, or for gRPC the HTTP status its code stands for.
    pub status: u16,
    /// The id the answer carries.
    pub request_id: &'a str,
    /// The client's `User-Agent`, when its span is recorded.
    pub user_agent: Option<String>,
    /// From arrival to the answer.
    pub elapsed: Duration,
}

/// The caller's `User-Agent` (read by `read`), kept only when the request's span is recorded.
pub fn user_agent(span: &Span, read: impl FnOnce() -> Option<String>) -> Option<String> {
    // Only a recorded span carries it: no allocation per request otherwise.
    spans::ids(span)
        .filter(|&(_, _, sampled)| sampled)
        .and_then(|_| read())
}

/// Metrics (with the trace as exemplar), the server span's answer, and the access-log line.
pub fn finish(app: &App, span: &Span, d: Done<'_>) {
    let status = d.status;
    let ids = spans::ids(span);
    let sampled = ids.is_some_and(|(_, _, sampled)| sampled);
    let exemplar = sampled
        .then(|| ids.map(|(t, _, _)| t.to_string()))
        .flatten();
    let seconds = d.elapsed.as_secs_f64();
    app.metrics
        .observe_request(d.method, d.route, status, seconds, exemplar);
    if sampled {
        spans::respond(span, status, d.request_id, d.user_agent.as_deref());
    }
    tracing::info!(
        request_id = %d.request_id,
        trace_id = ids.map(|(t, _, _)| tracing::field::display(t)),
        span_id = ids.map(|(_, s, _)| tracing::field::display(s)),
        method = d.method,
        route = d.route,
        status,
        latency_ms = d.elapsed.as_micros() as f64 / 1e3, // whole µs: 0.723, not 0.72334999…
        "request"
    );
    if let Some(hook) = &app.on_response {
        hook(d.route, status);
    }
}

/// Counts a refused request in `inference_requests_rejected_total` by its reason, unless it was
/// a repository call: a refused model load is the operator's, not a client's. Every transport
/// counts through here.
pub fn count_refusal(app: &App, e: &ApiError, repository_call: bool) {
    if !repository_call {
        app.metrics.reject(e.reject_reason());
    }
}

/// The log lines of a refusal, whatever the protocol: an engine failure always, the rest in
/// debug mode.
pub fn note_error(e: &ApiError, app: &App) {
    match e {
        ApiError::Engine(engine::EngineError::ShutDown) => {}
        ApiError::Engine(err) => tracing::error!(error = %err, "batch failed"),
        _ => {}
    }
    if app.config.app.debug {
        tracing::debug!(code = e.code(), error = %e, "request refused");
    }
}

impl App {
    /// Feeds the stage histograms with `host`'s stages and `out`'s queue wait and engine
    /// stages, and returns them as a `Server-Timing` header value (`/predict` sends it).
    pub fn observe_stages(&self, host: &[(&'static str, Duration)], out: &InferOutput) -> String {
        let engine = out.stages.iter().map(|s| (s.stage, s.duration));
        let all = host
            .iter()
            .copied()
            .chain([("queue", out.queue_wait)])
            .chain(engine);
        let mut header = Vec::new();
        for (stage, d) in all {
            self.metrics.observe_stage(stage, d.as_secs_f64());
            header.push(format!("{stage};dur={:.3}", d.as_secs_f64() * 1e3));
        }
        header.push(format!("batch;desc=\"size {}\"", out.batch_size));
        header.join(", ")
    }
}
