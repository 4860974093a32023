//! int8 for the CPU: a float ResNet50 → QDQ ONNX that ONNX Runtime runs on integer kernels
//! (VNNI where the CPU has it).
//!
//! Data flow of [`quantize`]: ONNX Runtime's basic optimisations fold the batch norms into the
//! convolutions ([`engine::probe::optimize_onnx`]) → the activation tensors to quantise are
//! declared as outputs and the calibration images run through them ([`engine::probe::Probe`]):
//! per tensor, its range by [`Method`] → [`qdq::rewrite`] inserts the QDQ pairs and quantises
//! the weights. [`check::agreement`] compares any two models on a set of images.

pub mod check;
mod qdq;

use std::collections::HashMap;
use std::path::Path;

use engine::probe::Probe;
use prost::Message;

use crate::onnx::{ModelProto, TypeProto, TypeProtoTensor, ValueInfoProto, DT_FLOAT};
use crate::ModelError;

pub use qdq::{activations, i8_scale, u8_params};

/// Changes whenever the rewrite or the calibration does (part of a cached result's key).
pub const QUANTIZER_VERSION: u32 = 3;

/// The largest int8 weight magnitude for this CPU: 127 where ONNX Runtime's integer kernels
/// have VNNI, 63 elsewhere (ONNX Runtime's `reduce_range`). Without VNNI, x86 multiplies uint8
/// activations by int8 weights with `vpmaddubsw`, which adds each pair of products into a
/// saturating int16: 2 × 255 × 127 overflows it, 2 × 255 × 63 does not. On an AVX2-only CPU the
/// built-in model's int8 logits were off by 0.13 on average at ±127 and 0.07 at ±63 (0.04 with
/// VNNI at ±127; docs/QUANTISATION.md).
pub fn weight_max() -> i8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
        {
            127
        } else {
            63
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        127
    }
}

/// Which integer kernels the QDQ model is shaped for. The calibration is the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// ONNX Runtime's CPU integer kernels: uint8 activations with zero points, int8 weights at
    /// ±[`weight_max`], int32 biases (ONNX Runtime fuses each pattern into QLinearConv).
    OnnxRuntimeCpu,
    /// TensorRT's explicit quantisation: symmetric int8 activations and weights (±127, zero
    /// points 0, the only kind TensorRT accepts) and float biases, which TensorRT folds into its
    /// int8 convolutions itself.
    TensorRt,
}

impl Target {
    /// The largest int8 weight magnitude: this CPU's ([`weight_max`]) or TensorRT's 127.
    fn weight_max(self) -> i8 {
        match self {
            Target::OnnxRuntimeCpu => weight_max(),
            Target::TensorRt => 127,
        }
    }
}

/// Images per calibration run (the probed activations of one image are ~40 MB).
const PROBE_BATCH: usize = 2;
/// Histogram bins per tensor for [`Method::Percentile`].
const BINS: usize = 4096;

/// How an activation's range is taken from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// The smallest and largest value seen.
    MinMax,
    /// The values between these percentiles (e.g. 99.99: the 0.01% most extreme are clipped).
    Percentile(f64),
}

impl Method {
    /// `minmax` or `percentile` (99.999) or `percentile:P`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None if s == "minmax" => Some(Method::MinMax),
            None if s == "percentile" => Some(Method::Percentile(99.999)),
            Some(("percentile", p)) => p
                .parse()
                .ok()
                .filter(|p| (50.0..100.0).contains(p))
                .map(Method::Percentile),
            _ => None,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::MinMax => write!(f, "minmax"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
        }
    }
}

