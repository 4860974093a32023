//! Building a pipeline: the model loaded (or generated) and checked, quantised when asked, its
//! engine lanes started and warmed up, and the batcher thread that feeds them. The first load
//! and every reload build one the same way ([`build`]); the [`super::Slot`] serves it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use engine::{Backend, BackendFactory, CpuBackend, Lanes, ModelSource};

use crate::batching::admission::Admission;
use crate::batching::batcher::{self, BatcherConfig, BatcherFault};
use crate::batching::queue::Pending;

use crate::config::{Config, Device, ModelConfig};
use crate::telemetry::metrics::Metrics;

/// Batch buffers per CPU lane: one. With a single CPU lane a second, pre-formed batch would only
/// be smaller than what waits when the lane frees up.
const CPU_BUFFERS_PER_LANE: usize = 1;
/// Batch buffers per GPU lane: two, so the next batch fills while the GPU runs this one.
#[cfg(feature = "cuda")]
const GPU_BUFFERS_PER_LANE: usize = 2;

/// Wraps each lane's freshly built backend: `(lane, backend) → backend` (fault-injection tests).
pub type BackendWrapper = Arc<
    dyn Fn(usize, Box<dyn Backend>) -> Result<Box<dyn Backend>, engine::EngineError> + Send + Sync,
>;

/// Why a model could not be loaded into a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model could not be found, generated or accepted.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The batcher thread could not start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `MODEL_PRECISION=int8` and the model could not be quantised, or was refused.
    #[error("int8: {0}")]
    Precision(#[from] super::precision::PrecisionError),
    /// The loading thread panicked (a bug: the message is the panic's).
    #[error("the model loader panicked: {0}")]
    Panicked(String),
}

/// What building a pipeline takes from the server: the same for the first load and every reload.
pub struct Parts {
    /// The server's configuration (the model's and the batching settings are read).
    pub config: Config,
    /// Where the batcher and the model info report.
    pub metrics: Metrics,
    /// The admission count the batcher releases places of.
    pub admission: Arc<Admission>,
    /// The server's subscriber: the loader's and the batcher's logs and spans go to it.
    pub dispatch: tracing::Dispatch,
    /// Test seams.
    pub wrap_backend: Option<BackendWrapper>,
    /// Runs in the batcher thread before each batch (a test seam).
    pub batcher_fault: Option<BatcherFault>,
}

/// The loaded model's side of the server: where requests go and how answers are labelled.
pub struct Pipeline {
    /// The batcher's queue: admitted inputs go here.
    pub requests: crossbeam_channel::Sender<Pending>,
    /// The model's class count (its output row length).
    pub classes: usize,
    /// Class names, when the model is ImageNet's 1 000 classes; else empty.
    pub labels: &'static [&'static str],
    /// Whether every engine lane can run batches.
    pub health: Arc<engine::Health>,
    /// Set if the batcher thread died.
    pub batcher_died: Arc<AtomicBool>,
    /// The model's content version ([`super::version_of`]).
    pub version: String,
    /// Names of the network's input and output tensors, as in the file.
    pub io: TensorNames,
    /// Largest batch: `MAX_BATCH_SIZE`, or less when the file fixes its batch dimension.
    pub max_batch: usize,
}

/// The names of the network's input and output tensors, as in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorNames {
    pub input: String,
    pub output: String,
}

/// ONNX Runtime started, then the model at `path` (or, when `None`, the built-in one) loaded and
/// checked: the start of every load, the server's and the tools' alike.
pub fn load_model(mc: &ModelConfig, path: Option<&Path>) -> Result<models::LoadedModel, LoadError> {
    engine::init_onnx_runtime(&mc.ort_dylib)?;
    Ok(models::load(
        path,
        &mc.cache_dir,
        mc.seed,
        mc.engine_threads,
    )?)
}

