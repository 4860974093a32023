//! `MODEL_PRECISION=int8`: the loaded model quantised before its lanes are built, at every load
//! and reload.
//!
//! The calibration set: the built-in model's is [`SYNTHETIC_IMAGES`] varied images from its
//! seed, plus any in `CALIBRATION_DIR`; a user's model needs `CALIBRATION_DIR` (at least
//! [`MIN_CALIBRATION_IMAGES`] images, preprocessed exactly as served). The result is cached in
//! `MODEL_CACHE_DIR` under a key of the model's bytes, the calibration images, the method and
//! the quantiser's version, with the agreement it was measured at. A quantised model whose
//! top-1 agrees with the fp32 model on fewer than `INT8_MIN_AGREEMENT` of the calibration images
//! is refused, and so is the load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use models::quantize::{self, check};
use sha2::{Digest, Sha256};

use crate::config::{ModelConfig, Precision};
use crate::imaging;

/// Varied synthetic images calibrating the built-in model.
pub const SYNTHETIC_IMAGES: usize = 32;
/// The fewest calibration images a user's model may be quantised on.
pub const MIN_CALIBRATION_IMAGES: usize = 16;
/// Seed offset of the synthetic calibration set (apart from the generator's own sets).
const CALIBRATION_SEED: u64 = 7;

/// Why a model could not be quantised.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    /// The calibration set is missing, too small, or unreadable.
    #[error("CALIBRATION_DIR: {0}")]
    Calibration(String),
    /// Quantising or checking failed.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// The quantised model disagrees with the float one too often.
    #[error(
        "the int8 model agrees with fp32 on {got:.1}% of the calibration images' top-1, below \
         INT8_MIN_AGREEMENT ({min:.1}%); serve fp32 (MODEL_PRECISION=fp32) or calibrate on \
         images like the traffic (CALIBRATION_DIR)"
    )]
    Disagrees {
        /// Measured, in percent.
        got: f64,
        /// Required, in percent.
        min: f64,
    },
    /// The cache could not be written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The bytes the lanes run: `fp32` itself, or its int8 model (from the cache or made now).
pub fn engine_bytes(
    config: &ModelConfig,
    fp32: &Arc<[u8]>,
    builtin: bool,
) -> Result<Arc<[u8]>, PrecisionError> {
    if config.precision.precision == Precision::Fp32 {
        return Ok(fp32.clone());
    }
    let images = calibration_images(config, builtin)?;
    let target = config.precision.target;
    let key = cache_key(fp32, &images, &config.precision.method.to_string(), target);
    let path = config.cache_dir.join(format!("int8-{key}.onnx"));
    let min = config.precision.min_agreement;
    if let Some((bytes, agreement)) = cached(&path) {
        check_agreement(agreement, min)?;
        tracing::info!(path = %path.display(), agreement, "int8 model from the cache");
        return Ok(bytes.into());
    }
    let started = std::time::Instant::now();
    let threads = config.engine_threads;
    // Unique: two servers (or a test and a server) sharing the cache may quantise at once.
    let scratch = config
        .cache_dir
        .join(format!("int8-{key}.{}.scratch.onnx", unique()));
    let method = config.precision.method;
    let int8: Arc<[u8]> =
        quantize::quantize(fp32, &images, method, threads, &scratch, target)?.into();
    let a = check::agreement(fp32.clone(), int8.clone(), &images, threads)?;
    tracing::info!(
        images = images.len(),
        method = %method,
        target = ?target,
        top1_agreement = a.top1(),
        mean_abs_error = a.mean_abs_error,
        elapsed_s = started.elapsed().as_secs_f64(),
        "quantised the model to int8"
    );
    // Kept whatever the verdict: the measurement holds for this model and set, and a later
    // start with another INT8_MIN_AGREEMENT reads it instead of quantising again.
    store(&path, &int8, a.top1())?;
    check_agreement(a.top1(), min)?;
    Ok(int8)
}

fn check_agreement(agreement: f64, min: f64) -> Result<(), PrecisionError> {
    if agreement < min {
        return Err(PrecisionError::Disagrees {
            got: 100.0 * agreement,
            min: 100.0 * min,
        });
    }
    Ok(())
}

