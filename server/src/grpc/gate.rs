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
        let app = self.app.clone();
        let keyed = KEYED.into_iter().find(|k| *k == req.uri().path());
        if let Some(route) = keyed {
            if let Err(e) = app.authorize(crate::headers::api_key(req.headers())) {
                return Box::pin(async move { Ok(refuse(&app, route, &e)) });
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
            let max = app.config.http.max_body_bytes;
            let bytes = match crate::body::read_whole(body, max + FRAME_HEADER, 0).await {
                Ok(bytes) => bytes,
                Err(ApiError::BodyTooLarge { .. }) => {
                    return Ok(refuse(&app, INFER, &ApiError::BodyTooLarge { limit: max }));
                }
                Err(e) => return Ok(refuse(&app, INFER, &e)),
            };
            if let Err(m) = one_message(&bytes).and_then(super::wire::check_infer) {
                return Ok(refuse(&app, INFER, &crate::v2::bad(m)));
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

/// The refusal of a call on `route`, recorded as the service records calls.
fn refuse(app: &App, route: &'static str, e: &ApiError) -> Answer {
    if super::counts_as_rejection(route) {
        app.metrics.reject(e.reject_reason());
    }
    let status = e.status().as_u16();
    app.metrics
        .observe_request("POST", route, status, 0.0, None);
    tonic::Status::new(e.grpc_code(), e.message(app.config.app.debug)).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

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
