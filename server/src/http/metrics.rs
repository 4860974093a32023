//! `GET /metrics` with content negotiation, as Prometheus' own clients do it: OpenMetrics (with
//! exemplars) when the scraper's `Accept` prefers `application/openmetrics-text` (Prometheus
//! asks for it first), the Prometheus text format 0.0.4 otherwise (`curl`, `promtool`, older
//! agents).

use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::{Request, StatusCode};

use super::{respond, HttpResponse};
use crate::service::App;
use crate::telemetry::metrics::Exposition;

/// `GET /metrics`.
pub fn serve(app: &App, req: &Request<Incoming>) -> HttpResponse {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = negotiate(accept);
    respond(
        StatusCode::OK,
        format.content_type(),
        app.metrics.render(format),
    )
}

/// The exposition `accept` asks for: its media ranges in order of preference (`q`, then the
/// order given), the first that names one of ours; text 0.0.4 when none does.
pub fn negotiate(accept: Option<&str>) -> Exposition {
    let mut ranges: Vec<(f32, &str)> = accept
        .unwrap_or("")
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().filter(|e| !e.is_empty())?;
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((q, essence))
        })
        .collect();
    // Stable: equal preferences keep the client's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .into_iter()
        .find_map(|(_, essence)| {
            if essence.eq_ignore_ascii_case("application/openmetrics-text") {
                Some(Exposition::OpenMetrics)
            } else if essence.eq_ignore_ascii_case("text/plain") {
                Some(Exposition::Text)
            } else {
                None
            }
        })
        .unwrap_or(Exposition::Text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Exposition::{OpenMetrics, Text};

    #[test]
    fn each_scraper_gets_what_it_asks_for() {
        let cases = [
            // Prometheus 2.x's scrape header.
            ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", OpenMetrics),
            // Prometheus with its classic-format fallback first.
            ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5", Text),
            ("application/openmetrics-text; version=1.0.0", OpenMetrics),
            ("text/plain", Text),
            ("*/*", Text),
            ("", Text),
            ("application/json", Text),
            ("application/openmetrics-text;q=0, text/plain", Text),
            ("text/plain;q=0.2, APPLICATION/OPENMETRICS-TEXT;q=0.3", OpenMetrics),
            (",;,q=,", Text),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(Some(accept)), want, "{accept}");
        }
        assert_eq!(negotiate(None), Text);
    }
}
