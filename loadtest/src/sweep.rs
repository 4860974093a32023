//! Sweeps: the same load at rising concurrency or rate, until the SLO is missed; the highest
//! throughput that met it is the answer, and throughput against latency is drawn as SVG.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{LoadShape, RunConfig};
use crate::report::RunReport;
use crate::slo::Slo;
use crate::{LoadError, Target};

/// What a sweep steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// Closed-loop workers.
    Concurrency,
    /// Open-loop requests per second.
    Rate,
}

/// `concurrency=1,2,4,8`, `concurrency=1..64` (doubling), `rate=10,20,40` or `rate=10..80`.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    /// The stepped quantity.
    pub axis: Axis,
    /// The steps, rising.
    pub values: Vec<f64>,
}

impl FromStr for SweepSpec {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::invalid("--sweep", format!("{s:?}: {why}"));
        let (axis, list) = s
            .split_once('=')
            .ok_or_else(|| bad("expected concurrency=… or rate=…"))?;
        let axis = match axis.trim() {
            "concurrency" | "c" => Axis::Concurrency,
            "rate" | "r" => Axis::Rate,
            _ => return Err(bad("the axis is concurrency or rate")),
        };
        let num = |v: &str| v.trim().parse::<f64>().map_err(|_| bad("not a number"));
        let mut values = match list.split_once("..") {
            Some((a, b)) => {
                let (mut v, end) = (num(a)?, num(b)?);
                let mut out = Vec::new();
                while v <= end && v > 0.0 {
                    out.push(v);
                    v *= 2.0;
                }
                out
            }
            None => list.split(',').map(num).collect::<Result<_, _>>()?,
        };
        if values.is_empty()
            || values
                .iter()
                .any(|v| v.is_nan() || *v <= 0.0 || v.is_infinite())
        {
            return Err(bad("steps must be positive"));
        }
        if axis == Axis::Concurrency && values.iter().any(|v| v.fract() != 0.0) {
            return Err(bad("concurrency steps are whole numbers"));
        }
        values.sort_by(f64::total_cmp);
        values.dedup();
        Ok(SweepSpec { axis, values })
    }
}

/// A sweep's steps and verdict.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// The stepped quantity.
    pub axis: Axis,
    /// The SLO each step was judged by.
    pub slo: String,
    /// Every step run, in order.
    pub steps: Vec<RunReport>,
    /// Index into `steps` of the highest 2xx throughput that met the SLO.
    pub best: Option<usize>,
}

/// Runs `base` at each step of `spec` (the step replaces its concurrency or rate) and stops after
/// the first step that misses `slo`, unless `keep_going`.
pub async fn sweep(
    base: &RunConfig,
    spec: &SweepSpec,
    target: Arc<Target>,
    slo: &Slo,
    slo_text: &str,
    keep_going: bool,
) -> SweepReport {
    let mut steps = Vec::new();
    for &value in &spec.values {
        let mut cfg = base.clone();
        cfg.shape = match (spec.axis, base.shape) {
            (Axis::Concurrency, _) => LoadShape::Closed {
                concurrency: value as usize,
            },
            (
                Axis::Rate,
                LoadShape::Open {
                    arrivals,
                    connections,
                    ..
                },
            ) => LoadShape::Open {
                rate: value,
                arrivals,
                connections,
            },
            (Axis::Rate, LoadShape::Closed { concurrency }) => LoadShape::Open {
                rate: value,
                arrivals: crate::Arrivals::Constant,
                connections: concurrency,
            },
        };
        let mut report = crate::run(&cfg, target.clone()).await;
        slo.apply(&mut report);
        eprintln!(
            "sweep {:?}={value}: {:.1}/s 2xx, p99 {} ms, slo {}",
            spec.axis,
            report.goodput_rps,
            report
                .percentile_ms(99.0)
                .map_or("n/a".into(), |p| format!("{p:.1}")),
            if report.slo_passed { "met" } else { "missed" }
        );
        let missed = !report.slo_passed;
        steps.push(report);
        if missed && !keep_going {
            break;
        }
    }
    let best = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.slo_passed)
        .max_by(|a, b| a.1.goodput_rps.total_cmp(&b.1.goodput_rps))
        .map(|(i, _)| i);
    SweepReport {
        axis: spec.axis,
        slo: slo_text.to_owned(),
        steps,
        best,
    }
}

