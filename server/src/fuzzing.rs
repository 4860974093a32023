//! Entry points for the fuzz targets (`fuzz/`): the KServe v2 request parsers of both doors,
//! run as the server runs them, against both models' signatures, with no engine behind them.
//! Not an API.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use prost::Message;

use crate::error::ApiError;
use crate::grpc::{convert, proto, wire};
use crate::http::kserve;
use crate::v2::{Signature, TensorSpec};

/// The two served signatures (resnet50's 1000 classes) at `max_batch`.
fn signatures(max_batch: usize) -> [Signature; 2] {
    let output = TensorSpec {
        name: "logits".into(),
        datatype: "FP32",
        dims: vec![1000],
    };
    let tensor = TensorSpec {
        name: "input".into(),
        datatype: "FP32",
        dims: vec![3, 224, 224],
    };
    let image = TensorSpec {
        name: "IMAGE".into(),
        datatype: "BYTES",
        dims: vec![1],
    };
    [tensor, image].map(|input| Signature {
        input,
        output: output.clone(),
        max_batch,
    })
}

/// [`signatures`], for unit tests of the parsers.
#[cfg(test)]
pub(crate) fn signatures_for_tests(max_batch: usize) -> [Signature; 2] {
    signatures(max_batch)
}

/// An HTTP v2 infer body (its JSON part `json_len` bytes long when given, then the binary
/// section) through the parse and each model's input cut.
pub fn v2_http(body: Bytes, json_len: Option<usize>) -> Result<(), ApiError> {
    let mut headers = HeaderMap::new();
    if let Some(n) = json_len {
        headers.insert("inference-header-content-length", HeaderValue::from(n));
    }
    for sig in signatures(8) {
        let (mut header, binary) = kserve::split_body(&headers, body.clone())?;
        kserve::parse(&sig, &mut header, binary, Default::default())?;
    }
    Ok(())
}

/// A gRPC `ModelInfer` message through the gate's wire scan, prost, and each model's input cut.
pub fn grpc_infer(message: &[u8]) -> Result<(), ApiError> {
    wire::check_infer(message).map_err(crate::v2::bad)?;
    let decoded = proto::ModelInferRequest::decode(message)
        .map_err(|e| crate::v2::bad(format!("not a ModelInferRequest: {e}")))?;
    for sig in signatures(8) {
        convert::parse(&sig, &mut decoded.clone(), Default::default())?;
    }
    Ok(())
}

/// The HTTP status a refusal is answered with (the fuzz targets check it is a 4xx).
pub fn http_status(e: &ApiError) -> u16 {
    crate::http::status::status(e).as_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_points_accept_a_good_request_and_refuse_a_bad_one() {
        let json = br#"{"inputs":[{"name":"IMAGE","datatype":"BYTES","shape":[1],"data":["x"]}]}"#;
        // The tensor model refuses an image input: a 400, not a panic.
        assert_eq!(
            http_status(&v2_http(Bytes::from_static(json), None).unwrap_err()),
            400
        );
        assert_eq!(
            http_status(&v2_http(Bytes::from_static(b"{"), None).unwrap_err()),
            400
        );
        assert_eq!(
            http_status(&grpc_infer(&[0x2A, 0x00, 0xFF]).unwrap_err()),
            400
        );
    }
}
