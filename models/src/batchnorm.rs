//! Batch-norm statistics measured on data, as a trained network has them.
//!
//! Drawn at random, the running means and variances leave each layer's output off-centre and
//! out of scale, and that compounds over 53 layers: the pooled features become one large shared
//! component with small input-dependent wiggles, which int8 rounding drowns. So the generator
//! measures them. [`measure`] rewrites every `BatchNormalization` to normalise by its batch
//! (training mode's arithmetic in plain ONNX operators), declares each batch mean and variance
//! as an output, and runs the calibration images through it once, as one batch. With those as
//! running statistics the inference-mode network computes what the training-mode one did on
//! that batch.

use std::collections::HashMap;

use engine::probe::Probe;
use prost::Message;

use crate::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::quantize::float_output;
use crate::ModelError;

/// ONNX's default `epsilon` of a batch norm.
const DEFAULT_EPSILON: f32 = 1e-5;
/// The highest opset whose `ReduceMean` takes `axes` as an attribute.
const MAX_OPSET: i64 = 17;

/// The measured statistics of one batch norm: the names of its running-mean and running-variance
/// initializers and the values they should hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    /// Running-mean initializer.
    pub mean_name: String,
    /// Per-channel batch mean.
    pub mean: Vec<f32>,
    /// Running-variance initializer.
    pub var_name: String,
    /// Per-channel (biased) batch variance.
    pub var: Vec<f32>,
}

/// Runs `images` (u8 HWC 224×224×3) through `graph` as one batch, each batch norm normalising
/// by the batch, and returns every batch norm's statistics in graph order. `opset` is the
/// model's (the rewrite uses `ReduceMean` with an `axes` attribute: opset 17 or below).
pub(crate) fn measure(
    graph: &GraphProto,
    opset: i64,
    images: &[Vec<u8>],
    threads: usize,
) -> Result<Vec<Measured>, ModelError> {
    if opset > MAX_OPSET {
        return Err(ModelError::Invalid(format!(
            "batch statistics are written for opset {MAX_OPSET} or below, not {opset}"
        )));
    }
    let (probed, stats) = batch_statistics_graph(graph)?;
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![crate::onnx::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(probed),
        ..Default::default()
    };
    let mut probe = Probe::new(&model.encode_to_vec(), threads)?;
    let plane = engine::IMAGE_BYTES;
    let mut input = vec![0f32; images.len() * plane];
    for (img, dst) in images.iter().zip(input.chunks_exact_mut(plane)) {
        crate::IMAGENET_NORMALIZATION.image_to_chw(img, dst);
    }
    let values = probe.run(&input, images.len())?;
    let mut by_name: HashMap<&str, Vec<f32>> = probe
        .outputs()
        .iter()
        .map(String::as_str)
        .zip(values)
        .collect();
    let mut take = |name: &str| {
        by_name
            .remove(name)
            .ok_or_else(|| ModelError::Invalid(format!("the probe did not return {name}")))
    };
    stats
        .into_iter()
        .map(|s| {
            Ok(Measured {
                mean: take(&s.mean_out)?,
                var: take(&s.var_out)?,
                mean_name: s.mean_name,
                var_name: s.var_name,
            })
        })
        .collect()
}

/// Where one rewritten batch norm leaves its statistics.
struct Outputs {
    mean_name: String,
    var_name: String,
    mean_out: String,
    var_out: String,
}

