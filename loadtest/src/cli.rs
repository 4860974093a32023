//! Command-line flags, turned into a [`Plan`] once, with every bad value named by its flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::config::{Arrivals, LoadShape, RunConfig, Stop};
use crate::request::{BodyFormat, BodySource, Target};
use crate::scrape::MetricsSource;
use crate::slo::Slo;
use crate::sweep::SweepSpec;
use crate::LoadError;

/// Open- and closed-loop HTTP load with HDR latency, the server's own metrics, SLO thresholds
/// and sweeps. Exit status: 0 ok, 1 a bad value or an I/O error, 2 a usage error, 3 an SLO
/// threshold was missed.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// The URL to load (http:// only).
    #[arg(long, default_value = "http://127.0.0.1:8000/predict")]
    pub url: String,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// Extra header `Name: value` (repeatable), e.g. an API key.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Send this file as the raw body of every request.
    #[arg(long, conflicts_with_all = ["images", "generate"])]
    pub body: Option<PathBuf>,
    /// Content type of `--body`.
    #[arg(long, requires = "body")]
    pub content_type: Option<String>,
    /// Cycle through the images in this folder (.jpg .png .webp .gif .bmp).
    #[arg(long, conflicts_with = "generate")]
    pub images: Option<PathBuf>,
    /// Cycle through N generated photo-like JPEGs of `--image-size`.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Size of generated JPEGs, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    pub image_size: String,
    /// How images are sent.
    #[arg(long, value_enum, default_value_t = Format::Multipart)]
    pub format: Format,
    /// Multipart field name.
    #[arg(long, default_value = "file")]
    pub field: String,
    /// Closed loop: this many workers, each waiting for its answer before sending again.
    #[arg(short, long, conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: this many requests per second, whatever the answers do.
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Open loop spacing.
    #[arg(long, value_enum, default_value_t = ArrivalsArg::Constant)]
    pub arrivals: ArrivalsArg,
    /// Open loop: keep-alive connections taking the due requests.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure (e.g. 30s, 500ms, 2m).
    #[arg(short, long, conflicts_with = "requests")]
    pub duration: Option<String>,
    /// Measure exactly N requests instead of a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Load applied before measuring, not counted.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Per-request timeout.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Thresholds that must hold, e.g. 'p99<250ms,errors<0.1%,rps>50'.
    #[arg(long)]
    pub slo: Option<String>,
    /// Step the load: 'concurrency=1..64' (doubling), 'concurrency=1,2,4', 'rate=10,20,40'.
    /// Stops after the first step that misses --slo.
    #[arg(long, requires = "slo")]
    pub sweep: Option<String>,
    /// Run every sweep step even after the SLO is missed.
    #[arg(long, requires = "sweep")]
    pub sweep_all: bool,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the sweep's throughput-vs-latency chart (SVG) here.
    #[arg(long, requires = "sweep")]
    pub chart: Option<PathBuf>,
    /// The server's Prometheus endpoint (default: the URL's origin + /metrics).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Do not read the server's metrics.
    #[arg(long)]
    pub no_scrape: bool,
    /// Runtime threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Seed for Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Image framing.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// multipart/form-data (as `curl -F file=@img.jpg`).
    Multipart,
    /// The raw bytes with an image/* content type.
    Raw,
}

/// Open-loop spacing.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArrivalsArg {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps.
    Poisson,
}

/// Everything `main` needs, validated.
pub struct Plan {
    /// The run (or the sweep's base run).
    pub run: RunConfig,
    /// What to send.
    pub target: Target,
    /// Thresholds and their text.
    pub slo: Option<(Slo, String)>,
    /// Steps, if sweeping.
    pub sweep: Option<SweepSpec>,
    /// Keep sweeping past a miss.
    pub sweep_all: bool,
    /// JSON report path.
    pub json: Option<PathBuf>,
    /// SVG chart path.
    pub chart: Option<PathBuf>,
    /// Runtime threads.
    pub threads: usize,
}

