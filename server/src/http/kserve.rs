//! The KServe v2 / Open Inference Protocol over HTTP, as Triton's clients speak it, for the
//! image model `{MODEL_NAME}_image`: input `IMAGE` (BYTES `[-1, 1]`, each element an encoded
//! image file, preprocessed exactly as `/predict` does), output `logits` (FP32 `[-1, classes]`).
//!
//! An inference of N images is N admissions and N queue entries, which batch with everything
//! else the server runs; the request's deadline is `REQUEST_TIMEOUT`. Tensors come as JSON or
//! with the binary tensor extension (`Inference-Header-Content-Length`, `binary_data_size`);
//! outputs as JSON, binary (`binary_data`), or classified (`classification`: the top k as
//! `"score:index:label"` strings). Errors are the protocol's `{"error": "…"}`. Statistics
//! ([`super::kserve_stats`]) per Triton's extension. Not here yet: the FP32 tensor model and gRPC.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::{classify_image, json as json_response, read_body, HttpResponse};
use crate::error::ApiError;
use crate::App;

/// Route templates (the `route` label); a `/versions/{version}` segment maps to the same one.
pub const ROOT: &str = "/v2";
const LIVE: &str = "/v2/health/live";
const READY: &str = "/v2/health/ready";
const MODEL: &str = "/v2/models/{model}";
const MODEL_READY: &str = "/v2/models/{model}/ready";
const CONFIG: &str = "/v2/models/{model}/config";
const INFER: &str = "/v2/models/{model}/infer";
const STATS: &str = "/v2/models/{model}/stats";
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The template `path` matches, if any.
pub fn route(path: &str) -> Option<&'static str> {
    match path {
        "/v2" => return Some(ROOT),
        "/v2/health/live" => return Some(LIVE),
        "/v2/health/ready" => return Some(READY),
        _ => {}
    }
    let (_, rest) = model_path(path)?;
    match rest {
        "" => Some(MODEL),
        "/ready" => Some(MODEL_READY),
        "/config" => Some(CONFIG),
        "/infer" => Some(INFER),
        "/stats" => Some(STATS),
        _ => None,
    }
}

/// `(model, version, rest)` of `/v2/models/{model}[/versions/{v}]{rest}`.
fn model_path(path: &str) -> Option<((&str, Option<&str>), &str)> {
    let rest = path.strip_prefix("/v2/models/")?;
    let (model, rest) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if model.is_empty() {
        return None;
    }
    match rest.strip_prefix("/versions/") {
        Some(v) => {
            let (version, rest) = v.split_at(v.find('/').unwrap_or(v.len()));
            Some(((model, Some(version)), rest))
        }
        None => Some(((model, None), rest)),
    }
}

/// The protocol's error body, with our status for the failure.
fn error(app: &App, e: &ApiError) -> HttpResponse {
    app.metrics.reject(e.reject_reason());
    let body = json!({ "error": e.message(app.config.app.debug) }).to_string();
    super::error_response_with(e, app, body)
}

/// Serves one v2 request on `route` (from [`route`]).
pub async fn serve(app: &Arc<App>, req: Request<Incoming>, route: &'static str) -> HttpResponse {
    let get = req.method() == hyper::Method::GET;
    let result = match route {
        ROOT if get => Ok(server_metadata(app)),
        LIVE if get => app.alive().map(|()| empty(StatusCode::OK)),
        READY if get => app.ready().map(|()| empty(StatusCode::OK)),
        INFER if req.method() == hyper::Method::POST => {
            let started = Instant::now();
            let r = infer(app, req).await;
            // Requests for another model, or refused before the model was involved, are not its.
            if let Err(e) = &r {
                if !matches!(e, ApiError::ModelNotFound(_) | ApiError::NotFound) {
                    app.v2_stats.fail(started.elapsed());
                }
            }
            r
        }
        INFER | ROOT | LIVE | READY => Err(ApiError::MethodNotAllowed),
        _ if !get => Err(ApiError::MethodNotAllowed),
        _ => model_get(app, req.uri().path(), route),
    };
    result.unwrap_or_else(|e| error(app, &e))
}

