//! The KServe v2 / Open Inference Protocol apart from its transports: the two models of the
//! repository, what their metadata and configuration say, how an inference's inputs are checked
//! and cut into queue entries, and what its output is. HTTP/REST (`http::kserve`) and gRPC
//! (`grpc`) parse their wire forms into these types and encode what comes back.
//!
//! - `{MODEL_NAME}` (default `resnet50`): the ONNX model's own tensors, as Triton's onnxruntime
//!   backend lists them: its input (FP32 `[-1, 3, 224, 224]`, already normalised) and output
//!   (FP32 `[-1, classes]`), named as in the file.
//! - `{MODEL_NAME}_image`: input `IMAGE` (BYTES `[-1, 1]`, each element an encoded image file,
//!   preprocessed exactly as `/predict` does) and output `logits`.
//!
//! Both run through [`infer::run`]: N inputs are N admissions and N queue entries, batched with
//! everything else of their kind.

pub mod infer;
pub mod limits;
mod model;
pub mod stats;

pub use limits::MAX_RANK;
pub use model::Model;

use bytes::Bytes;
use engine::{InputKind, IMAGE_CHANNELS, IMAGE_SIDE, TENSOR_BYTES};

use crate::config::Preprocess;
use crate::error::ApiError;
use crate::lifecycle::Pipeline;
use crate::service::App;

/// Extensions of the protocol this server implements (HTTP's `/v2` lists them).
pub const EXTENSIONS: [&str; 4] = [
    "classification",
    "binary_tensor_data",
    "model_repository",
    "statistics",
];

impl Model {
    /// Its name in this server.
    pub fn name(self, app: &App) -> String {
        match self {
            Model::Tensor => app.config.model.name.clone(),
            Model::Image => format!("{}_image", app.config.model.name),
        }
    }

    /// The model called `name`, at `version` (none, empty, or `1`: each has one version).
    pub fn find(app: &App, name: &str, version: Option<&str>) -> Result<Self, ApiError> {
        let model = Model::ALL.into_iter().find(|m| m.name(app) == name);
        match model {
            Some(m) if version.is_none_or(|v| v.is_empty() || v == "1") => Ok(m),
            _ => Err(ApiError::ModelNotFound(name.chars().take(64).collect())),
        }
    }

    /// What its inputs become in the engine.
    pub fn kind(self) -> InputKind {
        match self {
            Model::Tensor => InputKind::Tensor,
            Model::Image => InputKind::Image,
        }
    }

    /// Its input and output, for the model `pipeline` serves.
    pub fn signature(self, pipeline: &Pipeline) -> Signature {
        let output = TensorSpec {
            name: match self {
                Model::Tensor => pipeline.io.output.clone(),
                Model::Image => "logits".into(),
            },
            datatype: "FP32",
            dims: vec![pipeline.classes as i64],
        };
        let input = match self {
            Model::Tensor => TensorSpec {
                name: pipeline.io.input.clone(),
                datatype: "FP32",
                dims: [IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE]
                    .map(|d| d as i64)
                    .into(),
            },
            Model::Image => TensorSpec {
                name: "IMAGE".into(),
                datatype: "BYTES",
                dims: vec![1],
            },
        };
        Signature {
            input,
            output,
            max_batch: pipeline.max_batch,
        }
    }
}

/// One tensor of a model's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Its name.
    pub name: String,
    /// The protocol's datatype (`FP32`, `BYTES`).
    pub datatype: &'static str,
    /// Dimensions after the batch dimension.
    pub dims: Vec<i64>,
}

impl TensorSpec {
    /// The shape with a variable batch dimension first, as metadata lists it.
    pub fn shape(&self) -> Vec<i64> {
        std::iter::once(-1)
            .chain(self.dims.iter().copied())
            .collect()
    }

    /// Triton's model-configuration type name.
    pub fn config_type(&self) -> &'static str {
        match self.datatype {
            "BYTES" => "TYPE_STRING",
            _ => "TYPE_FP32",
        }
    }

    /// Triton's model-configuration format (`FORMAT_NCHW` for image tensors).
    pub fn format(&self) -> &'static str {
        match self.dims.len() {
            3 => "FORMAT_NCHW",
            _ => "FORMAT_NONE",
        }
    }
}

