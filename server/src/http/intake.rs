//! What a `/predict` body becomes before it is batched: the content type picks raw bytes or a
//! multipart part, and those bytes are decoded, oriented, resized and cropped. Pure functions,
//! no network and no state, so the fuzz target (`fuzz/`) drives exactly the server's path.

use bytes::Bytes;

use crate::error::ApiError;
use crate::http::multipart;
use crate::imaging;

/// How the image arrives.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// The body is the image.
    Raw,
    /// The image is the `file` part of a multipart body with this boundary.
    Multipart(String),
}

/// The body kind for a `Content-Type` value (empty when absent).
pub fn body_kind(content_type: &str) -> Result<BodyKind, ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "multipart/form-data" {
        let boundary = multipart::boundary(content_type).ok_or_else(|| {
            ApiError::bad_request("invalid_multipart", "multipart/form-data needs a boundary")
        })?;
        Ok(BodyKind::Multipart(boundary))
    } else if essence.starts_with("image/") || essence == "application/octet-stream" {
        Ok(BodyKind::Raw)
    } else {
        Err(ApiError::Unsupported {
            code: "unsupported_media_type",
            message: format!(
                "content type '{content_type}' is not accepted: send multipart/form-data with the \
                 image in field 'file', or the raw image with an image/* content type"
            ),
        })
    }
}

/// The image bytes of `body`.
pub fn image_bytes(body: Bytes, kind: &BodyKind) -> Result<Bytes, ApiError> {
    match kind {
        BodyKind::Raw => Ok(body),
        BodyKind::Multipart(boundary) => multipart::image_part(body, boundary),
    }
}

/// The whole path from content type and body to the network input: the functions `/predict`
/// calls, in its order, run inline rather than on the decode pool (whose panic catching and
/// busy refusal are left out). The fuzz target's entry point.
pub fn decode_request(
    content_type: &str,
    body: Bytes,
    max_pixels: u64,
    mode: imaging::Preprocess,
) -> Result<imaging::Preprocessed, ApiError> {
    let kind = body_kind(content_type)?;
    let image = image_bytes(body, &kind)?;
    Ok(imaging::preprocess(&image, max_pixels, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_route_to_the_right_reader() {
        assert_eq!(body_kind("image/jpeg").unwrap(), BodyKind::Raw);
        assert_eq!(
            body_kind("application/octet-stream").unwrap(),
            BodyKind::Raw
        );
        assert_eq!(
            body_kind("multipart/form-data; boundary=abc").unwrap(),
            BodyKind::Multipart("abc".into())
        );
        assert_eq!(
            crate::http::status::status(&body_kind("multipart/form-data").unwrap_err()),
            400
        );
        assert_eq!(
            crate::http::status::status(&body_kind("application/json").unwrap_err()),
            415
        );
        assert_eq!(
            crate::http::status::status(&body_kind("").unwrap_err()),
            415
        );
    }

    #[test]
    fn the_whole_path_refuses_bad_input_with_4xx() {
        let ct = "multipart/form-data; boundary=b";
        let err = decode_request(
            ct,
            Bytes::from_static(b"--b\r\n\r\n"),
            1 << 20,
            Default::default(),
        )
        .unwrap_err();
        assert_eq!(crate::http::status::status(&err), 400);
        let err = decode_request(
            "image/png",
            Bytes::from_static(b"\x89PNG"),
            1 << 20,
            Default::default(),
        )
        .unwrap_err();
        assert_eq!(crate::http::status::status(&err), 400);
    }
}
