//! Triton's model repository API (KServe v2 extension), for the one model this server serves:
//! `POST /v2/repository/index` lists it with its state, `POST /v2/repository/models/{m}/load`
//! loads `MODEL_PATH` again and swaps it in (whether or not `RELOAD` is set), and `…/unload`
//! is refused (one model is always served).

use std::sync::Arc;

use hyper::StatusCode;
use serde::Serialize;

use super::{json, HttpResponse};
use crate::error::ApiError;
use crate::model_control::{self, ReloadError, Reloaded};
use crate::App;

/// The route templates (the `route` label) of the repository API.
pub const INDEX: &str = "/v2/repository/index";
/// `POST …/load`.
pub const LOAD: &str = "/v2/repository/models/{model}/load";
/// `POST …/unload`.
pub const UNLOAD: &str = "/v2/repository/models/{model}/unload";

/// Whether `route` (a template) is one of this API's.
pub fn is_route(route: &str) -> bool {
    matches!(route, INDEX | LOAD | UNLOAD)
}

/// The template `path` matches, if any.
pub fn route(path: &str) -> Option<&'static str> {
    if path == INDEX {
        return Some(INDEX);
    }
    let rest = path.strip_prefix("/v2/repository/models/")?;
    let (model, action) = rest.rsplit_once('/')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    match action {
        "load" => Some(LOAD),
        "unload" => Some(UNLOAD),
        _ => None,
    }
}

/// The `{model}` of a `…/models/{model}/…` path, checked against the model served.
fn model_of<'a>(app: &App, path: &'a str) -> Result<&'a str, ApiError> {
    let name = path
        .strip_prefix("/v2/repository/models/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    if name == app.config.model.name {
        Ok(name)
    } else {
        Err(ApiError::ModelNotFound(name.chars().take(64).collect()))
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    version: &'a str,
    state: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
}

/// `POST /v2/repository/index`.
pub fn index(app: &App) -> Result<HttpResponse, ApiError> {
    let pipeline = app.pipeline.read().clone();
    let (version, state, reason) = match (&pipeline, app.draining()) {
        (_, true) => ("", "UNAVAILABLE", "shutting down"),
        (Some(p), false) => (p.version.as_str(), "READY", ""),
        (None, false) => ("", "LOADING", ""),
    };
    let entry = Entry {
        name: &app.config.model.name,
        version,
        state,
        reason,
    };
    let body = serde_json::to_string(&[entry]).expect("serialisable");
    Ok(json(StatusCode::OK, body))
}

/// `POST /v2/repository/models/{m}/load`: answers when the reload is done (200, with the
/// version serving) or refused (400, the old model still serving).
pub async fn load(app: &Arc<App>, path: &str) -> Result<HttpResponse, ApiError> {
    model_of(app, path)?;
    match model_control::reload(app, "api").await {
        Ok(Reloaded::Swapped { version } | Reloaded::Unchanged { version }) => {
            let body = serde_json::json!({ "name": app.config.model.name, "version": version });
            Ok(json(StatusCode::OK, body.to_string()))
        }
        Err(ReloadError::NotServing) => Err(ApiError::NotReady("no model is serving yet")),
        Err(ReloadError::Refused(why)) => Err(ApiError::bad_request(
            "model_load_failed",
            format!("{why}; the previous model keeps serving"),
        )),
    }
}

/// `POST /v2/repository/models/{m}/unload`: refused.
pub fn unload(app: &App, path: &str) -> Result<HttpResponse, ApiError> {
    model_of(app, path)?;
    Err(ApiError::bad_request(
        "unload_unsupported",
        "this server always serves its one model; load a new file instead",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(route("/v2/repository/index"), Some(INDEX));
        assert_eq!(route("/v2/repository/models/resnet50/load"), Some(LOAD));
        assert_eq!(route("/v2/repository/models/x/unload"), Some(UNLOAD));
        assert_eq!(route("/v2/repository/models//load"), None);
        assert_eq!(route("/v2/repository/models/a/b/load"), None);
        assert_eq!(route("/v2/repository/models/a/delete"), None);
    }
}
