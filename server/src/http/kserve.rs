//! The KServe v2 / Open Inference Protocol over HTTP/REST, as Triton's clients speak it, for
//! both models of [`crate::v2`]: server and model health, metadata, Triton's model config and
//! statistics, and inference with JSON tensors or the binary tensor extension
//! (`Inference-Header-Content-Length`, `binary_data_size`), outputs as JSON, binary
//! (`binary_data`) or classified (`classification`: the top k as `"score:index:label"`).
//! Errors are the protocol's `{"error": "…"}` with our status for the failure.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::infer_json::{self, Data, InferRequest, Param};
use super::{json as json_response, read_body, HttpResponse};
use crate::config::Preprocess;
use crate::error::ApiError;
use crate::headers;
use crate::service::record::count_refusal;
use crate::service::App;
use crate::v2::{self, bad, infer, Model, Output, OutputData, Signature, Values};

/// Route templates (the `route` label); a `/versions/{version}` segment maps to the same one.
pub const ROOT: &str = "/v2";
const LIVE: &str = "/v2/health/live";
const READY: &str = "/v2/health/ready";
const MODEL: &str = "/v2/models/{model}";
const MODEL_READY: &str = "/v2/models/{model}/ready";
const CONFIG: &str = "/v2/models/{model}/config";
const INFER: &str = "/v2/models/{model}/infer";
const STATS: &str = "/v2/models/{model}/stats";
const ALL_STATS: &str = "/v2/models/stats";
const HEADER_LENGTH: &str = "inference-header-content-length";

/// `(route, method)` of the v2 routes (the versioned paths share their unversioned route).
pub const OPERATIONS: [(&str, &str); 9] = [
    (ROOT, "GET"),
    (LIVE, "GET"),
    (READY, "GET"),
    (ALL_STATS, "GET"),
    (MODEL, "GET"),
    (MODEL_READY, "GET"),
    (CONFIG, "GET"),
    (STATS, "GET"),
    (INFER, "POST"),
];

/// Whether `route` (a template) is a v2 route.
pub fn is_route(route: &str) -> bool {
    OPERATIONS.iter().any(|(r, _)| *r == route)
}

/// The template `path` matches, if any.
pub fn route(path: &str) -> Option<&'static str> {
    match path {
        "/v2" => return Some(ROOT),
        "/v2/health/live" => return Some(LIVE),
        "/v2/health/ready" => return Some(READY),
        "/v2/models/stats" => return Some(ALL_STATS),
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
pub(crate) fn error(app: &App, e: &ApiError) -> HttpResponse {
    count_refusal(app, e, false);
    let body = json!({ "error": e.message(app.config.app.debug) }).to_string();
    super::error_response_with(e, app, body)
}

/// Serves one v2 request on `route` (from [`route`]), whose method the router has checked
/// against [`OPERATIONS`].
pub async fn serve(app: &Arc<App>, req: Request<Incoming>, route: &'static str) -> HttpResponse {
    let result = match route {
        ROOT => Ok(server_metadata(app)),
        LIVE => app.alive().map(|()| empty(StatusCode::OK)),
        READY => app.ready().map(|()| empty(StatusCode::OK)),
        ALL_STATS => Ok(all_stats(app)),
        INFER => infer(app, req).await,
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
        "extensions": crate::v2::EXTENSIONS,
    });
    json_response(StatusCode::OK, body.to_string())
}

fn all_stats(app: &App) -> HttpResponse {
    let entries: Vec<Value> = Model::ALL
        .into_iter()
        .map(|m| app.v2_stats.json(m, &m.name(app)))
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "model_stats": entries }).to_string(),
    )
}

/// The model a `/v2/models/{model}[/versions/{v}]…` path names.
fn model_of(app: &App, path: &str) -> Result<Model, ApiError> {
    let ((model, version), _) = model_path(path).ok_or(ApiError::NotFound)?;
    Model::find(app, model, version)
}

