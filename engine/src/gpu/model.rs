//! The prepared model: the plan plus, per step, what a device needs to run it (geometry and the
//! weight regions), with every weight folded, re-laid and packed into one arena. Built once on
//! the host; every device (cuDNN or the CPU twin) reads the same bytes at the same offsets.
//!
//! Precision: activations, filters and conv biases are fp16 (cuDNN's half configuration: `x`,
//! `w`, `z`, `bias` and `y` share the type, fp32 accumulation); the global average pool writes
//! fp32 and the classifier is fp32 throughout, since the logits need more than fp16 keeps.

use std::collections::HashMap;

use half::f16;

use super::fold::fuse;
use super::layout::{Arena, ConvGeom, PoolGeom, Region};
use super::network::{Network, Op};
use super::plan::{plan, Plan};

/// A fused convolution step: `act(conv(x, w) + bias + z)`; or, without a bias, a plain
/// convolution `conv(x, w)` (a projection shortcut, whose bias the convolution that adds it
/// carries: [`plain_shortcuts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// The layer's name (messages, tuning).
    pub name: String,
    /// Shapes per image.
    pub geom: ConvGeom,
    /// fp16 KRSC filters.
    pub weight: Region,
    /// fp16 bias, one per output channel; `None` for a plain convolution (no bias, activation
    /// or shortcut: cuDNN's `cudnnConvolutionForward`).
    pub bias: Option<Region>,
    /// ReLU at the end (else identity).
    pub relu: bool,
    /// Adds a shortcut (`z`) before the activation.
    pub residual: bool,
}

/// What one step does.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// A fused convolution (fp16 in and out).
    Conv(ConvLayer),
    /// Max pooling (fp16 in and out).
    MaxPool(PoolGeom),
    /// Mean over `h × w` of `c` channels: fp16 in, fp32 out.
    AvgPool {
        /// Channels.
        c: usize,
        /// Pixels averaged (height × width).
        pixels: usize,
    },
    /// `y = x Wᵀ + b` in fp32.
    Linear {
        /// Input features.
        inp: usize,
        /// Output features.
        out: usize,
        /// fp32 `out × inp`, row-major.
        weight: Region,
        /// fp32 `out`.
        bias: Region,
    },
}

/// A network ready for a device.
#[derive(Clone, Debug)]
pub struct PreparedModel {
    /// Shapes, steps and activation slots.
    pub plan: Plan,
    /// One per step, in step order.
    pub layers: Vec<Layer>,
    /// Every weight, at the regions the layers name.
    pub arena: Vec<u8>,
    /// Features into the classifier (fp32 pooled values per image).
    pub features: usize,
    /// Width of one output row.
    pub classes: usize,
}