/// The CUDA engine's settings for GPU `ordinal`: batches up to `max_batch`, ImageNet's
/// normalisation, the convolution tuning cache in `cache_dir`, CUDA graphs when `graphs`,
/// algorithms timed when `tune`.
#[cfg(feature = "cuda")]
pub fn cuda_config(
    ordinal: usize,
    max_batch: usize,
    cache_dir: &Path,
    (graphs, tune): (bool, bool),
) -> engine::gpu::cuda::CudaConfig {
    engine::gpu::cuda::CudaConfig {
        ordinal,
        max_batch,
        normalization: models::IMAGENET_NORMALIZATION,
        tune_cache: Some(cache_dir.join("conv-algos.tsv")),
        graphs,
        tune,
    }
}

/// The lane backend factory for the configured device, and how many batch buffers each lane
/// gets.
fn backends(
    parts: &Parts,
    model: &models::LoadedModel,
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))] max_batch: usize,
) -> Result<(BackendFactory, usize), LoadError> {
    let mc = &parts.config.model;
    match mc.device {
        Device::Cpu => {
            let cpu = engine::CpuConfig {
                spinning: mc.engine_spin,
                // The bytes that were checked and hashed: a lane rebuilt later gets the same
                // model even if the file has been replaced since.
                ..engine::CpuConfig::new(
                    ModelSource::Bytes(model.bytes.clone()),
                    mc.engine_threads,
                    models::IMAGENET_NORMALIZATION,
                )
            };
            let factory: BackendFactory =
                Arc::new(move |_lane| Ok(Box::new(CpuBackend::new(&cpu)?) as Box<dyn Backend>));
            Ok((factory, CPU_BUFFERS_PER_LANE))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) if mc.gpu_engine != crate::config::GpuEngine::Cudnn => Ok((
            onnx_gpu(parts, model, ordinal, max_batch)?,
            GPU_BUFFERS_PER_LANE,
        )),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            let prepared = Arc::new(models::prepare_for_gpu_from(&model.bytes)?);
            let launch = (mc.cuda_graphs, mc.cudnn_tune);
            let cfg = cuda_config(ordinal as usize, max_batch, &mc.cache_dir, launch);
            let factory: BackendFactory =
                Arc::new(move |lane| engine::gpu::cuda::backend(prepared.clone(), &cfg, lane));
            Ok((factory, GPU_BUFFERS_PER_LANE))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(engine::EngineError::DeviceUnavailable(
            "this build has no CUDA engine (build with --features cuda)".into(),
        )
        .into()),
    }
}

/// The lane factory of ONNX Runtime on a GPU (`GPU_ENGINE=tensorrt` or `onnxruntime-cuda`),
/// after checking that every library the provider needs is there.
#[cfg(feature = "cuda")]
fn onnx_gpu(
    parts: &Parts,
    model: &models::LoadedModel,
    ordinal: u32,
    max_batch: usize,
) -> Result<BackendFactory, LoadError> {
    use crate::config::GpuEngine;
    let mc = &parts.config.model;
    let device = ordinal as i32;
    let provider = match mc.gpu_engine {
        GpuEngine::TensorRt => engine::Provider::TensorRt(engine::TensorRtOptions {
            device,
            fp16: true,
            // Our QDQ model (quantised for TensorRT at load): TensorRT's explicit quantisation.
            int8: mc.precision.precision == crate::config::Precision::Int8,
            cache_dir: mc.cache_dir.join("tensorrt"),
            // Engines are valid for this model file on this GPU ordinal; TensorRT itself
            // refuses a cached engine from another GPU model or TensorRT version.
            cache_prefix: format!(
                "{}-gpu{ordinal}-b{max_batch}",
                super::version_of(&model.bytes)
            ),
            max_batch,
            input: model.signature.input.clone(),
        }),
        _ => engine::Provider::Cuda { device },
    };
    if let engine::Provider::TensorRt(t) = &provider {
        let _ = std::fs::create_dir_all(&t.cache_dir);
        tracing::info!(cache = %t.cache_dir.display(), "TensorRT builds its engines now (minutes on the first start; cached after)");
    }
    let cpu = engine::CpuConfig::new(
        ModelSource::Bytes(model.bytes.clone()),
        mc.engine_threads,
        models::IMAGENET_NORMALIZATION,
    );
    Ok(Arc::new(move |_lane| {
        Ok(Box::new(engine::OnnxBackend::new(&cpu, &provider)?) as Box<dyn Backend>)
    }))
}

