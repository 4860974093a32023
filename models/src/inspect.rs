//! Reads an ONNX file's graph signature and refuses anything that is not an image classifier
//! of the shape we serve: one float NCHW input (3 × 224 × 224), one float `[N, classes]` output.

use prost::Message;

use crate::onnx::{ModelProto, DT_FLOAT};
use crate::ModelError;

/// The input side the engine takes (engine::IMAGE_SIDE), as ONNX dims are typed.
const SIDE: i64 = engine::IMAGE_SIDE as i64;

/// What the server needs to know about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// Name of the image input.
    pub input: String,
    /// Name of the logits output.
    pub output: String,
    /// Output width.
    pub classes: usize,
    /// `Some(n)` when the file fixes the batch dimension (then batches are at most `n`).
    pub fixed_batch: Option<usize>,
    /// Who wrote the file (`producer_name producer_version`).
    pub producer: String,
}

/// Parses `bytes` as ONNX and checks the signature. Names and shapes come from the file.
pub fn inspect(bytes: &[u8]) -> Result<ModelSignature, ModelError> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| ModelError::Invalid(format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| ModelError::Invalid("the ONNX file has no graph".into()))?;
    if graph.node.is_empty() {
        return Err(ModelError::Invalid("the ONNX graph has no nodes".into()));
    }
    // Old exporters list weights among the inputs too; the real inputs are the rest.
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let [input] = inputs[..] else {
        return Err(ModelError::Invalid(format!(
            "expected exactly one image input, found {}",
            inputs.len()
        )));
    };
    let [output] = &graph.output[..] else {
        return Err(ModelError::Invalid(format!(
            "expected exactly one output, found {}",
            graph.output.len()
        )));
    };
    let (in_type, in_dims) = input.tensor_shape().ok_or_else(|| {
        ModelError::Invalid(format!(
            "input '{}' is not a tensor with a shape",
            input.name
        ))
    })?;
    let (out_type, out_dims) = output.tensor_shape().ok_or_else(|| {
        ModelError::Invalid(format!(
            "output '{}' is not a tensor with a shape",
            output.name
        ))
    })?;
    if in_type != DT_FLOAT || out_type != DT_FLOAT {
        return Err(ModelError::Invalid(
            "input and output must be float32 tensors".into(),
        ));
    }
    let image_dims_ok = in_dims.len() == 4
        && in_dims[1] == Some(3)
        && in_dims[2].is_none_or(|h| h == SIDE)
        && in_dims[3].is_none_or(|w| w == SIDE);
    if !image_dims_ok {
        return Err(ModelError::Invalid(format!(
            "input '{}' must be NCHW [N, 3, {SIDE}, {SIDE}], found {}",
            input.name,
            show(&in_dims)
        )));
    }
    let classes = match out_dims[..] {
        [_, Some(c)] => c as usize,
        _ => {
            return Err(ModelError::Invalid(format!(
                "output '{}' must be [N, classes], found {}",
                output.name,
                show(&out_dims)
            )))
        }
    };
    Ok(ModelSignature {
        input: input.name.clone(),
        output: output.name.clone(),
        classes,
        fixed_batch: in_dims[0].map(|n| n as usize),
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
    })
}

fn show(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}
