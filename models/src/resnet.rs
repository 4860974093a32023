//! The ResNet50 v1.5 graph in torchvision's layout, with seeded weights.
//!
//! Stem (7×7/2 conv, BN, ReLU, 3×3/2 max-pool), four stages of bottleneck blocks ([3, 4, 6, 3],
//! widths 64–512, expansion 4, stride on the 3×3 conv as in v1.5, 1×1 conv + BN downsample on
//! each stage's first block), global average pool, flatten, and a 1000-way Gemm head.
//! Initializer names follow torchvision's `state_dict` (`layer1.0.conv1.weight`, `fc.bias`, …).

use crate::onnx::{AttributeProto, Dim, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::rng::Rng;

/// Channels of the pooled feature vector that feeds the classifier.
pub const FEATURES: usize = 2048;
/// Blocks per stage.
/// The input side (engine::IMAGE_SIDE) as an ONNX dimension.
const SIDE: i64 = engine::IMAGE_SIDE as i64;
const STAGES: [(usize, usize); 4] = [(3, 64), (4, 128), (6, 256), (3, 512)];
/// Name of the network input.
pub const INPUT: &str = "input";
/// Name of the flattened feature tensor.
pub const FEATURES_OUTPUT: &str = "features";
/// Name of the logits output.
pub const LOGITS_OUTPUT: &str = "logits";

/// The convolutional trunk (everything before the classifier) with its weights.
pub struct Backbone {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

struct Builder<'r> {
    rng: &'r mut Rng,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// One convolution followed by batch norm.
struct ConvBn<'a> {
    input: &'a str,
    conv: String,
    bn: String,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    /// Scale range of the BN's gamma: small on the last BN of a block, so each residual
    /// branch adds a little to its shortcut and the trunk stays stable through 16 blocks
    /// (rounding errors, int8's among them, then grow little on their way to the features).
    gamma: (f32, f32),
}

impl Builder<'_> {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let output = format!("{name}_out");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    fn init(&mut self, name: &str, dims: &[i64], values: Vec<f32>) -> String {
        self.initializers
            .push(TensorProto::floats(name, dims, &values));
        name.to_string()
    }

    /// Conv (He-normal weights, no bias) + BatchNormalization with placeholder statistics (the
    /// generator measures the real ones: `crate::batchnorm`).
    fn conv_bn(&mut self, c: ConvBn<'_>) -> String {
        let fan_in = c.cin * c.kernel * c.kernel;
        let std = (2.0 / fan_in as f32).sqrt();
        let weights = (0..c.cout * fan_in)
            .map(|_| self.rng.normal() * std)
            .collect();
        let k = c.kernel as i64;
        let w = self.init(
            &format!("{}.weight", c.conv),
            &[c.cout as i64, c.cin as i64, k, k],
            weights,
        );
        let pad = (c.kernel / 2) as i64;
        let attrs = vec![
            AttributeProto::ints("kernel_shape", &[k, k]),
            AttributeProto::ints("strides", &[c.stride as i64; 2]),
            AttributeProto::ints("pads", &[pad; 4]),
            AttributeProto::ints("dilations", &[1, 1]),
            AttributeProto::int("group", 1),
        ];
        let conv = self.node("Conv", &format!("{}.Conv", c.conv), &[c.input, &w], attrs);
        let n = c.cout;
        let dims = [n as i64];
        let gamma = (0..n)
            .map(|_| self.rng.uniform(c.gamma.0, c.gamma.1))
            .collect();
        let beta = (0..n).map(|_| self.rng.normal() * 0.5).collect();
        let mean = (0..n).map(|_| self.rng.normal() * 0.1).collect();
        let var = (0..n).map(|_| self.rng.uniform(0.5, 1.5)).collect();
        let names = [
            self.init(&format!("{}.weight", c.bn), &dims, gamma),
            self.init(&format!("{}.bias", c.bn), &dims, beta),
            self.init(&format!("{}.running_mean", c.bn), &dims, mean),
            self.init(&format!("{}.running_var", c.bn), &dims, var),
        ];
        let inputs = [conv.as_str(), &names[0], &names[1], &names[2], &names[3]];
        let attrs = vec![
            AttributeProto::float("epsilon", 1e-5),
            AttributeProto::float("momentum", 0.9),
        ];
        self.node(
            "BatchNormalization",
            &format!("{}.BatchNormalization", c.bn),
            &inputs,
            attrs,
        )
    }

    fn relu(&mut self, x: &str, name: &str) -> String {
        self.node("Relu", name, &[x], vec![])
    }

    /// One bottleneck block: 1×1 → 3×3 (strided) → 1×1, plus the shortcut, then ReLU.
    fn bottleneck(
        &mut self,
        x: &str,
        prefix: &str,
        cin: usize,
        width: usize,
        stride: usize,
    ) -> String {
        let cout = width * 4;
        let full = (0.6, 1.4);
        let conv_bn = |input, i: usize, cin, cout, kernel, stride, gamma| ConvBn {
            input,
            conv: format!("{prefix}.conv{i}"),
            bn: format!("{prefix}.bn{i}"),
            cin,
            cout,
            kernel,
            stride,
            gamma,
        };
        let y = self.conv_bn(conv_bn(x, 1, cin, width, 1, 1, full));
        let y = self.relu(&y, &format!("{prefix}.relu1"));
        let y = self.conv_bn(conv_bn(&y, 2, width, width, 3, stride, full));
        let y = self.relu(&y, &format!("{prefix}.relu2"));
        let y = self.conv_bn(conv_bn(&y, 3, width, cout, 1, 1, (0.03, 0.075)));
        let shortcut = if stride != 1 || cin != cout {
            self.conv_bn(ConvBn {
                input: x,
                conv: format!("{prefix}.downsample.0"),
                bn: format!("{prefix}.downsample.1"),
                cin,
                cout,
                kernel: 1,
                stride,
                gamma: full,
            })
        } else {
            x.to_string()
        };
        let sum = self.node("Add", &format!("{prefix}.add"), &[&y, &shortcut], vec![]);
        self.relu(&sum, &format!("{prefix}.relu3"))
    }
}

