//! The ONNX Runtime library and what every session of it shares: the process-wide
//! environment ([`init_onnx_runtime`]), where a model comes from ([`ModelSource`]), the
//! session settings ([`CpuConfig`]), and the model's input and output ([`io_shape`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;

use crate::{EngineError, Normalization};

static RUNTIME: OnceLock<Result<ort::environment::Environment, EngineError>> = OnceLock::new();

/// Loads the ONNX Runtime shared library from `dylib` once per process and creates the global
/// environment. Later calls return the first call's outcome, whatever path they pass.
pub fn init_onnx_runtime(dylib: &Path) -> Result<(), EngineError> {
    let outcome = RUNTIME.get_or_init(|| {
        let unavailable = |reason: String| EngineError::RuntimeUnavailable {
            path: dylib.display().to_string().into(),
            reason: reason.into(),
        };
        if !dylib.exists() {
            return Err(unavailable(
                "no such file (run scripts/setup.sh, or set ORT_DYLIB_PATH)".into(),
            ));
        }
        ort::init_from(dylib)
            .map_err(|e| unavailable(e.to_string()))?
            .with_name("inference-gateway")
            .with_telemetry(false)
            .build()
            .map_err(|e| unavailable(e.to_string()))
    });
    outcome.as_ref().map(|_| ()).map_err(Clone::clone)
}

pub(crate) fn environment() -> Result<&'static ort::environment::Environment, EngineError> {
    match RUNTIME.get() {
        Some(Ok(env)) => Ok(env),
        Some(Err(e)) => Err(e.clone()),
        None => Err(EngineError::RuntimeUnavailable {
            path: "(not initialised)".into(),
            reason: "init_onnx_runtime was not called".into(),
        }),
    }
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// An ONNX file on disk (external data next to it is found by ONNX Runtime).
    File(PathBuf),
    /// ONNX bytes in memory.
    Bytes(std::sync::Arc<[u8]>),
}

/// Settings of one CPU backend instance.
#[derive(Debug, Clone)]
pub struct CpuConfig {
    /// The model to run: one float NCHW input, one `[N, classes]` float output.
    pub model: ModelSource,
    /// Threads ONNX Runtime uses inside one operator.
    pub intra_threads: usize,
    /// Normalisation applied to the u8 images before the model.
    pub normalization: Normalization,
    /// Whether idle ONNX Runtime threads spin between operators (its default); off yields the
    /// cores at once.
    pub spinning: bool,
}

impl CpuConfig {
    /// This project's CPU policy for `model`: `threads` ONNX Runtime threads that spin between
    /// operators (ONNX Runtime's default). Spinning costs the decode threads less than it gains:
    /// on 2 cores under Poisson load at 13/s, the median p99 of four alternating rounds fell from
    /// 733 ms to 520 ms (`docs/benchmarks/README.md`).
    pub fn new(model: ModelSource, threads: usize, normalization: Normalization) -> Self {
        CpuConfig {
            model,
            intra_threads: threads,
            normalization,
            spinning: true,
        }
    }
}

/// The one input's name and the width of the one output, as ONNX Runtime reports them.
pub(crate) fn io_shape(session: &Session) -> Result<(String, usize), EngineError> {
    let [input] = session.inputs() else {
        return Err(EngineError::model_load(
            "the model must have exactly one input",
        ));
    };
    let [output] = session.outputs() else {
        return Err(EngineError::model_load(
            "the model must have exactly one output",
        ));
    };
    let classes = output
        .dtype()
        .tensor_shape()
        .and_then(|shape| shape.last().copied())
        .filter(|&c| c > 0)
        .ok_or_else(|| EngineError::model_load("the output's last dimension must be fixed"))?;
    Ok((input.name().to_string(), classes as usize))
}

/// Appends the one output's `rows × classes` logits to `logits`; an output of another size is an
/// inference error.
pub(crate) fn take_logits(
    outputs: &ort::session::SessionOutputs<'_>,
    rows: usize,
    classes: usize,
    logits: &mut Vec<f32>,
) -> Result<(), EngineError> {
    let (shape, data) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(EngineError::inference)?;
    if data.len() != rows * classes {
        return Err(EngineError::inference(format!(
            "output has shape {shape:?}, expected [{rows}, {classes}]"
        )));
    }
    logits.extend_from_slice(data);
    Ok(())
}
