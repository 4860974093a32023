//! Connections, for both ports alike: a cap on how many are open (past it, a refusal at once);
//! a send timeout (a write the client leaves blocked for `SEND_TIMEOUT` fails, which closes the
//! connection); and for gRPC a handshake deadline: a connection that says nothing is closed
//! before HTTP/2 ever sees it. Each admitted connection holds a [`Slot`] until it closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

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

/// A connection with its place under the cap, whose writes fail once the peer has left one
/// blocked (its receive window full) for the send timeout.
#[derive(Debug)]
pub(crate) struct Counted<IO = TcpStream> {
    io: IO,
    _slot: Slot,
    send_timeout: Duration,
    /// Started when a write first finds the socket full; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> Counted<IO> {
    /// `io` holding `slot`, with writes bounded by `send_timeout`.
    pub(crate) fn new(io: IO, slot: Slot, send_timeout: Duration) -> Self {
        Counted {
            io,
            _slot: slot,
            send_timeout,
            stalled: None,
        }
    }

    /// What a write returns: progress clears the stall timer; a blocked write starts it, and
    /// fails once it has run out.
    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.send_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for SEND_TIMEOUT",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Accepts on `listener` for gRPC: past the cap a connection is closed at once; one silent for
/// `handshake` is closed; the rest are passed on, each holding its place until it closes, with
/// writes bounded by `send_timeout`.
/// The returned task accepts until aborted or until the receiver is dropped.
pub(crate) fn accept_grpc(
    listener: TcpListener,
    cap: Cap,
    (handshake, send_timeout): (Duration, Duration),
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
                    let _ = tx.send(Ok(Counted::new(stream, slot, send_timeout))).await;
                }
            });
        }
    });
    (task, rx)
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bound(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.bound(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bound(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Counted<TcpStream> {
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

    #[tokio::test(start_paused = true)]
    async fn a_write_left_blocked_for_the_send_timeout_fails() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = Counted::new(
            ours,
            Cap::new(1).try_take().unwrap(),
            Duration::from_secs(5),
        );
        // A peer that reads a little every 4 s: slow, but never stalled for 5 s.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                theirs.read_exact(&mut buf).await.unwrap();
            }
            theirs // then reads no more
        });
        let start = tokio::time::Instant::now();
        conn.write_all(&[7u8; 5 * 64]).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(16));
        let err = conn.write_all(&[7u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(16 + 5));
        drop(reader.await.unwrap());
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
