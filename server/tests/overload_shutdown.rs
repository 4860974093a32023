//! Overload is shed with 429 at once; shutdown under load loses no accepted request.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{predict_multipart, request, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surplus_gets_429_quickly_while_accepted_requests_complete() {
    let server = TestServer::start(&[("MAX_QUEUE_SIZE", "4"), ("MAX_BATCH_SIZE", "4")]).await;
    let img = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (addr, img) = (server.addr, img.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                let r = predict_multipart(addr, &img, "").await.unwrap();
                (r, start.elapsed())
            })
        })
        .collect();
    let (mut ok, mut shed, mut slowest_429) = (0, 0, Duration::ZERO);
    for t in tasks {
        let (r, took) = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            429 => {
                shed += 1;
                assert_eq!(common::error_code(&r), "queue_full");
                assert!(r.headers.contains_key("retry-after"));
                slowest_429 = slowest_429.max(took);
            }
            other => panic!(
                "unexpected status {other}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    eprintln!(
        "64 clients, MAX_QUEUE_SIZE=4: {ok} × 200, {shed} × 429, slowest 429 in {slowest_429:?}"
    );
    assert!(ok >= 4, "accepted requests complete");
    assert!(shed > 0, "the surplus is shed");
    assert!(
        slowest_429 < Duration::from_millis(500),
        "429s are immediate, slowest {slowest_429:?}"
    );
    let m = String::from_utf8(server.get("/metrics").await.unwrap().body).unwrap();
    assert!(m.contains(&format!(
        "inference_requests_rejected_total{{reason=\"queue_full\"}} {shed}"
    )));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_answers_every_accepted_request() {
    // The server's own count of /predict answers: every one must reach its client.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let hooks = gateway::Hooks {
        on_response: Some(Arc::new({
            let answered = answered.clone();
            move |route, status| {
                if route == "/predict" {
                    answered.lock().unwrap().push(status);
                }
            }
        })),
        ..Default::default()
    };
    let mut server = TestServer::start_with(
        &[
            ("MAX_QUEUE_SIZE", "64"),
            ("GRACEFUL_SHUTDOWN_TIMEOUT", "20"),
        ],
        hooks,
    )
    .await;
    let img = std::fs::read(common::images("good").join("progressive-cat.jpg")).unwrap();
    let addr = server.addr;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let img = img.clone();
            tokio::spawn(async move { predict_multipart(addr, &img, "").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await; // requests are in flight and queued
    let stop_at = Instant::now();
    server.trigger_stop();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Not ready, and new connections are refused (or told 503) from now on.
    match request(addr, "GET", "/ready", &[], &[]).await {
        Ok(r) => assert_eq!(r.status, 503, "ready after shutdown began"),
        Err(e) => eprintln!("new connection refused during drain: {e}"),
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => panic!(
                "accepted request answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Err(_) => refused += 1, // never accepted
        }
    }
    server.task.await.unwrap().unwrap();
    eprintln!(
        "shutdown: {ok} answered 200, {refused} never accepted, stopped in {:?}",
        stop_at.elapsed()
    );
    let served = answered.lock().unwrap().clone();
    assert_eq!(
        served.len(),
        ok,
        "the server answered {served:?}, its clients received {ok}: an accepted request was lost"
    );
    assert!(served.iter().all(|s| *s == 200), "{served:?}");
    assert!(
        ok >= 8,
        "requests in flight at SIGTERM were answered ({ok})"
    );
    assert!(
        stop_at.elapsed() < Duration::from_secs(20),
        "exit within the grace period"
    );
}
