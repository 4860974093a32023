//! The HTTP contract against the real server: test images, errors, probes, metrics.

mod common;

use common::{error_code, files, request, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_test_image_gets_the_right_answer_and_the_server_keeps_serving() {
    let server = TestServer::start(&[]).await;
    let canary = common::images("good").join("ijg-testorig.jpg");
    let golden = common::golden();
    assert_eq!(
        golden.len(),
        files("good").len(),
        "a golden answer per good image"
    );
    for path in files("good") {
        let r = server.predict_file(&path, "").await.unwrap();
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["model"], "resnet50");
        let preds = r.predictions();
        assert_eq!(preds.len(), 5, "{}", path.display());
        assert!(
            preds.windows(2).all(|w| w[0].1 >= w[1].1),
            "sorted by probability: {preds:?}"
        );
        let total: f64 = preds.iter().map(|p| p.1).sum();
        assert!(
            total > 0.0 && total <= 1.0 + 1e-5,
            "softmax over all classes: {total}"
        );
        assert!(v["predictions"][0]["label"]
            .as_str()
            .is_some_and(|l| !l.is_empty()));
        assert!(r.headers.contains_key("x-request-id"));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (class, probability, _) = golden[&name];
        assert_eq!(preds[0].0, class, "{name}: top-1 {preds:?}");
        assert!(
            (preds[0].1 - probability).abs() < 1e-3,
            "{name}: {preds:?} vs {probability}"
        );
    }
    for path in files("unsupported") {
        let r = server.predict_file(&path, "").await.unwrap();
        assert_eq!(r.status, 415, "{}", path.display());
        assert_eq!(error_code(&r), "unsupported_image");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("12-bit"),
            "names the reason"
        );
        assert_eq!(server.predict_file(&canary, "").await.unwrap().status, 200);
    }
    for path in files("bad") {
        let r = server.predict_file(&path, "").await.unwrap();
        assert!(
            (400..500).contains(&r.status),
            "{} → {}",
            path.display(),
            r.status
        );
        let code = error_code(&r);
        eprintln!(
            "{} → {} {code}",
            path.file_name().unwrap().to_string_lossy(),
            r.status
        );
        assert_eq!(
            server.predict_file(&canary, "").await.unwrap().status,
            200,
            "still serving after {}",
            path.display()
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_probes_metrics_and_request_errors() {
    let server = TestServer::start(&[("MAX_BODY_BYTES", "200000")]).await;
    let addr = server.addr;
    let jpeg = std::fs::read(common::images("good").join("progressive-cat.jpg")).unwrap();

    // Raw image body with an image/* type, top_k honoured, request id echoed.
    let r = request(
        addr,
        "POST",
        "/predict?top_k=3",
        &[("content-type", "image/jpeg"), ("x-request-id", "abc-42")],
        &jpeg,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.predictions().len(), 3);
    assert_eq!(r.headers["x-request-id"], "abc-42");
    assert!(r.headers["server-timing"].contains("compute;dur="));

    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/predict",
            vec![("content-type", "application/json")],
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/predict",
            vec![],
            jpeg.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/predict",
            vec![("content-type", "image/jpeg")],
            vec![],
            400,
            "empty_image",
        ),
        (
            "POST",
            "/predict?top_k=0",
            vec![("content-type", "image/jpeg")],
            jpeg.clone(),
            400,
            "invalid_parameter",
        ),
        (
            "POST",
            "/predict",
            vec![("content-type", "multipart/form-data")],
            jpeg.clone(),
            400,
            "invalid_multipart",
        ),
        (
            "POST",
            "/predict",
            vec![("content-type", "image/png")],
            vec![7u8; 300_000],
            413,
            "body_too_large",
        ),
        ("GET", "/predict", vec![], vec![], 405, "method_not_allowed"),
        ("GET", "/nope", vec![], vec![], 404, "not_found"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let r = request(addr, method, path, &headers, &body).await.unwrap();
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (status, code),
            "{method} {path} {headers:?}"
        );
    }

    assert_eq!(server.get("/health").await.unwrap().status, 200);
    assert_eq!(server.get("/ready").await.unwrap().status, 200);
    let m = server.get("/metrics").await.unwrap();
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body).unwrap();
    for name in [
        "http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "inference_queue_depth 0",
        "inference_batch_size_bucket",
        "inference_queue_wait_seconds_count",
        "inference_stage_duration_seconds_count{stage=\"decode\"}",
        "inference_requests_rejected_total{reason=\"bad_input\"}",
        "model_info{device=\"cpu\",engine=\"onnxruntime\",model=\"resnet50\"",
        "route=\"unknown\"",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_predict_but_not_probes() {
    let server = TestServer::start(&[("API_KEYS", "s3cret,other")]).await;
    let img = common::images("good").join("ijg-testorig.jpg");
    let r = server.predict_file(&img, "").await.unwrap();
    assert_eq!((r.status, error_code(&r).as_str()), (401, "unauthorized"));
    let body = std::fs::read(&img).unwrap();
    let ok = request(
        server.addr,
        "POST",
        "/predict",
        &[
            ("content-type", "image/jpeg"),
            ("authorization", "Bearer s3cret"),
        ],
        &body,
    );
    assert_eq!(ok.await.unwrap().status, 200);
    let ok = request(
        server.addr,
        "POST",
        "/predict",
        &[("content-type", "image/jpeg"), ("x-api-key", "other")],
        &body,
    );
    assert_eq!(ok.await.unwrap().status, 200);
    for probe in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            server.get(probe).await.unwrap().status,
            200,
            "{probe} stays open"
        );
    }
    server.stop().await.unwrap();
}

