//! `multipart/form-data` for a body already bounded by `MAX_BODY_BYTES`: the part named `file`
//! (or, failing that, the only part), through `multer`.

use std::convert::Infallible;

use bytes::Bytes;

use crate::error::ApiError;

/// Most parts we look at; more is a malformed or hostile request.
const MAX_PARTS: usize = 16;

/// The `boundary` parameter of a multipart content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .skip(1)
        .find_map(|param| {
            let (k, v) = param.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// The image part of `body`: the part named `file`, or the only part when there is one. Parsed by
/// `multer` (delimiters only at line starts, headers per RFC 7578) within explicit limits: the
/// whole body and any one part at most the body's own length (itself bounded by
/// `MAX_BODY_BYTES`), at most [`MAX_PARTS`] parts.
pub fn image_part(body: Bytes, boundary: &str) -> Result<Bytes, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_multipart", m);
    let limit = (body.len() as u64).max(1);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(limit)
            .per_field(limit),
    );
    let chunk = futures_util::stream::once(std::future::ready(Ok::<Bytes, Infallible>(body)));
    let mut form = multer::Multipart::with_constraints(chunk, boundary.to_string(), constraints);
    // The whole body is already in memory: every await below completes at once.
    futures_executor::block_on(async move {
        let (mut files, mut other, mut parts) = (Vec::new(), None, 0usize);
        while let Some(field) = form.next_field().await.map_err(|e| bad(e.to_string()))? {
            parts += 1;
            if parts > MAX_PARTS {
                return Err(bad("too many parts in the multipart body".into()));
            }
            let is_file = field.name() == Some("file");
            let data = field.bytes().await.map_err(|e| bad(e.to_string()))?;
            if is_file {
                files.push(data);
            } else {
                other = Some(data);
            }
        }
        match (files.len(), parts) {
            (1, _) => Ok(files.remove(0)),
            (0, 1) => Ok(other.unwrap_or_default()),
            (0, 0) => Err(bad("the multipart body has no parts".into())),
            (0, _) => Err(bad(
                "no part named 'file' (send the image as -F file=@image.jpg)".into(),
            )),
            _ => Err(bad(
                "send one image per request: several parts are named 'file'".into(),
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, data) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"a.jpg\"\r\n")
                    .as_bytes(),
            );
            b.extend_from_slice(b"Content-Type: image/jpeg\r\n\r\n");
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn finds_the_file_part() {
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            boundary("multipart/form-data; BOUNDARY=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        let b = body(&[("meta", b"x"), ("file", b"\xff\xd8binary\r\n--notit--XyZ")]);
        let part = image_part(b.into(), "XyZ").unwrap();
        assert_eq!(
            &part[..],
            b"\xff\xd8binary\r\n--notit--XyZ",
            "a delimiter counts only at a line start"
        );
        let single = body(&[("image", b"abc")]);
        assert_eq!(&image_part(single.into(), "XyZ").unwrap()[..], b"abc");
    }

    #[test]
    fn refuses_malformed_bodies() {
        let two = body(&[("file", b"a"), ("file", b"b")]);
        for (b, what) in [
            (two, "two files"),
            (body(&[("a", b"1"), ("b", b"2")]), "no file part"),
            (b"no boundary here".to_vec(), "no boundary"),
            (
                b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc".to_vec(),
                "unterminated",
            ),
            (b"--XyZ\r\nno header end".to_vec(), "no header end"),
        ] {
            let err = image_part(b.into(), "XyZ").unwrap_err();
            assert_eq!(crate::http::status::status(&err).as_u16(), 400, "{what}");
        }
        let many: Vec<(&str, &[u8])> = vec![("x", b"1"); 40];
        assert!(image_part(body(&many).into(), "XyZ").is_err());
    }

    #[test]
    fn an_empty_part_right_after_its_headers_is_refused_not_a_panic() {
        // Found by the fuzzer: the header block's CRLF CRLF is directly followed by the delimiter.
        let body: &[u8] = b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n--B--\r\n";
        match image_part(Bytes::from_static(body), "B") {
            Ok(part) => assert!(part.is_empty()),
            Err(e) => assert_eq!(crate::http::status::status(&e).as_u16(), 400),
        }
        let body: &[u8] =
            b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--B--\r\n";
        assert!(image_part(Bytes::from_static(body), "B")
            .unwrap()
            .is_empty());
    }
}
