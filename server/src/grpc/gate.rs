//! What every gRPC call meets before tonic reads its message: the API key, from the headers,
//! for every method that needs one; a cap on the bytes a call may send (a unary call is one
//! message: `MAX_BODY_BYTES` for `ModelInfer`, 64 KiB for the rest, whose messages are a few
//! bytes); and for `ModelInfer`, the wire scan of [`super::wire`], so a message that would
//! expand in memory is refused before prost allocates for it. HTTP checks the same things in
//! the same order (key, declared length, bounded read).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Full, Limited};
use tonic::codegen::{http, Service};

use super::record::Call;
use crate::error::ApiError;
use crate::service::App;

const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// The methods that need the API key.
const KEYED: [&str; 4] = [
    INFER,
    "/inference.GRPCInferenceService/RepositoryIndex",
    "/inference.GRPCInferenceService/RepositoryModelLoad",
    "/inference.GRPCInferenceService/RepositoryModelUnload",
];
/// Bytes any other call may send.
const SMALL_CALL: usize = 64 << 10;
/// A gRPC message's frame header: a compression flag and a 32-bit length.
const FRAME_HEADER: usize = 5;

/// The gate in front of the generated service.
#[derive(Clone)]
pub(super) struct Gate<S> {
    pub(super) app: Arc<App>,
    pub(super) inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

type Answer = http::Response<tonic::body::Body>;

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: Service<http::Request<tonic::body::Body>, Response = Answer> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let app = self.app.clone();
        let keyed = KEYED.into_iter().find(|k| *k == req.uri().path());
        if let Some(route) = keyed {
            if let Err(e) = app.authorize(crate::headers::api_key(req.headers())) {
                let call = Call::start(&app, route, req.headers(), peer(req.extensions()), started);
                return Box::pin(async move { Ok(refuse(&app, call, &e)) });
            }
        }
        let (parts, body) = req.into_parts();
        if keyed != Some(INFER) {
            let body = tonic::body::Body::new(Limited::new(body, SMALL_CALL));
            return Box::pin(self.inner.call(http::Request::from_parts(parts, body)));
        }
        // The service that was made ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let refused = |e: &ApiError| {
                let call = Call::start(
                    &app,
                    INFER,
                    &parts.headers,
                    peer(&parts.extensions),
                    started,
                );
                Ok(refuse(&app, call, e))
            };
            let max = app.config.http.max_body_bytes;
            let bytes = match crate::body::read_whole(body, max + FRAME_HEADER, 0).await {
                Ok(bytes) => bytes,
                Err(ApiError::BodyTooLarge { .. }) => {
                    return refused(&ApiError::BodyTooLarge { limit: max });
                }
                Err(e) => return refused(&e),
            };
            if let Err(m) = one_message(&bytes).and_then(super::wire::check_infer) {
                return refused(&crate::v2::bad(m));
            }
            let body = tonic::body::Body::new(Full::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

/// The one uncompressed message of a unary call (a compressed one passes to tonic, which
/// refuses it: no compression is offered).
fn one_message(b: &[u8]) -> Result<&[u8], String> {
    let Some((head, rest)) = b.split_first_chunk::<FRAME_HEADER>() else {
        return Ok(&[]);
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 {
        return Ok(&[]);
    }
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Ok(&[]), // truncated: tonic says so
        std::cmp::Ordering::Equal => Ok(rest),
        std::cmp::Ordering::Greater => Err("a unary call carries exactly one message".into()),
    }
}

/// The peer of a call, as tonic records it.
fn peer(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    let info = extensions.get::<tonic::transport::server::TcpConnectInfo>();
    info.and_then(|i| i.remote_addr())
}

/// The refusal of a call, recorded as the service records the calls it answers.
fn refuse(app: &App, call: Call, e: &ApiError) -> Answer {
    let id = call.request_id.parse().ok();
    call.end(app, Err(e));
    let mut status = tonic::Status::new(super::status::code(e), e.message(app.config.app.debug));
    if let Some(id) = id {
        status.metadata_mut().insert("x-request-id", id);
    }
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Hooks, Telemetry};
    use crate::telemetry::metrics::Exposition;

    /// A service the gate must not reach.
    #[derive(Clone)]
    struct Unreachable;

    impl Service<http::Request<tonic::body::Body>> for Unreachable {
        type Response = Answer;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Answer, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            panic!("the gate let a call without its key through")
        }
    }

    #[tokio::test]
    async fn a_refused_key_is_recorded_as_every_answer_is() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let hooks = Hooks {
            on_response: Some(Arc::new({
                let seen = seen.clone();
                move |route, status| seen.lock().push((route, status))
            })),
            ..Hooks::default()
        };
        let config = crate::Config::from_lookup(|k| (k == "API_KEYS").then(|| "k1".into()));
        let telemetry = Telemetry {
            metrics: crate::telemetry::metrics::Metrics::new(),
            tracing: None,
            dispatch: tracing::Dispatch::none(),
        };
        let app = Arc::new(App::new(config.unwrap(), telemetry, hooks).unwrap());
        let mut gate = Gate {
            app: app.clone(),
            inner: Unreachable,
        };
        for route in KEYED {
            let req = http::Request::post(route)
                .header("x-request-id", "call-1")
                .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
                .unwrap();
            let answer = gate.call(req).await.unwrap();
            let code = answer.headers()["grpc-status"].to_str().unwrap();
            assert_eq!(code, (tonic::Code::Unauthenticated as i32).to_string());
            assert_eq!(answer.headers()["x-request-id"], "call-1");
        }
        assert_eq!(*seen.lock(), KEYED.map(|r| (r, 401)));
        // Counted once each, with the time the refusal took (it was recorded as 0 s).
        let metrics = app.metrics.render(Exposition::Text);
        let sum = metrics
            .lines()
            .find(|l| {
                l.starts_with("http_request_duration_seconds_sum") && l.contains("RepositoryIndex")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(sum.is_some_and(|s| s > 0.0), "{metrics}");
    }

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut b = vec![0];
        b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        b.extend_from_slice(msg);
        b
    }

    #[test]
    fn a_unary_call_is_one_message() {
        assert_eq!(one_message(&frame(b"abc")).unwrap(), b"abc");
        let mut two = frame(b"abc");
        two.extend(frame(b"d"));
        assert!(one_message(&two).is_err());
        assert_eq!(one_message(&frame(b"abc")[..6]).unwrap(), b"");
        assert_eq!(one_message(b"").unwrap(), b"");
    }
}
