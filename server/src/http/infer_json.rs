//! The JSON inference request of the KServe v2 protocol, parsed straight into bounded types:
//! no `serde_json::Value` tree (which costs ~16x a body of small tokens), at most
//! [`limits::MAX_TENSORS`] tensors, [`limits::MAX_PARAMETERS`] parameters and
//! [`limits::MAX_RANK`] integer dimensions, `data` flattened as it is read into `f32`s or strings
//! (at most [`MAX_STRINGS`]), and unknown fields skipped without allocating.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::v2::limits;

/// The most strings a JSON `data` array may hold (each costs a handle and an allocation).
pub const MAX_STRINGS: usize = 4096;

/// `POST /v2/models/{m}/infer`, its JSON part.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (`binary_data_output`).
    #[serde(default)]
    pub parameters: Params,
    /// The input tensors.
    pub inputs: Bounded<Input, { limits::MAX_TENSORS }>,
    /// The outputs asked for, if any.
    #[serde(default)]
    pub outputs: Option<Bounded<OutputSpec, { limits::MAX_TENSORS }>>,
}

/// One input tensor.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// Its name.
    pub name: String,
    /// Its datatype (`FP32`, `BYTES`, …).
    pub datatype: String,
    /// Its shape.
    pub shape: Bounded<Dim, { limits::MAX_RANK }>,
    /// Its parameters (`binary_data_size`).
    #[serde(default)]
    pub parameters: Params,
    /// Its values, when not in the binary section.
    #[serde(default)]
    pub data: Option<Data>,
}

/// One requested output.
#[derive(Debug, Deserialize)]
pub struct OutputSpec {
    /// Its name.
    pub name: String,
    /// Its parameters (`binary_data`, `classification`).
    #[serde(default)]
    pub parameters: Params,
}

/// A sequence refused past `N` entries, before the entry past it is allocated.
#[derive(Debug)]
pub struct Bounded<T, const N: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at most {N} entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    if out.len() == N {
                        return Err(de::Error::custom(format!("more than {N} entries")));
                    }
                    out.push(v);
                }
                Ok(Bounded(out))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// One dimension: an integer, nothing else.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Dim(pub i64);

/// A parameter's value: a boolean, a number or a string (as the protocol has them).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Another number.
    Float(f64),
    /// A string.
    Str(String),
}

/// Parameters, at most [`limits::MAX_PARAMETERS`].
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, Param)>);

