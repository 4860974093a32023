//! The subset of ONNX's protobuf schema (onnx.proto3) this project reads and writes.
//!
//! Field numbers follow the official schema; fields we do not model are skipped when decoding.
//! `oneof` members are written as optional fields, which is the same encoding on the wire.

#![allow(missing_docs)]

/// `TensorProto.DataType.FLOAT`.
pub const DT_FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const DT_INT64: i32 = 7;
/// `AttributeProto.AttributeType` values.
pub const ATTR_FLOAT: i32 = 1;
pub const ATTR_INT: i32 = 2;
pub const ATTR_INTS: i32 = 7;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// `oneof value { Tensor tensor_type = 1; ... }`: only tensors are modelled.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// `oneof value { int64 dim_value = 1; string dim_param = 2; }`
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

impl AttributeProto {
    /// An INT attribute.
    pub fn int(name: &str, i: i64) -> Self {
        Self {
            name: name.into(),
            r#type: ATTR_INT,
            i,
            ..Default::default()
        }
    }
    /// An INTS attribute.
    pub fn ints(name: &str, ints: &[i64]) -> Self {
        Self {
            name: name.into(),
            r#type: ATTR_INTS,
            ints: ints.to_vec(),
            ..Default::default()
        }
    }
    /// A FLOAT attribute.
    pub fn float(name: &str, f: f32) -> Self {
        Self {
            name: name.into(),
            r#type: ATTR_FLOAT,
            f,
            ..Default::default()
        }
    }
}

impl TensorProto {
    /// A float initializer stored as little-endian raw data.
    pub fn floats(name: &str, dims: &[i64], values: &[f32]) -> Self {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DT_FLOAT,
            raw_data,
            ..Default::default()
        }
    }
}

impl ValueInfoProto {
    /// A float tensor value whose dimensions are fixed numbers or named (dynamic) parameters.
    pub fn float_tensor(name: &str, dims: &[Dim<'_>]) -> Self {
        let dim = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => Dimension {
                    dim_value: Some(*v),
                    dim_param: None,
                },
                Dim::Named(p) => Dimension {
                    dim_value: None,
                    dim_param: Some((*p).into()),
                },
            })
            .collect();
        let tensor = TypeProtoTensor {
            elem_type: DT_FLOAT,
            shape: Some(TensorShapeProto { dim }),
        };
        Self {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(tensor),
            }),
        }
    }

    /// Element type and dimensions (`None` for a dynamic one), when this is a tensor.
    pub fn tensor_shape(&self) -> Option<(i32, Vec<Option<i64>>)> {
        let t = self.r#type.as_ref()?.tensor_type.as_ref()?;
        let dims = t
            .shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| d.dim_value.filter(|&v| v > 0))
            .collect();
        Some((t.elem_type, dims))
    }
}

/// One dimension of a value's declared shape.
#[derive(Debug, Clone, Copy)]
pub enum Dim<'a> {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic (dynamic) size.
    Named(&'a str),
}