/// A model's one input and one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// What it takes.
    pub input: TensorSpec,
    /// What it returns.
    pub output: TensorSpec,
    /// Most inputs in one request (the served `max_batch_size`).
    pub max_batch: usize,
}

/// A `400` in the protocol's words.
pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_inference_request", message)
}

impl Signature {
    /// Checks a request's one input (`name`, `datatype`, `shape`) and returns its batch size,
    /// at most [`Signature::max_batch`] (checked before anything is sized by it).
    pub fn batch_of(&self, name: &str, datatype: &str, shape: &[i64]) -> Result<usize, ApiError> {
        let want = &self.input;
        if shape.len() > MAX_RANK {
            return Err(bad(format!(
                "{name} has {} dimensions; at most {MAX_RANK} are accepted",
                shape.len()
            )));
        }
        if name != want.name || datatype != want.datatype {
            return Err(bad(format!(
                "the model takes one input, {} of datatype {}; got {name} of {datatype}",
                want.name, want.datatype
            )));
        }
        let n = match (shape, want.datatype) {
            ([n, rest @ ..], _) if *n >= 1 && rest == want.dims.as_slice() => *n,
            ([n], "BYTES") if *n >= 1 => *n,
            _ => {
                let dims: Vec<String> = want.dims.iter().map(i64::to_string).collect();
                return Err(bad(format!(
                    "{name} has shape {shape:?}; expected [N, {}] with N ≥ 1",
                    dims.join(", ")
                )));
            }
        };
        match usize::try_from(n) {
            Ok(n) if n <= self.max_batch => Ok(n),
            _ => Err(bad(format!(
                "{n} inputs exceed max_batch_size {}",
                self.max_batch
            ))),
        }
    }

    /// Checks a requested output's name.
    pub fn check_output(&self, name: &str) -> Result<(), ApiError> {
        if name == self.output.name {
            return Ok(());
        }
        let mut shown: String = name.chars().take(64).collect();
        if shown.is_empty() {
            shown = "\"\"".into();
        }
        Err(bad(format!(
            "no output named {shown}; the model has one, {}",
            self.output.name
        )))
    }
}

/// Cuts `n` FP32 tensors out of their raw little-endian bytes, without copying, refusing a
/// wrong size. The values are the client's, as in Triton: a NaN in gives NaN logits out for
/// that input only (rows never mix; perf_analyzer's random inputs hold NaNs).
pub fn tensors(raw: Bytes, n: usize) -> Result<Vec<Bytes>, ApiError> {
    let want = n.saturating_mul(TENSOR_BYTES);
    if raw.len() != want {
        return Err(bad(format!(
            "{n} FP32 tensors of 3×224×224 are {want} bytes; got {}",
            raw.len()
        )));
    }
    Ok((0..n)
        .map(|i| raw.slice(i * TENSOR_BYTES..(i + 1) * TENSOR_BYTES))
        .collect())
}

/// The `n` tensors of FP32 values given as numbers (JSON's `data`), as [`tensors`].
pub fn tensors_from_values(values: &[f32], n: usize) -> Result<Vec<Bytes>, ApiError> {
    let want = n.saturating_mul(TENSOR_BYTES / 4);
    if values.len() != want {
        return Err(bad(format!(
            "{n} FP32 tensors of 3×224×224 are {want} values ({} bytes); got {}",
            want.saturating_mul(4),
            values.len()
        )));
    }
    // Sized once: the values are checked before a byte is copied.
    let mut raw = Vec::with_capacity(values.len() * 4);
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    tensors(raw.into(), n)
}

/// The request parameter `preprocess` as sent (`None`: absent; a parameter that is not a
/// string is sent as `Some("")`): how the image model decodes JPEGs, else `default`
/// (`PREPROCESS`).
pub fn preprocess(asked: Option<&str>, default: Preprocess) -> Result<Preprocess, ApiError> {
    match asked {
        None => Ok(default),
        Some(s) => Preprocess::parse(s)
            .ok_or_else(|| bad("the parameter preprocess must be \"exact\" or \"draft\"")),
    }
}

/// The classification count asked of an output (`classification` / `class_count`): none or 0
/// for the FP32 rows, k ≥ 1 for the top k (at most the classes).
pub fn classification(k: Option<i64>) -> Result<Option<usize>, ApiError> {
    match k {
        None | Some(0) => Ok(None),
        Some(k) if k > 0 => Ok(Some(k as usize)),
        Some(_) => Err(bad("classification must be a non-negative integer")),
    }
}

