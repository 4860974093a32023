//! Every metric, registered once, in one typed struct, on the Prometheus project's own
//! `prometheus-client`. Durations are seconds with buckets chosen for this workload (1 ms … 30 s
//! for requests; 100 µs … 10 s for stages); batch sizes are powers of two.
//!
//! `/metrics` is OpenMetrics text (what Prometheus asks for first, and the format that can carry
//! exemplars): a request-latency bucket names the trace of a sampled request that landed in it,
//! so a slow bucket leads to its trace. Label names are the fields of the label structs below,
//! in alphabetical order, as the dashboards and tests read them.

#[cfg(feature = "cuda")]
mod gpu;
#[cfg(target_os = "linux")]
mod process;

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0, 30.0,
];
const STAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// `http_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `POST`, … (`other` for the rest).
    pub method: &'static str,
    /// A known route or `unknown`: bounded.
    pub route: &'static str,
    /// The response status.
    pub status: u16,
}

/// `http_request_duration_seconds`' labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`RequestLabels`].
    pub method: &'static str,
    /// As in [`RequestLabels`].
    pub route: &'static str,
}

/// The exemplar of a latency bucket: the trace of a sampled request in it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// 32 lowercase hex digits.
    pub trace_id: String,
}

/// One label, `stage` or `reason`, with a value from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `decode`, `preprocess`, `queue`, `h2d`, `compute`, `d2h`, …
    pub stage: &'static str,
}

/// `reason` of a rejection or a dropped span.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `queue_full`, `deadline`, `bad_input`, `export_failed`, …
    pub reason: &'static str,
}

/// `result` of a model reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// `model_info`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// `cpu`, `cuda:0`.
    pub device: String,
    /// `MODEL_NAME`.
    pub model: String,
    /// `fp32` or `int8` (`MODEL_PRECISION`).
    pub precision: &'static str,
    /// The first 12 hex digits of the model file's SHA-256: which weights serve.
    pub version: String,
}

type LatencyHistogram = HistogramWithExemplars<TraceExemplar>;

/// The gateway's metrics; cheap to clone (every metric is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: Family<RequestLabels, Counter>,
    /// `http_request_duration_seconds{method,route}`, with trace exemplars.
    pub http_duration: Family<RouteLabels, LatencyHistogram, fn() -> LatencyHistogram>,
    /// `inference_queue_depth`.
    pub queue_depth: Gauge,
    /// `inference_batch_size`.
    pub batch_size: Histogram,
    /// `inference_queue_wait_seconds`.
    pub queue_wait: Histogram,
    /// `inference_stage_duration_seconds{stage}`.
    pub stage_duration: Family<StageLabel, Histogram, fn() -> Histogram>,
    /// `inference_requests_rejected_total{reason}`.
    pub rejected: Family<ReasonLabel, Counter>,
    /// `model_info{device,model,precision,version}`.
    pub model_info: Family<ModelLabels, Gauge>,
    /// `trace_spans_dropped_total{reason}`: spans not exported (`queue_full`, `export_failed`).
    pub spans_dropped: Family<ReasonLabel, Counter>,
    /// `model_reloads_total{result}`: reloads that swapped a new model in, or were refused.
    pub model_reloads: Family<ResultLabel, Counter>,
}

fn request_histogram() -> LatencyHistogram {
    HistogramWithExemplars::new(REQUEST_BUCKETS.iter().copied())
}

fn stage_histogram() -> Histogram {
    Histogram::new(STAGE_BUCKETS.iter().copied())
}