impl PreparedModel {
    /// Folds, re-lays and packs `net`. The network must be a convolutional trunk (convolutions
    /// and max pools) followed by one global average pool and one linear classifier, which is
    /// the shape of every torchvision ResNet; anything else is refused with the reason.
    pub fn build(net: &Network) -> Result<Self, String> {
        let plan = plan(net)?;
        check_head(net)?;
        let mut arena = Arena::default();
        let mut layers = Vec::with_capacity(net.ops.len());
        let shortcuts = plain_shortcuts(net);
        // Biases of plain shortcuts, waiting for the convolution that adds them.
        let mut moved: HashMap<usize, Vec<f32>> = HashMap::new();
        for (i, op) in net.ops.iter().enumerate() {
            let x = plan.shapes[input_of(op)];
            layers.push(match op {
                Op::Conv(conv) => {
                    let fused = fuse(conv);
                    if x.c != fused.c {
                        return Err(format!(
                            "{}: the input has {} channels, the padded filter {}",
                            conv.name, x.c, fused.c
                        ));
                    }
                    let weight = arena.push_f16(fused.weight.iter().copied());
                    let bias = match shortcuts.get(&i) {
                        Some(&adder) => {
                            moved.insert(adder, fused.bias);
                            None
                        }
                        None => {
                            let extra = moved.remove(&i);
                            let sum = fused.bias.iter().enumerate().map(|(k, &b)| {
                                // Summed in fp32, rounded to fp16 once.
                                f16::from_f32(b + extra.as_ref().map_or(0.0, |e| e[k]))
                            });
                            Some(arena.push_f16(sum))
                        }
                    };
                    Layer::Conv(ConvLayer {
                        name: conv.name.clone(),
                        geom: ConvGeom {
                            c: fused.c,
                            h: x.h,
                            w: x.w,
                            k: fused.k,
                            r: fused.r,
                            s: fused.s,
                            stride: conv.stride,
                            pad: conv.pad,
                        },
                        weight,
                        bias,
                        relu: conv.relu,
                        residual: conv.residual.is_some(),
                    })
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    pad,
                    ..
                } => Layer::MaxPool(PoolGeom {
                    c: x.c,
                    h: x.h,
                    w: x.w,
                    kernel: *kernel,
                    stride: *stride,
                    pad: *pad,
                }),
                Op::GlobalAvgPool { .. } => Layer::AvgPool {
                    c: x.c,
                    pixels: x.h * x.w,
                },
                Op::Linear {
                    weight,
                    bias,
                    out,
                    inp,
                    ..
                } => Layer::Linear {
                    inp: *inp,
                    out: *out,
                    weight: arena.push_f32(weight),
                    bias: arena.push_f32(bias),
                },
            });
        }
        let (features, classes) = match (&layers[layers.len() - 2], &layers[layers.len() - 1]) {
            (Layer::AvgPool { c, .. }, Layer::Linear { out, .. }) => (*c, *out),
            _ => unreachable!("check_head accepted the network"),
        };
        Ok(PreparedModel {
            plan,
            layers,
            arena: arena.finish(),
            features,
            classes,
        })
    }

    /// The fp16 bytes of activation slot `i` for a batch of `n`.
    pub fn slot_bytes(&self, i: usize, n: usize) -> usize {
        self.plan.slots[i] * 2 * n
    }
}

/// ResNet's projection shortcuts: each convolution without activation or shortcut whose output
/// is read only as one other convolution's shortcut, mapped to that convolution. They run as
/// plain convolutions and the adding convolution takes their bias: `relu(conv3(x) + b3 +
/// (ds(x') + b_ds))` is `relu(conv3(x) + (b3 + b_ds) + ds(x'))`. (cuDNN's fused call allows
/// only its slowest algorithm, IMPLICIT_PRECOMP_GEMM, with an identity activation, and may
/// refuse even that for NHWC half at stride 2.)
pub fn plain_shortcuts(net: &Network) -> HashMap<usize, usize> {
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (j, op) in net.ops.iter().enumerate() {
        for v in op.inputs() {
            readers.entry(v).or_default().push(j);
        }
    }
    net.ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let Op::Conv(c) = op else { return None };
            if c.relu || c.residual.is_some() {
                return None;
            }
            let v = i + 1;
            match readers.get(&v).map(Vec::as_slice) {
                Some(&[j]) => match &net.ops[j] {
                    Op::Conv(adder) if adder.residual == Some(v) && adder.input != v => {
                        Some((i, j))
                    }
                    _ => None,
                },
                _ => None,
            }
        })
        .collect()
}

/// The value an operation reads first.
fn input_of(op: &Op) -> usize {
    op.inputs()[0]
}

/// Refuses networks whose tail is not `… → GlobalAvgPool → Linear`, or whose trunk holds a
/// pool or classifier elsewhere.
fn check_head(net: &Network) -> Result<(), String> {
    let n = net.ops.len();
    let tail_ok = n >= 2
        && matches!(net.ops[n - 2], Op::GlobalAvgPool { .. })
        && matches!(&net.ops[n - 1], Op::Linear { input, .. } if *input == n - 1);
    if !tail_ok {
        return Err(
            "the GPU engine runs networks that end in GlobalAveragePool → Gemm (a ResNet)".into(),
        );
    }
    if let Some(i) = net.ops[..n - 2]
        .iter()
        .position(|op| matches!(op, Op::GlobalAvgPool { .. } | Op::Linear { .. }))
    {
        return Err(format!(
            "operation {i}: a pool to 1×1 or a classifier inside the trunk is not supported"
        ));
    }
    Ok(())
}
