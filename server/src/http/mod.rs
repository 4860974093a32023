//! The HTTP side of the data path: routing and handlers (here), what a `/predict` body becomes
//! ([`intake`], [`multipart`]) and what the answer is ([`predict`]). Every response passes
//! through [`handle`], which adds `x-request-id`, records the HTTP metrics and writes the
//! access-log line.

mod accept;
mod docs;
mod infer_json;
pub mod intake;
pub(crate) mod kserve;
mod metrics;
pub(crate) mod multipart;
mod repository;
pub(crate) mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tracing::Instrument;

use crate::error::ApiError;
use crate::headers;
use crate::imaging::Preprocess;
use crate::infer::classify_image;
use crate::predict::{top_k, PredictResponse};
use crate::service::record::{count_refusal, finish, note_error, user_agent, Done};
use crate::service::App;
use crate::service::Pipeline;
use crate::telemetry::trace::spans;
pub(crate) use accept::accept;
use opentelemetry_http::HeaderExtractor;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// `(route, method)` of the routes served here (the others: [`operations`]).
const OPERATIONS: [(&str, &str); 4] = [
    ("/predict", "POST"),
    ("/health", "GET"),
    ("/ready", "GET"),
    ("/metrics", "GET"),
];

/// Every `(route, method)` served: a request for a known route with another method gets 405
/// with `Allow` before any handler runs. `openapi.json` documents exactly these (tested).
fn operations() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPERATIONS
        .into_iter()
        .chain(docs::OPERATIONS)
        .chain(repository::OPERATIONS)
        .chain(kserve::OPERATIONS)
}

/// The method `route` is served for, if `route` is known.
fn allowed_method(route: &str) -> Option<&'static str> {
    operations().find(|(r, _)| *r == route).map(|(_, m)| m)
}

/// The route template (the `route` label) of `path`; `"unknown"` if none.
fn route_of(path: &str) -> &'static str {
    OPERATIONS
        .iter()
        .map(|(r, _)| *r)
        .find(|r| *r == path)
        .or_else(|| repository::route(path))
        .or_else(|| docs::route(path))
        .or_else(|| kserve::route(path))
        .unwrap_or("unknown")
}

/// Serves one request, inside its span.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let method = method_label(req.method());
    let route = route_of(req.uri().path());
    // KServe v2 routes answer with the protocol's own error bodies.
    let v2 = kserve::is_route(route);
    let allowed = allowed_method(route);
    // Probes and scrapes arrive every few seconds: traced only when a caller asks.
    let quiet = matches!(route, "/health" | "/ready" | "/metrics");
    let port = app.config.http.port;
    let span = spans::request(
        method,
        route,
        &HeaderExtractor(req.headers()),
        peer,
        port,
        quiet,
    );
    let started = Instant::now();
    let request_id = app.request_id(headers::request_id(req.headers()));
    let user_agent = user_agent(&span, || headers::user_agent(req.headers()));
    let has_body = !req.body().is_end_stream();
    let result = if allowed.is_some_and(|m| m != method) {
        Err(ApiError::MethodNotAllowed)
    } else if v2 {
        Ok(kserve::serve(&app, req, route)
            .instrument(span.clone())
            .await)
    } else {
        route_request(&app, req, route)
            .instrument(span.clone())
            .await
    };
    let mut response = result.unwrap_or_else(|e| match v2 {
        true => kserve::error(&app, &e),
        false => {
            count_refusal(&app, &e, repository::is_route(route));
            error_response(&e, &app)
        }
    });
    if let Some(m) = allowed.filter(|_| response.status() == StatusCode::METHOD_NOT_ALLOWED) {
        response
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(m));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    // A refusal may leave the body unread (the API key and the queue are checked first), and
    // hyper then closes the connection after the answer: the answer says so, or a client that
    // reuses its connection sends the next request into a closed socket.
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let done = Done {
        method,
        route,
        status: response.status().as_u16(),
        request_id: &request_id,
        user_agent,
        elapsed: started.elapsed(),
    };
    finish(&app, &span, done);
    response
}

