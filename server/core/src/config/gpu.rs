//! `GPU_ENGINE`: which engine serves when `MODEL_DEVICE=cuda`.

use super::{ConfigError, Env};

/// The engine behind `MODEL_DEVICE=cuda[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuEngine {
    /// Our own engine: cuDNN fused convolutions, cuBLASLt, NVRTC kernels, CUDA graphs.
    #[default]
    Cudnn,
    /// ONNX Runtime's TensorRT execution provider (onnxruntime-gpu and TensorRT 10 at run time).
    TensorRt,
    /// ONNX Runtime's CUDA execution provider (onnxruntime-gpu, cuDNN 9 at run time).
    OnnxRuntimeCuda,
}

impl GpuEngine {
    /// `cudnn`, `tensorrt` or `onnxruntime-cuda`, as `GPU_ENGINE` and `model_info{engine}`
    /// spell it.
    pub fn name(self) -> &'static str {
        match self {
            GpuEngine::Cudnn => "cudnn",
            GpuEngine::TensorRt => "tensorrt",
            GpuEngine::OnnxRuntimeCuda => "onnxruntime-cuda",
        }
    }
}

/// `GPU_ENGINE` (default `cudnn`; an unknown value fails at start, naming the variable).
pub(super) fn gpu_engine<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<GpuEngine, ConfigError> {
    env.parse("GPU_ENGINE", GpuEngine::default(), |s| {
        [
            GpuEngine::Cudnn,
            GpuEngine::TensorRt,
            GpuEngine::OnnxRuntimeCuda,
        ]
        .into_iter()
        .find(|e| e.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| "expected cudnn, tensorrt or onnxruntime-cuda".into())
    })
}
