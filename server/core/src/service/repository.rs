//! The repository API's logic, for both transports: the index of the models served (the tensor
//! and the image model share one file), a load (a reload of `MODEL_PATH`, coalesced with loads
//! waiting to start), and the refusal of an unload (the model is always served).

use serde::Serialize;

use super::App;
use crate::error::ApiError;
use crate::lifecycle::{self, ReloadError, Reloaded};

/// One model of the repository index.
#[derive(Serialize)]
pub struct Entry {
    /// The model's name.
    pub name: String,
    /// The content version of the file it serves.
    pub version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    /// Why it is not ready, when it is not.
    pub reason: &'static str,
}

/// Both models with the state of the model file (its version is the content version).
pub fn entries(app: &App) -> Vec<Entry> {
    let pipeline = app.models.slot().current();
    let (version, state, reason) = match (&pipeline, app.draining()) {
        (_, true) => (String::new(), "UNAVAILABLE", "shutting down"),
        (Some(p), false) => (p.version.clone(), "READY", ""),
        (None, false) => (String::new(), "LOADING", ""),
    };
    crate::v2::Model::ALL
        .into_iter()
        .map(|m| Entry {
            name: m.name(app),
            version: version.clone(),
            state,
            reason,
        })
        .collect()
}

/// A repository load (both protocols): the version serving once it is done, or why not.
pub async fn load(app: &App) -> Result<String, ApiError> {
    match lifecycle::load(&app.models).await {
        Ok(Reloaded::Swapped { version } | Reloaded::Unchanged { version }) => Ok(version),
        Err(ReloadError::NotServing) => Err(ApiError::NotReady("no model is serving yet")),
        Err(why @ (ReloadError::ClassCount { .. } | ReloadError::Load(_))) => {
            Err(ApiError::bad_request(
                "model_load_failed",
                format!("{why}; the previous model keeps serving"),
            ))
        }
    }
}

/// Why unloading is refused (both protocols).
pub fn unload_refused() -> ApiError {
    ApiError::bad_request(
        "unload_unsupported",
        "this server always serves its one model; load a new file instead",
    )
}
