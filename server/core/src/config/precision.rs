//! `MODEL_PRECISION` and the int8 calibration settings.

use std::path::PathBuf;

use models::quantize::{Method, Target};

use super::{ConfigError, Device, Env, GpuEngine};

/// The arithmetic the engine serves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The model as loaded.
    Fp32,
    /// The model quantised to QDQ int8 at load: for ONNX Runtime's integer kernels on the CPU,
    /// for TensorRT's explicit quantisation with `GPU_ENGINE=tensorrt`.
    Int8,
}

impl Precision {
    /// `fp32` or `int8`: the `precision` label of `model_info`.
    pub fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// How the server quantises, when `MODEL_PRECISION=int8`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionConfig {
    /// `MODEL_PRECISION`.
    pub precision: Precision,
    /// Whose integer kernels the QDQ model is shaped for: the CPU's, or TensorRT's on
    /// `MODEL_DEVICE=cuda` with `GPU_ENGINE=tensorrt`.
    pub target: Target,
    /// `CALIBRATION_DIR`: images (any served format) that calibrate the activations; required
    /// for a user's model, added to the synthetic set for the built-in one.
    pub calibration_dir: Option<PathBuf>,
    /// `CALIBRATION_METHOD`: `minmax`, `percentile` (99.999) or `percentile:P`.
    pub method: Method,
    /// `INT8_MIN_AGREEMENT`: the share of calibration images whose int8 top-1 must equal the
    /// fp32 one, or the quantised model is refused (0–1; default 0.9).
    pub min_agreement: f64,
}

pub(super) fn precision_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    device: Device,
    engine: GpuEngine,
) -> Result<PrecisionConfig, ConfigError> {
    let target = match (device, engine) {
        (Device::Cuda(_), GpuEngine::TensorRt) => Some(Target::TensorRt),
        (Device::Cuda(_), _) => None,
        (Device::Cpu, _) => Some(Target::OnnxRuntimeCpu),
    };
    let precision = env.parse("MODEL_PRECISION", Precision::Fp32, |s| {
        match (s.to_ascii_lowercase().as_str(), target) {
            ("fp32", _) => Ok(Precision::Fp32),
            ("int8", Some(_)) => Ok(Precision::Int8),
            ("int8", None) => Err(format!(
                "int8 runs on the CPU engine or on GPU_ENGINE=tensorrt; GPU_ENGINE={} serves fp16",
                engine.name()
            )),
            _ => Err("expected fp32 or int8".into()),
        }
    })?;
    let method = env.parse("CALIBRATION_METHOD", Method::Percentile(99.999), |s| {
        Method::parse(s)
            .ok_or_else(|| "expected minmax, percentile or percentile:P (50–100)".into())
    })?;
    let min_agreement = env.parse("INT8_MIN_AGREEMENT", 0.9, |s| match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a share from 0 to 1".into()),
    })?;
    Ok(PrecisionConfig {
        precision,
        target: target.unwrap_or(Target::OnnxRuntimeCpu),
        calibration_dir: env.get("CALIBRATION_DIR").map(PathBuf::from),
        method,
        min_agreement,
    })
}
