//! The result of one run: built from the recorder's totals, printed as a table, written as JSON.
//! It has room for the SLO's verdicts ([`SloResult`]), which [`crate::slo`] fills in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Arrivals, LoadShape, RunConfig, Stop};
use crate::scrape::ServerView;
use crate::stats::Totals;

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Minimum.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        let ms = |us: u64| us as f64 / 1000.0;
        (!h.is_empty()).then(|| Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// One threshold's verdict on a run.
#[derive(Clone, Debug, Serialize)]
pub struct SloResult {
    /// The threshold as written.
    pub threshold: String,
    /// The measured value (ms for latencies, a ratio for errors, per second for rps); `None`
    /// when it could not be measured (no successful request), which fails the threshold.
    pub actual: Option<f64>,
    /// Whether it holds.
    pub passed: bool,
}

/// Everything measured in one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Closed loop: workers.
    pub concurrency: Option<usize>,
    /// Open loop: asked requests per second.
    pub rate: Option<f64>,
    /// Open loop: `constant` or `poisson`.
    pub arrivals: Option<&'static str>,
    /// Open loop: connections.
    pub connections: Option<usize>,
    /// Seconds from the end of the warm-up to the last answer.
    pub duration_s: f64,
    /// Measured requests.
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers and transport failures.
    pub errors: u64,
    /// `errors / requests`.
    pub error_ratio: f64,
    /// Answers (any status) per second.
    pub throughput_rps: f64,
    /// 2xx answers per second.
    pub goodput_rps: f64,
    /// Count per HTTP status.
    pub statuses: BTreeMap<String, u64>,
    /// Count per transport failure (`connect`, `timeout`, `io`).
    pub failures: BTreeMap<String, u64>,
    /// Latency of 2xx answers (open loop: from the intended send time).
    pub latency_ms: Option<Latency>,
    /// Latency of non-2xx answers.
    pub failed_latency_ms: Option<Latency>,
    /// Open loop: how late requests left after their intended time (the tool's own delay plus
    /// waiting for a free connection).
    pub send_lag_ms: Option<Latency>,
    /// The server's own metrics over the run.
    pub server: Option<ServerView>,
    /// Threshold verdicts (empty without `--slo`).
    pub slo: Vec<SloResult>,
    /// All thresholds held.
    pub slo_passed: bool,
    #[serde(skip)]
    ok_histogram: Option<Histogram<u64>>,
}

impl RunReport {
    /// Builds the report of a finished run.
    pub fn new(cfg: &RunConfig, t: &Totals, from: Instant, server: Option<ServerView>) -> Self {
        let requests = t.total();
        let duration_s = match (t.last_completion, cfg.stop) {
            (Some(last), _) => last.saturating_duration_since(from).as_secs_f64(),
            (None, Stop::Duration(d)) => d.as_secs_f64(),
            (None, Stop::Requests(_)) => 0.0,
        }
        .max(1e-9);
        let (mode, concurrency, rate, arrivals, connections) = match cfg.shape {
            LoadShape::Closed { concurrency } => ("closed", Some(concurrency), None, None, None),
            LoadShape::Open {
                rate,
                arrivals,
                connections,
            } => {
                let a = match arrivals {
                    Arrivals::Constant => "constant",
                    Arrivals::Poisson => "poisson",
                };
                ("open", None, Some(rate), Some(a), Some(connections))
            }
        };
        RunReport {
            mode,
            concurrency,
            rate,
            arrivals,
            connections,
            duration_s,
            requests,
            ok: t.ok.len(),
            errors: t.errors(),
            error_ratio: if requests == 0 {
                0.0
            } else {
                t.errors() as f64 / requests as f64
            },
            throughput_rps: requests as f64 / duration_s,
            goodput_rps: t.ok.len() as f64 / duration_s,
            statuses: t
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            failures: t
                .failures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            latency_ms: Latency::of(&t.ok),
            failed_latency_ms: Latency::of(&t.failed),
            send_lag_ms: if mode == "open" {
                Latency::of(&t.lag)
            } else {
                None
            },
            server,
            slo: Vec::new(),
            slo_passed: true,
            ok_histogram: Some(t.ok.clone()),
        }
    }

    /// Any percentile (0–100) of successful latency, in ms.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        let h = self.ok_histogram.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(q / 100.0) as f64 / 1000.0)
    }

    /// A one-line description of the load.
    pub fn load_label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("closed loop, concurrency {c}"),
            (_, Some(r)) => format!(
                "open loop, {r}/s {} over {} connections",
                self.arrivals.unwrap_or(""),
                self.connections.unwrap_or(0)
            ),
            _ => String::new(),
        }
    }

    /// The human-readable summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.load_label());
        let _ = writeln!(
            s,
            "  requests   {:>10}   in {:.2} s   ok {}   errors {} ({:.3}%)",
            self.requests,
            self.duration_s,
            self.ok,
            self.errors,
            self.error_ratio * 100.0
        );
        let _ = writeln!(
            s,
            "  throughput {:>10.1}/s   (2xx {:.1}/s)",
            self.throughput_rps, self.goodput_rps
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .chain(self.failures.iter().map(|(k, v)| format!("{k}: {v}")))
            .collect();
        let _ = writeln!(s, "  statuses   {}", statuses.join(", "));
        let _ = writeln!(
            s,
            "  latency (ms)     p50      p90      p99    p99.9      max     mean"
        );
        let mut row = |name: &str, l: &Option<Latency>| {
            if let Some(l) = l {
                let _ = writeln!(
                    s,
                    "  {name:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean
                );
            }
        };
        row("2xx", &self.latency_ms);
        row("non-2xx", &self.failed_latency_ms);
        row("send lag", &self.send_lag_ms);
        if let Some(v) = &self.server {
            let fmt = |x: Option<f64>, p: usize| x.map_or("n/a".into(), |x| format!("{x:.p$}"));
            let rejected: Vec<String> = v
                .rejected
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(
                s,
                "  server     batches {}, mean batch size {}, max queue depth {}, rejected [{}]",
                fmt(v.batches, 0),
                fmt(v.mean_batch_size, 2),
                fmt(v.max_queue_depth, 0),
                rejected.join(", ")
            );
        }
        for r in &self.slo {
            let actual = r.actual.map_or("n/a".into(), |a| format!("{a:.4}"));
            let verdict = if r.passed { "pass" } else { "FAIL" };
            let _ = writeln!(
                s,
                "  slo        {verdict}  {} (measured {actual})",
                r.threshold
            );
        }
        s
    }
}
