//! The model's life in the server, with no transport in sight: building a pipeline
//! ([`pipeline`]), the slot it serves from ([`Slot`]), reloads and repository loads
//! ([`reload`]), int8 quantisation at load ([`precision`]) and content versions ([`version`]).
//!
//! [`Models`] owns all of it. The service asks it for the pipeline and for loads; `serve`
//! starts the first load and the reload triggers, and closes it at shutdown. Nothing here
//! imports the service, a transport or `serve`.

mod pipeline;
pub mod precision;
mod reload;
mod slot;
mod version;

#[cfg(feature = "cuda")]
pub use pipeline::cuda_config;
pub use pipeline::{load_model, BackendWrapper, LoadError};
pub use pipeline::{Parts, Pipeline};
pub use reload::{load, reload_worker};
pub use reload::{watch, ReloadError, Reloaded};
pub use slot::Slot;
pub use version::{content_version, version_of};

use std::sync::Arc;

use crate::telemetry::metrics::ModelLabels;

/// The model slot and the loads into it.
pub struct Models {
    parts: Parts,
    slot: Slot,
    /// Reloads happen one at a time.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// The repository load that has not started yet, which new load requests join.
    pending_load: parking_lot::Mutex<Option<reload::SharedReload>>,
}

impl Models {
    /// An empty slot, and what building a pipeline takes.
    pub fn new(parts: Parts) -> Self {
        let mc = &parts.config.model;
        let labels = ModelLabels {
            device: mc.device.to_string(),
            engine: match mc.device {
                crate::config::Device::Cpu => "onnxruntime",
                crate::config::Device::Cuda(_) => mc.gpu_engine.name(),
            },
            model: mc.name.clone(),
            precision: mc.precision.precision.label(),
            preprocess: parts.config.http.preprocess.name(),
            version: String::new(),
        };
        Models {
            slot: Slot::new(labels, parts.metrics.clone()),
            parts,
            reloading: Arc::default(),
            pending_load: parking_lot::Mutex::default(),
        }
    }

    /// The slot the pipeline serves from.
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// The first load: builds a pipeline on a blocking thread and installs it.
    pub async fn load_first(self: &Arc<Self>) -> Result<(), LoadError> {
        let (pipeline, thread) = self.build().await?;
        self.slot.install(pipeline, thread);
        Ok(())
    }

    /// Builds a pipeline on a blocking thread (a panic there is a [`LoadError::Panicked`]).
    async fn build(self: &Arc<Self>) -> Result<(Pipeline, std::thread::JoinHandle<()>), LoadError> {
        let models = self.clone();
        tokio::task::spawn_blocking(move || pipeline::build(&models.parts))
            .await
            .map_err(|e| LoadError::Panicked(e.to_string()))?
    }
}