/// `graph` with each `BatchNormalization` (inputs x, scale, bias, mean, var) replaced by
/// `(x − E[x]) / √(Var[x] + ε) · scale + bias` over the batch and spatial axes, and the batch
/// mean and variance of each as the graph's outputs.
fn batch_statistics_graph(graph: &GraphProto) -> Result<(GraphProto, Vec<Outputs>), ModelError> {
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut out = GraphProto {
        node: Vec::with_capacity(graph.node.len() * 8),
        initializer: graph.initializer.clone(),
        input: graph.input.clone(),
        name: graph.name.clone(),
        ..Default::default()
    };
    let mut stats = Vec::new();
    for node in &graph.node {
        if node.op_type != "BatchNormalization" {
            out.node.push(node.clone());
            continue;
        }
        let [x, scale, bias, mean, var] = node.input.as_slice() else {
            return Err(ModelError::Invalid(format!(
                "{}: 5 inputs expected",
                node.name
            )));
        };
        let (scale, bias) = (per_channel(&inits, scale)?, per_channel(&inits, bias)?);
        let y = node.output.first().map_or("", String::as_str);
        let n = |s: &str| format!("{}/{s}", node.name);
        // The node's own epsilon (ONNX's default where it has none), so inference mode with the
        // measured statistics computes what the batch did.
        let epsilon = node
            .attribute
            .iter()
            .find(|a| a.name == "epsilon")
            .map_or(DEFAULT_EPSILON, |a| a.f);
        out.initializer
            .push(TensorProto::floats(&n("epsilon"), &[], &[epsilon]));
        out.node.extend(normalise_by_batch(
            &node.name,
            x,
            &scale.name,
            &bias.name,
            y,
        ));
        out.output.push(float_output(&n("mean")));
        out.output.push(float_output(&n("var")));
        stats.push(Outputs {
            mean_name: mean.clone(),
            var_name: var.clone(),
            mean_out: n("mean"),
            var_out: n("var"),
        });
        out.initializer.extend([scale, bias]);
    }
    Ok((out, stats))
}

/// Initializer `name` (one value per channel) reshaped to `[C, 1, 1]`, to broadcast over NCHW.
fn per_channel(inits: &HashMap<&str, &TensorProto>, name: &str) -> Result<TensorProto, ModelError> {
    let t = inits
        .get(name)
        .ok_or_else(|| ModelError::Invalid(format!("{name}: not an initializer")))?;
    let mut t = (*t).clone();
    t.dims = vec![(t.raw_data.len() / 4) as i64, 1, 1];
    t.name = format!("{name}:c11");
    Ok(t)
}