fn empty(status: StatusCode) -> HttpResponse {
    json_response(status, String::new())
}

fn server_metadata(app: &App) -> HttpResponse {
    let body = json!({
        "name": "inference-gateway",
        "version": app.config.app.version,
        "extensions": ["classification", "binary_tensor_data", "model_repository", "statistics"],
    });
    json_response(StatusCode::OK, body.to_string())
}

/// The image model's name: `{MODEL_NAME}_image`.
fn image_model(app: &App) -> String {
    format!("{}_image", app.config.model.name)
}

/// Checks `/v2/models/{model}[/versions/{v}]` names the image model, version 1 or none.
fn check_model(app: &App, path: &str) -> Result<(), ApiError> {
    let ((model, version), _) = model_path(path).ok_or(ApiError::NotFound)?;
    if model == app.config.model.name {
        return Err(ApiError::ModelNotFound(format!(
            "{model} (FP32 tensors over KServe v2 are not served yet; use {} or /predict)",
            image_model(app)
        )));
    }
    if model != image_model(app) || version.is_some_and(|v| v != "1") {
        return Err(ApiError::ModelNotFound(model.chars().take(64).collect()));
    }
    Ok(())
}

fn classes(app: &App) -> usize {
    app.pipeline
        .read()
        .as_ref()
        .map_or(models::NUM_CLASSES, |p| p.classes)
}

fn model_get(app: &App, path: &str, route: &'static str) -> Result<HttpResponse, ApiError> {
    check_model(app, path)?;
    let name = image_model(app);
    let classes = classes(app);
    let body = match route {
        MODEL => json!({
            "name": name,
            "versions": ["1"],
            "platform": "inference-gateway",
            "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, classes]}],
        }),
        MODEL_READY => return app.ready().map(|()| empty(StatusCode::OK)),
        STATS => app.v2_stats.json(&name),
        _ => json!({
            "name": name,
            "platform": "inference-gateway",
            "max_batch_size": app.config.batching.max_batch_size,
            "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1]}],
            "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [classes]}],
            "dynamic_batching": {
                "max_queue_delay_microseconds": app.config.batching.max_batch_delay.as_micros() as u64,
            },
        }),
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_inference_request", message)
}

/// The JSON header and the binary section after it.
fn split_body(req_headers: &hyper::HeaderMap, body: Bytes) -> Result<(Value, Bytes), ApiError> {
    let json_len = match req_headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n <= body.len())
            .ok_or_else(|| {
                bad("Inference-Header-Content-Length is not a length within the body")
            })?,
    };
    let header = serde_json::from_slice(&body[..json_len])
        .map_err(|e| bad(format!("the inference request is not valid JSON: {e}")))?;
    Ok((header, body.slice(json_len..)))
}

/// Splits a binary BYTES tensor: each element a 4-byte little-endian length, then the bytes.
fn bytes_elements(mut raw: Bytes) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let head: [u8; 4] = raw
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("a BYTES element's 4-byte length is cut short"))?;
        let n = u32::from_le_bytes(head) as usize;
        if raw.len() < 4 + n {
            return Err(bad("a BYTES element is longer than its tensor"));
        }
        out.push(raw.slice(4..4 + n));
        raw = raw.slice(4 + n..);
    }
    Ok(out)
}

