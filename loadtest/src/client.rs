//! One keep-alive HTTP/1.1 connection per worker, reopened when the server closes it or a request
//! times out.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Why a request got no HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The TCP connection or HTTP handshake failed.
    Connect,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The connection broke mid-request.
    Io,
}

impl Failure {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
        }
    }
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response with this status (body read to the end).
    Status(u16),
    /// No response.
    Failed(Failure),
}

impl Outcome {
    /// A 2xx status.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }
}

/// A lazily opened connection to one address.
pub struct Conn {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    driver: Option<JoinHandle<()>>,
}

impl Conn {
    /// A connection to `addr` (`host:port`), opened on first use.
    pub fn new(addr: &str) -> Self {
        Conn {
            addr: addr.to_owned(),
            sender: None,
            driver: None,
        }
    }

    async fn open(&mut self) -> Result<(), Failure> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        self.driver = Some(tokio::spawn(async move {
            let _ = conn.await;
        }));
        self.sender = Some(sender);
        Ok(())
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }

    /// Sends `req` and reads the whole response within `timeout` (connecting included).
    pub async fn send(&mut self, req: Request<Full<Bytes>>, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(Ok((status, _))) => Outcome::Status(status),
            Ok(Err(failure)) => {
                self.close();
                Outcome::Failed(failure)
            }
            Err(_) => {
                self.close();
                Outcome::Failed(Failure::Timeout)
            }
        }
    }

    /// One request on this connection (reopened when needed): the status and the whole body.
    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), Failure> {
        let reusable = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.close();
            self.open().await?;
        }
        let sender = self.sender.as_mut().expect("opened above");
        let response = sender.send_request(req).await.map_err(|_| Failure::Io)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Io)?;
        Ok((status, body.to_bytes()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

/// GETs `url`'s path from `addr` on a fresh connection and returns the body if the status is 200.
pub async fn get_text(addr: &str, host: &str, path: &str, timeout: Duration) -> Option<String> {
    let mut conn = Conn::new(addr);
    let req = Request::get(path)
        .header(hyper::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .ok()?;
    match tokio::time::timeout(timeout, conn.exchange(req)).await {
        Ok(Ok((200, body))) => String::from_utf8(body.to_vec()).ok(),
        _ => None,
    }
}
