//! A small `multipart/form-data` reader for a body already bounded by `MAX_BODY_BYTES`:
//! finds the part named `file` (or, failing that, the only part) and returns its bytes.

use memchr::memmem;

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

/// The bytes of the image part of `body`.
pub fn image_part<'a>(body: &'a [u8], boundary: &str) -> Result<&'a [u8], ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_multipart", m.to_string());
    let delim = format!("--{boundary}");
    let finder = memmem::Finder::new(delim.as_bytes());
    let mut pos = finder
        .find(body)
        .ok_or_else(|| bad("the multipart body has no boundary line"))?
        + delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            break; // closing delimiter
        }
        if parts.len() == MAX_PARTS {
            return Err(bad("too many parts in the multipart body"));
        }
        let start = pos
            + line_end(&body[pos..])
                .ok_or_else(|| bad("a multipart boundary line is malformed"))?;
        let head_len = memmem::find(&body[start..], b"\r\n\r\n")
            .ok_or_else(|| bad("a part has no header end"))?;
        let headers = &body[start..start + head_len];
        let content = start + head_len + 4;
        let end = finder
            .find(&body[content..])
            .map(|i| content + i)
            .ok_or_else(|| bad("the multipart body is not terminated"))?;
        // The CRLF before the delimiter belongs to it, unless it is the header block's own
        // (an empty part whose delimiter follows the blank line at once).
        let data_end = if end >= content + 2 && body[..end].ends_with(b"\r\n") {
            end - 2
        } else {
            end
        };
        parts.push((field_name(headers), &body[content..data_end]));
        pos = end + delim.len();
    }
    let files: Vec<_> = parts
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("file"))
        .collect();
    match (files.as_slice(), parts.as_slice()) {
        ([(_, data)], _) => Ok(data),
        ([], [(_, data)]) => Ok(data),
        ([], _) => Err(bad(
            "no part named 'file' (send the image as -F file=@image.jpg)",
        )),
        _ => Err(bad(
            "send one image per request: several parts are named 'file'",
        )),
    }
}

/// Offset just past the CRLF that ends the current line.
fn line_end(b: &[u8]) -> Option<usize> {
    memmem::find(b, b"\r\n").map(|i| i + 2)
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."`.
fn field_name(headers: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(headers).ok()?;
    let line = text.lines().find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
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
        let b = body(&[("meta", b"x"), ("file", b"\xff\xd8binary\r\n--notit")]);
        assert_eq!(image_part(&b, "XyZ").unwrap(), b"\xff\xd8binary\r\n--notit");
        let single = body(&[("image", b"abc")]);
        assert_eq!(image_part(&single, "XyZ").unwrap(), b"abc");
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
            let err = image_part(&b, "XyZ").unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{what}");
        }
        let many: Vec<(&str, &[u8])> = vec![("x", b"1"); 40];
        assert!(image_part(&body(&many), "XyZ").is_err());
    }

    #[test]
    fn an_empty_part_right_after_its_headers_is_refused_not_a_panic() {
        // Found by the fuzzer: the header block's CRLF CRLF is directly followed by the delimiter.
        let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n--B--\r\n";
        assert_eq!(image_part(body, "B").unwrap(), b"");
        let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--B--\r\n";
        assert_eq!(image_part(body, "B").unwrap(), b"");
    }
}