/// Throughput (x) against latency (y) for every step: the SLO's percentile (p99 by default) and
/// p50, the SLO's latency bound as a dashed line, the best step ringed.
pub fn svg(report: &SweepReport, slo: &Slo, title: &str) -> String {
    let (w, h, l, r, t, b) = (720.0, 440.0, 70.0, 30.0, 50.0, 60.0);
    let q = slo.latency_percentile().unwrap_or(99.0);
    let pts = |q: f64| -> Vec<(f64, f64, String)> {
        report
            .steps
            .iter()
            .filter_map(|s| {
                let label = s.concurrency.map_or_else(
                    || format!("{}/s", s.rate.unwrap_or(0.0)),
                    |c| format!("c={c}"),
                );
                Some((s.goodput_rps, s.percentile_ms(q)?, label))
            })
            .collect()
    };
    let (tail, median) = (pts(q), pts(50.0));
    let limit = slo.latency_limit();
    let max_x = nice(tail.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05);
    let max_y = tail
        .iter()
        .map(|p| p.1)
        .chain(limit.iter().map(|l| l.1))
        .fold(1.0, f64::max);
    let max_y = nice(max_y * 1.1);
    let sx = |x: f64| l + x / max_x * (w - l - r);
    let sy = |y: f64| h - b - y / max_y * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="28" font-size="15" text-anchor="middle">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    for i in 0..=5 {
        let (xv, yv) = (max_x * i as f64 / 5.0, max_y * i as f64 / 5.0);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            sy(yv) + 4.0,
            tick(yv),
            y = sy(yv)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            sx(xv),
            h - b + 18.0,
            tick(xv)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">throughput (2xx answers/s)</text>"#,
        (l + w - r) / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">latency (ms)</text>"#,
        h / 2.0,
        h / 2.0
    );
    if let Some((text, ms)) = &limit {
        let _ = writeln!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{y}" y2="{y}" stroke="#c00" stroke-dasharray="6 4"/><text x="{}" y="{}" fill="#c00" text-anchor="end">SLO {}</text>"##,
            w - r,
            w - r,
            sy(*ms) - 5.0,
            escape(text),
            y = sy(*ms)
        );
    }
    for (series, colour, name) in [
        (&tail, "#1f5fbf", format!("p{q}")),
        (&median, "#888", "p50".to_owned()),
    ] {
        let path: Vec<String> = series
            .iter()
            .map(|(x, y, _)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y, label) in series {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
                sx(*x),
                sy(*y)
            );
            if colour != "#888" {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                    sx(*x) + 5.0,
                    sy(*y) - 6.0,
                    escape(label)
                );
            }
        }
        if let Some((x, y, _)) = series.last() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{name}</text>"#,
                sx(*x) + 6.0,
                sy(*y) + 14.0
            );
        }
    }
    if let Some(i) = report.best {
        if let Some(p99) = report.steps[i].percentile_ms(q) {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="9" fill="none" stroke="#080" stroke-width="2"/><text x="{l}" y="{}" fill="#080">best within SLO: {:.1}/s</text>"##,
                sx(report.steps[i].goodput_rps),
                sy(p99),
                t - 8.0,
                report.steps[i].goodput_rps
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `v`, so axis ticks (fifths) are round.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|x| *x >= v)
        .unwrap_or(10.0 * p)
}

fn tick(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_doubling_ranges() {
        let s: SweepSpec = "concurrency=1..16".parse().unwrap();
        assert_eq!(
            (s.axis, s.values),
            (Axis::Concurrency, vec![1.0, 2.0, 4.0, 8.0, 16.0])
        );
        let s: SweepSpec = "rate=40,10,20".parse().unwrap();
        assert_eq!((s.axis, s.values), (Axis::Rate, vec![10.0, 20.0, 40.0]));
        for bad in [
            "1,2",
            "speed=1",
            "concurrency=1.5",
            "rate=0",
            "rate=",
            "rate=a",
        ] {
            assert!(bad.parse::<SweepSpec>().is_err(), "{bad:?}");
        }
    }
}