/// Loads (or generates) the model, starts the lanes (warmed up) and the batcher, logging under
/// the server's subscriber (it runs on a blocking thread). Blocking.
pub fn build(parts: &Parts) -> Result<(Pipeline, JoinHandle<()>), LoadError> {
    tracing::dispatcher::with_default(&parts.dispatch, || build_pipeline(parts))
}

/// Checks, before the model is loaded or quantised, that every library an ONNX Runtime GPU
/// engine needs is there; the error names each one missing.
fn preflight(mc: &ModelConfig) -> Result<(), LoadError> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(_) = mc.device {
        let tensorrt = match mc.gpu_engine {
            crate::config::GpuEngine::Cudnn => return Ok(()),
            crate::config::GpuEngine::OnnxRuntimeCuda => false,
            crate::config::GpuEngine::TensorRt => true,
        };
        engine::probe_providers(tensorrt, &mc.ort_dylib)?;
    }
    #[cfg(not(feature = "cuda"))]
    let _ = mc;
    Ok(())
}

fn build_pipeline(parts: &Parts) -> Result<(Pipeline, JoinHandle<()>), LoadError> {
    let started = Instant::now();
    let mc = &parts.config.model;
    preflight(mc)?;
    let mut model = load_model(mc, mc.path.as_deref())?;
    // The file's version, whatever precision its lanes run at.
    let version = super::version_of(&model.bytes);
    model.bytes =
        super::precision::engine_bytes(mc, &model.bytes, model.origin == models::Origin::Builtin)?;
    let sig = &model.signature;
    let max_batch = parts
        .config
        .batching
        .max_batch_size
        .min(sig.fixed_batch.unwrap_or(usize::MAX));
    let (factory, buffers_per_lane) = backends(parts, &model, max_batch)?;
    let warmup = if mc.warmup {
        engine::warmup_batch_sizes(max_batch)
    } else {
        Vec::new()
    };
    let factory = match parts.wrap_backend.clone() {
        Some(wrap) => Arc::new(move |lane| wrap(lane, factory(lane)?)) as BackendFactory,
        None => factory,
    };
    let mut lanes = Lanes::start(1, factory, max_batch, buffers_per_lane, &warmup)?;
    let health = lanes.health();
    let classes = lanes.classes();
    let buffers = lanes.take_buffers();
    let (tx, rx) = crossbeam_channel::bounded(parts.config.batching.max_queue_size);
    let config = BatcherConfig {
        max_batch,
        max_delay: parts.config.batching.max_batch_delay,
        fault: parts.batcher_fault.clone(),
    };
    let telemetry = batcher::Telemetry {
        metrics: parts.metrics.clone(),
        dispatch: parts.dispatch.clone(),
        device: mc.device.to_string().into(),
    };
    let (thread, batcher_died) = batcher::spawn(
        config,
        lanes,
        buffers,
        rx,
        parts.admission.clone(),
        telemetry,
    )?;
    tracing::info!(
        precision = mc.precision.precision.label(),
        path = %model.path.display(),
        input = %sig.input,
        output = %sig.output,
        classes,
        max_batch,
        device = %mc.device,
        warmup = ?warmup,
        version = %version,
        elapsed_s = started.elapsed().as_secs_f64(),
        "model loaded"
    );
    let labels: &'static [&'static str] = if classes == models::NUM_CLASSES {
        models::imagenet_labels()
    } else {
        &[]
    };
    Ok((
        Pipeline {
            requests: tx,
            classes,
            labels,
            health,
            batcher_died,
            version,
            io: TensorNames {
                input: sig.input.clone(),
                output: sig.output.clone(),
            },
            max_batch,
        },
        thread,
    ))
}