impl Metrics {
    /// Creates and registers every metric (and the process collector on Linux).
    pub fn new() -> Self {
        let m = Metrics {
            registry: Arc::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(request_histogram),
            queue_depth: Gauge::default(),
            batch_size: Histogram::new(BATCH_BUCKETS.iter().copied()),
            queue_wait: stage_histogram(),
            stage_duration: Family::new_with_constructor(stage_histogram),
            rejected: Family::default(),
            model_info: Family::default(),
            spans_dropped: Family::default(),
            model_reloads: Family::default(),
        };
        let mut r = m.registry.lock();
        // Counters are registered without `_total`: the encoder appends it, as OpenMetrics asks.
        r.register("http_requests", "HTTP requests", m.http_requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time to full response",
            m.http_duration.clone(),
        );
        r.register(
            "inference_queue_depth",
            "Images admitted and waiting for a batch",
            m.queue_depth.clone(),
        );
        r.register(
            "inference_batch_size",
            "Images per executed batch",
            m.batch_size.clone(),
        );
        r.register(
            "inference_queue_wait_seconds",
            "Enqueue to batch start",
            m.queue_wait.clone(),
        );
        r.register(
            "inference_stage_duration_seconds",
            "Time per pipeline stage",
            m.stage_duration.clone(),
        );
        r.register(
            "inference_requests_rejected",
            "Requests not served, by reason",
            m.rejected.clone(),
        );
        r.register("model_info", "The loaded model", m.model_info.clone());
        r.register(
            "trace_spans_dropped",
            "Spans not exported, by reason",
            m.spans_dropped.clone(),
        );
        r.register(
            "model_reloads",
            "Model reloads, by result (failure: the old model kept serving)",
            m.model_reloads.clone(),
        );
        #[cfg(target_os = "linux")]
        r.register_collector(Box::new(process::ProcessCollector));
        drop(r);
        m
    }

    /// Records one HTTP request: its count, its duration and, when it was traced, its trace id
    /// as the exemplar of its latency bucket.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        seconds: f64,
        trace_id: Option<String>,
    ) {
        self.http_requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(
                seconds,
                trace_id.map(|trace_id| TraceExemplar { trace_id }),
                None,
            );
    }

    /// Counts a request not served, by reason.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Observes one pipeline stage.
    pub fn observe_stage(&self, stage: &'static str, seconds: f64) {
        self.stage_duration
            .get_or_create(&StageLabel { stage })
            .observe(seconds);
    }

    /// Registers the NVML gauges of CUDA device `gpu`; where NVML is unusable they stay absent
    /// and the reason is logged.
    #[cfg(feature = "cuda")]
    pub fn register_gpu(&self, gpu: u32) {
        match gpu::GpuCollector::new(gpu) {
            Ok(c) => self.registry.lock().register_collector(Box::new(c)),
            Err(why) => tracing::warn!(reason = %why, "no GPU metrics (gpu_* series absent)"),
        }
    }

    /// OpenMetrics exposition (with exemplars) of everything registered, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock())
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_openmetrics_with_exemplars_and_escaped_labels() {
        let m = Metrics::new();
        m.observe_request("POST", "/predict", 200, 0.02, Some("ab".repeat(16)));
        m.observe_request("GET", "/health", 200, 0.0004, None);
        m.reject("queue_full");
        m.observe_stage("decode", 0.003);
        m.model_info
            .get_or_create(&ModelLabels {
                device: "cpu".into(),
                model: "a\"b\\c".into(),
                precision: "fp32",
                version: "v\n1".into(),
            })
            .set(1);
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE http_requests counter\n"));
        assert!(text.contains(
            "http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"} 1\n"
        ));
        let exemplar = text
            .lines()
            .find(|l| l.contains(" # {trace_id=\""))
            .expect("an exemplar");
        assert!(
            exemplar.starts_with(
                "http_request_duration_seconds_bucket{le=\"0.025\",method=\"POST\",route=\"/predict\"} 1 # {trace_id=\"abab"
            ),
            "{exemplar}"
        );
        assert!(
            text.contains("model=\"a\\\"b\\\\c\""),
            "label values are escaped: {text}"
        );
        assert!(text.contains("version=\"v\\n1\""));
        assert!(text.contains("inference_requests_rejected_total{reason=\"queue_full\"} 1\n"));
        assert!(text.contains("inference_stage_duration_seconds_count{stage=\"decode\"} 1\n"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
