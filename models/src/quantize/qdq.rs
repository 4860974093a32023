//! The QDQ rewrite: given a float model (after ONNX Runtime's basic optimisations: batch norms
//! already in the convolutions) and a calibrated range per activation tensor, insert
//! `QuantizeLinear` → `DequantizeLinear` pairs that ONNX Runtime fuses into integer kernels
//! (QLinearConv, QLinearAdd).
//!
//! - Activations, for ONNX Runtime's CPU kernels ([`Target::OnnxRuntimeCpu`]): asymmetric uint8
//!   per tensor (`scale = (hi − lo) / 255`, the range widened to hold 0). A ReLU output has
//!   `lo = 0`, so its zero point is 0 and ONNX Runtime drops the ReLU into the convolution
//!   before it. For TensorRT ([`Target::TensorRt`]): symmetric int8, `scale = max(|lo|, |hi|) /
//!   127`, zero point 0.
//! - Weights: symmetric int8 per output channel, for convolutions: ±127, or ±63 on CPUs without
//!   VNNI ([`super::weight_max`]).
//! - Biases: for the CPU, int32 at `scale_x × scale_w`, zero point 0, as the fused kernels take
//!   them; for TensorRT they stay float.
//! - The classifier (`Gemm`) stays fp32: it is 0.05% of ResNet50's multiply-adds, and its
//!   rounding lands on the logits directly (per tensor, it cost the built-in model about one
//!   point of top-1 agreement on 1000 varied inputs, docs/QUANTISATION.md).

use std::collections::{HashMap, HashSet};

use super::Target;
use crate::network::floats;
use crate::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, DT_FLOAT};
use crate::ModelError;

const DT_UINT8: i32 = 2;
const DT_INT8: i32 = 3;
const DT_INT32: i32 = 6;

/// The activation tensors that get a QDQ pair, in graph order: the graph's input, the data
/// input of every convolution, both inputs of every residual addition, and every ReLU output.
pub fn activations(graph: &GraphProto) -> Vec<String> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |name: &str| {
        if !name.is_empty() && !inits.contains(name) && seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for i in &graph.input {
        add(&i.name);
    }
    for n in &graph.node {
        match n.op_type.as_str() {
            "Conv" => add(&n.input[0]),
            "Add" => n.input.iter().for_each(|i| add(i)),
            "Relu" => add(&n.output[0]),
            _ => {}
        }
    }
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    out.retain(|t| !outputs.contains(t.as_str()));
    out
}

fn tensor(name: String, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name,
        dims: dims.to_vec(),
        data_type,
        raw_data: raw,
        ..Default::default()
    }
}

fn node(op: &str, inputs: [&str; 3], output: String, axis: Option<i64>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{output}_node"),
        output: vec![output],
        op_type: op.into(),
        attribute: axis
            .map(|a| AttributeProto::int("axis", a))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Scale and zero point of the uint8 range holding `[lo, hi]` and 0.
pub fn u8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// The scale of the symmetric int8 range (zero point 0) holding `[lo, hi]`: TensorRT's.
pub fn i8_scale(lo: f32, hi: f32) -> f32 {
    let m = lo.abs().max(hi.abs());
    if m > 0.0 {
        m / 127.0
    } else {
        1.0
    }
}

/// Symmetric int8 scales of `w` (one per row of `channels` rows) and the quantised values, in
/// ±`max` ([`super::weight_max`]).
fn quantize_weights(w: &[f32], channels: usize, max: i8) -> (Vec<f32>, Vec<u8>) {
    let max = f32::from(max);
    let per = w.len() / channels.max(1);
    let scales: Vec<f32> = w
        .chunks(per.max(1))
        .map(|c| c.iter().fold(0.0f32, |m, v| m.max(v.abs())) / max)
        .map(|s| if s > 0.0 { s } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[i / per.max(1)]).round().clamp(-max, max) as i8 as u8)
        .collect();
    (scales, q)
}

struct Rewrite<'a> {
    inits: HashMap<String, TensorProto>,
    ranges: &'a HashMap<String, (f32, f32)>,
    target: Target,
    new_inits: Vec<TensorProto>,
    head: Vec<NodeProto>,
}

