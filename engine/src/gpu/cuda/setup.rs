//! Starting the CUDA engine: probing the libraries before cudarc can panic, the one shared
//! context per device (event tracking off before any allocation), and the executor and lane
//! backend built on it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::CudaContext;

use super::super::device::GpuError;
use super::super::exec::{Executor, Graphs, PlanBackend};
use super::super::model::PreparedModel;
use super::super::tune::TuneCache;
use super::{driver, pinned, CudaDevice};
use crate::{Backend, EngineError, Normalization};

/// Settings of the CUDA engine (the server turns `MODEL_DEVICE` and friends into this).
#[derive(Debug, Clone)]
pub struct CudaConfig {
    /// Device ordinal (`cuda:N`).
    pub ordinal: usize,
    /// Largest batch (the largest bucket).
    pub max_batch: usize,
    /// Normalisation of the u8 images, done on the device.
    pub normalization: Normalization,
    /// The autotuning cache file (`None`: tune at every start, keep nothing).
    pub tune_cache: Option<PathBuf>,
    /// Capture one CUDA graph per bucket.
    pub graphs: bool,
    /// Time each convolution's candidate algorithms at start (cached in `tune_cache`); off
    /// (plan B), every convolution takes IMPLICIT_PRECOMP_GEMM untimed.
    pub tune: bool,
}

/// Checks that the driver and every CUDA library the engine calls can be loaded, before cudarc
/// (which panics on a missing library) is asked to.
pub fn probe() -> Result<(), GpuError> {
    // SAFETY: each only tries to open a shared library; nothing is called through it.
    let found = unsafe {
        [
            (
                "libcuda.so.1 (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("libnvrtc.so.13", cudarc::nvrtc::sys::is_culib_present()),
            ("libcudnn.so.9", cudarc::cudnn::sys::is_culib_present()),
            (
                "libcublasLt.so.13",
                cudarc::cublaslt::sys::is_culib_present(),
            ),
        ]
    };
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return versions();
    }
    Err(GpuError::Unavailable(format!(
        "cannot load {} (a GPU node with the NVIDIA driver, and the CUDA 13 / cuDNN 9 libraries \
         on LD_LIBRARY_PATH, e.g. the nvidia-*-cu13 wheels' lib folders, are needed)",
        missing.join(", ")
    )))
}

/// The loaded libraries are the ones the bindings were generated for: cuDNN 9 with its
/// sub-libraries (the loader tries an unversioned `libcudnn.so` first, which could be an older
/// system copy) and cuBLASLt 13.
fn versions() -> Result<(), GpuError> {
    let cudnn = cudarc::cudnn::result::get_version();
    if !(90_000..100_000).contains(&cudnn) {
        return Err(GpuError::Unavailable(format!(
            "cuDNN {cudnn} was loaded; cuDNN 9 is needed (put the nvidia-cudnn-cu13 wheel's lib \
             folder first on LD_LIBRARY_PATH)"
        )));
    }
    cudarc::cudnn::result::version_check().map_err(|e| {
        GpuError::Unavailable(format!("cuDNN 9's sub-libraries do not load or match: {e}"))
    })?;
    // SAFETY: the library is present (probed above); the call takes no arguments.
    let lt = unsafe { cudarc::cublaslt::sys::cublasLtGetVersion() };
    if lt / 10_000 != 13 {
        return Err(GpuError::Unavailable(format!(
            "cuBLASLt {lt} was loaded; CUDA 13's (13xxxx) is needed"
        )));
    }
    Ok(())
}