/// The encoded images of input `IMAGE`, from JSON strings or the binary section.
fn images(header: &Value, binary: Bytes) -> Result<Vec<Bytes>, ApiError> {
    let inputs = header["inputs"]
        .as_array()
        .ok_or_else(|| bad("the request has no \"inputs\" array"))?;
    let [input] = inputs.as_slice() else {
        return Err(bad("the model takes exactly one input, IMAGE"));
    };
    if input["name"] != "IMAGE" || input["datatype"] != "BYTES" {
        return Err(bad("the input must be IMAGE of datatype BYTES"));
    }
    let shape: Vec<i64> = input["shape"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let n = match shape.as_slice() {
        [n, 1] | [n] if *n >= 1 => *n as usize,
        _ => return Err(bad(format!("IMAGE has shape {shape:?}; expected [N, 1]"))),
    };
    let elements = match input["parameters"]["binary_data_size"].as_u64() {
        Some(size) => {
            let size = size as usize;
            if size > binary.len() {
                return Err(bad("binary_data_size is larger than the binary section"));
            }
            bytes_elements(binary.slice(..size))?
        }
        None => flat_strings(&input["data"])?,
    };
    if elements.len() != n {
        let got = elements.len();
        return Err(bad(format!("IMAGE has shape [{n}, 1] but {got} elements")));
    }
    Ok(elements)
}

fn flat_strings(data: &Value) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => out.push(Bytes::copy_from_slice(s.as_bytes())),
            Value::Array(items) => stack.extend(items.iter().rev()),
            _ => return Err(bad("IMAGE data must be strings (or use binary_data_size)")),
        }
    }
    Ok(out)
}

/// What the client asked of output `logits`: binary or JSON, and the classification count.
fn output_wanted(header: &Value) -> Result<(bool, Option<usize>), ApiError> {
    let Some(outputs) = header["outputs"].as_array() else {
        let binary = header["parameters"]["binary_data_output"].as_bool();
        return Ok((binary.unwrap_or(false), None));
    };
    let [out] = outputs.as_slice() else {
        return Err(bad("the model has one output, logits"));
    };
    if out["name"] != "logits" {
        return Err(bad(format!("no output named {}", out["name"])));
    }
    let p = &out["parameters"];
    let k = p["classification"].as_u64().map(|k| k as usize);
    Ok((p["binary_data"].as_bool().unwrap_or(false), k))
}

async fn infer(app: &Arc<App>, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let deadline = started + app.config.http.request_timeout;
    check_model(app, req.uri().path())?;
    let pipeline = app.pipeline()?;
    app.authorize(req.headers())?;
    let headers = req.headers().clone();
    let body = read_body(req.into_body(), app.config.http.max_body_bytes).await?;
    let (header, binary) = split_body(&headers, body)?;
    let images = images(&header, binary)?;
    let max = app.config.batching.max_batch_size;
    if images.len() > max {
        return Err(bad(format!(
            "{} images exceed max_batch_size {max}",
            images.len()
        )));
    }
    let (binary_out, classify) = output_wanted(&header)?;
    let mut permits = Vec::with_capacity(images.len());
    for _ in &images {
        let limit = app.admission.limit();
        permits.push(
            app.admission
                .try_admit()
                .ok_or(ApiError::QueueFull(limit))?,
        );
    }
    let work = images
        .into_iter()
        .zip(permits)
        .map(|(image, permit)| classify_image(app, &pipeline, image, permit, deadline));
    let timeout = app.config.http.request_timeout;
    let answers = tokio::time::timeout_at(deadline.into(), futures_util::future::join_all(work))
        .await
        .map_err(|_| ApiError::Deadline(timeout))?;
    let mut rows = Vec::with_capacity(answers.len());
    for (i, a) in answers.into_iter().enumerate() {
        rows.push(a.map_err(|e| match e {
            ApiError::BadRequest { code, message } => ApiError::BadRequest {
                code,
                message: format!("IMAGE element {i}: {message}"),
            },
            other => other,
        })?);
    }
    let logits: Vec<&[f32]> = rows.iter().map(|c| c.out.logits.as_slice()).collect();
    let id = header["id"].as_str().map(str::to_owned);
    let r = response(app, &pipeline, id, &logits, binary_out, classify);
    let costs: Vec<_> = rows
        .iter()
        .map(|c| super::kserve_stats::ImageCost {
            queue: c.out.queue_wait,
            input: c.decode + c.preprocess,
            infer: c.out.stages.iter().map(|s| s.duration).sum(),
        })
        .collect();
    app.v2_stats.success(started.elapsed(), &costs);
    Ok(r)
}

