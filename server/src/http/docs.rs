//! The API describing itself: `GET /openapi.json` (OpenAPI 3.1, `openapi.json` beside this file,
//! its `info.version` set to the server's) and `GET /docs`, Swagger UI served from the binary
//! (the `swagger-ui-redist` crate bundles its files: no CDN) under `/docs/{file}`. Both are
//! open like `/health`; `ENABLE_DOCS=false` turns them off (404).
//!
//! The document is written by hand and kept true by tests: every route the router knows is in
//! it and every route in it is routed (below), and CI runs schemathesis against the release
//! server from it (no 5xx, no answer the document does not describe).

use std::sync::OnceLock;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use swagger_ui_redist::{SwaggerUi, SwaggerUiStaticFile};

use super::{respond, HttpResponse};
use crate::error::ApiError;

/// `GET /openapi.json`.
pub const OPENAPI: &str = "/openapi.json";
/// `GET /docs`: the page.
pub const PAGE: &str = "/docs";
/// `GET /docs/{file}`: the page's scripts, styles and icons (the `route` label).
pub const ASSET: &str = "/docs/{file}";

/// `(route, method)` of these routes.
pub const OPERATIONS: [(&str, &str); 3] = [(OPENAPI, "GET"), (PAGE, "GET"), (ASSET, "GET")];

/// The document as written; [`openapi`] serves it with the server's version.
const DOCUMENT: &str = include_str!("openapi.json");

/// The page's own policy: its scripts and styles come from this server only (Swagger UI needs
/// its inline start-up script, inline styles and `data:` images).
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'";

/// The template `path` matches, if it is one of these routes.
pub fn route(path: &str) -> Option<&'static str> {
    match path {
        OPENAPI => Some(OPENAPI),
        PAGE => Some(PAGE),
        _ => path
            .strip_prefix("/docs/")
            .filter(|f| !f.is_empty() && !f.contains('/'))
            .map(|_| ASSET),
    }
}

/// The document with `info.version` set to `version`.
pub fn document(version: &str) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON (tested)");
    doc["info"]["version"] = version.into();
    doc
}

/// `GET /openapi.json`.
pub fn openapi(version: &str) -> HttpResponse {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| document(version).to_string());
    respond(StatusCode::OK, "application/json", body.clone())
}

/// `GET /docs`: Swagger UI on [`OPENAPI`], its files under `/docs/`.
pub fn page() -> HttpResponse {
    static PAGE_HTML: OnceLock<String> = OnceLock::new();
    let html = PAGE_HTML.get_or_init(|| {
        let mut ui = SwaggerUi::new();
        ui.title("inference-gateway API");
        for &file in SwaggerUiStaticFile::all() {
            ui.override_file_path(file, format!("{PAGE}/{}", file.file_name()));
        }
        ui.config()
            .urls([OPENAPI])
            .try_it_out_enabled(true)
            .display_request_duration(true)
            // Swagger UI otherwise asks validator.swagger.io about the document.
            .validator_url("none");
        ui.serve().expect("the page's settings serialise")
    });
    let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", html.clone());
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_POLICY),
    );
    r
}

