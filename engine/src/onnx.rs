//! ONNX Runtime behind one session builder for every execution provider (CPU; with the `cuda`
//! feature, CUDA and TensorRT), and [`OnnxBackend`], which runs a session through I/O binding:
//! each batch is normalised straight into an input tensor that ONNX Runtime allocated (pinned
//! host memory on the GPU providers, so the copy to the device is a DMA), one per batch size and
//! reused; the logits come back in host memory; one session per lane. (Binding a borrowed
//! buffer instead makes `ort` copy it first, and deadlocks in ort 2.0.0-rc.15.) The CPU engine ([`crate::CpuBackend`]) builds its session here too, and CI runs
//! [`OnnxBackend`] through the CPU provider against it.
//!
//! A provider that cannot be registered is an error ([`session`] asks ONNX Runtime for that):
//! ONNX Runtime would otherwise fall back to the CPU, which must never happen on a GPU node.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{builder::GraphOptimizationLevel, IoBinding, Session};
use ort::value::Tensor;

use crate::runtime::{environment, io_shape, take_logits, CpuConfig, ModelSource};
use crate::{
    Backend, BatchBuffer, EngineError, Normalization, StageTiming, IMAGE_CHANNELS, IMAGE_SIDE,
};

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
            let shape =
                |n: usize| format!("{}:{n}x{IMAGE_CHANNELS}x{IMAGE_SIDE}x{IMAGE_SIDE}", t.input);
            vec![
                TensorRT::default()
                    .with_device_id(t.device)
                    .with_fp16(t.fp16)
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

/// Checks, before ONNX Runtime tries, that every library `provider` needs can be loaded: the
/// driver, the provider's plugins next to `ort_dylib` (which must be onnxruntime-gpu's; loading
/// a plugin also loads what it links, and the loader names the first missing), and the NVIDIA
/// libraries by family, any major version onnxruntime-gpu builds against (CUDA 12 or 13). The
/// error names each one missing.
#[cfg(feature = "cuda")]
pub fn probe(provider: &Provider, ort_dylib: &std::path::Path) -> Result<(), EngineError> {
    let dir = ort_dylib.parent().unwrap_or(std::path::Path::new("."));
    let plugin = |name: &str| vec![dir.join(name).display().to_string()];
    let any = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut needed = vec![
        ("the NVIDIA driver", any(&["libcuda.so.1"])),
        (
            "onnxruntime-gpu",
            plugin("libonnxruntime_providers_shared.so"),
        ),
        (
            "onnxruntime-gpu's CUDA provider",
            plugin("libonnxruntime_providers_cuda.so"),
        ),
        ("cuDNN 9", any(&["libcudnn.so.9"])),
        ("cuBLAS", any(&["libcublasLt.so.13", "libcublasLt.so.12"])),
        (
            "the CUDA runtime",
            any(&["libcudart.so.13", "libcudart.so.12"]),
        ),
    ];
    if let Provider::TensorRt(_) = provider {
        needed.push((
            "onnxruntime-gpu's TensorRT provider",
            plugin("libonnxruntime_providers_tensorrt.so"),
        ));
        needed.push(("TensorRT 10", any(&["libnvinfer.so.10"])));
        needed.push(("TensorRT 10's ONNX parser", any(&["libnvonnxparser.so.10"])));
    }
    let missing: Vec<String> = needed
        .into_iter()
        .filter_map(|(what, names)| {
            let mut why = String::new();
            for name in &names {
                // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
                // and ONNX Runtime's own libraries, which ONNX Runtime loads next in any case.
                match unsafe { libloading::Library::new(name) } {
                    Ok(_) => return None,
                    Err(e) => why = e.to_string(),
                }
            }
            // A plugin that is there but does not load: the loader says what it lacks.
            let present = names.iter().any(|n| std::path::Path::new(n).exists());
            let names = names.join(" or ");
            Some(match present {
                true => format!("{names} ({what}: {why})"),
                false => format!("{names} ({what})"),
            })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EngineError::DeviceUnavailable(
        format!(
            "GPU_ENGINE={} cannot start: missing {} (ORT_DYLIB_PATH must be onnxruntime-gpu's \
             library, with its provider plugins beside it, and the NVIDIA libraries on \
             LD_LIBRARY_PATH; docs/GPU.md)",
            provider.label(),
            missing.join(", ")
        )
        .into(),
    ))
}

/// ONNX Runtime on `provider` through I/O binding. Not shared between threads: each lane builds
/// its own (on a GPU, each session has its own CUDA stream).
pub struct OnnxBackend {
    session: Session,
    binding: IoBinding,
    input_name: String,
    output_name: String,
    output_memory: MemoryInfo<'static>,
    classes: usize,
    normalization: Normalization,
    /// Allocates the input tensors: host memory, pinned on the GPU providers.
    allocator: Allocator,
    /// One input tensor per batch size met, reused.
    inputs: HashMap<usize, Tensor<f32>>,
}

impl OnnxBackend {
    /// Builds the session of `config.model` on `provider`.
    pub fn new(config: &CpuConfig, provider: &Provider) -> Result<Self, EngineError> {
        let session = session(config, provider)?;
        let (input_name, classes) = io_shape(&session)?;
        let output_name = session.outputs()[0].name().to_string();
        let binding = session.create_binding().map_err(EngineError::model_load)?;
        let memory = |device, id, kind| {
            MemoryInfo::new(device, id, AllocatorType::Device, kind)
                .map_err(EngineError::model_load)
        };
        let output_memory = memory(AllocationDevice::CPU, 0, MemoryType::CPUOutput)?;
        let allocator = match provider {
            Provider::Cpu => Allocator::default(),
            Provider::Cuda { device } | Provider::TensorRt(TensorRtOptions { device, .. }) => {
                let pinned = memory(AllocationDevice::CUDA_PINNED, *device, MemoryType::CPUInput)?;
                Allocator::new(&session, pinned).map_err(EngineError::model_load)?
            }
        };
        Ok(Self {
            session,
            binding,
            input_name,
            output_name,
            output_memory,
            classes,
            normalization: config.normalization,
            allocator,
            inputs: HashMap::new(),
        })
    }

    /// Normalises `batch` into its size's input tensor (allocated on first use) and binds it.
    fn bind_batch(&mut self, batch: &BatchBuffer) -> Result<(), EngineError> {
        let n = batch.len();
        let tensor = match self.inputs.entry(n) {
            Entry::Occupied(t) => t.into_mut(),
            Entry::Vacant(v) => {
                let shape = [n, IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
                v.insert(Tensor::new(&self.allocator, shape).map_err(EngineError::inference)?)
            }
        };
        self.normalization
            .write_batch(batch, tensor.extract_tensor_mut().1);
        self.binding
            .bind_input(self.input_name.as_str(), &*tensor)
            .map_err(EngineError::inference)
    }
}

impl Backend for OnnxBackend {
    fn run(
        &mut self,
        batch: &BatchBuffer,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        timings.clear();
        logits.clear();
        if batch.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.bind_batch(batch)?;
        let normalized = Instant::now();
        timings.push(StageTiming {
            stage: "normalize",
            duration: normalized - start,
        });
        self.binding
            .bind_output_to_device(self.output_name.as_str(), &self.output_memory)
            .map_err(EngineError::inference)?;
        let outputs = self
            .session
            .run_binding(&self.binding)
            .map_err(EngineError::inference)?;
        take_logits(&outputs, batch.len(), self.classes, logits)?;
        timings.push(StageTiming {
            stage: "compute",
            duration: normalized.elapsed(),
        });
        Ok(())
    }

    fn classes(&self) -> usize {
        self.classes
    }
}
