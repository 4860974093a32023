//! Connections, for both ports alike: a cap on how many are open (past it, a refusal at once),
//! and for gRPC a handshake deadline: a connection that says nothing is closed before HTTP/2
//! ever sees it. Each admitted connection holds a [`Slot`] until it closes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The open-connection cap of one port.
#[derive(Debug, Clone)]
pub(crate) struct Cap(Arc<Semaphore>);

/// One open connection's place under its port's [`Cap`]; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot(
    // Held for its drop.
    #[allow(dead_code)] OwnedSemaphorePermit,
);

impl Cap {
    /// A cap of `max` open connections.
    pub(crate) fn new(max: usize) -> Self {
        Cap(Arc::new(Semaphore::new(max)))
    }

    /// A place, or `None` when `max` connections are open.
    pub(crate) fn try_take(&self) -> Option<Slot> {
        self.0.clone().try_acquire_owned().ok().map(Slot)
    }
}

/// What a new HTTP connection past the cap reads before it is closed.
pub(crate) const HTTP_REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 86\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry\"}}";

/// A TCP connection with its place under the cap.
#[derive(Debug)]
pub(crate) struct Counted {
    io: TcpStream,
    _slot: Slot,
}

/// Accepts on `listener` for gRPC: past the cap a connection is closed at once; one silent for
/// `handshake` is closed; the rest are passed on, each holding its place until it closes.
/// The returned task accepts until aborted or until the receiver is dropped.
pub(crate) fn accept_grpc(
    listener: TcpListener,
    cap: Cap,
    handshake: Duration,
    refused: impl Fn() + Send + 'static,
) -> (JoinHandle<()>, mpsc::Receiver<io::Result<Counted>>) {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    // Out of file descriptors, say: no busy loop.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = cap.try_take() else {
                refused();
                continue; // dropped: closed
            };
            let _ = stream.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                // The client speaks first in HTTP/2 (its preface). `peek` waits for a byte
                // (`readable` may wake without one).
                let first = tokio::time::timeout(handshake, stream.peek(&mut [0u8; 1])).await;
                if let Ok(Ok(1..)) = first {
                    let _ = tx
                        .send(Ok(Counted {
                            io: stream,
                            _slot: slot,
                        }))
                        .await;
                }
            });
        }
    });
    (task, rx)
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::Connected::connect_info(&self.io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_frees_a_place_when_a_slot_drops() {
        let cap = Cap::new(2);
        let a = cap.try_take().unwrap();
        let _b = cap.try_take().unwrap();
        assert!(cap.try_take().is_none());
        drop(a);
        assert!(cap.try_take().is_some());
    }

    #[test]
    fn the_refusal_is_a_complete_answer() {
        let text = std::str::from_utf8(HTTP_REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .rsplit("content-length: ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
