//! Every metric, registered once, in one typed struct, on the Prometheus project's own
//! `prometheus-client`. Durations are seconds with buckets chosen for this workload (1 ms … 30 s
//! for requests; 100 µs … 10 s for stages); batch sizes are powers of two.
//!
//! [`Metrics::render`] writes OpenMetrics text (what Prometheus asks for first, and the format
//! that can carry exemplars: a request-latency bucket names the trace of a sampled request that
//! landed in it, so a slow bucket leads to its trace) or the Prometheus text format 0.0.4,
//! without exemplars, for `promtool`, `curl | grep` and older agents; the transport picks one
//! from the scraper's `Accept`. Label names are the fields of the label structs below,
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

/// The two expositions [`Metrics::render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text, with exemplars, ending in `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, without exemplars.
    Text,
}

impl Exposition {
    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

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
    /// What runs the model: `onnxruntime` on the CPU; `cudnn`, `tensorrt` or `onnxruntime-cuda`
    /// on a GPU (`GPU_ENGINE`).
    pub engine: &'static str,
    /// `MODEL_NAME`.
    pub model: String,
    /// `fp32` or `int8` (`MODEL_PRECISION`).
    pub precision: &'static str,
    /// How JPEGs decode unless a request says: `exact` or `draft` (`PREPROCESS`).
    pub preprocess: &'static str,
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

    /// The exposition of everything registered, in `format`.
    pub fn render(&self, format: Exposition) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let registry = self.registry.lock();
        match format {
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &registry)
            }
            Exposition::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
        }
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
                engine: "onnxruntime",
                model: "a\"b\\c".into(),
                precision: "fp32",
                preprocess: "exact",
                version: "v\n1".into(),
            })
            .set(1);
        let text = m.render(Exposition::OpenMetrics);
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

    #[test]
    fn the_text_format_has_the_same_series_without_exemplars() {
        let m = Metrics::new();
        m.observe_request("POST", "/predict", 200, 0.02, Some("ab".repeat(16)));
        m.reject("queue_full");
        let text = m.render(Exposition::Text);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains(" # {"), "no exemplars: {text}");
        // 0.0.4 names a counter's family with its `_total`, as promtool expects.
        assert!(
            text.contains("# TYPE http_requests_total counter\n"),
            "{text}"
        );
        // The same series: names and label sets (the formats order labels and write `le`
        // differently, and process gauges move between renders).
        let series = |t: &str| -> std::collections::BTreeSet<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    let series = l.split(" # ").next().unwrap().rsplit_once(' ').unwrap().0;
                    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                    let mut labels: Vec<String> = labels
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| match l.strip_prefix("le=\"") {
                            Some(v) => format!("le={:?}", v.trim_end_matches('"').parse::<f64>()),
                            None => l.to_owned(),
                        })
                        .collect();
                    labels.sort();
                    format!("{name}{labels:?}")
                })
                .collect()
        };
        assert_eq!(series(&text), series(&m.render(Exposition::OpenMetrics)));
    }
}