/// The one context of device `ordinal`, shared by every lane; event tracking is switched off
/// before anything is allocated on it.
pub(super) fn context(ordinal: usize) -> Result<Arc<CudaContext>, GpuError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<usize, Arc<CudaContext>>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(&ordinal) {
        return Ok(ctx.clone());
    }
    let count = CudaContext::device_count()
        .map_err(|e| GpuError::Unavailable(format!("no CUDA device: {e:?}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(GpuError::Unavailable(format!(
            "cuda:{ordinal} requested, {count} device(s) present"
        )));
    }
    let ctx = CudaContext::new(ordinal)
        .map_err(|e| GpuError::Unavailable(format!("cuda:{ordinal}: {e:?}")))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(driver("compute capability"))?;
    if major < 7 {
        return Err(GpuError::Unavailable(format!(
            "cuda:{ordinal} has compute capability {major}.{minor}; fp16 tensor cores (7.0 or newer) are needed"
        )));
    }
    // SAFETY: called right after creation, before any allocation on this context (cudarc
    // requires that), and it is the only Arc of this context handed out.
    unsafe { ctx.disable_event_tracking() };
    map.insert(ordinal, ctx.clone());
    Ok(ctx)
}

/// The GPU's UUID as `GPU-xxxxxxxx-…` (what nvidia-smi prints), the tuning cache's key.
pub(super) fn uuid(ctx: &CudaContext) -> Result<String, GpuError> {
    let u = ctx.uuid().map_err(driver("uuid"))?;
    let hex: Vec<String> = u
        .bytes
        .iter()
        .map(|b| format!("{:02x}", *b as u8))
        .collect();
    let h = hex.concat();
    Ok(format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Builds lane `lane`'s CUDA backend for `model`: probes the libraries, uploads the weights,
/// prepares (and tunes) every step for every bucket, saves the tuning cache, captures the
/// graphs. A panic inside cudarc (a symbol missing from a library) becomes an error.
pub fn backend(
    model: Arc<PreparedModel>,
    cfg: &CudaConfig,
    lane: usize,
) -> Result<Box<dyn Backend>, EngineError> {
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(model, cfg, lane)));
    match built {
        Ok(Ok(b)) => Ok(Box::new(b)),
        Ok(Err(e)) => Err(e.into()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            Err(EngineError::DeviceUnavailable(
                format!("the CUDA libraries failed while starting: {why}").into(),
            ))
        }
    }
}

/// An executor of `model` on device `cfg.ordinal` (built, tuned, graphs captured when
/// `cfg.graphs`), for the lane backend and for checks and benchmarks.
pub fn executor(
    model: Arc<PreparedModel>,
    cfg: &CudaConfig,
    lane: usize,
) -> Result<Executor<CudaDevice>, GpuError> {
    probe()?;
    let ctx = context(cfg.ordinal)?;
    let tune = cfg
        .tune_cache
        .as_deref()
        .map(|p| TuneCache::load(p).0)
        .unwrap_or_default();
    let dev = CudaDevice::new(ctx, tune, cfg.tune)?;
    let affine = super::super::affine_of(cfg.normalization);
    let started = std::time::Instant::now();
    let mut exec = Executor::new(dev, model, cfg.max_batch, affine)?;
    let dnn = &exec.device().dnn;
    tracing::info!(lane, device = %exec.device().description, cudnn = dnn.version, tuned = dnn.tuned, timing = cfg.tune, elapsed_s = started.elapsed().as_secs_f64(), "CUDA engine built");
    if let (Some(path), true) = (&cfg.tune_cache, dnn.tuned > 0) {
        if let Err(e) = dnn.tune.save(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the convolution algorithm cache");
        }
    }
    if cfg.graphs {
        match exec.capture_graphs()? {
            Graphs::All => tracing::info!(lane, buckets = ?exec.buckets(), "CUDA graphs captured"),
            Graphs::Unsupported => {}
            Graphs::Failed(buckets, why) => {
                tracing::warn!(lane, ?buckets, reason = %why, "CUDA graph capture failed; those buckets launch eagerly")
            }
        }
    } else {
        tracing::info!(lane, "CUDA graphs off; every batch launches its steps");
    }
    Ok(exec)
}

fn build(
    model: Arc<PreparedModel>,
    cfg: &CudaConfig,
    lane: usize,
) -> Result<PlanBackend<CudaDevice>, GpuError> {
    let exec = executor(model, cfg, lane)?;
    let ctx = context(cfg.ordinal)?;
    let host: super::super::exec::HostBatchAlloc =
        Box::new(move |capacity| pinned::batch(&ctx, capacity));
    Ok(PlanBackend::new(exec, Some(host)))
}
