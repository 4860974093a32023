//! ResNet50 as this gateway serves it: the architecture, its weights file, labels and the
//! preprocessing constants.
//!
//! Data flow: at start the server asks [`load`] for a model. With no path, the built-in model is
//! generated ([`generate_resnet50`]: torchvision's ResNet50 v1.5 with seeded, calibrated weights,
//! written as ONNX through the [`onnx`] schema) and cached on disk; with a path, the user's ONNX
//! file is read. Either way [`inspect`] checks the signature (one float NCHW image input, one
//! `[N, classes]` output) from the file itself, and the result goes to the engine. Labels
//! ([`imagenet_labels`]) turn class ids into names on the way out.

pub mod onnx;

mod batchnorm;
mod generate;
mod head;
mod inspect;
mod network;
pub mod quantize;
mod resnet;
mod rng;
mod round;
mod synthetic;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use generate::{generate_resnet50, GENERATOR_VERSION};
pub use inspect::{inspect, ModelSignature};
pub use network::network_from_onnx;
pub use resnet::{Backbone, FEATURES};
pub use rng::Rng;
pub use synthetic::varied_images;

/// Classes of an ImageNet classifier.
pub const NUM_CLASSES: usize = 1000;
/// The shorter side is resized to this before the centre crop.
pub const RESIZE_SHORTER_SIDE: u32 = 256;
/// Side of the centre crop fed to the network: the engine's input side, defined once there.
pub const CROP_SIDE: u32 = engine::IMAGE_SIDE as u32;
/// torchvision's ImageNet normalisation.
pub const IMAGENET_NORMALIZATION: engine::Normalization = engine::Normalization {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};
/// Seed of the built-in model unless the caller picks another.
pub const DEFAULT_SEED: u64 = 50;

/// Why a model could not be produced or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a model we can serve.
    #[error("unsupported model: {0}")]
    Invalid(String),
    /// Running the trunk for calibration failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// A model ready for the engine.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The ONNX file.
    pub path: PathBuf,
    /// Its checked signature.
    pub signature: ModelSignature,
    /// `builtin` or `onnx`.
    pub origin: &'static str,
    /// The file's bytes, as checked: the engine is built from these, never from a second read
    /// of a file that may have changed since.
    pub bytes: std::sync::Arc<[u8]>,
}

/// The user's model at `path`, or (when `None`) the built-in one cached in `cache_dir`,
/// generated there first if absent. Either is checked with [`inspect`].
pub fn load(
    path: Option<&Path>,
    cache_dir: &Path,
    seed: u64,
    threads: usize,
) -> Result<LoadedModel, ModelError> {
    let (path, origin) = match path {
        Some(p) => (p.to_path_buf(), "onnx"),
        None => (ensure_builtin(cache_dir, seed, threads)?, "builtin"),
    };
    let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let signature = inspect(&bytes).map_err(|e| match e {
        ModelError::Invalid(m) => ModelError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    })?;
    Ok(LoadedModel {
        path,
        signature,
        origin,
        bytes: bytes.into(),
    })
}

/// The GPU engine's prepared form of the ONNX file at `path`: the network read from it, then
/// folded, re-laid and packed ([`engine::gpu::model::PreparedModel::build`]). Shared by the
/// server's CUDA lanes, `plan-check` and `bench-engine`.
pub fn prepare_for_gpu(path: &Path) -> Result<engine::gpu::model::PreparedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    prepare_for_gpu_from(&bytes)
}

/// [`prepare_for_gpu`] of ONNX bytes already read.
pub fn prepare_for_gpu_from(bytes: &[u8]) -> Result<engine::gpu::model::PreparedModel, ModelError> {
    let net = network_from_onnx(bytes)?;
    engine::gpu::model::PreparedModel::build(&net)
        .map_err(|m| ModelError::Invalid(format!("the GPU engine: {m}")))
}

/// Path of the built-in model for `seed` in `cache_dir`, generating it if absent. The file is
/// written under a temporary name and renamed, so concurrent starts never see half a file.
pub fn ensure_builtin(cache_dir: &Path, seed: u64, threads: usize) -> Result<PathBuf, ModelError> {
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = GENERATING.lock().unwrap_or_else(|p| p.into_inner());
    let path = cache_dir.join(format!("resnet50-seed{seed}-v{GENERATOR_VERSION}.onnx"));
    if path.exists() {
        return Ok(path);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    tracing::info!(path = %path.display(), seed, "generating the built-in ResNet50 (first start only)");
    let bytes = generate_resnet50(seed, threads)?;
    let tmp = cache_dir.join(format!(".resnet50-seed{seed}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// The 1000 ImageNet class names, index = class id.
pub fn imagenet_labels() -> &'static [&'static str] {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    LABELS.get_or_init(|| {
        include_str!("../data/imagenet_classes.txt")
            .lines()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_imagenet_thousand() {
        let labels = imagenet_labels();
        assert_eq!(labels.len(), NUM_CLASSES);
        assert_eq!(labels[0], "tench");
        assert_eq!(labels[207], "golden retriever");
    }
}
