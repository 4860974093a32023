//! A convolutional network as the GPU builder sees it: operations in execution order, each
//! reading earlier values by index (value 0 is the input; operation `i` writes value `i + 1`),
//! with fp32 weights in ONNX's layouts.

/// Per-channel BatchNormalization parameters (inference form).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Scale (γ).
    pub gamma: Vec<f32>,
    /// Shift (β).
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

/// A convolution with everything that can be fused into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// For messages and tuning keys.
    pub name: String,
    /// `k × c × r × s` (ONNX/PyTorch KCRS).
    pub weight: Vec<f32>,
    /// Output channels.
    pub k: usize,
    /// Input channels.
    pub c: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// Optional conv bias (`k`).
    pub bias: Option<Vec<f32>>,
    /// Stride (same in both directions).
    pub stride: usize,
    /// Zero padding (same on every side).
    pub pad: usize,
    /// BatchNorm applied to the output, to be folded in.
    pub bn: Option<BatchNorm>,
    /// The value read.
    pub input: usize,
    /// A value added to the output before the activation (a ResNet shortcut).
    pub residual: Option<usize>,
    /// ReLU at the end.
    pub relu: bool,
}

/// One operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// act(conv(x) + bias + residual).
    Conv(Conv),
    /// Max pooling.
    MaxPool {
        /// The value read.
        input: usize,
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        pad: usize,
    },
    /// Mean over height and width (to 1×1).
    GlobalAvgPool {
        /// The value read.
        input: usize,
    },
    /// `y = x Wᵀ + b` on the flattened input.
    Linear {
        /// The value read.
        input: usize,
        /// `out × in`.
        weight: Vec<f32>,
        /// `out`.
        bias: Vec<f32>,
        /// Output features.
        out: usize,
        /// Input features.
        inp: usize,
    },
}

/// The whole network.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Channels of the input image (3).
    pub input_channels: usize,
    /// Height and width of the input (224).
    pub input_side: usize,
    /// In execution order.
    pub ops: Vec<Op>,
}

impl Op {
    /// The values this operation reads.
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            Op::Conv(c) => std::iter::once(c.input).chain(c.residual).collect(),
            Op::MaxPool { input, .. } | Op::GlobalAvgPool { input } | Op::Linear { input, .. } => {
                vec![*input]
            }
        }
    }
}
