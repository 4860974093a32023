//! ONNX Runtime behind one session builder for every execution provider (CPU; with the `cuda`
//! feature, CUDA and TensorRT), [`OnnxBackend`] ([`backend`]), which runs a session through I/O
//! binding in the cuDNN engine's stages, and the GPU providers' library [`probe`]. The CPU
//! engine ([`crate::CpuBackend`]) builds its session here too, and CI runs [`OnnxBackend`]
//! through the CPU provider against it.
//!
//! A provider that cannot be registered is an error ([`session`] asks ONNX Runtime for that):
//! ONNX Runtime would otherwise fall back to the CPU, which must never happen on a GPU node.

mod backend;
#[cfg(feature = "cuda")]
mod probe;

use std::path::PathBuf;

use ort::session::{builder::GraphOptimizationLevel, Session};

use crate::runtime::{environment, CpuConfig, ModelSource};
use crate::EngineError;

pub use backend::OnnxBackend;
#[cfg(feature = "cuda")]
pub use probe::probe;

/// Where ONNX Runtime runs the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    /// Its CPU provider.
    Cpu,
    /// The CUDA execution provider on GPU `device`.
    Cuda {
        /// The CUDA device ordinal.
        device: i32,
    },
    /// The TensorRT execution provider (CUDA for what TensorRT does not take).
    TensorRt(TensorRtOptions),
}

/// How the TensorRT provider builds and caches its engines.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRtOptions {
    /// The CUDA device ordinal.
    pub device: i32,
    /// Let TensorRT pick fp16 kernels.
    pub fp16: bool,
    /// Run the model's Q/DQ pairs in int8 (TensorRT's explicit quantisation): for a QDQ model.
    pub int8: bool,
    /// Engines and timing caches go here, named with `cache_prefix`.
    pub cache_dir: PathBuf,
    /// What makes a cached engine valid: the model's content version (and the caller's GPU and
    /// TensorRT version where it knows them).
    pub cache_prefix: String,
    /// The optimisation profile covers batches 1 to this.
    pub max_batch: usize,
    /// The model's input name, for the profile's shapes.
    pub input: String,
}

impl Provider {
    /// `onnxruntime` (CPU), `onnxruntime-cuda` or `tensorrt`: the `engine` label of
    /// `model_info`.
    pub fn label(&self) -> &'static str {
        match self {
            Provider::Cpu => "onnxruntime",
            Provider::Cuda { .. } => "onnxruntime-cuda",
            Provider::TensorRt(_) => "tensorrt",
        }
    }
}

/// A session of `config.model` on `provider`, with this project's thread and optimisation
/// settings. [`crate::init_onnx_runtime`] must have succeeded.
pub(crate) fn session(config: &CpuConfig, provider: &Provider) -> Result<Session, EngineError> {
    let mut builder = Session::builder(environment()?)
        .map_err(EngineError::model_load)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(EngineError::model_load)?
        .with_intra_threads(config.intra_threads.max(1))
        .map_err(EngineError::model_load)?
        .with_inter_threads(1)
        .map_err(EngineError::model_load)?
        .with_intra_op_spinning(config.spinning)
        .map_err(EngineError::model_load)?;
    if *provider != Provider::Cpu {
        builder = builder
            .with_execution_providers(providers(provider)?)
            .map_err(|e| {
                EngineError::DeviceUnavailable(format!("{}: {e}", provider.label()).into())
            })?;
    }
    match &config.model {
        ModelSource::File(path) => builder.commit_from_file(path),
        ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes),
    }
    .map_err(EngineError::model_load)
}

/// The execution providers of `provider`, each an error if it fails to register.
#[cfg(feature = "cuda")]
fn providers(provider: &Provider) -> Result<Vec<ort::ep::ExecutionProviderDispatch>, EngineError> {
    use ort::ep::{TensorRT, CUDA};
    Ok(match provider {
        Provider::Cpu => Vec::new(),
        Provider::Cuda { device } => {
            vec![CUDA::default()
                .with_device_id(*device)
                .build()
                .error_on_failure()]
        }
        Provider::TensorRt(t) => {
            let cache = t.cache_dir.display().to_string();
            let (max, opt) = (t.max_batch.max(1), t.max_batch.clamp(1, 32));
            let side = crate::IMAGE_SIDE;
            let shape =
                |n: usize| format!("{}:{n}x{}x{side}x{side}", t.input, crate::IMAGE_CHANNELS);
            vec![
                TensorRT::default()
                    .with_device_id(t.device)
                    .with_fp16(t.fp16)
                    .with_int8(t.int8)
                    .with_engine_cache(true)
                    .with_engine_cache_path(&cache)
                    .with_engine_cache_prefix(&t.cache_prefix)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&cache)
                    .with_profile_min_shapes(shape(1))
                    .with_profile_opt_shapes(shape(opt))
                    .with_profile_max_shapes(shape(max))
                    .build()
                    .error_on_failure(),
                // What TensorRT does not take runs on CUDA, never on the CPU.
                CUDA::default()
                    .with_device_id(t.device)
                    .build()
                    .error_on_failure(),
            ]
        }
    })
}

/// Without the `cuda` feature only the CPU provider exists.
#[cfg(not(feature = "cuda"))]
fn providers(provider: &Provider) -> Result<Vec<ort::ep::ExecutionProviderDispatch>, EngineError> {
    match provider {
        Provider::Cpu => Ok(Vec::new()),
        other => Err(EngineError::DeviceUnavailable(
            format!(
                "{}: this build has no GPU execution providers (build with --features cuda)",
                other.label()
            )
            .into(),
        )),
    }
}
