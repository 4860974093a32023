//! The server's own view of a run, read from its Prometheus endpoint.
//!
//! A snapshot when the measured window opens (after the warm-up) and one after the last answer
//! give counter and histogram deltas (batches executed and their mean size, rejects by reason,
//! answers by status); in between, the queue-depth gauge is read four times a second and its
//! maximum kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Uri;
use parking_lot::Mutex;
use serde::Serialize;

use crate::client::get_text;
use crate::LoadError;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the server's metrics are.
#[derive(Clone, Debug)]
pub struct MetricsSource {
    addr: String,
    host: String,
    path: String,
}

impl MetricsSource {
    /// Parses an `http://host:port/path` URL.
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| LoadError::invalid("--metrics-url", format!("{url:?}: {e}")))?;
        let (Some("http"), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
            return Err(LoadError::invalid(
                "--metrics-url",
                "needs http://host[:port]/path",
            ));
        };
        Ok(MetricsSource {
            addr: format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80)),
            host: auth.as_str().to_owned(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }

    /// The current samples, or `None` if the endpoint does not answer 200 in time.
    pub async fn snapshot(&self) -> Option<Samples> {
        get_text(&self.addr, &self.host, &self.path, SCRAPE_TIMEOUT)
            .await
            .map(|t| Samples::parse(&t))
    }
}

/// One series: metric name, labels, value.
type Series = (String, Vec<(String, String)>, f64);

/// One scrape: every series.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Series>);

impl Samples {
    /// Parses the Prometheus text format (comments, exemplars and timestamps ignored).
    pub fn parse(text: &str) -> Self {
        Samples(text.lines().filter_map(parse_line).collect())
    }

    /// The sum over every series of `name`, or `None` if there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .0
            .iter()
            .filter(|(n, _, _)| n == name)
            .inspect(|_| found = true)
            .map(|(_, _, v)| v)
            .sum();
        found.then_some(total)
    }

    /// Sums of `name` grouped by the value of `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        self.by_label_except(name, label, ("", ""))
    }

    /// [`Samples::by_label`] without the series whose label `skip.0` has the value `skip.1`.
    pub fn by_label_except(
        &self,
        name: &str,
        label: &str,
        skip: (&str, &str),
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.0 {
            if n != name || labels.iter().any(|(k, v)| k == skip.0 && v == skip.1) {
                continue;
            }
            if let Some((_, value)) = labels.iter().find(|(k, _)| k == label) {
                *out.entry(value.clone()).or_default() += v;
            }
        }
        out
    }
}

fn parse_line(line: &str) -> Option<Series> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.split(" # ").next()?; // drop an OpenMetrics exemplar
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.trim().to_owned(), labels, value))
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
}

/// What the server says happened during the run.
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    /// Batches executed.
    pub batches: Option<f64>,
    /// Mean images per batch.
    pub mean_batch_size: Option<f64>,
    /// The highest `inference_queue_depth` seen while measuring.
    pub max_queue_depth: Option<f64>,
    /// `inference_requests_rejected_total` deltas by reason.
    pub rejected: BTreeMap<String, f64>,
    /// `http_requests_total` deltas by status (the scrapes of the metrics endpoint left out).
    pub http_by_status: BTreeMap<String, f64>,
}

impl ServerView {
    /// The deltas between two snapshots; `metrics_path` is the scraped endpoint, whose own
    /// requests are not counted.
    pub fn between(
        before: &Samples,
        after: &Samples,
        max_queue_depth: Option<f64>,
        metrics_path: &str,
    ) -> Self {
        let delta = |name: &str| Some(after.sum(name)? - before.sum(name).unwrap_or(0.0));
        let skip = ("route", metrics_path);
        let by = |name: &str, label: &str| {
            let old = before.by_label_except(name, label, skip);
            after
                .by_label_except(name, label, skip)
                .into_iter()
                .map(|(k, v)| {
                    let d = v - old.get(&k).copied().unwrap_or(0.0);
                    (k, d)
                })
                .filter(|(_, d)| *d > 0.0)
                .collect()
        };
        let batches = delta("inference_batch_size_count");
        let images = delta("inference_batch_size_sum");
        ServerView {
            batches,
            mean_batch_size: match (images, batches) {
                (Some(i), Some(b)) if b > 0.0 => Some(i / b),
                _ => None,
            },
            max_queue_depth,
            rejected: by("inference_requests_rejected_total", "reason"),
            http_by_status: by("http_requests_total", "status"),
        }
    }
}

