//! Traces and exemplars against a local OTLP/HTTP receiver that decodes what the server sends.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{request, TestServer};
// The official OTLP protobuf types (opentelemetry-proto), not the exporter's own structs: what
// the server sends must decode as the specification defines it.
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message as _;

/// Collects every span POSTed to `/v1/traces`, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    async fn start(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = self.spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let spans = spans.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let spans = spans.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body)
                                .expect("valid OTLP protobuf");
                            for rs in export.resource_spans {
                                let service = rs
                                    .resource
                                    .unwrap()
                                    .attributes
                                    .into_iter()
                                    .find(|kv| kv.key == "service.name")
                                    .and_then(|kv| match kv.value?.value? {
                                        any_value::Value::StringValue(s) => Some(s),
                                        _ => None,
                                    })
                                    .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    spans
                                        .lock()
                                        .extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        addr
    }

    async fn wait_for(&self, what: impl Fn(&[(String, Span)]) -> bool) -> Vec<(String, Span)> {
        let start = Instant::now();
        loop {
            let spans = self.spans.lock().clone();
            if what(&spans) || start.elapsed() > Duration::from_secs(10) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.clone()?.value? {
            any_value::Value::IntValue(i) => Some(i),
            _ => None,
        })
}

async fn predict_traced(addr: std::net::SocketAddr, traceparent: &str) -> common::Reply {
    let img = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let headers = [("content-type", "image/jpeg"), ("traceparent", traceparent)];
    request(addr, "POST", "/predict", &headers, &img)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_nest_under_the_callers_trace_and_batches_link_their_requests() {
    let receiver = Receiver::default();
    let otlp = format!("http://{}", receiver.start().await);
    let server = TestServer::start(&[
        ("ENABLE_TRACING", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("APP_NAME", "gateway-under-test"),
        ("MAX_BATCH_SIZE", "4"),
    ])
    .await;
    let traces: Vec<String> = (0..4)
        .map(|i| format!("4bf92f3577b34da6a3ce929d0e0e47{i:02x}"))
        .collect();
    let parent = "00f067aa0ba902b7";
    let addr = server.addr;
    let calls: Vec<_> = traces
        .iter()
        .map(|t| {
            let tp = format!("00-{t}-{parent}-01");
            tokio::spawn(async move { predict_traced(addr, &tp).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().status, 200);
    }
    let spans = receiver
        .wait_for(|s| {
            let servers = s.iter().filter(|(_, x)| x.kind == 2).count();
            let linked: usize = s
                .iter()
                .filter(|(_, x)| x.name == "inference.batch")
                .map(|(_, x)| x.links.len())
                .sum();
            servers >= 4 && linked >= 4
        })
        .await;
    for t in &traces {
        let in_trace: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| hex(&s.trace_id) == *t)
            .collect();
        let root = in_trace
            .iter()
            .find(|s| s.kind == 2)
            .unwrap_or_else(|| panic!("no server span in {t}"));
        assert_eq!(root.name, "POST /predict");
        assert_eq!(
            hex(&root.parent_span_id),
            parent,
            "the caller's span is the parent"
        );
        assert_eq!(int_attr(root, "http.response.status_code"), Some(200));
        let mut children: Vec<&str> = in_trace
            .iter()
            .filter(|s| s.parent_span_id == root.span_id)
            .map(|s| s.name.as_str())
            .collect();
        children.sort();
        assert_eq!(
            children,
            ["decode", "preprocess", "queue"],
            "stage spans of {t}"
        );
        for c in in_trace.iter().filter(|s| s.parent_span_id == root.span_id) {
            assert!(c.start_time_unix_nano >= root.start_time_unix_nano);
            assert!(
                c.end_time_unix_nano <= root.end_time_unix_nano,
                "{} ends inside the request",
                c.name
            );
        }
        let linked = spans.iter().any(|(_, b)| {
            b.name == "inference.batch"
                && b.links
                    .iter()
                    .any(|l| hex(&l.trace_id) == *t && l.span_id == root.span_id)
        });
        assert!(linked, "a batch span links to the request of {t}");
    }
    let batch = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "inference.batch")
        .unwrap();
    assert_eq!(
        int_attr(batch, "inference.batch_size").map(|n| n >= 1),
        Some(true)
    );
    assert!(spans
        .iter()
        .all(|(service, _)| service == "gateway-under-test"));

    // The OpenMetrics exposition carries a traced request's id as an exemplar.
    let om = request(
        server.addr,
        "GET",
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
        &[],
    )
    .await
    .unwrap();
    assert!(om.headers["content-type"].starts_with("application/openmetrics-text"));
    let text = String::from_utf8(om.body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    let exemplar = text
        .lines()
        .find(|l| {
            l.starts_with("http_request_duration_seconds_bucket{")
                && l.contains("method=\"POST\",route=\"/predict\"}")
                && l.contains(" # {trace_id=\"")
        })
        .expect("an exemplar on a /predict latency bucket");
    assert!(
        traces.iter().any(|t| exemplar.contains(t.as_str())),
        "{exemplar}"
    );
    assert!(text.contains("# TYPE http_requests counter\n"));
    // A scraper that does not ask for OpenMetrics gets the classic text format, no exemplars.
    let plain = server.get("/metrics").await.unwrap();
    assert_eq!(
        plain.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = String::from_utf8(plain.body).unwrap();
    assert!(plain.contains("# TYPE http_requests_total counter\n"));
    assert!(!plain.contains(" # {") && !plain.contains("# EOF"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_absent_collector_costs_requests_nothing() {
    // Accepts connections and never answers: each export waits out its 5 s timeout.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let absent = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for endpoint in [hanging.local_addr().unwrap(), absent] {
        let otlp = format!("http://{endpoint}");
        let server = TestServer::start(&[
            ("ENABLE_TRACING", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
        ])
        .await;
        let mut slowest = Duration::ZERO;
        for i in 0..12 {
            let t = Instant::now();
            let tp = format!("00-{:032x}-00f067aa0ba902b7-01", i + 1);
            assert_eq!(predict_traced(server.addr, &tp).await.status, 200);
            slowest = slowest.max(t.elapsed());
        }
        // A request that waited on the exporter would take the 5 s export timeout.
        assert!(
            slowest < Duration::from_secs(2),
            "{endpoint}: slowest request {slowest:?}"
        );
        let metrics = String::from_utf8(server.get("/metrics").await.unwrap().body).unwrap();
        let dropped: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("trace_spans_dropped_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        eprintln!("{endpoint}: slowest {slowest:?}, spans dropped {dropped}");
        assert!(dropped > 0.0, "lost spans are counted:\n{metrics}");
        server.stop().await.unwrap();
    }
}
