//! What a `ModelInferRequest` would cost decoded, read from its protobuf wire form before prost
//! allocates anything. Protobuf expands: an empty `inputs` entry is 2 bytes on the wire and a
//! few hundred as a struct, so 4 MiB of them would take ~900 MiB. The counts are checked
//! against [`crate::v2::limits`], the same ones the JSON requests meet.

use crate::v2::limits::{self, Tally};

/// One field's payload.
enum Wire<'a> {
    Varint,
    Fixed,
    Len(&'a [u8]),
}

/// Fields of one message, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Option<Result<(u64, Wire<'a>), String>> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => self.varint().map(|_| Wire::Varint)?,
            1 => self.skip(8).map(|()| Wire::Fixed)?,
            5 => self.skip(4).map(|()| Wire::Fixed)?,
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                let body = self.0.get(..n).ok_or("length past the end")?;
                self.0 = &self.0[n..];
                Wire::Len(body)
            }
            t => return Err(format!("wire type {t} is not used here")),
        };
        Ok((key >> 3, wire))
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.0 = self.0.get(n..).ok_or("fixed field past the end")?;
        Ok(())
    }
}

/// Elements of a repeated scalar field: packed (`Len`) or one per occurrence.
fn elements(w: &Wire<'_>, fixed: Option<usize>) -> u64 {
    match (w, fixed) {
        (Wire::Len(b), Some(size)) => (b.len() / size) as u64,
        (Wire::Len(b), None) => b.iter().filter(|&&x| x & 0x80 == 0).count() as u64,
        _ => 1,
    }
}

/// Counts `msg` (a `ModelInferRequest`) and checks the counts; the refusal says which limit.
pub(crate) fn check_infer(msg: &[u8]) -> Result<(), String> {
    let mut t = Tally::default();
    let mut f = Fields(msg);
    while let Some(field) = f.next() {
        match field? {
            (4, _) => t.parameter()?,
            (5, Wire::Len(m)) => {
                t.tensor()?;
                input(m, &mut t)?;
            }
            (6, Wire::Len(m)) => {
                t.tensor()?;
                output(m, &mut t)?;
            }
            (7, _) => t.tensor()?,
            _ => {}
        }
    }
    t.within(msg.len())
}

fn input(m: &[u8], t: &mut Tally) -> Result<(), String> {
    let mut f = Fields(m);
    let mut rank = 0u64;
    while let Some(field) = f.next() {
        match field? {
            (3, w) => rank += elements(&w, None),
            (4, _) => t.parameter()?,
            (5, Wire::Len(c)) => contents(c, t)?,
            _ => {}
        }
    }
    limits::rank(rank)
}

fn output(m: &[u8], t: &mut Tally) -> Result<(), String> {
    let mut f = Fields(m);
    while let Some(field) = f.next() {
        if let (2, _) = field? {
            t.parameter()?;
        }
    }
    Ok(())
}

/// `InferTensorContents`: each element at its decoded size.
fn contents(m: &[u8], t: &mut Tally) -> Result<(), String> {
    let mut f = Fields(m);
    while let Some(field) = f.next() {
        let (number, w) = field?;
        let (n, size) = match number {
            1 => (elements(&w, None), 1),         // bool
            2 | 4 => (elements(&w, None), 4),     // int32, uint32
            3 | 5 => (elements(&w, None), 8),     // int64, uint64
            6 => (elements(&w, Some(4)), 4),      // fp32
            7 => (elements(&w, Some(8)), 8),      // fp64
            8 => (1, limits::BYTES_ELEMENT_COST), // one bytes element per occurrence
            _ => (0, 0),
        };
        t.elements(n, size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::ModelInferRequest;
    use crate::grpc::proto::{model_infer_request::InferInputTensor, InferTensorContents};
    use prost::Message;

    fn request(inputs: Vec<InferInputTensor>) -> Vec<u8> {
        ModelInferRequest {
            model_name: "resnet50".into(),
            inputs,
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn tensor(shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape,
            contents,
            ..Default::default()
        }
    }

    #[test]
    fn a_real_request_passes() {
        let fp32 = InferTensorContents {
            fp32_contents: vec![0.5; 3 * 224 * 224],
            ..Default::default()
        };
        let msg = request(vec![tensor(vec![1, 3, 224, 224], Some(fp32))]);
        check_infer(&msg).unwrap();
    }

    #[test]
    fn expansion_is_refused_before_decoding() {
        let many = request(vec![InferInputTensor::default(); limits::MAX_TENSORS + 1]);
        assert!(check_infer(&many).unwrap_err().contains("tensors"));
        let long = request(vec![tensor(vec![0; limits::MAX_RANK + 1], None)]);
        assert!(check_infer(&long).unwrap_err().contains("dimensions"));
        let empties = InferTensorContents {
            bytes_contents: vec![bytes::Bytes::new(); 100_000],
            ..Default::default()
        };
        let msg = request(vec![tensor(vec![100_000], Some(empties))]);
        assert!(check_infer(&msg).unwrap_err().contains("decoded"));
        let varints = InferTensorContents {
            int64_contents: vec![0; 100_000],
            ..Default::default()
        };
        let msg = request(vec![tensor(vec![100_000], Some(varints))]);
        assert!(check_infer(&msg).unwrap_err().contains("decoded"));
    }

    #[test]
    fn broken_wire_data_is_refused() {
        let msg = request(vec![tensor(vec![1], None)]);
        assert!(check_infer(&msg[..msg.len() - 1]).is_err());
        assert!(check_infer(&[0x0F]).is_err()); // wire type 7
        assert!(check_infer(&[0x08, 0xFF]).is_err()); // truncated varint
    }
}
