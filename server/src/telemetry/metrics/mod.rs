//! Every metric, registered once, in one typed struct. Durations are seconds with buckets chosen
//! for this workload (1 ms … 30 s for requests; 100 µs … 10 s for stages); batch sizes are
//! powers of two.
//!
//! `/metrics` speaks both exposition formats: the classic text format by default, and
//! OpenMetrics (with exemplars: the trace id of a sampled request in its latency bucket) when the
//! scraper asks for it, as Prometheus does.

mod exemplars;
#[cfg(feature = "cuda")]
mod gpu;
mod openmetrics;

use std::sync::Arc;

pub use exemplars::Exemplars;
pub use openmetrics::CONTENT_TYPE as OPENMETRICS_CONTENT_TYPE;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0, 30.0,
];
const STAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `inference_queue_depth`.
    pub queue_depth: IntGauge,
    /// `inference_batch_size`.
    pub batch_size: Histogram,
    /// `inference_queue_wait_seconds`.
    pub queue_wait: Histogram,
    /// `inference_stage_duration_seconds{stage}`.
    pub stage_duration: HistogramVec,
    /// `inference_requests_rejected_total{reason}`.
    pub rejected: IntCounterVec,
    /// `model_info{model,version,device,precision}`.
    pub model_info: IntGaugeVec,
    /// `trace_spans_dropped_total{reason}`: spans not exported (`queue_full`, `export_failed`).
    pub spans_dropped: IntCounterVec,
    /// Exemplars of `http_request_duration_seconds`.
    exemplars: Arc<Exemplars>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Creates and registers every metric (and the process collector on Linux).
    pub fn new() -> Self {
        let r = Registry::new();
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name, help).buckets(buckets.to_vec())
        };
        let m = Metrics {
            http_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests"),
                    &["method", "route", "status"],
                )
                .expect("valid"),
            ),
            http_duration: register(
                &r,
                HistogramVec::new(
                    histogram(
                        "http_request_duration_seconds",
                        "Time to full response",
                        REQUEST_BUCKETS,
                    ),
                    &["method", "route"],
                )
                .expect("valid"),
            ),
            queue_depth: register(
                &r,
                IntGauge::new(
                    "inference_queue_depth",
                    "Images admitted and waiting for a batch",
                )
                .expect("valid"),
            ),
            batch_size: register(
                &r,
                Histogram::with_opts(histogram(
                    "inference_batch_size",
                    "Images per executed batch",
                    BATCH_BUCKETS,
                ))
                .expect("valid"),
            ),
            queue_wait: register(
                &r,
                Histogram::with_opts(histogram(
                    "inference_queue_wait_seconds",
                    "Enqueue to batch start",
                    STAGE_BUCKETS,
                ))
                .expect("valid"),
            ),
            stage_duration: register(
                &r,
                HistogramVec::new(
                    histogram(
                        "inference_stage_duration_seconds",
                        "Time per pipeline stage",
                        STAGE_BUCKETS,
                    ),
                    &["stage"],
                )
                .expect("valid"),
            ),
            rejected: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "inference_requests_rejected_total",
                        "Requests not served, by reason",
                    ),
                    &["reason"],
                )
                .expect("valid"),
            ),
            model_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("model_info", "The loaded model"),
                    &["model", "version", "device", "precision"],
                )
                .expect("valid"),
            ),
            spans_dropped: register(
                &r,
                IntCounterVec::new(
                    Opts::new("trace_spans_dropped_total", "Spans not exported, by reason"),
                    &["reason"],
                )
                .expect("valid"),
            ),
            exemplars: Arc::new(Exemplars::new(REQUEST_BUCKETS)),
            registry: r,
        };
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        m
    }

    /// Records one HTTP request: its count, its duration and, when it was traced, its trace id
    /// as the exemplar of its latency bucket.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: &str,
        seconds: f64,
        trace_id: Option<String>,
    ) {
        self.http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(seconds);
        if let Some(id) = trace_id {
            self.exemplars.observe(method, route, seconds, id);
        }
    }

    /// OpenMetrics exposition (with exemplars) of everything registered.
    pub fn render_openmetrics(&self) -> String {
        openmetrics::encode(&self.registry.gather(), |family, labels, bucket| {
            if family != "http_request_duration_seconds" {
                return None;
            }
            let label = |n: &str| labels.iter().find(|l| l.name() == n).map(|l| l.value());
            self.exemplars
                .get(label("method")?, label("route")?, bucket)
        })
    }

    /// Registers the NVML gauges of CUDA device `gpu`; where NVML is unusable they stay absent
    /// and the reason is logged.
    #[cfg(feature = "cuda")]
    pub fn register_gpu(&self, gpu: u32) {
        match gpu::GpuCollector::new(gpu) {
            Ok(c) => {
                if let Err(e) = self.registry.register(Box::new(c)) {
                    tracing::warn!(error = %e, "GPU metrics not registered");
                }
            }
            Err(why) => tracing::warn!(reason = %why, "no GPU metrics (gpu_* series absent)"),
        }
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
