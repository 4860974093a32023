//! The built-in model: ResNet50 with seeded weights whose answers depend on the input.
//!
//! A randomly initialised ResNet's pooled features share one large common component, so a
//! random classifier on top answers the same class for almost every image. After drawing the
//! trunk (with randomised BatchNorm statistics and affine terms), we run it on a varied
//! calibration set, take each feature's mean and spread, and build the classifier on the
//! standardised features: `W = R / σ`, `b = −W·μ`, scaled so the calibration logits have a
//! standard deviation of [`LOGIT_STD`]. Each σ is floored at the lower-quartile σ, so features
//! that barely move on the calibration set cannot dominate on real photos. The statistics are
//! rounded to 4 significant digits so that the last-bit differences between CPU kernels do not
//! change the file's bytes.

use std::sync::Arc;

use prost::Message;

use crate::onnx::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::resnet::{Backbone, FEATURES};
use crate::rng::Rng;
use crate::{synthetic, ModelError, NUM_CLASSES};

/// Version of the generator; part of the cached file's name, bumped when the bytes change.
pub const GENERATOR_VERSION: u32 = 3;
/// Images in the calibration set.
const CALIBRATION_IMAGES: usize = 64;
/// Batch size used to run the calibration set.
const CALIBRATION_BATCH: usize = 16;
/// Standard deviation of the calibration logits.
const LOGIT_STD: f32 = 3.0;

/// Generates the built-in ResNet50 as ONNX bytes. Deterministic: the same seed gives the same
/// bytes. ONNX Runtime must be initialised ([`engine::init_onnx_runtime`]).
pub fn generate_resnet50(seed: u64, threads: usize) -> Result<Vec<u8>, ModelError> {
    let mut rng = Rng::new(seed);
    let backbone = Backbone::generate(&mut rng);
    let features_model = Arc::<[u8]>::from(encode(backbone.features_graph(), seed));
    let features = calibration_features(features_model, threads, seed)?;
    let (weight, bias) = classifier(&features, &mut Rng::new(seed ^ 0xC1A5_51F1_E500_0001));
    Ok(encode(backbone.classifier_graph(weight, bias), seed))
}

fn encode(graph: GraphProto, seed: u64) -> Vec<u8> {
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: k.into(),
        value: v,
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "inference-gateway".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: "ResNet50 v1.5 (torchvision layout) with seeded, calibrated weights".into(),
        graph: Some(graph),
        metadata_props: vec![
            meta("seed", seed.to_string()),
            meta("generator_version", GENERATOR_VERSION.to_string()),
        ],
        ..Default::default()
    }
    .encode_to_vec()
}

/// Pooled features (`[CALIBRATION_IMAGES, 2048]`, row-major) of the calibration set.
fn calibration_features(
    model: Arc<[u8]>,
    threads: usize,
    seed: u64,
) -> Result<Vec<f32>, ModelError> {
    let images = synthetic::varied_images(seed.wrapping_add(1), CALIBRATION_IMAGES);
    crate::quantize::check::outputs(model, &images, threads, CALIBRATION_BATCH)
}

/// Classifier weights `[NUM_CLASSES, 2048]` and bias on the standardised features.
fn classifier(features: &[f32], rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let rows = features.len() / FEATURES;
    let mut mean = vec![0f64; FEATURES];
    let mut var = vec![0f64; FEATURES];
    for row in features.chunks_exact(FEATURES) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / rows as f64;
        }
    }
    for row in features.chunks_exact(FEATURES) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2) / rows as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&m| round_sig(m, 4) as f32).collect();
    // Features that barely move on the calibration set can move a lot on real photos; flooring
    // their spread at the lower quartile keeps such images from saturating the softmax.
    let mut spread: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
    spread.sort_by(f64::total_cmp);
    let floor = spread[spread.len() / 4].max(1e-6);
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| 1.0 / round_sig(v.sqrt().max(floor), 4) as f32)
        .collect();
    let mut weight: Vec<f32> = (0..NUM_CLASSES * FEATURES)
        .map(|i| rng.normal() * inv_std[i % FEATURES])
        .collect();
    let mut bias: Vec<f32> = weight
        .chunks_exact(FEATURES)
        .map(|w| -w.iter().zip(&mean).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    // Scale so the calibration logits have the chosen spread.
    let mut sum_sq = 0f64;
    for row in features.chunks_exact(FEATURES) {
        for (w, b) in weight.chunks_exact(FEATURES).zip(&bias) {
            let z: f32 = w.iter().zip(row).map(|(a, x)| a * x).sum::<f32>() + b;
            sum_sq += f64::from(z).powi(2);
        }
    }
    let std = (sum_sq / (rows * NUM_CLASSES) as f64).sqrt();
    let scale = (f64::from(LOGIT_STD) / round_sig(std.max(1e-12), 4)) as f32;
    weight.iter_mut().for_each(|w| *w *= scale);
    bias.iter_mut().for_each(|b| *b *= scale);
    (weight, bias)
}

/// `x` rounded to `digits` significant decimal digits.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let factor = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_sig_keeps_the_leading_digits() {
        assert_eq!(round_sig(123_456.0, 4), 123_500.0);
        assert!((round_sig(0.000_123_456, 4) - 0.000_123_5).abs() < 1e-12);
        assert_eq!(round_sig(0.0, 4), 0.0);
        assert_eq!(round_sig(-2.345_67, 3), -2.35);
    }

    #[test]
    fn classifier_centres_the_calibration_logits() {
        let mut rng = Rng::new(5);
        // Features with a large shared offset, as a random trunk produces.
        let features: Vec<f32> = (0..32 * FEATURES).map(|_| 100.0 + rng.normal()).collect();
        let (w, b) = classifier(&features, &mut Rng::new(9));
        let mut logits = Vec::new();
        for row in features.chunks_exact(FEATURES) {
            for (wr, bj) in w.chunks_exact(FEATURES).zip(&b) {
                logits.push(wr.iter().zip(row).map(|(a, x)| a * x).sum::<f32>() + bj);
            }
        }
        let n = logits.len() as f32;
        let mean = logits.iter().sum::<f32>() / n;
        let std = (logits.iter().map(|z| (z - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 0.2, "mean {mean}");
        assert!((std - LOGIT_STD).abs() < 0.1, "std {std}");
    }
}