impl Backbone {
    /// The trunk with weights drawn from `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut b = Builder {
            rng,
            nodes: Vec::new(),
            initializers: Vec::new(),
        };
        let x = b.conv_bn(ConvBn {
            input: INPUT,
            conv: "conv1".into(),
            bn: "bn1".into(),
            cin: 3,
            cout: 64,
            kernel: 7,
            stride: 2,
            gamma: (0.6, 1.4),
        });
        let x = b.relu(&x, "relu");
        let pool = vec![
            AttributeProto::ints("kernel_shape", &[3, 3]),
            AttributeProto::ints("strides", &[2, 2]),
            AttributeProto::ints("pads", &[1, 1, 1, 1]),
        ];
        let mut x = b.node("MaxPool", "maxpool", &[&x], pool);
        let mut cin = 64;
        for (stage, &(blocks, width)) in STAGES.iter().enumerate() {
            for block in 0..blocks {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                x = b.bottleneck(
                    &x,
                    &format!("layer{}.{block}", stage + 1),
                    cin,
                    width,
                    stride,
                );
                cin = width * 4;
            }
        }
        let x = b.node("GlobalAveragePool", "avgpool", &[&x], vec![]);
        let flat = b.node(
            "Flatten",
            "flatten",
            &[&x],
            vec![AttributeProto::int("axis", 1)],
        );
        b.nodes.last_mut().expect("flatten node").output = vec![FEATURES_OUTPUT.to_string()];
        debug_assert_eq!(flat, "flatten_out");
        Self {
            nodes: b.nodes,
            initializers: b.initializers,
        }
    }

    /// The trunk alone, with the pooled features as output `[N, 2048]`.
    pub fn features_graph(&self) -> GraphProto {
        self.graph(Vec::new(), Vec::new(), FEATURES_OUTPUT, FEATURES)
    }

    /// The whole classifier: trunk + `fc` (`weight` is `[classes, 2048]` row-major).
    pub fn classifier_graph(&self, weight: Vec<f32>, bias: Vec<f32>) -> GraphProto {
        let classes = bias.len();
        let fc_w = TensorProto::floats("fc.weight", &[classes as i64, FEATURES as i64], &weight);
        let fc_b = TensorProto::floats("fc.bias", &[classes as i64], &bias);
        let gemm = NodeProto {
            input: vec![FEATURES_OUTPUT.into(), "fc.weight".into(), "fc.bias".into()],
            output: vec![LOGITS_OUTPUT.into()],
            name: "fc.Gemm".into(),
            op_type: "Gemm".into(),
            attribute: vec![
                AttributeProto::float("alpha", 1.0),
                AttributeProto::float("beta", 1.0),
                AttributeProto::int("transB", 1),
            ],
            ..Default::default()
        };
        self.graph(vec![gemm], vec![fc_w, fc_b], LOGITS_OUTPUT, classes)
    }

    fn graph(
        &self,
        extra: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        output: &str,
        width: usize,
    ) -> GraphProto {
        let mut node = self.nodes.clone();
        node.extend(extra);
        let mut initializer = self.initializers.clone();
        initializer.extend(inits);
        let batch = Dim::Named("batch");
        GraphProto {
            node,
            name: "resnet50".into(),
            initializer,
            input: vec![ValueInfoProto::float_tensor(
                INPUT,
                &[batch, Dim::Fixed(3), Dim::Fixed(SIDE), Dim::Fixed(SIDE)],
            )],
            output: vec![ValueInfoProto::float_tensor(
                output,
                &[batch, Dim::Fixed(width as i64)],
            )],
            ..Default::default()
        }
    }

    /// Replaces the values of the float initializer `name`; false when there is none of that
    /// name and length.
    pub(crate) fn set_floats(&mut self, name: &str, values: &[f32]) -> bool {
        match self.initializers.iter_mut().find(|t| t.name == name) {
            Some(t) if t.raw_data.len() == values.len() * 4 => {
                *t = TensorProto::floats(name, &t.dims, values);
                true
            }
            _ => false,
        }
    }

    /// Number of weights in the trunk.
    pub fn parameter_count(&self) -> usize {
        self.initializers.iter().map(|t| t.raw_data.len() / 4).sum()
    }
}
