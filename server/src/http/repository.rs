//! Triton's model repository API (KServe v2 extension), for the model file this server serves
//! and its two v2 models (the tensor and the image model share it): `POST /v2/repository/index`
//! lists them with their state, `POST /v2/repository/models/{m}/load` loads `MODEL_PATH` again
//! and swaps it in (whether or not `RELOAD` is set), and `…/unload` is refused (the model is
//! always served).

use std::sync::Arc;

use hyper::StatusCode;

use super::{json, HttpResponse};
use crate::error::ApiError;
use crate::service::repository::{self as logic, entries};
use crate::service::App;

/// The route templates (the `route` label) of the repository API.
pub const INDEX: &str = "/v2/repository/index";
/// `POST …/load`.
pub const LOAD: &str = "/v2/repository/models/{model}/load";
/// `POST …/unload`.
pub const UNLOAD: &str = "/v2/repository/models/{model}/unload";

/// `(route, method)` of this API.
pub const OPERATIONS: [(&str, &str); 3] = [(INDEX, "POST"), (LOAD, "POST"), (UNLOAD, "POST")];

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

/// The `{model}` of a `…/models/{model}/…` path, checked against the models served.
fn model_of<'a>(app: &App, path: &'a str) -> Result<&'a str, ApiError> {
    let name = path
        .strip_prefix("/v2/repository/models/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    crate::v2::Model::find(app, name, None).map(|_| name)
}

/// `POST /v2/repository/index`.
pub fn index(app: &App) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_string(&entries(app)).expect("serialisable");
    Ok(json(StatusCode::OK, body))
}

/// `POST /v2/repository/models/{m}/load`: answers when the reload is done (200, with the
/// version serving) or refused (400, the old model still serving).
pub async fn load(app: &Arc<App>, path: &str) -> Result<HttpResponse, ApiError> {
    model_of(app, path)?;
    let version = logic::load(app).await?;
    let body = serde_json::json!({ "name": app.config.model.name, "version": version });
    Ok(json(StatusCode::OK, body.to_string()))
}

/// `POST /v2/repository/models/{m}/unload`: refused.
pub fn unload(app: &App, path: &str) -> Result<HttpResponse, ApiError> {
    model_of(app, path)?;
    Err(logic::unload_refused())
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