/// The nodes of batch norm `prefix` normalising `x` by its batch into `y` with the constant
/// `{prefix}/epsilon`; they leave the batch mean and variance in `{prefix}/mean` and
/// `{prefix}/var` (`[1, C, 1, 1]`).
fn normalise_by_batch(prefix: &str, x: &str, scale: &str, bias: &str, y: &str) -> [NodeProto; 9] {
    let n = |s: &str| format!("{prefix}/{s}");
    let op = |op: &str, step: &str, inputs: &[&str], output: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: n(step),
        op_type: op.into(),
        attribute: if op == "ReduceMean" {
            vec![
                AttributeProto::ints("axes", &[0, 2, 3]),
                AttributeProto::int("keepdims", 1),
            ]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let (mean, centred, squared, var) = (n("mean"), n("centred"), n("squared"), n("var"));
    let (var_eps, std, normalised, scaled) = (n("var_eps"), n("std"), n("normalised"), n("scaled"));
    let epsilon = n("epsilon");
    [
        op("ReduceMean", "1", &[x], &mean),
        op("Sub", "2", &[x, &mean], &centred),
        op("Mul", "3", &[&centred, &centred], &squared),
        op("ReduceMean", "4", &[&squared], &var),
        op("Add", "5", &[&var, &epsilon], &var_eps),
        op("Sqrt", "6", &[&var_eps], &std),
        op("Div", "7", &[&centred, &std], &normalised),
        op("Mul", "8", &[&normalised, scale], &scaled),
        op("Add", "9", &[&scaled, bias], y),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, ValueInfoProto};

    /// input → BatchNormalization (placeholder statistics) → y, over the 3 image channels.
    fn one_batch_norm(mean: &[f32], var: &[f32]) -> GraphProto {
        let side = engine::IMAGE_SIDE as i64;
        let dims = [
            Dim::Named("n"),
            Dim::Fixed(3),
            Dim::Fixed(side),
            Dim::Fixed(side),
        ];
        GraphProto {
            node: vec![NodeProto {
                input: [
                    "input",
                    "bn.weight",
                    "bn.bias",
                    "bn.running_mean",
                    "bn.running_var",
                ]
                .map(String::from)
                .to_vec(),
                output: vec!["y".into()],
                name: "bn".into(),
                op_type: "BatchNormalization".into(),
                attribute: vec![AttributeProto::float("epsilon", 0.5)],
                ..Default::default()
            }],
            name: "one".into(),
            initializer: vec![
                TensorProto::floats("bn.weight", &[3], &[2.0, 1.0, 0.5]),
                TensorProto::floats("bn.bias", &[3], &[0.0, 1.0, -1.0]),
                TensorProto::floats("bn.running_mean", &[3], mean),
                TensorProto::floats("bn.running_var", &[3], var),
            ],
            input: vec![ValueInfoProto::float_tensor("input", &dims)],
            output: vec![ValueInfoProto::float_tensor("y", &dims)],
            ..Default::default()
        }
    }

    fn channel_moments(values: &[f32], n: usize) -> Vec<(f64, f64)> {
        let plane = engine::IMAGE_SIDE * engine::IMAGE_SIDE;
        (0..3)
            .map(|c| {
                let xs: Vec<f64> = (0..n)
                    .flat_map(|i| &values[(i * 3 + c) * plane..(i * 3 + c + 1) * plane])
                    .map(|&v| f64::from(v))
                    .collect();
                let mean = xs.iter().sum::<f64>() / xs.len() as f64;
                let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64;
                (mean, var)
            })
            .collect()
    }

    /// Runs `graph` (opset 17) on `n` images of f32 NCHW `input`; its outputs, flattened.
    fn run(graph: GraphProto, input: &[f32], n: usize) -> Vec<Vec<f32>> {
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![crate::onnx::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        };
        Probe::new(&model.encode_to_vec(), 1)
            .unwrap()
            .run(input, n)
            .unwrap()
    }

    #[test]
    fn measured_statistics_make_inference_mode_compute_what_the_batch_did() {
        let dylib = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (.cargo/config.toml)");
        engine::init_onnx_runtime(dylib.as_ref()).expect("ONNX Runtime: scripts/setup.sh");
        let images = crate::varied_images(7, 3);
        let n = images.len();
        let plane = engine::IMAGE_BYTES;
        let mut input = vec![0f32; n * plane];
        for (img, dst) in images.iter().zip(input.chunks_exact_mut(plane)) {
            crate::IMAGENET_NORMALIZATION.image_to_chw(img, dst);
        }
        let placeholder = one_batch_norm(&[0.5; 3], &[4.0; 3]);
        let m = measure(&placeholder, 17, &images, 1).unwrap().remove(0);
        assert_eq!(m.mean_name, "bn.running_mean");
        assert_eq!(m.var_name, "bn.running_var");
        // They are the input's per-channel mean and (biased) variance over the batch.
        for (c, (mean, var)) in channel_moments(&input, n).into_iter().enumerate() {
            assert!((f64::from(m.mean[c]) - mean).abs() < 1e-4, "mean {c}");
            assert!((f64::from(m.var[c]) - var).abs() < 1e-3 * var, "var {c}");
        }
        // Inference mode with them gives the batch-normalised output, epsilon (0.5) included.
        let (mut batch_mode, _) = batch_statistics_graph(&placeholder).unwrap();
        batch_mode.output = vec![float_output("y")];
        let want = run(batch_mode, &input, n).remove(0);
        let got = run(one_batch_norm(&m.mean, &m.var), &input, n).remove(0);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "inference mode differs by {worst}");
        for (c, (mean, _)) in channel_moments(&got, n).into_iter().enumerate() {
            assert!(
                (mean - [0.0, 1.0, -1.0][c]).abs() < 1e-3,
                "channel {c}: mean {mean}"
            );
        }
    }
}