/// The calibration set, preprocessed as served (u8 HWC 224×224×3).
pub fn calibration_images(
    config: &ModelConfig,
    builtin: bool,
) -> Result<Vec<Vec<u8>>, PrecisionError> {
    let mut images = if builtin {
        models::varied_images(config.seed.wrapping_add(CALIBRATION_SEED), SYNTHETIC_IMAGES)
    } else {
        Vec::new()
    };
    match &config.precision.calibration_dir {
        Some(dir) => images.extend(read_dir_images(dir)?),
        None if !builtin => {
            return Err(PrecisionError::Calibration(format!(
                "unset; a user's model (MODEL_PATH) is calibrated on at least \
                 {MIN_CALIBRATION_IMAGES} images like its traffic"
            )))
        }
        None => {}
    }
    if !builtin && images.len() < MIN_CALIBRATION_IMAGES {
        return Err(PrecisionError::Calibration(format!(
            "{} usable images; at least {MIN_CALIBRATION_IMAGES} are needed",
            images.len()
        )));
    }
    Ok(images)
}

/// Every image file of `dir` that decodes, preprocessed as served, in name order (others are
/// skipped with a warning).
pub fn read_dir_images(dir: &Path) -> Result<Vec<Vec<u8>>, PrecisionError> {
    let read = imaging::folder::read(dir, 40_000_000)
        .map_err(|e| PrecisionError::Calibration(format!("{}: {e}", dir.display())))?;
    let mut images = Vec::new();
    for (p, decoded) in read {
        match decoded {
            Ok(pre) => images.push(pre.pixels),
            Err(e) => tracing::warn!(file = %p.display(), error = %e, "calibration image skipped"),
        }
    }
    Ok(images)
}

/// 16 hex digits of SHA-256 over the model, the images, the method, the quantiser version and
/// this CPU's weight range, and TensorRT's target where it is the one.
fn cache_key(model: &[u8], images: &[Vec<u8>], method: &str, target: quantize::Target) -> String {
    let mut h = Sha256::new();
    h.update(model);
    for img in images {
        h.update(img);
    }
    h.update(method.as_bytes());
    h.update(quantize::QUANTIZER_VERSION.to_le_bytes());
    h.update(quantize::weight_max().to_le_bytes());
    if target == quantize::Target::TensorRt {
        h.update(b"tensorrt");
    }
    super::version::hex(&h.finalize()[..8])
}

/// A name part no other writer uses at the same time: the process and a per-process count.
fn unique() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

fn agreement_path(model: &Path) -> PathBuf {
    model.with_extension("agreement")
}

fn cached(path: &Path) -> Option<(Vec<u8>, f64)> {
    let agreement = std::fs::read_to_string(agreement_path(path))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((std::fs::read(path).ok()?, agreement))
}

/// Writes the model then its agreement, each through a temporary file and a rename, so a
/// reader sees both or neither.
fn store(path: &Path, bytes: &[u8], agreement: f64) -> Result<(), PrecisionError> {
    let write = |p: &Path, data: &[u8]| {
        let tmp = p.with_extension(format!("{}.tmp", unique()));
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| PrecisionError::Io(p.to_path_buf(), e))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PrecisionError::Io(dir.to_path_buf(), e))?;
    }
    write(path, bytes)?;
    write(&agreement_path(path), agreement.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_covers_model_images_and_method() {
        let images = vec![vec![1u8; 4], vec![2u8; 4]];
        let cpu = quantize::Target::OnnxRuntimeCpu;
        let k = cache_key(b"model", &images, "minmax", cpu);
        assert_ne!(k, cache_key(b"model2", &images, "minmax", cpu));
        assert_ne!(k, cache_key(b"model", &images[..1], "minmax", cpu));
        assert_ne!(k, cache_key(b"model", &images, "percentile:99.99", cpu));
        assert_ne!(
            k,
            cache_key(b"model", &images, "minmax", quantize::Target::TensorRt)
        );
        assert_eq!(k, cache_key(b"model", &images, "minmax", cpu));
    }

    #[test]
    fn agreement_below_the_threshold_is_refused_with_both_figures() {
        assert!(check_agreement(0.95, 0.9).is_ok());
        let e = check_agreement(0.5, 0.9).unwrap_err().to_string();
        assert!(e.contains("50.0%") && e.contains("90.0%"), "{e}");
    }

    #[test]
    fn a_stored_model_is_read_back_with_its_agreement() {
        let dir = std::env::temp_dir().join(format!("int8-cache-{}", std::process::id()));
        let path = dir.join("int8-x.onnx");
        store(&path, b"bytes", 0.925).unwrap();
        assert_eq!(cached(&path), Some((b"bytes".to_vec(), 0.925)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
