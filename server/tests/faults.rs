//! Faults injected into the real server's engine: a failed batch, a panicking backend, a lane
//! that cannot rebuild for a while. Every request gets an answer, `/ready` tells the truth, and
//! service resumes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_code, TestServer};
use engine::{Backend, BatchBuffer, EngineError, StageTiming};

/// Runs the real backend, except that the runs in `fail` return an error (with a path in its
/// message, which must not reach clients) and the runs in `panic` panic.
struct Faulty {
    inner: Box<dyn Backend>,
    runs: Arc<AtomicUsize>,
    fail: Arc<HashSet<usize>>,
    panic: Arc<HashSet<usize>>,
    /// Extra time per batch (a slow engine).
    delay: Duration,
}

impl Backend for Faulty {
    fn run(
        &mut self,
        b: &BatchBuffer,
        logits: &mut Vec<f32>,
        t: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        if self.fail.contains(&run) {
            return Err(EngineError::Inference(
                "injected fault in /opt/secret/model.onnx".into(),
            ));
        }
        assert!(!self.panic.contains(&run), "injected panic");
        std::thread::sleep(self.delay);
        self.inner.run(b, logits, t)
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn alloc_batch(&self, capacity: usize) -> BatchBuffer {
        self.inner.alloc_batch(capacity)
    }
}

/// Hooks whose backend fails runs `fail`, panics on runs `panic`, and whose builds in
/// `bad_builds` fail after a pause (build 0 is the one at start).
fn faulty(fail: &[usize], panic: &[usize], bad_builds: &[usize]) -> gateway::Hooks {
    faulty_counted(
        fail,
        panic,
        bad_builds,
        Duration::ZERO,
        Arc::new(AtomicUsize::new(0)),
    )
}

/// [`faulty`], `delay` per batch, counting batches in `runs`.
fn faulty_counted(
    fail: &[usize],
    panic: &[usize],
    bad_builds: &[usize],
    delay: Duration,
    runs: Arc<AtomicUsize>,
) -> gateway::Hooks {
    let builds = Arc::new(AtomicUsize::new(0));
    let (fail, panic): (Arc<HashSet<_>>, Arc<HashSet<_>>) = (
        Arc::new(fail.iter().copied().collect()),
        Arc::new(panic.iter().copied().collect()),
    );
    let bad: HashSet<usize> = bad_builds.iter().copied().collect();
    gateway::Hooks {
        wrap_backend: Some(Arc::new(move |_lane, inner| {
            if bad.contains(&builds.fetch_add(1, Ordering::SeqCst)) {
                std::thread::sleep(Duration::from_millis(200));
                return Err(EngineError::ModelLoad("injected build failure".into()));
            }
            Ok(Box::new(Faulty {
                inner,
                runs: runs.clone(),
                fail: fail.clone(),
                panic: panic.clone(),
                delay,
            }) as Box<dyn Backend>)
        })),
        ..Default::default()
    }
}

/// The value of the series `name` (the whole text before the value) in `/metrics`; 0 if absent.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let body = String::from_utf8(server.get("/metrics").await.unwrap().body).unwrap();
    body.lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `cond` until it holds (10 s at most): explicit synchronisation on server state.
async fn wait_until<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn predict(server: &TestServer) -> common::Reply {
    server
        .predict_file(&common::images("good").join("ijg-testorig.jpg"), "")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_answers_each_of_its_requests_and_the_next_batch_runs() {
    let server = TestServer::start_with(
        &[("MODEL_WARMUP", "false"), ("MAX_BATCH_SIZE", "8")],
        faulty(&[0], &[], &[]),
    )
    .await;
    // Run 0 fails: the first batch the concurrent requests form. Usually that is all six (the
    // batcher waits for admitted requests still decoding); when they split, the later batches
    // succeed. Either way every request gets an answer, and the runs after the failure succeed.
    // (Failing run 1 too made the first sequential request below fail whenever all six had
    // shared one batch.)
    let addr = server.addr;
    let img = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let img = img.clone();
            tokio::spawn(async move { common::predict_multipart(addr, &img, "").await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        if r.status == 500 {
            assert_eq!(error_code(&r), "inference_failed");
            let body = String::from_utf8_lossy(&r.body).to_string();
            assert!(
                !body.contains("/opt/secret"),
                "no internal detail without DEBUG: {body}"
            );
        }
        statuses.push(r.status);
    }
    eprintln!("6 concurrent requests, the first batch failing: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 500),
        "{statuses:?}"
    );
    assert!(statuses.contains(&500), "{statuses:?}");
    // The batches after the failures run normally.
    for _ in 0..3 {
        let r = predict(&server).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(server.get("/ready").await.unwrap().status, 200);
    server.stop().await.unwrap();

    // With DEBUG=true the detail is shown.
    let server = TestServer::start_with(
        &[("MODEL_WARMUP", "false"), ("DEBUG", "true")],
        faulty(&[0], &[], &[]),
    )
    .await;
    let r = predict(&server).await;
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("injected fault"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_engine_is_rebuilt_and_ready_reflects_it_meanwhile() {
    // Run 0 panics; the next two rebuilds fail (200 ms each, then 100 and 200 ms of backoff).
    let server =
        TestServer::start_with(&[("MODEL_WARMUP", "false")], faulty(&[], &[0], &[1, 2])).await;
    let r = predict(&server).await;
    assert_eq!(r.status, 500);
    assert_eq!(error_code(&r), "inference_failed");
    let (mut saw_down, mut refused_fast) = (false, false);
    let start = Instant::now();
    loop {
        let ready = server.get("/ready").await.unwrap();
        if ready.status == 503 {
            saw_down = true;
            let t = Instant::now();
            let r = predict(&server).await;
            if r.status == 503 {
                assert_eq!(error_code(&r), "engine_restarting");
                assert!(r.headers.contains_key("retry-after"));
                refused_fast |= t.elapsed() < Duration::from_millis(500);
            }
        } else if saw_down {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lane came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("lane down then back after {:?}", start.elapsed());
    assert!(saw_down, "/ready was 503 while the lane rebuilt");
    assert!(
        refused_fast,
        "requests during the rebuild were refused at once, not held"
    );
    for _ in 0..3 {
        assert_eq!(predict(&server).await.status, 200);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_dropped_before_compute() {
    // One image per batch and a slow engine (400 ms a batch): while the first request computes,
    // three more wait in the queue; their clients hang up; none of them may reach the engine.
    let runs = Arc::new(AtomicUsize::new(0));
    let hooks = faulty_counted(&[], &[], &[], Duration::from_millis(400), runs.clone());
    let server =
        TestServer::start_with(&[("MODEL_WARMUP", "false"), ("MAX_BATCH_SIZE", "1")], hooks).await;
    let addr = server.addr;
    let img = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let first = {
        let img = img.clone();
        tokio::spawn(async move { common::predict_multipart(addr, &img, "").await.unwrap() })
    };
    // Synchronise on what the server reports, not on sleeps: the first batch is computing...
    wait_until(|| async { runs.load(Ordering::SeqCst) >= 1 }).await;
    // ...three more are sent; their clients hang up after 150 ms, long after the images are
    // decoded and queued (about a millisecond each), while the first batch still computes.
    let mut leavers = Vec::new();
    for _ in 0..3 {
        let img = img.clone();
        leavers.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_millis(150),
                common::predict_multipart(addr, &img, ""),
            )
            .await;
        }));
    }
    for l in leavers {
        l.await.unwrap(); // each timed out and dropped its connection
    }
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(predict(&server).await.status, 200);
    let cancelled_name = "inference_requests_rejected_total{reason=\"cancelled\"}";
    wait_until(|| async { metric(&server, cancelled_name).await >= 3.0 }).await;
    let computed = runs.load(Ordering::SeqCst);
    let cancelled = metric(&server, cancelled_name).await;
    eprintln!(
        "batches computed: {computed} (2 answered requests); cancelled before compute: {cancelled}"
    );
    assert_eq!(
        computed, 2,
        "only the two requests whose clients waited were computed"
    );
    assert_eq!(cancelled, 3.0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_batcher_fails_health_so_the_pod_restarts() {
    let hooks = gateway::Hooks {
        batcher_fault: Some(Arc::new(|batch| {
            assert!(batch < 2, "injected batcher panic");
        })),
        ..Default::default()
    };
    let server = TestServer::start_with(&[], hooks).await;
    assert_eq!(predict(&server).await.status, 200, "batch 1 is served");
    assert_eq!(server.get("/health").await.unwrap().status, 200);
    let r = predict(&server).await; // batch 2 kills the batcher thread
    assert_eq!(
        r.status,
        503,
        "the request in flight is answered: {}",
        error_code(&r)
    );
    // The thread's death is recorded as it unwinds, a moment after the request in flight was
    // answered: poll, as a liveness probe does.
    let start = Instant::now();
    let health = loop {
        let h = server.get("/health").await.unwrap();
        if h.status != 200 || start.elapsed() > Duration::from_secs(5) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(health.status, 503, "liveness fails");
    assert!(String::from_utf8_lossy(&health.body).contains("batcher"));
    assert_eq!(
        server.get("/ready").await.unwrap().status,
        503,
        "and readiness"
    );
    server.stop().await.unwrap();
}
