//! Accepting HTTP/1.1 connections: the open-connection cap (past it, a 503 and close), the send
//! timeout, the header read timeout, and hyper's graceful shutdown watching each connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tracing::instrument::WithSubscriber;

use super::handle;
use crate::conn::{Cap, Counted, HTTP_REFUSAL};
use crate::service::App;

/// Serves one accepted HTTP connection under the open-connection cap; past it, the client reads
/// a 503 `too_many_connections` and the connection closes.
pub(crate) fn accept(
    app: &Arc<App>,
    accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    graceful: &GracefulShutdown,
    cap: &Cap,
) {
    let (mut stream, peer) = match accepted {
        Ok(a) => a,
        Err(e) => return tracing::warn!(error = %e, "accept failed"),
    };
    let Some(slot) = cap.try_take() else {
        app.metrics.reject("too_many_connections");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let refusal = stream.write_all(HTTP_REFUSAL);
            let _ = tokio::time::timeout(Duration::from_secs(1), refusal).await;
        });
        return;
    };
    let _ = stream.set_nodelay(true);
    let conn = &app.config.http.conn;
    let (head_timeout, stream) = (
        conn.handshake_timeout,
        Counted::new(stream, slot, conn.send_timeout),
    );
    let app = app.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(app, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    let conn = graceful.watch(conn);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        .with_current_subscriber(),
    );
}