fn model_get(app: &App, path: &str, route: &'static str) -> Result<HttpResponse, ApiError> {
    let model = model_of(app, path)?;
    let name = model.name(app);
    if route == MODEL_READY {
        return app.ready().map(|()| empty(StatusCode::OK));
    }
    if route == STATS {
        let body = json!({ "model_stats": [app.v2_stats.json(model, &name)] });
        return Ok(json_response(StatusCode::OK, body.to_string()));
    }
    let sig = model.signature(&*app.pipeline()?);
    let (i, o) = (&sig.input, &sig.output);
    let body = match route {
        MODEL => json!({
            "name": name,
            "versions": ["1"],
            "platform": "inference-gateway",
            "inputs": [{"name": i.name, "datatype": i.datatype, "shape": i.shape()}],
            "outputs": [{"name": o.name, "datatype": o.datatype, "shape": o.shape()}],
        }),
        _ => json!({
            "name": name,
            "platform": "inference-gateway",
            "max_batch_size": sig.max_batch,
            "input": [{"name": i.name, "data_type": i.config_type(), "format": i.format(), "dims": i.dims}],
            "output": [{"name": o.name, "data_type": o.config_type(), "dims": o.dims}],
            "dynamic_batching": {
                "max_queue_delay_microseconds": app.config.batching.max_batch_delay.as_micros() as u64,
            },
        }),
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// The JSON header, parsed into bounded types, and the binary section after it.
pub(crate) fn split_body(
    req_headers: &hyper::HeaderMap,
    body: Bytes,
) -> Result<(InferRequest, Bytes), ApiError> {
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
    let header = infer_json::parse(&body[..json_len])
        .map_err(|e| bad(format!("the inference request is not valid: {e}")))?;
    Ok((header, body.slice(json_len..)))
}

/// What the request asks of `sig`: its inputs, the classification count, how JPEGs decode (the
/// request parameter `preprocess`, else `default`), and whether the output goes binary.
pub(crate) fn parse(
    sig: &Signature,
    header: &mut InferRequest,
    binary: Bytes,
    default: Preprocess,
) -> Result<(infer::Parsed, bool), ApiError> {
    let (wants_binary, k) = output_wanted(sig, header)?;
    let mode = match header.parameters.get("preprocess") {
        None => None,
        Some(Param::Str(s)) => Some(s.as_str()),
        Some(_) => Some(""),
    };
    let mode = v2::preprocess(mode, default)?;
    Ok(((inputs(sig, header, binary)?, k, mode), wants_binary))
}

/// The inputs of the request's one input tensor, from JSON `data` or the binary section.
fn inputs(
    sig: &Signature,
    header: &mut InferRequest,
    binary: Bytes,
) -> Result<Vec<Bytes>, ApiError> {
    let [input] = header.inputs.0.as_mut_slice() else {
        let name = &sig.input.name;
        return Err(bad(format!("the model takes exactly one input, {name}")));
    };
    let shape: Vec<i64> = input.shape.0.iter().map(|d| d.0).collect();
    let name = input.name.as_str();
    let n = sig.batch_of(name, &input.datatype, &shape)?;
    let raw = match input.parameters.get("binary_data_size") {
        None => None,
        Some(&Param::Int(size)) => match usize::try_from(size) {
            Ok(size) if size <= binary.len() => Some(binary.slice(..size)),
            Ok(_) => return Err(bad("binary_data_size is larger than the binary section")),
            Err(_) => return Err(bad("binary_data_size must be a non-negative integer")),
        },
        Some(_) => return Err(bad("binary_data_size must be a non-negative integer")),
    };
    let data = input.data.take();
    v2::cut(sig, (name, &shape), n, raw, || {
        match (sig.input.datatype, data) {
            ("FP32", Some(Data::Numbers(v))) => Ok(Values::Fp32(v)),
            ("FP32", Some(Data::Strings(_))) => {
                Err(bad("FP32 data must be numbers (or use binary_data_size)"))
            }
            (_, Some(Data::Strings(v))) => Ok(Values::Bytes(v)),
            (_, Some(Data::Numbers(v))) if v.is_empty() => Ok(Values::Bytes(Vec::new())),
            (_, Some(Data::Numbers(_))) => {
                Err(bad("BYTES data must be strings (or use binary_data_size)"))
            }
            ("FP32", None) => Ok(Values::Fp32(Vec::new())),
            (_, None) => Ok(Values::Bytes(Vec::new())),
        }
    })
}

/// What the client asked of the output: binary or JSON, and the classification count.
fn output_wanted(
    sig: &Signature,
    header: &InferRequest,
) -> Result<(bool, Option<usize>), ApiError> {
    let Some(outputs) = &header.outputs else {
        let binary = header.parameters.flag("binary_data_output");
        return Ok((binary.unwrap_or(false), None));
    };
    let [out] = outputs.0.as_slice() else {
        return Err(bad(format!(
            "the model has one output, {}",
            sig.output.name
        )));
    };
    sig.check_output(&out.name)?;
    let p = &out.parameters;
    let k = match p.get("classification") {
        None => None,
        Some(Param::Int(k)) => Some(*k),
        Some(_) => return Err(bad("classification must be an integer")),
    };
    Ok((
        p.flag("binary_data").unwrap_or(false),
        v2::classification(k)?,
    ))
}

async fn infer(app: &Arc<App>, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let model = model_of(app, req.uri().path())?;
    let headers = req.headers().clone();
    let read = async {
        // Refused before the body is read when no model serves or the key is wrong.
        let pipeline = app.pipeline()?;
        app.authorize(headers::api_key(&headers))?;
        let body = read_body(app, req, started).await?;
        split_body(&headers, body).map(|parts| (pipeline, parts))
    };
    let (pipeline, (mut header, binary)) = match read.await {
        Ok(read) => read,
        Err(e) => {
            app.v2_stats.fail(model, started.elapsed());
            return Err(e);
        }
    };
    let mut binary_out = false;
    let default = app.config.http.preprocess;
    let (pipeline, output) = infer::serve(app, model, pipeline, started, |sig| {
        let (parsed, wants_binary) = parse(sig, &mut header, binary, default)?;
        binary_out = wants_binary;
        Ok(parsed)
    })
    .await?;
    let id = header.id.take();
    let mut r = response(&model.name(app), id, &output, binary_out);
    super::stamp_model_version(&mut r, &pipeline);
    Ok(r)
}

/// The inference response: JSON, or JSON plus the binary section.
fn response(model: &str, id: Option<String>, output: &Output, binary: bool) -> HttpResponse {
    let mut out =
        json!({"name": output.name, "datatype": output.datatype(), "shape": output.shape});
    let raw = if binary {
        let raw = output.raw();
        out["parameters"] = json!({"binary_data_size": raw.len()});
        raw
    } else {
        out["data"] = match &output.data {
            OutputData::Fp32(v) => json!(v),
            OutputData::Strings(s) => json!(s),
        };
        Vec::new()
    };
    let mut head = json!({"model_name": model, "model_version": "1", "outputs": [out]});
    if let Some(id) = id {
        head["id"] = json!(id);
    }
    let head = head.to_string();
    if !binary {
        return json_response(StatusCode::OK, head);
    }
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
        assert_eq!(route("/v2/models/stats"), Some(ALL_STATS));
        assert_eq!(route("/v2/models//infer"), None);
        assert_eq!(route("/v2/models/m/explode"), None);
    }
}