/// The QDQ int8 model of float model `fp32` for `target`, its activations calibrated on
/// `images` (u8 HWC 224×224×3, preprocessed as served). `scratch` is a file path ONNX Runtime
/// writes through.
pub fn quantize(
    fp32: &[u8],
    images: &[Vec<u8>],
    method: Method,
    threads: usize,
    scratch: &Path,
    target: Target,
) -> Result<Vec<u8>, ModelError> {
    if images.is_empty() {
        return Err(ModelError::Invalid("no calibration images".into()));
    }
    let optimized = engine::probe::optimize_onnx(fp32, scratch)?;
    let model = ModelProto::decode(&optimized[..])
        .map_err(|e| ModelError::Invalid(format!("the optimised model: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Invalid("the model has no graph".into()))?;
    let targets = activations(graph);
    let ranges = calibrate(&model, &targets, images, method, threads)?;
    Ok(qdq::rewrite(model, &ranges, target)?.encode_to_vec())
}

/// The range of each of `targets` over `images`, by `method`.
fn calibrate(
    model: &ModelProto,
    targets: &[String],
    images: &[Vec<u8>],
    method: Method,
    threads: usize,
) -> Result<HashMap<String, (f32, f32)>, ModelError> {
    let mut probed = model.clone();
    if let Some(g) = probed.graph.as_mut() {
        g.output = targets.iter().map(|t| float_output(t)).collect();
    }
    let mut probe = Probe::new(&probed.encode_to_vec(), threads)?;
    let order: Vec<usize> = probe
        .outputs()
        .iter()
        .map(|o| targets.iter().position(|t| t == o).unwrap_or(0))
        .collect();
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); targets.len()];
    each_output(&mut probe, images, |i, values| {
        let r = &mut ranges[order[i]];
        for &v in values {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    })?;
    if let Method::Percentile(p) = method {
        let mut hist = vec![vec![0u64; BINS]; targets.len()];
        each_output(&mut probe, images, |i, values| {
            let (lo, hi) = ranges[order[i]];
            let width = (hi - lo).max(f32::MIN_POSITIVE) / BINS as f32;
            let h = &mut hist[order[i]];
            for &v in values {
                h[(((v - lo) / width) as usize).min(BINS - 1)] += 1;
            }
        })?;
        for (r, h) in ranges.iter_mut().zip(&hist) {
            *r = clip(*r, h, p);
        }
    }
    Ok(targets.iter().cloned().zip(ranges).collect())
}

/// Runs the calibration images through `probe`, handing each output's values to `each`.
fn each_output(
    probe: &mut Probe,
    images: &[Vec<u8>],
    mut each: impl FnMut(usize, &[f32]),
) -> Result<(), ModelError> {
    let plane = engine::IMAGE_BYTES;
    let mut input = Vec::new();
    for chunk in images.chunks(PROBE_BATCH) {
        input.resize(chunk.len() * plane, 0.0);
        for (img, dst) in chunk.iter().zip(input.chunks_exact_mut(plane)) {
            crate::IMAGENET_NORMALIZATION.image_to_chw(img, dst);
        }
        for (i, values) in probe.run(&input, chunk.len())?.iter().enumerate() {
            each(i, values);
        }
    }
    Ok(())
}

/// `[lo, hi]` narrowed to the `(100 − p)`th and `p`th percentiles of histogram `h` over it.
fn clip((lo, hi): (f32, f32), h: &[u64], p: f64) -> (f32, f32) {
    let total: u64 = h.iter().sum();
    let width = (hi - lo) / h.len() as f32;
    let tail = ((100.0 - p) / 100.0 * total as f64).round() as u64;
    let (mut below, mut low_bin) = (0u64, 0usize);
    while low_bin < h.len() && below + h[low_bin] <= tail {
        below += h[low_bin];
        low_bin += 1;
    }
    let (mut above, mut high_bin) = (0u64, h.len());
    while high_bin > low_bin + 1 && above + h[high_bin - 1] <= tail {
        above += h[high_bin - 1];
        high_bin -= 1;
    }
    (lo + low_bin as f32 * width, lo + high_bin as f32 * width)
}

/// A graph output of `name`, a float tensor of any shape.
pub(crate) fn float_output(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: DT_FLOAT,
                shape: None,
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_print() {
        assert_eq!(Method::parse("minmax"), Some(Method::MinMax));
        assert_eq!(
            Method::parse("percentile"),
            Some(Method::Percentile(99.999))
        );
        assert_eq!(
            Method::parse("percentile:99.9"),
            Some(Method::Percentile(99.9))
        );
        for bad in ["entropy", "percentile:100", "percentile:x", ""] {
            assert_eq!(Method::parse(bad), None, "{bad}");
        }
        assert_eq!(Method::Percentile(99.9).to_string(), "percentile:99.9");
    }

    #[test]
    fn percentiles_clip_the_tails_of_the_histogram() {
        // 1000 values in bins 0..10 of [0, 10): 1 outlier in bin 9, the rest in bins 0..5.
        let mut h = vec![0u64; 10];
        h[..5].iter_mut().for_each(|b| *b = 199);
        h[5] = 4;
        h[9] = 1;
        assert_eq!(clip((0.0, 10.0), &h, 99.9), (0.0, 6.0));
        assert_eq!(clip((0.0, 10.0), &h, 99.99), (0.0, 10.0));
    }

    #[test]
    fn activation_parameters_hold_zero_and_relu_outputs_get_zero_point_zero() {
        assert_eq!(u8_params(0.0, 2.55), (0.01, 0));
        let (s, z) = u8_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7 && z == 64);
        assert_eq!(u8_params(0.0, 0.0), (1.0, 0));
        // TensorRT's: symmetric about 0, whichever side is wider.
        assert_eq!(i8_scale(-1.27, 0.5), 0.01);
        assert_eq!(i8_scale(0.0, 2.54), 0.02);
        assert_eq!(i8_scale(0.0, 0.0), 1.0);
    }
}
