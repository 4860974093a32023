//! Distributed tracing: W3C trace context in, OTLP/HTTP protobuf out.
//!
//! Data flow: [`RequestSpan::begin`] continues the caller's `traceparent` (or starts a trace) and
//! asks the [`Sampler`]; a sampled request records a server span plus child spans for decode,
//! preprocess and queue wait; the batcher records one span per executed batch with links to the
//! spans of every sampled request in it. Finished spans go to [`Tracer::record`], which never
//! blocks: a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`) feeds the exporter thread, which sends
//! batches to `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. A full queue or a failing collector
//! drops spans (counted, one warning), never requests.
//!
//! Why not the `opentelemetry` SDK crates: with OTLP/HTTP they bring ~100 crates (tonic,
//! reqwest, ICU) and run export on a thread that needs its own runtime; this project already
//! has `prost`, and the wire formats (W3C trace context, OTLP protobuf) are stable specs. The
//! end-to-end test checks the output with the official `opentelemetry-proto` schema.

mod context;
mod export;
pub mod otlp;
mod sampler;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, TrySendError};
use prometheus::IntCounterVec;

pub use context::{format_traceparent, parse_traceparent, Parent, SpanId, TraceId};
pub use export::Exporter;
pub use sampler::{Root, Sampler};

/// Where spans go and how they are batched (from `ENABLE_TRACING` and the `OTEL_*` variables).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceConfig {
    /// `ENABLE_TRACING` (and not `OTEL_SDK_DISABLED`, not `OTEL_TRACES_EXPORTER=none`).
    pub enabled: bool,
    /// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// + `/v1/traces`, default `http://localhost:4318/v1/traces`.
    pub endpoint: Endpoint,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k=v`; auth tokens: redacted in `Debug`).
    pub headers: crate::config::Redacted<Vec<(String, String)>>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms; default 10 s).
    pub timeout: Duration,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
    /// `service.name` (`OTEL_SERVICE_NAME`, else `APP_NAME`), `service.version` (`APP_VERSION`)
    /// and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Vec<(String, String)>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE` (default 2048).
    pub max_queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (default 512).
    pub max_batch: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms; default 5000).
    pub delay: Duration,
}

/// An `http://host:port/path` collector address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, e.g. `/v1/traces`.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/path]`; with `signal_path`, `/v1/traces` is appended to the
    /// path (as the spec does for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn parse(url: &str, signal_path: bool) -> Result<Self, String> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or("only http:// endpoints are supported (no TLS); put a collector sidecar in front for TLS")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("no host".into());
        }
        let mut path = path.trim_end_matches('/').to_owned();
        if signal_path {
            path.push_str("/v1/traces");
        }
        if path.is_empty() {
            path.push('/');
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            path,
        })
    }
}

impl Endpoint {
    /// `host:port`, with an IPv6 host in brackets (the `Host` header and the URL use it).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// A span attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text (borrowed when static, so constant attributes cost no allocation).
    Str(Cow<'static, str>),
    /// Integer.
    Int(i64),
    /// Float.
    F64(f64),
    /// Boolean.
    Bool(bool),
}

/// Span kinds this server produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The request, as the server sees it.
    Server,
    /// Stages inside the server.
    Internal,
}

/// A finished span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// The span it is a child of.
    pub parent: Option<SpanId>,
    /// Name, e.g. `POST /predict`.
    pub name: Cow<'static, str>,
    /// Server or internal.
    pub kind: SpanKind,
    /// Start (wall clock).
    pub start: SystemTime,
    /// End (wall clock).
    pub end: SystemTime,
    /// Attributes.
    pub attributes: Vec<(&'static str, Value)>,
    /// Spans it is causally linked to (a batch → its requests).
    pub links: Vec<(TraceId, SpanId)>,
    /// Error status message.
    pub error: Option<String>,
}

struct Inner {
    sampler: Sampler,
    tx: Sender<SpanRecord>,
    dropped: IntCounterVec,
    warned: AtomicBool,
}

/// The handle spans are recorded through; cheap to clone; a disabled one does nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

impl Tracer {
    /// A tracer that samples nothing and exports nothing.
    pub fn disabled() -> Self {
        Tracer { inner: None }
    }

    /// Starts the exporter thread. `dropped` counts spans lost, by reason (`queue_full`,
    /// `export_failed`).
    pub fn start(
        config: &TraceConfig,
        dropped: IntCounterVec,
    ) -> std::io::Result<(Tracer, Exporter)> {
        let (tx, rx) = crossbeam_channel::bounded(config.max_queue.max(1));
        let exporter = Exporter::spawn(config.clone(), rx, dropped.clone())?;
        let inner = Inner {
            sampler: config.sampler,
            tx,
            dropped,
            warned: AtomicBool::new(false),
        };
        Ok((
            Tracer {
                inner: Some(Arc::new(inner)),
            },
            exporter,
        ))
    }