/// A refused request whose body the server never read: the answer says `Connection: close` and
/// the server closes, so a client with a connection pool does not reuse it (tritonclient's HTTP
/// client did, and its next request met a closed socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_an_unread_body_closes_the_connection_and_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&[("API_KEYS", "s3cret")]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // A keep-alive request announcing 1 MB, of which 4 KB are sent.
    let head = "POST /predict HTTP/1.1\r\nhost: test\r\ncontent-type: image/jpeg\r\n\
                content-length: 1000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 4096]).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    let reply = common::parse(&raw).expect("a response");
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.headers.get("connection").map(String::as_str),
        Some("close")
    );
    // A refusal of a request without a body keeps the connection.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "GET /nowhere HTTP/1.1\r\nhost: test\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 404"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_describes_itself_and_every_route_names_its_method() {
    let server = TestServer::start(&[]).await;
    let doc = server.get("/openapi.json").await.unwrap();
    assert_eq!(doc.status, 200);
    assert_eq!(doc.headers["content-type"], "application/json");
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["paths"]["/predict"]["post"]["requestBody"].is_object());

    let page = server.get("/docs").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert!(page.headers["content-security-policy"].contains("default-src 'self'"));
    let js = server.get("/docs/swagger-ui-bundle.js").await.unwrap();
    assert_eq!(js.status, 200);
    assert!(js.headers["content-type"].starts_with("text/javascript"));
    assert!(js.body.len() > 100_000, "the bundle, from the binary");

    // A known route with another method: 405 naming the one it takes, in each route's own
    // error shape (ours, or KServe v2's `{"error": "…"}`).
    let addr = server.addr;
    for (method, path, allow, v2) in [
        ("POST", "/docs", "GET", false),
        ("DELETE", "/predict", "POST", false),
        ("GET", "/v2/repository/index", "POST", false),
        ("GET", "/v2/models/resnet50/versions/1/infer", "POST", true),
        ("PUT", "/v2/health/ready", "GET", true),
    ] {
        let r = request(addr, method, path, &[], &[]).await.unwrap();
        assert_eq!(
            (r.status, r.headers["allow"].as_str()),
            (405, allow),
            "{method} {path}"
        );
        let error = &r.json()["error"];
        assert_eq!(error.is_string(), v2, "{method} {path}: {error}");
    }
    server.stop().await.unwrap();

    let server = TestServer::start(&[("ENABLE_DOCS", "false")]).await;
    for path in ["/openapi.json", "/docs", "/docs/swagger-ui.css"] {
        let r = server.get(path).await.unwrap();
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    server.stop().await.unwrap();
}
