//! Thresholds such as `p99<250ms,errors<0.1%,rps>100` that make a run pass or fail.

use std::str::FromStr;

use crate::report::{RunReport, SloResult};
use crate::LoadError;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// A latency percentile (0–100) of successful requests, in ms.
    Percentile(f64),
    /// Mean latency, ms.
    Mean,
    /// Max latency, ms.
    Max,
    /// Failed / all, as a ratio.
    Errors,
    /// Successful answers per second.
    Rps,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    text: String,
    metric: Metric,
    op: Op,
    value: f64,
}

/// A set of thresholds, all of which must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slo {
    terms: Vec<Term>,
}

impl FromStr for Slo {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, LoadError> {
        let terms = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>()?;
        if terms.is_empty() {
            return Err(LoadError::invalid("--slo", "no threshold given"));
        }
        Ok(Slo { terms })
    }
}

fn parse_term(text: &str) -> Result<Term, LoadError> {
    let bad = |why: &str| LoadError::invalid("--slo", format!("{text:?}: {why}"));
    let at = text.find(['<', '>']).ok_or_else(|| bad("needs < or >"))?;
    let (name, rest) = (text[..at].trim().to_ascii_lowercase(), &text[at..]);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Gt, &rest[1..])
    };
    let metric = match name.as_str() {
        "mean" | "avg" => Metric::Mean,
        "max" => Metric::Max,
        "errors" | "error_rate" => Metric::Errors,
        "rps" | "throughput" => Metric::Rps,
        p if p.starts_with('p') => {
            let q: f64 = p[1..].parse().map_err(|_| bad("unknown percentile"))?;
            if !(0.0..=100.0).contains(&q) {
                return Err(bad("percentile outside 0–100"));
            }
            Metric::Percentile(q)
        }
        _ => {
            return Err(bad(
                "unknown metric (p50, p99, p99.9, mean, max, errors, rps)",
            ))
        }
    };
    let value = value.trim();
    let number = |s: &str| s.trim().parse::<f64>().map_err(|_| bad("not a number"));
    let value = match metric {
        Metric::Errors => match value.strip_suffix('%') {
            Some(v) => number(v)? / 100.0,
            None => number(value)?,
        },
        Metric::Rps => number(value.trim_end_matches("/s"))?,
        _ => {
            let (v, scale) = if let Some(v) = value.strip_suffix("ms") {
                (v, 1.0)
            } else if let Some(v) = value.strip_suffix("us").or(value.strip_suffix("µs")) {
                (v, 0.001)
            } else if let Some(v) = value.strip_suffix('s') {
                (v, 1000.0)
            } else {
                return Err(bad("a latency needs a unit (ms, s, us)"));
            };
            number(v)? * scale
        }
    };
    Ok(Term {
        text: text.to_owned(),
        metric,
        op,
        value,
    })
}

impl Slo {
    /// Checks every threshold against a run.
    pub fn check(&self, run: &RunReport) -> Vec<SloResult> {
        self.terms
            .iter()
            .map(|t| {
                let actual = match t.metric {
                    Metric::Percentile(q) => run.percentile_ms(q),
                    Metric::Mean => run.latency_ms.as_ref().map(|l| l.mean),
                    Metric::Max => run.latency_ms.as_ref().map(|l| l.max),
                    Metric::Errors => Some(run.error_ratio),
                    Metric::Rps => Some(run.goodput_rps),
                };
                let passed = actual.is_some_and(|a| match t.op {
                    Op::Lt => a < t.value,
                    Op::Le => a <= t.value,
                    Op::Gt => a > t.value,
                    Op::Ge => a >= t.value,
                });
                SloResult {
                    threshold: t.text.clone(),
                    actual,
                    passed,
                }
            })
            .collect()
    }

    /// Checks every threshold against `run` and records the verdicts in it.
    pub fn apply(&self, run: &mut RunReport) {
        run.slo = self.check(run);
        run.slo_passed = run.slo.iter().all(|r| r.passed);
    }

    /// The first latency upper bound, as `(label, ms)`, for charts.
    pub fn latency_limit(&self) -> Option<(String, f64)> {
        self.terms.iter().find_map(|t| match (t.metric, t.op) {
            (Metric::Percentile(_) | Metric::Mean | Metric::Max, Op::Lt | Op::Le) => {
                Some((t.text.clone(), t.value))
            }
            _ => None,
        })
    }

    /// The percentile the first latency bound is on (99 for `p99<…`), if it is a percentile.
    pub fn latency_percentile(&self) -> Option<f64> {
        self.terms.iter().find_map(|t| match t.metric {
            Metric::Percentile(q) => Some(q),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_operators() {
        let slo: Slo = "p99<250ms, p99.9<=1s, errors<0.1%, rps>=100, mean<800us"
            .parse()
            .unwrap();
        let v: Vec<_> = slo
            .terms
            .iter()
            .map(|t| (t.metric, t.op, t.value))
            .collect();
        assert_eq!(v[0], (Metric::Percentile(99.0), Op::Lt, 250.0));
        assert_eq!(v[1], (Metric::Percentile(99.9), Op::Le, 1000.0));
        assert_eq!(v[2].0, Metric::Errors);
        assert!((v[2].2 - 0.001).abs() < 1e-12);
        assert_eq!(v[3], (Metric::Rps, Op::Ge, 100.0));
        assert!((v[4].2 - 0.8).abs() < 1e-12);
        assert_eq!(slo.latency_limit(), Some(("p99<250ms".to_owned(), 250.0)));
        for bad in ["", "p99", "p99<250", "p101<1ms", "foo<1", "errors<x%"] {
            assert!(bad.parse::<Slo>().is_err(), "{bad:?} should not parse");
        }
    }
}
