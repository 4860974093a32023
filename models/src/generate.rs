//! The built-in model: ResNet50 with seeded weights whose answers depend on the input, and
//! survive int8.
//!
//! 1. Draw the trunk's weights from the seed ([`Backbone::generate`]).
//! 2. Measure its batch-norm statistics on a varied calibration set ([`crate::batchnorm`]):
//!    every layer's output is then centred and scaled as a trained network's is.
//! 3. Run the calibration set through the trunk and build the classifier on its pooled
//!    features ([`crate::head`]): each class a direction among their principal components.
//!
//! The same seed gives the same bytes on the same machine and ONNX Runtime build (a test
//! regenerates and compares). Every measured statistic is rounded to [`DIGITS`] significant
//! digits, which makes a last-bit difference between CPU kernels change a byte more rarely, not
//! never: another machine may write a slightly different file.

use std::sync::Arc;

use prost::Message;

use crate::onnx::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::resnet::Backbone;
use crate::rng::Rng;
use crate::round::{round_sig, DIGITS};
use crate::{batchnorm, head, synthetic, ModelError};

/// Version of the generator; part of the cached file's name, bumped when the bytes change.
pub const GENERATOR_VERSION: u32 = 4;
/// Images in the calibration set.
const CALIBRATION_IMAGES: usize = 64;
/// Batch size used to run the calibration set through the finished trunk.
const CALIBRATION_BATCH: usize = 16;
/// The opset of the generated file.
const OPSET: i64 = 17;

/// Generates the built-in ResNet50 as ONNX bytes. Deterministic: the same seed gives the same
/// bytes. ONNX Runtime must be initialised ([`engine::init_onnx_runtime`]).
pub fn generate_resnet50(seed: u64, threads: usize) -> Result<Vec<u8>, ModelError> {
    let mut rng = Rng::new(seed);
    let mut backbone = Backbone::generate(&mut rng);
    let images = synthetic::varied_images(seed.wrapping_add(1), CALIBRATION_IMAGES);
    for m in batchnorm::measure(&backbone.features_graph(), OPSET, &images, threads)? {
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| round_sig(f64::from(x), DIGITS) as f32)
                .collect()
        };
        if !(backbone.set_floats(&m.mean_name, &round(&m.mean))
            && backbone.set_floats(&m.var_name, &round(&m.var)))
        {
            return Err(ModelError::Invalid(format!(
                "batch norm statistics {} do not fit the trunk",
                m.mean_name
            )));
        }
    }
    let features_model = Arc::<[u8]>::from(encode(backbone.features_graph(), seed));
    let features =
        crate::quantize::check::outputs(features_model, &images, threads, CALIBRATION_BATCH)?;
    let (weight, bias) = head::classifier(&features, &mut Rng::new(seed ^ 0xC1A5_51F1_E500_0001));
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
            version: OPSET,
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