/// Serves `req` on `route`, which [`handle`] has checked is known for its method.
async fn route_request(
    app: &Arc<App>,
    req: Request<Incoming>,
    route: &'static str,
) -> Result<HttpResponse, ApiError> {
    let docs = app.config.http.enable_docs;
    match route {
        "/health" => app
            .alive()
            .map(|()| json(StatusCode::OK, r#"{"status":"ok"}"#.into())),
        "/ready" => app
            .ready()
            .map(|()| json(StatusCode::OK, r#"{"status":"ready"}"#.into())),
        "/metrics" if app.config.telemetry.enable_metrics => Ok(metrics::serve(app, &req)),
        "/predict" => predict(app, req).await,
        docs::OPENAPI if docs => Ok(docs::openapi(&app.config.app.version)),
        docs::PAGE if docs => Ok(docs::page()),
        docs::ASSET if docs => docs::asset(req.uri().path()),
        repository::INDEX => {
            app.authorize(headers::api_key(req.headers()))?;
            repository::index(app)
        }
        repository::LOAD => {
            app.authorize(headers::api_key(req.headers()))?;
            repository::load(app, req.uri().path()).await
        }
        repository::UNLOAD => {
            app.authorize(headers::api_key(req.headers()))?;
            repository::unload(app, req.uri().path())
        }
        // Unknown, or turned off.
        _ => Err(ApiError::NotFound),
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, body: String) -> HttpResponse {
    respond(status, "application/json", body)
}

fn error_response(e: &ApiError, app: &App) -> HttpResponse {
    error_response_with(e, app, e.body(app.config.app.debug))
}

/// An error answer with `body` (our `{"error": {code, message}}`, or a protocol's own shape):
/// the status, `Retry-After`, `WWW-Authenticate`, and the engine failure in the log.
fn error_response_with(e: &ApiError, app: &App, body: String) -> HttpResponse {
    let mut r = json(status::status(e), body);
    if let Some(secs) = status::retry_after(e) {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    if let ApiError::Unauthorized = e {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    note_error(e, app);
    r
}

/// The `Server-Timing` entry saying how the image was decoded: `exact`, or `draft` and the DCT
/// scale it chose (`1/1` when the image is too small to reduce, or not a JPEG).
fn decoded_as(mode: Preprocess, scale: u8) -> String {
    match mode {
        Preprocess::Exact => "decode-mode;desc=\"exact\"".into(),
        Preprocess::Draft => format!("decode-mode;desc=\"draft 1/{scale}\""),
    }
}

/// `x-model-version`: which weights answered.
fn stamp_model_version(r: &mut HttpResponse, pipeline: &Pipeline) {
    if let Ok(v) = HeaderValue::from_str(&pipeline.version) {
        r.headers_mut().insert("x-model-version", v);
    }
}

/// The value of `name` in a query string, if present.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `?preprocess=exact|draft`, else `default` (`PREPROCESS`).
fn parse_preprocess(query: Option<&str>, default: Preprocess) -> Result<Preprocess, ApiError> {
    match query_param(query, "preprocess") {
        None => Ok(default),
        Some(v) => Preprocess::parse(v).ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", "preprocess must be exact or draft")
        }),
    }
}

fn parse_top_k(query: Option<&str>, classes: usize) -> Result<usize, ApiError> {
    let raw = query_param(query, "top_k");
    match raw {
        None => Ok(5.min(classes)),
        Some(v) => match v.parse::<usize>() {
            Ok(k) if (1..=classes).contains(&k) => Ok(k),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("top_k must be an integer from 1 to {classes}"),
            )),
        },
    }
}

/// Reads a request's whole body, the one way every route does: refused from its declared
/// `Content-Length` before a byte is read, cut off past `MAX_BODY_BYTES`, and ended with 504 at
/// the deadline of a request that arrived at `started`, however slowly the client sends.
pub(crate) async fn read_body(
    app: &App,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Bytes, ApiError> {
    let limit = app.config.http.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let read = crate::body::read_whole(req.into_body(), limit, declared.map_or(0, |n| n as usize));
    app.by_deadline(started, read).await
}

async fn predict(app: &App, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let received = Instant::now();
    let deadline = app.deadline(received);
    let pipeline = app.pipeline()?;
    app.authorize(headers::api_key(req.headers()))?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = intake::body_kind(content_type.unwrap_or(""))?;
    let k = parse_top_k(req.uri().query(), pipeline.classes)?;
    let mode = parse_preprocess(req.uri().query(), app.config.http.preprocess)?;
    let body = read_body(app, req, received).await?;
    // Admitted once the body is here: clients still uploading hold no place in the queue, so
    // slow uploads cannot starve complete requests, and a full queue still refuses at once.
    let permit = app.admit()?;
    let work = async {
        let image = intake::image_bytes(body, &kind)?;
        classify_image(app, &pipeline, (image, mode), permit, deadline).await
    };
    let c = app.by_deadline(received, work).await?;
    let out = c.out;
    let stages = [("decode", c.decode), ("preprocess", c.preprocess)];
    let server_timing = format!(
        "{}, {}",
        app.observe_stages(&stages, &out),
        decoded_as(mode, c.scale)
    );
    let body = PredictResponse {
        model: &app.config.model.name,
        predictions: top_k(&out.logits, k, pipeline.labels),
    };
    let mut r = json(
        StatusCode::OK,
        serde_json::to_string(&body).expect("serialisable"),
    );
    if let Ok(v) = HeaderValue::from_str(&server_timing) {
        r.headers_mut().insert("server-timing", v);
    }
    stamp_model_version(&mut r, &pipeline);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_validated() {
        assert_eq!(parse_top_k(None, 1000).unwrap(), 5);
        assert_eq!(parse_top_k(Some("a=1&top_k=10"), 1000).unwrap(), 10);
        assert_eq!(parse_top_k(Some("xtop_k=10"), 1000).unwrap(), 5);
        let draft = Some("top_k=3&preprocess=draft");
        assert_eq!(
            parse_preprocess(draft, Preprocess::Exact).unwrap(),
            Preprocess::Draft
        );
        assert_eq!(
            parse_preprocess(None, Preprocess::Draft).unwrap(),
            Preprocess::Draft
        );
        assert!(parse_preprocess(Some("preprocess=fast"), Preprocess::Exact).is_err());
        for bad in ["top_k=0", "top_k=1001", "top_k=x", "top_k=-1"] {
            assert_eq!(
                status::status(&parse_top_k(Some(bad), 1000).unwrap_err()),
                400,
                "{bad}"
            );
        }
    }
}