/// Watches the server during the measured window: a snapshot when it opens, then
/// `inference_queue_depth` four times a second.
pub struct ServerWatch {
    source: MetricsSource,
    before: Arc<Mutex<Option<Samples>>>,
    max_depth: Arc<Mutex<Option<f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerWatch {
    /// Starts watching at `from` (the end of the warm-up).
    pub fn spawn(source: MetricsSource, from: Instant) -> Self {
        let before = Arc::new(Mutex::new(None));
        let max_depth = Arc::new(Mutex::new(None::<f64>));
        let (b, m, src) = (before.clone(), max_depth.clone(), source.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            *b.lock() = src.snapshot().await;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let depth = src
                    .snapshot()
                    .await
                    .and_then(|x| x.sum("inference_queue_depth"));
                if let Some(depth) = depth {
                    let mut max = m.lock();
                    *max = Some(max.map_or(depth, |old| old.max(depth)));
                }
            }
        });
        ServerWatch {
            source,
            before,
            max_depth,
            task,
        }
    }

    /// Stops watching and returns the server's view of the window, if its metrics could be read.
    pub async fn finish(self) -> Option<ServerView> {
        self.task.abort();
        let before = self.before.lock().take()?;
        let after = self.source.snapshot().await?;
        let max_depth = *self.max_depth.lock();
        Some(ServerView::between(
            &before,
            &after,
            max_depth,
            &self.source.path,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP inference_batch_size Images per executed batch
# TYPE inference_batch_size histogram
inference_batch_size_bucket{le="1"} 3
inference_batch_size_sum 10
inference_batch_size_count 4
inference_requests_rejected_total{reason="queue_full"} 2
http_requests_total{method="POST",route="/predict",status="200"} 10
"#;
    const AFTER: &str = r#"inference_batch_size_bucket{le="+Inf"} 9
inference_batch_size_sum 58
inference_batch_size_count 10
inference_requests_rejected_total{reason="queue_full"} 7
inference_requests_rejected_total{reason="bad_input"} 1
inference_requests_rejected_total{reason="deadline"} 0
http_requests_total{method="POST",route="/predict",status="200"} 58 # {trace_id="abc"} 0.1
http_requests_total{method="GET",route="/a\"b",status="429"} 5 1700000000
http_requests_total{method="GET",route="/metrics",status="200"} 99
weird_metric{a="x,y=z",b="\\"} 1
"#;

    #[test]
    fn deltas_between_snapshots() {
        let v = ServerView::between(
            &Samples::parse(BEFORE),
            &Samples::parse(AFTER),
            Some(3.0),
            "/metrics",
        );
        assert_eq!(v.batches, Some(6.0));
        assert_eq!(v.mean_batch_size, Some(8.0));
        assert_eq!(v.rejected["queue_full"], 5.0);
        assert_eq!(v.rejected["bad_input"], 1.0);
        assert!(!v.rejected.contains_key("deadline"));
        assert_eq!(v.http_by_status["200"], 48.0);
        assert_eq!(v.http_by_status["429"], 5.0);
    }

    #[test]
    fn labels_with_escapes_and_separators() {
        let s = Samples::parse(AFTER);
        let w = s.by_label("weird_metric", "a");
        assert_eq!(w.keys().next().unwrap(), "x,y=z");
        assert_eq!(s.by_label("weird_metric", "b").keys().next().unwrap(), "\\");
        assert_eq!(s.sum("absent"), None);
        assert!(MetricsSource::parse("https://x/metrics").is_err());
    }
}