impl Params {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&Param> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `key` as a boolean, if it is one.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Param::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an object of at most {} parameters",
                    limits::MAX_PARAMETERS
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Param>()? {
                    if out.len() == limits::MAX_PARAMETERS {
                        return Err(de::Error::custom("too many parameters"));
                    }
                    out.push((k, v));
                }
                Ok(Params(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean, a number or a string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Param, E> {
                Ok(Param::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Param, E> {
                Ok(Param::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Param, E> {
                i64::try_from(v).map(Param::Int).map_err(E::custom)
            }
            fn visit_f64<E>(self, v: f64) -> Result<Param, E> {
                Ok(Param::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Param, E> {
                Ok(Param::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A tensor's `data`, flattened in order (nested arrays, as the protocol allows).
#[derive(Debug, PartialEq)]
pub enum Data {
    /// Every leaf a number.
    Numbers(Vec<f32>),
    /// Every leaf a string.
    Strings(Vec<Bytes>),
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Data::Numbers(Vec::new());
        d.deserialize_any(Flatten(&mut out, 0))?;
        Ok(out)
    }
}

/// Appends every leaf of an array (or one leaf) to the data, refusing mixed kinds.
struct Flatten<'a>(&'a mut Data, usize);

impl Flatten<'_> {
    fn push_number<E: de::Error>(self, x: f64) -> Result<(), E> {
        match self.0 {
            Data::Numbers(v) => {
                v.push(x as f32);
                Ok(())
            }
            Data::Strings(_) => Err(E::custom("data mixes numbers and strings")),
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("numbers or strings, in arrays")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push_number(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push_number(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push_number(v)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if let Data::Numbers(v) = self.0 {
            if !v.is_empty() {
                return Err(E::custom("data mixes numbers and strings"));
            }
            *self.0 = Data::Strings(Vec::new());
        }
        let Data::Strings(v) = self.0 else {
            unreachable!("set just above")
        };
        if v.len() == MAX_STRINGS {
            return Err(E::custom(format!("more than {MAX_STRINGS} strings")));
        }
        v.push(Bytes::copy_from_slice(s.as_bytes()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.1 + 1;
        if depth > limits::MAX_RANK {
            return Err(de::Error::custom("data nests deeper than a tensor's rank"));
        }
        while seq
            .next_element_seed(Flatten(&mut *self.0, depth))?
            .is_some()
        {}
        Ok(())
    }
}

/// Parses the JSON part of an inference request.
pub fn parse(json: &[u8]) -> Result<InferRequest, String> {
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tritonclient_request_parses() {
        let r = parse(
            br#"{"id":"7","inputs":[{"name":"input","datatype":"FP32","shape":[1,2],
            "parameters":{"binary_data_size":8}}],"outputs":[{"name":"logits",
            "parameters":{"binary_data":true,"classification":5}}],"unknown":{"x":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        let input = &r.inputs.0[0];
        assert_eq!(
            input.shape.0.iter().map(|d| d.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            input.parameters.get("binary_data_size"),
            Some(&Param::Int(8))
        );
        let out = &r.outputs.as_ref().unwrap().0[0];
        assert_eq!(out.parameters.flag("binary_data"), Some(true));
        assert_eq!(out.parameters.get("classification"), Some(&Param::Int(5)));
    }

    #[test]
    fn data_flattens_in_order_and_refuses_mixed_kinds() {
        let data = |j: &str| serde_json::from_str::<Data>(j).map_err(|e| e.to_string());
        assert_eq!(
            data("[[1.0, 2.5], [3, [4]]]").unwrap(),
            Data::Numbers(vec![1.0, 2.5, 3.0, 4.0])
        );
        assert_eq!(
            data(r#"[["a"], "b"]"#).unwrap(),
            Data::Strings(vec![Bytes::from("a"), Bytes::from("b")])
        );
        assert!(data(r#"[1, "x"]"#).is_err());
        assert!(data(r#"["x", 1]"#).is_err());
        assert!(data("[null]").is_err());
        assert!(data(&format!("{}1{}", "[".repeat(9), "]".repeat(9))).is_err());
        let many = format!("[{}]", vec![r#""""#; MAX_STRINGS + 1].join(","));
        assert!(data(&many).unwrap_err().contains("strings"));
    }

    #[test]
    fn counts_and_shapes_are_refused_before_they_grow() {
        let shape = |s: &str| {
            parse(
                format!(r#"{{"inputs":[{{"name":"i","datatype":"FP32","shape":{s}}}]}}"#)
                    .as_bytes(),
            )
        };
        assert!(shape("[1, 3]").is_ok());
        for bad in [
            r#"[1, "x"]"#,
            "[1, null]",
            "[{}]",
            "[1.5]",
            r#""1""#,
            "[0,0,0,0,0,0,0,0,0]",
        ] {
            assert!(shape(bad).is_err(), "{bad}");
        }
        let inputs = vec![r#"{"name":"i","datatype":"FP32","shape":[1]}"#; limits::MAX_TENSORS + 1];
        assert!(parse(format!(r#"{{"inputs":[{}]}}"#, inputs.join(",")).as_bytes()).is_err());
        let params: Vec<String> = (0..=limits::MAX_PARAMETERS)
            .map(|i| format!(r#""p{i}":1"#))
            .collect();
        let body = format!(r#"{{"parameters":{{{}}},"inputs":[]}}"#, params.join(","));
        assert!(parse(body.as_bytes()).is_err());
        assert!(parse(br#"{"parameters":{"p":[1,2]},"inputs":[]}"#).is_err());
        assert!(parse(br#"{"outputs":[]}"#).is_err(), "inputs are required");
    }
}