/// Output of an inference, before a transport encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// FP32 rows, flattened.
    Fp32(Vec<f32>),
    /// BYTES elements (classification strings).
    Strings(Vec<String>),
}

/// The output tensor of an inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Its name.
    pub name: String,
    /// `[n, classes]`, or `[n, k]` classified.
    pub shape: [usize; 2],
    /// The values.
    pub data: OutputData,
}

impl Output {
    /// Rows of `logits` as asked: the top `k` as Triton's `"score:index[:label]"` strings (the
    /// score is the logit), or the FP32 rows.
    pub fn new(sig: &Signature, labels: &[&str], rows: &[&[f32]], k: Option<usize>) -> Self {
        let n = rows.len();
        let classes = rows.first().map_or(0, |r| r.len());
        let name = sig.output.name.clone();
        let Some(k) = k.map(|k| k.clamp(1, classes.max(1))) else {
            let values = rows.iter().flat_map(|r| r.iter().copied()).collect();
            let (shape, data) = ([n, classes], OutputData::Fp32(values));
            return Output { name, shape, data };
        };
        let strings = rows
            .iter()
            .flat_map(|row| {
                crate::predict::top_k(row, k, labels).into_iter().map(|p| {
                    match labels.get(p.class_id) {
                        None => format!("{:.6}:{}", row[p.class_id], p.class_id),
                        Some(l) => format!("{:.6}:{}:{l}", row[p.class_id], p.class_id),
                    }
                })
            })
            .collect();
        let (shape, data) = ([n, k], OutputData::Strings(strings));
        Output { name, shape, data }
    }

    /// The protocol's datatype of the values.
    pub fn datatype(&self) -> &'static str {
        match self.data {
            OutputData::Fp32(_) => "FP32",
            OutputData::Strings(_) => "BYTES",
        }
    }

    /// The binary form: little-endian floats, or each string after its 4-byte length.
    pub fn raw(&self) -> Vec<u8> {
        match &self.data {
            OutputData::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            OutputData::Strings(s) => {
                let mut raw = Vec::with_capacity(s.iter().map(|s| s.len() + 4).sum());
                for s in s {
                    raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    raw.extend_from_slice(s.as_bytes());
                }
                raw
            }
        }
    }
}

/// An input's values as a transport typed them (JSON `data`, gRPC `contents`).
pub enum Values {
    /// FP32 numbers.
    Fp32(Vec<f32>),
    /// BYTES elements.
    Bytes(Vec<Bytes>),
}

/// The `n` inputs of a request's one input tensor (`name`, `shape`, as checked by
/// [`Signature::batch_of`]): cut from its binary form `raw` when the transport has one, else
/// from its typed values.
pub fn cut(
    sig: &Signature,
    (name, shape): (&str, &[i64]),
    n: usize,
    raw: Option<Bytes>,
    typed: impl FnOnce() -> Result<Values, ApiError>,
) -> Result<Vec<Bytes>, ApiError> {
    let elements = match (sig.input.datatype, raw) {
        ("FP32", Some(raw)) => return tensors(raw, n),
        (_, Some(raw)) => bytes_elements(raw, n)?,
        (_, None) => match typed()? {
            Values::Fp32(v) => return tensors_from_values(&v, n),
            Values::Bytes(b) => b,
        },
    };
    if elements.len() != n {
        let got = elements.len();
        return Err(bad(format!(
            "{name} has shape {shape:?} but {got} elements"
        )));
    }
    Ok(elements)
}

/// Splits a binary BYTES tensor: each element a 4-byte little-endian length, then the bytes;
/// refused past `max` elements (4 bytes each on the wire, a 32-byte handle each in memory).
pub fn bytes_elements(mut raw: Bytes, max: usize) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        if out.len() == max {
            return Err(bad(format!(
                "the BYTES tensor holds more than {max} elements"
            )));
        }
        let head: [u8; 4] = raw
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("a BYTES element's 4-byte length is cut short"))?;
        let n = u32::from_le_bytes(head) as usize;
        if raw.len() < 4 + n {
            return Err(bad("a BYTES element is longer than its tensor"));
        }
        out.push(raw.slice(4..4 + n));
        raw = raw.slice(4 + n..);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
