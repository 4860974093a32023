//! A test server with a known, adjustable delay: every answer waits `delay`; `stall(d)` makes
//! every request (arriving or in flight) wait until `d` from now first. `/status/N` answers N.
//! `/metrics` exposes gateway-style counters so the scrape can be checked: one "batch" per
//! answered request and a `queue_full` reject per 429.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    delay: Duration,
    stall_until: Mutex<Option<Instant>>,
    answered: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl TestServer {
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            delay,
            ..State::default()
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Holds every answer until `d` from now.
    pub fn stall(&self, d: Duration) {
        *self.state.stall_until.lock() = Some(Instant::now() + d);
    }

    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::Relaxed)
    }
}

/// Sleeps `d` to within a few µs: the timer wheel rounds up to whole milliseconds, so the last
/// 1.5 ms are spent yielding.
async fn precise_sleep(d: Duration) {
    let until = Instant::now() + d;
    if d > Duration::from_millis(2) {
        tokio::time::sleep_until(until - Duration::from_micros(1500)).await;
    }
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

async fn handle(
    s: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/metrics" {
        let (a, r) = (
            s.answered.load(Ordering::Relaxed),
            s.rejected.load(Ordering::Relaxed),
        );
        let text = format!(
            "# TYPE inference_batch_size histogram\ninference_batch_size_sum {a}\n\
             inference_batch_size_count {a}\ninference_queue_depth {}\n\
             inference_requests_rejected_total{{reason=\"queue_full\"}} {r}\n",
            s.in_flight.load(Ordering::Relaxed)
        );
        return Ok(Response::new(Full::new(Bytes::from(text))));
    }
    s.in_flight.fetch_add(1, Ordering::Relaxed);
    let stall = *s.stall_until.lock();
    if let Some(until) = stall {
        tokio::time::sleep_until(until).await;
    }
    precise_sleep(s.delay).await;
    s.in_flight.fetch_sub(1, Ordering::Relaxed);
    let status: u16 = path
        .strip_prefix("/status/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    if status == 429 {
        s.rejected.fetch_add(1, Ordering::Relaxed);
    } else {
        s.answered.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(resp)
}