/// `GET /docs/{file}`: one of the page's bundled files, else 404.
pub fn asset(path: &str) -> Result<HttpResponse, ApiError> {
    let name = path.strip_prefix("/docs/").unwrap_or_default();
    let (file, bytes) = SwaggerUi::static_files()
        .iter()
        .find(|(f, _)| f.file_name() == name)
        .ok_or(ApiError::NotFound)?;
    let content_type = match file {
        SwaggerUiStaticFile::Css | SwaggerUiStaticFile::IndexCss => "text/css; charset=utf-8",
        SwaggerUiStaticFile::Js | SwaggerUiStaticFile::StandalonePresetJs => {
            "text/javascript; charset=utf-8"
        }
        _ => "image/png",
    };
    let mut r = respond(StatusCode::OK, content_type, Bytes::from_static(bytes));
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(template, method)` of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = document("test");
        let paths = doc["paths"].as_object().expect("paths");
        let mut ops = BTreeSet::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                ops.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
        ops
    }

    /// A concrete path for a documented template.
    fn concrete(template: &str) -> String {
        template
            .replace("{model}", "resnet50")
            .replace("{version}", "1")
            .replace("{file}", "swagger-ui.css")
    }

    #[test]
    fn every_documented_route_is_routed_under_its_own_template() {
        for (template, _) in documented() {
            let path = concrete(&template);
            let routed = super::super::route_of(&path);
            // The versioned v2 routes share the label of the unversioned ones.
            let label = template.replace("/versions/{version}", "");
            assert_eq!(routed, label, "{template}");
        }
    }

    #[test]
    fn every_operation_the_router_serves_is_documented_and_nothing_else() {
        let served: BTreeSet<(String, String)> = super::super::operations()
            .map(|(r, m)| (r.to_owned(), m.to_owned()))
            .collect();
        // The versioned v2 routes share the label (and the handler) of the unversioned ones.
        let documented: BTreeSet<(String, String)> = documented()
            .into_iter()
            .map(|(t, m)| (t.replace("/versions/{version}", ""), m))
            .collect();
        assert_eq!(served, documented);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_version_served() {
        let doc = document("9.9.9");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], "9.9.9");
        let text = doc.to_string();
        // Every schema it names is defined.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "{name} is not defined");
        }
    }

    #[test]
    fn each_error_is_documented_with_its_code_under_its_status() {
        use crate::imaging::DecodeError;
        let doc = document("test");
        let errors = [
            ApiError::bad_request("invalid_parameter", "m"),
            ApiError::bad_request("invalid_multipart", "m"),
            DecodeError::Empty.into(),
            DecodeError::NotAnImage.into(),
            DecodeError::Unsupported("12-bit".into()).into(),
            DecodeError::TooLarge {
                width: 1,
                height: 1,
                limit: 0,
            }
            .into(),
            crate::service::repository::unload_refused(),
            ApiError::Unauthorized,
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::QueueFull(1),
            ApiError::DecodeBusy,
            ApiError::NotReady("draining"),
            ApiError::Deadline(std::time::Duration::from_secs(1)),
            ApiError::NotFound,
            ApiError::ModelNotFound("m".into()),
            ApiError::Engine(engine::EngineError::ShutDown),
            ApiError::Engine(engine::EngineError::Restarting("x".into())),
            ApiError::Engine(engine::EngineError::DeviceLost("x".into())),
            ApiError::Engine(engine::EngineError::Inference("x".into())),
        ];
        for e in errors {
            let status = super::super::status::status(&e).as_u16();
            let codes = &doc["components"]["schemas"][format!("Error{status}")]["properties"]
                ["error"]["properties"]["code"]["enum"];
            let codes = codes
                .as_array()
                .unwrap_or_else(|| panic!("no Error{status}"));
            assert!(
                codes.contains(&e.code().into()),
                "{} under {status}",
                e.code()
            );
        }
    }

    #[test]
    fn the_page_and_its_files_are_served_from_the_binary() {
        use futures_util::FutureExt;
        use http_body_util::BodyExt;
        let body = page().into_body().collect().now_or_never().unwrap();
        let html = String::from_utf8(body.unwrap().to_bytes().to_vec()).unwrap();
        assert!(html.contains("/openapi.json"), "{html}");
        for &file in SwaggerUiStaticFile::all() {
            let href = format!("/docs/{}", file.file_name());
            assert!(html.contains(&href), "{href} not in the page");
            assert_eq!(asset(&href).unwrap().status(), 200, "{href}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no CDN: {html}"
        );
        assert!(matches!(asset("/docs/nope.js"), Err(ApiError::NotFound)));
        assert_eq!(route("/docs/a/b"), None);
        assert_eq!(route("/docs/"), None);
    }
}
