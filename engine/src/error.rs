//! The engine's error type: cheap to clone so one failure reaches every request of a batch.

use std::sync::Arc;

/// Why the engine could not start or could not run a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The ONNX Runtime shared library is missing or unusable.
    #[error("ONNX Runtime could not be loaded from {path}: {reason}")]
    RuntimeUnavailable {
        /// Where we looked.
        path: Arc<str>,
        /// What went wrong.
        reason: Arc<str>,
    },
    /// The model file could not be turned into an executable session.
    #[error("model could not be loaded: {0}")]
    ModelLoad(Arc<str>),
    /// The runtime failed while executing a batch.
    #[error("inference failed: {0}")]
    Inference(Arc<str>),
    /// The backend panicked while executing a batch; the lane rebuilds it.
    #[error("engine lane panicked: {0}")]
    Panicked(Arc<str>),
    /// The lane lost its backend (a panic) and has not rebuilt it yet; retry shortly.
    #[error("{0}")]
    Restarting(Arc<str>),
    /// The GPU (or its libraries) cannot be used: missing, unsupported or failing at start.
    #[error("CUDA: {0}")]
    DeviceUnavailable(Arc<str>),
    /// The device context is poisoned (e.g. an illegal address): this process cannot run
    /// batches any more and must be restarted.
    #[error("the GPU context is lost; the process must restart: {0}")]
    DeviceLost(Arc<str>),
    /// The lanes were shut down before the batch could run.
    #[error("the engine is shut down")]
    ShutDown,
}

impl EngineError {
    pub(crate) fn model_load(e: impl std::fmt::Display) -> Self {
        Self::ModelLoad(e.to_string().into())
    }

    pub(crate) fn inference(e: impl std::fmt::Display) -> Self {
        Self::Inference(e.to_string().into())
    }
}