impl Rewrite<'_> {
    fn init(&self, name: &str) -> Result<&TensorProto, ModelError> {
        self.inits
            .get(name)
            .ok_or_else(|| ModelError::Invalid(format!("{name} is not an initializer")))
    }

    /// The activation scale of `x` (it must be calibrated).
    fn act_scale(&self, x: &str) -> Result<f32, ModelError> {
        Ok(self.act_params(x)?.0)
    }

    /// The scale, zero point and type of activation `x`'s quantised form (it must be
    /// calibrated).
    fn act_params(&self, x: &str) -> Result<(f32, u8, i32), ModelError> {
        let &(lo, hi) = self
            .ranges
            .get(x)
            .ok_or_else(|| ModelError::Invalid(format!("{x} was not calibrated")))?;
        Ok(match self.target {
            Target::OnnxRuntimeCpu => {
                let (scale, zp) = u8_params(lo, hi);
                (scale, zp, DT_UINT8)
            }
            Target::TensorRt => (i8_scale(lo, hi), 0, DT_INT8),
        })
    }

    /// Quantises the weight and bias of a Conv in place, per output channel.
    fn weights(&mut self, n: &mut NodeProto) -> Result<(), ModelError> {
        let w = self.init(&n.input[1])?.clone();
        let values = floats(&w)?;
        let channels = w.dims.first().map_or(1, |&c| c.max(1) as usize);
        let (scales, q) = quantize_weights(&values, channels, self.target.weight_max());
        let axis = Some(0);
        let scale_dims: &[i64] = &[channels as i64];
        let wn = &w.name;
        self.new_inits
            .push(tensor(format!("{wn}_q"), DT_INT8, &w.dims, q));
        self.new_inits.push(tensor(
            format!("{wn}_scale"),
            DT_FLOAT,
            scale_dims,
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        self.new_inits.push(tensor(
            format!("{wn}_zp"),
            DT_INT8,
            scale_dims,
            vec![0; scales.len()],
        ));
        let (wq, ws, wz) = (format!("{wn}_q"), format!("{wn}_scale"), format!("{wn}_zp"));
        self.head.push(node(
            "DequantizeLinear",
            [&wq, &ws, &wz],
            format!("{wn}_dq"),
            axis,
        ));
        n.input[1] = format!("{wn}_dq");
        let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
        if let (Some(bias), Target::OnnxRuntimeCpu) = (bias, self.target) {
            let sx = self.act_scale(&n.input[0])?;
            n.input[2] = self.bias(&bias, sx, &scales)?;
        }
        Ok(())
    }

    /// Bias `name` as int32 at `scale_x × scale_w` per channel, dequantised; returns the name
    /// of its float form.
    fn bias(&mut self, name: &str, sx: f32, w_scales: &[f32]) -> Result<String, ModelError> {
        let b = floats(self.init(name)?)?;
        let bs: Vec<f32> = (0..b.len())
            .map(|k| sx * w_scales[k % w_scales.len()])
            .collect();
        let bq: Vec<u8> = b
            .iter()
            .zip(&bs)
            .flat_map(|(v, s)| {
                ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
            })
            .collect();
        let dims = [b.len() as i64];
        let scale_raw = bs.iter().flat_map(|s| s.to_le_bytes()).collect();
        let zeros = vec![0; 4 * bs.len()];
        let (q, s, z) = (
            format!("{name}_q"),
            format!("{name}_scale"),
            format!("{name}_zp"),
        );
        self.new_inits
            .push(tensor(q.clone(), DT_INT32, &[b.len() as i64], bq));
        self.new_inits
            .push(tensor(s.clone(), DT_FLOAT, &dims, scale_raw));
        self.new_inits
            .push(tensor(z.clone(), DT_INT32, &dims, zeros));
        let out = format!("{name}_dq");
        self.head
            .push(node("DequantizeLinear", [&q, &s, &z], out.clone(), Some(0)));
        Ok(out)
    }

    /// The Q → DQ pair of activation `t`, whose output replaces `t` for its consumers.
    fn pair(&mut self, t: &str) -> Result<[NodeProto; 2], ModelError> {
        let (scale, zp, zp_type) = self.act_params(t)?;
        let (s, z, q) = (format!("{t}_scale"), format!("{t}_zp"), format!("{t}_q"));
        self.new_inits.push(tensor(
            s.clone(),
            DT_FLOAT,
            &[],
            scale.to_le_bytes().to_vec(),
        ));
        self.new_inits
            .push(tensor(z.clone(), zp_type, &[], vec![zp]));
        Ok([
            node("QuantizeLinear", [t, &s, &z], q.clone(), None),
            node("DequantizeLinear", [&q, &s, &z], format!("{t}_dq"), None),
        ])
    }
}

/// `model` with QDQ pairs on every tensor of [`activations`] (ranges from `ranges`) and its
/// convolution weights quantised, in `target`'s form.
pub fn rewrite(
    mut model: ModelProto,
    ranges: &HashMap<String, (f32, f32)>,
    target: Target,
) -> Result<ModelProto, ModelError> {
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| ModelError::Invalid("the model has no graph".into()))?;
    let targets = activations(graph);
    let target_set: HashSet<&str> = targets.iter().map(String::as_str).collect();
    let mut rw = Rewrite {
        inits: graph
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        ranges,
        target,
        new_inits: Vec::new(),
        head: Vec::new(),
    };
    let mut body = Vec::new();
    for i in &graph.input {
        if target_set.contains(i.name.as_str()) {
            body.extend(rw.pair(&i.name)?);
        }
    }
    let dq = |name: &str| match target_set.contains(name) {
        true => format!("{name}_dq"),
        false => name.to_string(),
    };
    for orig in &graph.node {
        let mut n = orig.clone();
        if n.op_type == "Conv" {
            // Before the data input is renamed: the bias scale is the data's scale.
            rw.weights(&mut n)?;
        }
        for input in n.input.iter_mut() {
            *input = dq(input);
        }
        let outputs = n.output.clone();
        body.push(n);
        for o in outputs.iter().filter(|o| target_set.contains(o.as_str())) {
            body.extend(rw.pair(o)?);
        }
    }
    let used: HashSet<String> = rw.new_inits.iter().map(|t| t.name.clone()).collect();
    let replaced: HashSet<String> = body
        .iter()
        .chain(&rw.head)
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    graph
        .initializer
        .retain(|t| replaced.contains(&t.name) && !used.contains(&t.name));
    graph.initializer.extend(rw.new_inits);
    graph.node = rw.head.into_iter().chain(body).collect();
    for op in model
        .opset_import
        .iter_mut()
        .filter(|o| o.domain.is_empty())
    {
        op.version = op.version.max(13);
    }
    Ok(model)
}
