//! The OpenMetrics text format (what Prometheus asks for first), which unlike the classic text
//! format can carry exemplars: a request-latency bucket names the trace of a request that
//! landed in it, so a slow bucket leads to its trace.

use std::fmt::Write as _;

use prometheus::proto::{MetricFamily, MetricType};

use super::exemplars::Exemplar;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `{a="x",b="y"}` with `extra` appended (e.g. `le`), or nothing when empty.
fn labels(pairs: &[prometheus::proto::LabelPair], extra: Option<(&str, &str)>) -> String {
    let mut items: Vec<String> = pairs
        .iter()
        .map(|l| format!("{}=\"{}\"", l.name(), escape_label(l.value())))
        .collect();
    if let Some((k, v)) = extra {
        items.push(format!("{k}=\"{}\"", escape_label(v)));
    }
    if items.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", items.join(","))
    }
}

/// A float as OpenMetrics wants it (`1.0`, `+Inf`).
fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// Encodes `families`; `exemplar(family, labels, bucket index)` supplies exemplars for
/// histogram buckets (index `buckets.len()` is `+Inf`).
pub fn encode(
    families: &[MetricFamily],
    exemplar: impl Fn(&str, &[prometheus::proto::LabelPair], usize) -> Option<Exemplar>,
) -> String {
    let mut out = String::new();
    for family in families {
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            // Neither is registered by this server; skip rather than write something unparsable.
            MetricType::SUMMARY | MetricType::UNTYPED => continue,
        };
        let _ = writeln!(out, "# TYPE {base} {kind}");
        let _ = writeln!(out, "# HELP {base} {}", escape_help(family.help()));
        for m in family.get_metric() {
            let l = m.get_label();
            match family.get_field_type() {
                MetricType::COUNTER => {
                    let _ = writeln!(
                        out,
                        "{base}_total{} {}",
                        labels(l, None),
                        float(m.get_counter().get_value())
                    );
                }
                MetricType::GAUGE => {
                    let _ = writeln!(
                        out,
                        "{base}{} {}",
                        labels(l, None),
                        float(m.get_gauge().get_value())
                    );
                }
                _ => {
                    let h = m.get_histogram();
                    let buckets = h.get_bucket();
                    for (i, b) in buckets.iter().enumerate() {
                        let le = float(b.upper_bound());
                        let _ = write!(
                            out,
                            "{base}_bucket{} {}",
                            labels(l, Some(("le", &le))),
                            b.cumulative_count()
                        );
                        write_exemplar(&mut out, exemplar(name, l, i));
                    }
                    let inf = labels(l, Some(("le", "+Inf")));
                    let _ = write!(out, "{base}_bucket{inf} {}", h.get_sample_count());
                    write_exemplar(&mut out, exemplar(name, l, buckets.len()));
                    let _ = writeln!(
                        out,
                        "{base}_sum{} {}",
                        labels(l, None),
                        float(h.get_sample_sum())
                    );
                    let _ = writeln!(
                        out,
                        "{base}_count{} {}",
                        labels(l, None),
                        h.get_sample_count()
                    );
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn write_exemplar(out: &mut String, e: Option<Exemplar>) {
    if let Some(e) = e {
        let _ = write!(
            out,
            " # {{trace_id=\"{}\"}} {} {:.3}",
            e.trace_id,
            float(e.value),
            e.timestamp
        );
    }
    out.push('\n');
}