/// Builds the inference response: JSON, or JSON plus the binary section.
fn response(
    app: &App,
    pipeline: &crate::Pipeline,
    id: Option<String>,
    logits: &[&[f32]],
    binary: bool,
    classify: Option<usize>,
) -> HttpResponse {
    let (mut output, raw) = logits_output(pipeline, logits, binary, classify);
    if binary {
        output["parameters"] = json!({"binary_data_size": raw.len()});
    }
    let mut head = json!({
        "model_name": image_model(app),
        "model_version": "1",
        "outputs": [output],
    });
    if let Some(id) = id {
        head["id"] = json!(id);
    }
    let head = head.to_string();
    let mut r = if binary {
        let head_len = head.len();
        let mut body = BytesMut::from(head.as_bytes());
        body.extend_from_slice(&raw);
        let mut r = hyper::Response::new(http_body_util::Full::new(body.freeze()));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r.headers_mut()
            .insert(HEADER_LENGTH, HeaderValue::from(head_len));
        r
    } else {
        json_response(StatusCode::OK, head)
    };
    super::stamp_model_version(&mut r, pipeline);
    r
}

/// Output `logits` as asked: the top `k` as `"score:index[:label]"` strings, or the FP32 rows;
/// in the JSON (`data`) or, with `binary`, as the bytes returned.
fn logits_output(
    pipeline: &crate::Pipeline,
    logits: &[&[f32]],
    binary: bool,
    classify: Option<usize>,
) -> (Value, BytesMut) {
    let n = logits.len();
    let mut raw = BytesMut::new();
    let Some(k) = classify.map(|k| k.clamp(1, pipeline.classes)) else {
        let classes = logits.first().map_or(0, |r| r.len());
        let mut o = json!({"name": "logits", "datatype": "FP32", "shape": [n, classes]});
        let values = logits.iter().flat_map(|r| r.iter());
        if binary {
            values.for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        } else {
            o["data"] = json!(values.collect::<Vec<_>>());
        }
        return (o, raw);
    };
    let strings: Vec<String> = logits
        .iter()
        .flat_map(|row| {
            super::predict::top_k(row, k, pipeline.labels)
                .into_iter()
                .map(|p| match p.label.as_str() {
                    "" => format!("{:.6}:{}", row[p.class_id], p.class_id),
                    l => format!("{:.6}:{}:{l}", row[p.class_id], p.class_id),
                })
        })
        .collect();
    let mut o = json!({"name": "logits", "datatype": "BYTES", "shape": [n, k]});
    if binary {
        for s in &strings {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
    } else {
        o["data"] = json!(strings);
    }
    (o, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_versions() {
        assert_eq!(route("/v2"), Some(ROOT));
        assert_eq!(route("/v2/models/m/infer"), Some(INFER));
        assert_eq!(route("/v2/models/m/versions/1/infer"), Some(INFER));
        assert_eq!(route("/v2/models/m/versions/1"), Some(MODEL));
        assert_eq!(route("/v2/models/m/config"), Some(CONFIG));
        assert_eq!(route("/v2/models//infer"), None);
        assert_eq!(route("/v2/models/m/explode"), None);
    }

    #[test]
    fn binary_bytes_elements_split_and_refuse_short_input() {
        let mut raw = Vec::new();
        for e in [&b"ab"[..], b"", b"xyz"] {
            raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
            raw.extend_from_slice(e);
        }
        let els = bytes_elements(Bytes::from(raw.clone())).unwrap();
        assert_eq!(els, vec![&b"ab"[..], b"", b"xyz"]);
        assert!(bytes_elements(Bytes::from(raw[..raw.len() - 1].to_vec())).is_err());
        assert!(bytes_elements(Bytes::from_static(&[1, 0])).is_err());
    }
}
