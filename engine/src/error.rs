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

    /// A failure of ONNX Runtime on a GPU provider: [`EngineError::DeviceLost`] when it reports a
    /// sticky CUDA error (its CUDA calls fail as `CUDA failure 700: an illegal memory access was
    /// encountered ; GPU=0 ; …`), else [`EngineError::Inference`].
    pub(crate) fn from_gpu_runtime(e: impl std::fmt::Display) -> Self {
        let message = e.to_string();
        let sticky = message
            .match_indices("CUDA failure ")
            .filter_map(|(at, prefix)| {
                let digits = &message[at + prefix.len()..];
                let end = digits
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(digits.len());
                digits[..end].parse().ok()
            })
            .any(is_sticky_cuda_error);
        match sticky {
            true => Self::DeviceLost(message.into()),
            false => Self::Inference(message.into()),
        }
    }
}

/// CUDA errors after which the context cannot be used again (CUDA's "sticky" errors: illegal
/// address, launch failure, ECC, hardware and unknown errors).
pub(crate) fn is_sticky_cuda_error(code: u32) -> bool {
    matches!(code, 214 | 220 | 700 | 702 | 709 | 710 | 714..=719 | 999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sticky_cuda_failure_in_onnx_runtime_is_a_lost_device() {
        let lost = "Non-zero status code returned while running Conv node. Name:'conv1' Status \
                    Message: CUDA failure 700: an illegal memory access was encountered ; GPU=0 ; \
                    hostname=gpu-1 ; file=cuda_call.cc ; line=123 ; expr=cudaStreamSynchronize;";
        assert!(matches!(
            EngineError::from_gpu_runtime(lost),
            EngineError::DeviceLost(_)
        ));
        for other in [
            "CUDA failure 2: out of memory ; GPU=0 ; hostname=gpu-1",
            "CUDNN failure 9: CUDNN_STATUS_NOT_SUPPORTED ; GPU=0",
            "CUDA failure : no digits",
            "TensorRT EP execution context enqueue failed.",
            "Got invalid dimensions for input: x",
        ] {
            assert!(
                matches!(
                    EngineError::from_gpu_runtime(other),
                    EngineError::Inference(_)
                ),
                "{other}"
            );
        }
        assert!(is_sticky_cuda_error(719) && is_sticky_cuda_error(999));
        assert!(!is_sticky_cuda_error(2));
    }
}