/// Parses `30s`, `500ms`, `2m`, `1h` or plain seconds.
pub fn parse_duration(flag: &'static str, s: &str) -> Result<Duration, LoadError> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        LoadError::invalid(flag, format!("{s:?} is not a duration (e.g. 30s, 500ms)"))
    })?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(LoadError::invalid(flag, format!("{s:?} must be ≥ 0")));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl Cli {
    /// Validates the flags and prepares the target (reading or generating the bodies).
    pub fn plan(&self) -> Result<Plan, LoadError> {
        let format = match self.format {
            Format::Multipart => BodyFormat::Multipart(self.field.clone()),
            Format::Raw => BodyFormat::Raw,
        };
        let source = if let Some(b) = &self.body {
            BodySource::File(b.clone(), self.content_type.clone())
        } else if let Some(dir) = &self.images {
            BodySource::Images(dir.clone(), format)
        } else if let Some(count) = self.generate {
            let (w, h) = self
                .image_size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| LoadError::invalid("--image-size", "expected WIDTHxHEIGHT"))?;
            if count == 0 {
                return Err(LoadError::invalid("--generate", "at least 1"));
            }
            BodySource::Generated {
                count,
                width: w,
                height: h,
                format,
            }
        } else {
            BodySource::None
        };
        let method = self.method.clone().unwrap_or_else(|| {
            if matches!(source, BodySource::None) {
                "GET"
            } else {
                "POST"
            }
            .to_owned()
        });
        let target = Target::new(&self.url, &method, &self.headers, &source)?;
        let shape = match self.rate {
            Some(rate) if rate > 0.0 && rate.is_finite() => LoadShape::Open {
                rate,
                arrivals: match self.arrivals {
                    ArrivalsArg::Constant => Arrivals::Constant,
                    ArrivalsArg::Poisson => Arrivals::Poisson,
                },
                connections: positive("--connections", self.connections)?,
            },
            Some(_) => return Err(LoadError::invalid("--rate", "must be > 0")),
            None => LoadShape::Closed {
                concurrency: positive("--concurrency", self.concurrency.unwrap_or(1))?,
            },
        };
        let stop = match (self.requests, &self.duration) {
            (Some(0), _) => return Err(LoadError::invalid("--requests", "must be > 0")),
            (Some(n), _) => Stop::Requests(n),
            (None, Some(d)) => Stop::Duration(parse_duration("--duration", d)?),
            (None, None) => Stop::Duration(Duration::from_secs(10)),
        };
        let metrics = match (&self.metrics_url, self.no_scrape) {
            (_, true) => None,
            (Some(url), false) => Some(MetricsSource::parse(url)?),
            (None, false) => Some(MetricsSource::parse(&format!(
                "{}/metrics",
                target.origin()
            ))?),
        };
        let slo = match &self.slo {
            Some(text) => Some((text.parse::<Slo>()?, text.clone())),
            None => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Plan {
            run: RunConfig {
                shape,
                stop,
                warmup: parse_duration("--warmup", &self.warmup)?,
                timeout: parse_duration("--timeout", &self.timeout)?,
                metrics,
                progress: !self.quiet,
                seed: self.seed,
            },
            target,
            slo,
            sweep: self.sweep.as_deref().map(str::parse).transpose()?,
            sweep_all: self.sweep_all,
            json: self.json.clone(),
            chart: self.chart.clone(),
            threads: positive("--threads", self.threads.unwrap_or(cores))?,
        })
    }
}

fn positive(flag: &'static str, v: usize) -> Result<usize, LoadError> {
    if v == 0 {
        return Err(LoadError::invalid(flag, "must be > 0"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("--d", "30s").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("--d", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("--d", "2m").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration("--d", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
        let err = parse_duration("--duration", "soon")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--duration:"), "{err}");
    }

    #[test]
    fn flags_become_a_plan() {
        let cli = Cli::parse_from([
            "loadtest",
            "--url",
            "http://127.0.0.1:1/x",
            "--rate",
            "50",
            "-n",
            "10",
            "--no-scrape",
        ]);
        let plan = cli.plan().unwrap();
        assert!(matches!(plan.run.shape, LoadShape::Open { rate, .. } if rate == 50.0));
        assert_eq!(plan.run.stop, Stop::Requests(10));
        assert!(plan.run.metrics.is_none());
        assert!(Cli::try_parse_from(["loadtest", "-c", "2", "--rate", "5"]).is_err());
        let cli = Cli::parse_from(["loadtest", "-c", "0"]);
        let err = cli.plan().err().expect("zero workers is refused");
        assert!(err.to_string().starts_with("--concurrency"), "{err}");
    }
}