    /// Whether a span in `trace`, called from `parent`, is recorded.
    pub fn sample(&self, trace: TraceId, parent: Option<&Parent>) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.sampler.sample(trace, parent))
    }

    /// Hands a finished span to the exporter; never blocks.
    pub fn record(&self, span: SpanRecord) {
        let Some(inner) = &self.inner else { return };
        match inner.tx.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                inner.dropped.with_label_values(&["queue_full"]).inc();
                if !inner.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the span export queue is full (OTEL_BSP_MAX_QUEUE_SIZE): dropping spans \
                         (counted in trace_spans_dropped_total); requests are not affected"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// A request's place in its trace: the ids of its server span and whether it is recorded.
#[derive(Clone, Debug)]
pub struct RequestSpan {
    /// The trace (the caller's, or new).
    pub trace_id: TraceId,
    /// This request's server span.
    pub span_id: SpanId,
    /// The caller's span.
    pub parent: Option<SpanId>,
    /// Recorded and exported.
    pub sampled: bool,
    start: Instant,
    start_wall: SystemTime,
}

impl RequestSpan {
    /// Continues `traceparent` when valid, else starts a trace; asks the sampler.
    pub fn begin(tracer: &Tracer, traceparent: Option<&str>) -> Self {
        let parent = traceparent.and_then(parse_traceparent);
        let trace_id = parent.map_or_else(TraceId::random, |p| p.trace_id);
        RequestSpan {
            trace_id,
            span_id: SpanId::random(),
            parent: parent.map(|p| p.span_id),
            sampled: tracer.sample(trace_id, parent.as_ref()),
            start: Instant::now(),
            start_wall: SystemTime::now(),
        }
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// `t` on the wall clock (monotonic offsets from the start, so spans nest exactly).
    pub fn wall(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.start) {
            Some(d) => self.start_wall + d,
            None => self.start_wall - self.start.duration_since(t),
        }
    }

    /// A child span of this request from `start` to `end`.
    pub fn child(&self, name: &'static str, start: Instant, end: Instant) -> SpanRecord {
        SpanRecord {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent: Some(self.span_id),
            name: Cow::Borrowed(name),
            kind: SpanKind::Internal,
            start: self.wall(start),
            end: self.wall(end),
            attributes: Vec::new(),
            links: Vec::new(),
            error: None,
        }
    }

    /// What a batch span links to, if this request is recorded.
    pub fn link(&self) -> Option<(TraceId, SpanId)> {
        self.sampled.then_some((self.trace_id, self.span_id))
    }
}

/// A span over one executed batch: its own trace, linked to the span of every traced request
/// in the batch (a batch serves many traces, so it cannot be a child of one).
pub struct BatchSpan {
    tracer: Tracer,
    trace_id: TraceId,
    span_id: SpanId,
    start: SystemTime,
    links: Vec<(TraceId, SpanId)>,
    lane: usize,
    device: std::sync::Arc<str>,
}

impl BatchSpan {
    /// Opens the span as the batch is handed to `lane`.
    pub fn begin(
        tracer: &Tracer,
        links: Vec<(TraceId, SpanId)>,
        lane: usize,
        device: std::sync::Arc<str>,
    ) -> Self {
        BatchSpan {
            tracer: tracer.clone(),
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            start: SystemTime::now(),
            links,
            lane,
            device,
        }
    }

    /// Closes and records it when the batch of `size` images is done.
    pub fn end<E: std::fmt::Display>(self, size: usize, error: Option<&E>) {
        let attributes = vec![
            ("inference.batch_size", Value::Int(size as i64)),
            (
                "inference.device",
                Value::Str(self.device.to_string().into()),
            ),
            ("inference.lane", Value::Int(self.lane as i64)),
            (
                "inference.traced_requests",
                Value::Int(self.links.len() as i64),
            ),
        ];
        self.tracer.record(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: None,
            name: Cow::Borrowed("inference.batch"),
            kind: SpanKind::Internal,
            start: self.start,
            end: SystemTime::now(),
            attributes,
            links: self.links,
            error: error.map(|e| e.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_append_the_signal_path() {
        let e = Endpoint::parse("http://jaeger:4318", true).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("jaeger", 4318, "/v1/traces")
        );
        let e = Endpoint::parse("http://127.0.0.1:9/custom/", false).unwrap();
        assert_eq!((e.port, e.path.as_str()), (9, "/custom"));
        let e = Endpoint::parse("http://[::1]:4318/", true).unwrap();
        assert_eq!((e.host.as_str(), e.path.as_str()), ("::1", "/v1/traces"));
        assert_eq!(e.to_string(), "http://[::1]:4318/v1/traces");
        assert!(Endpoint::parse("https://x:4318", true).is_err());
        assert!(Endpoint::parse("http://x:port", true).is_err());
    }

    #[test]
    fn request_spans_continue_the_caller_and_nest_children() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let dropped = IntCounterVec::new(prometheus::Opts::new("d", "d"), &["reason"]).unwrap();
        let tracer = Tracer {
            inner: Some(Arc::new(Inner {
                sampler: Sampler::ParentBased(Root::AlwaysOff),
                tx,
                dropped: dropped.clone(),
                warned: AtomicBool::new(false),
            })),
        };
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let r = RequestSpan::begin(&tracer, Some(tp));
        assert!(r.sampled, "a sampled caller decides under parentbased");
        assert_eq!(r.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r.parent.unwrap().to_string(), "00f067aa0ba902b7");
        let t0 = r.started();
        let child = r.child(
            "decode",
            t0 + Duration::from_millis(1),
            t0 + Duration::from_millis(3),
        );
        assert_eq!(child.parent, Some(r.span_id));
        assert_eq!(
            child.end.duration_since(child.start).unwrap(),
            Duration::from_millis(2)
        );
        assert!(
            !RequestSpan::begin(&tracer, None).sampled,
            "no caller: the root sampler (off)"
        );
        for _ in 0..6 {
            tracer.record(child.clone());
        }
        assert_eq!(rx.len(), 4);
        assert_eq!(dropped.with_label_values(&["queue_full"]).get(), 2);
        assert!(!Tracer::disabled().sample(TraceId::random(), None));
    }
}
