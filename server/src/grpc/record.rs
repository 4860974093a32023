//! One record per gRPC call, whether the gate refuses it or the service answers it: the call's
//! span, its request id, and at the end the service's request record (metrics with exemplar,
//! the span's answer, the access-log line, the response hook) and the refusal's log lines.

use std::net::SocketAddr;
use std::time::Instant;

use hyper::header::HeaderMap;
use tracing::Span;

use super::status;
use crate::error::ApiError;
use crate::headers;
use crate::service::record::{count_refusal, finish, note_error, user_agent, Done};
use crate::service::App;
use crate::telemetry::trace::spans;
use opentelemetry_http::HeaderExtractor;

/// A call being served.
pub(super) struct Call {
    pub(super) span: Span,
    pub(super) request_id: String,
    route: &'static str,
    started: Instant,
    user_agent: Option<String>,
}

impl Call {
    /// The record of a call on `route` (the full method path) from `peer`, begun at `started`.
    pub(super) fn start(
        app: &App,
        route: &'static str,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        started: Instant,
    ) -> Self {
        let method = route.rsplit('/').next().unwrap_or(route);
        let quiet = matches!(method, "ServerLive" | "ServerReady" | "ModelReady");
        let port = app.config.http.grpc_port.unwrap_or(0);
        let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let span = spans::request("POST", route, &HeaderExtractor(headers), peer, port, quiet);
        Call {
            request_id: app.request_id(headers::request_id(headers)),
            user_agent: user_agent(&span, || headers::user_agent(headers)),
            span,
            route,
            started,
        }
    }

    /// Records the call's outcome; an error's status is the HTTP status its kind stands for.
    pub(super) fn end(self, app: &App, outcome: Result<(), &ApiError>) {
        let status = match outcome {
            Ok(()) => 200,
            Err(e) => {
                count_refusal(app, e, super::is_repository(self.route));
                note_error(e, app);
                status::label(e)
            }
        };
        let done = Done {
            method: "POST",
            route: self.route,
            status,
            request_id: &self.request_id,
            user_agent: self.user_agent,
            elapsed: self.started.elapsed(),
        };
        finish(app, &self.span, done);
    }
}
