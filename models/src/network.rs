//! An ONNX ResNet (torchvision's export, or the built-in one) as the GPU engine's
//! [`engine::gpu::network::Network`]: Conv nodes absorb the BatchNormalization, Add and Relu
//! that follow them, so each becomes one fused act(conv + bias + residual) step; MaxPool,
//! GlobalAveragePool, Flatten and Gemm map one to one. Anything else is refused with the name
//! of the node, so a model the GPU engine cannot run fails at start, not on the first request.

use std::collections::HashMap;

use engine::gpu::network::{BatchNorm, Conv, Network, Op};
use prost::Message;

use crate::onnx::{ModelProto, NodeProto, TensorProto, DT_FLOAT};
use crate::ModelError;

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::Invalid(msg.into())
}

/// The float values of initializer `t`.
pub(crate) fn floats(t: &TensorProto) -> Result<Vec<f32>, ModelError> {
    if t.data_type != DT_FLOAT {
        return Err(bad(format!("initializer {} is not float32", t.name)));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if t.raw_data.len() % 4 != 0 {
        return Err(bad(format!("initializer {} has a ragged raw_data", t.name)));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn ints(node: &NodeProto, name: &str) -> Vec<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
        .unwrap_or_default()
}

fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

fn same(v: &[i64], what: &str, node: &NodeProto) -> Result<usize, ModelError> {
    match v {
        [] => Ok(0),
        [first, rest @ ..] if rest.iter().all(|x| x == first) => Ok(*first as usize),
        _ => Err(bad(format!(
            "{} ({}): asymmetric {what} {v:?} are not supported",
            node.name, node.op_type
        ))),
    }
}

struct Builder<'a> {
    weights: HashMap<&'a str, &'a TensorProto>,
    value: HashMap<String, usize>,
    ops: Vec<Op>,
}

impl<'a> Builder<'a> {
    fn weight(&self, name: &str) -> Result<(Vec<f32>, &'a [i64]), ModelError> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| bad(format!("{name} is not an initializer")))?;
        Ok((floats(t)?, &t.dims))
    }

    fn input(&self, node: &NodeProto, i: usize) -> Result<usize, ModelError> {
        let name = node
            .input
            .get(i)
            .ok_or_else(|| bad(format!("{}: missing input {i}", node.name)))?;
        self.value
            .get(name)
            .copied()
            .ok_or_else(|| bad(format!("{}: unknown input {name}", node.name)))
    }

    fn push(&mut self, node: &NodeProto, op: Op) {
        self.ops.push(op);
        self.value.insert(node.output[0].clone(), self.ops.len());
    }

    /// The conv that produced value `v`, if nothing has been fused after its activation yet.
    fn conv_mut(&mut self, v: usize) -> Option<&mut Conv> {
        match self.ops.get_mut(v.checked_sub(1)?) {
            Some(Op::Conv(c)) if !c.relu => Some(c),
            _ => None,
        }
    }

    fn alias(&mut self, node: &NodeProto, v: usize) {
        self.value.insert(node.output[0].clone(), v);
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), ModelError> {
        let unsupported = || {
            bad(format!(
                "{} ({}): not a pattern the GPU engine fuses",
                node.name, node.op_type
            ))
        };
        match node.op_type.as_str() {
            "Conv" => {
                let (weight, dims) = self.weight(&node.input[1])?;
                let [k, c, r, s] = dims else {
                    return Err(bad(format!("{}: filter is not 4-D", node.name)));
                };
                let bias = match node.input.get(2) {
                    Some(b) if !b.is_empty() => Some(self.weight(b)?.0),
                    _ => None,
                };
                if int(node, "group", 1) != 1 || ints(node, "dilations").iter().any(|d| *d != 1) {
                    return Err(bad(format!(
                        "{}: grouped or dilated convolutions are not supported",
                        node.name
                    )));
                }
                let conv = Conv {
                    name: node.name.clone(),
                    weight,
                    k: *k as usize,
                    c: *c as usize,
                    r: *r as usize,
                    s: *s as usize,
                    bias,
                    stride: same(&ints(node, "strides"), "strides", node)?.max(1),
                    pad: same(&ints(node, "pads"), "pads", node)?,
                    bn: None,
                    input: self.input(node, 0)?,
                    residual: None,
                    relu: false,
                };
                self.push(node, Op::Conv(conv));
            }
            "BatchNormalization" => {
                let x = self.input(node, 0)?;
                let p = |i: usize| -> Result<Vec<f32>, ModelError> {
                    Ok(self.weight(&node.input[i])?.0)
                };
                let bn = BatchNorm {
                    gamma: p(1)?,
                    beta: p(2)?,
                    mean: p(3)?,
                    var: p(4)?,
                    eps: node
                        .attribute
                        .iter()
                        .find(|a| a.name == "epsilon")
                        .map_or(1e-5, |a| a.f),
                };
                let conv = self
                    .conv_mut(x)
                    .filter(|c| c.bn.is_none() && c.residual.is_none())
                    .ok_or_else(unsupported)?;
                conv.bn = Some(bn);
                self.alias(node, x);
            }
            "Add" => {
                let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
                // The later of the two is the block's last conv; the other is the shortcut.
                let (main, shortcut) = if a > b { (a, b) } else { (b, a) };
                let conv = self
                    .conv_mut(main)
                    .filter(|c| c.residual.is_none())
                    .ok_or_else(unsupported)?;
                conv.residual = Some(shortcut);
                self.alias(node, main);
            }
            "Relu" => {
                let x = self.input(node, 0)?;
                self.conv_mut(x).ok_or_else(unsupported)?.relu = true;
                self.alias(node, x);
            }
            "MaxPool" => {
                let op = Op::MaxPool {
                    input: self.input(node, 0)?,
                    kernel: same(&ints(node, "kernel_shape"), "kernel_shape", node)?,
                    stride: same(&ints(node, "strides"), "strides", node)?.max(1),
                    pad: same(&ints(node, "pads"), "pads", node)?,
                };
                self.push(node, op);
            }
            "GlobalAveragePool" => {
                let op = Op::GlobalAvgPool {
                    input: self.input(node, 0)?,
                };
                self.push(node, op);
            }
            "Flatten" => {
                let x = self.input(node, 0)?;
                self.alias(node, x);
            }
            "Gemm" => {
                let (weight, dims) = self.weight(&node.input[1])?;
                let [out, inp] = dims else {
                    return Err(bad(format!("{}: weight is not 2-D", node.name)));
                };
                if int(node, "transB", 0) != 1 || int(node, "transA", 0) != 0 {
                    return Err(bad(format!(
                        "{}: only x·Wᵀ + b (transB=1) is supported",
                        node.name
                    )));
                }
                let op = Op::Linear {
                    input: self.input(node, 0)?,
                    weight,
                    bias: self.weight(&node.input[2])?.0,
                    out: *out as usize,
                    inp: *inp as usize,
                };
                self.push(node, op);
            }
            _ => return Err(unsupported()),
        }
        Ok(())
    }
}

/// The network of an ONNX ResNet file's bytes.
pub fn network_from_onnx(bytes: &[u8]) -> Result<Network, ModelError> {
    let model = ModelProto::decode(bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| bad("the ONNX model has no graph"))?;
    let weights: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let input = graph
        .input
        .iter()
        .find(|i| !weights.contains_key(i.name.as_str()))
        .ok_or_else(|| bad("the graph has no image input"))?;
    let mut b = Builder {
        weights,
        value: HashMap::from([(input.name.clone(), 0)]),
        ops: Vec::new(),
    };
    for node in &graph.node {
        b.node(node)?;
    }
    Ok(Network {
        input_channels: 3,
        input_side: crate::CROP_SIDE as usize,
        ops: b.ops,
    })
}
