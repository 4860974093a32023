//! Fuzzes the `/predict` intake path (content type → raw or multipart → decode → orient →
//! resize/crop) through the functions `/predict` calls, in its order (inline, not on the decode
//! pool). The first input byte picks the content type (its low bits) and the JPEG decoding
//! (`exact` or `draft`, bit 7); the rest is the body. Every input must give either a 224×224×3 image or a 4xx error: no panic, no
//! 5xx, no hang, no unbounded allocation (the pixel limit is checked from the header).

#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 4] = [
    "image/jpeg",
    "multipart/form-data; boundary=fuzzboundary",
    "image/png",
    "application/octet-stream",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let mode = if selector & 0x80 == 0 {
        gateway::imaging::Preprocess::Exact
    } else {
        gateway::imaging::Preprocess::Draft
    };
    let body = bytes::Bytes::copy_from_slice(body);
    match gateway::intake::decode_request(content_type, body, 4_000_000, mode) {
        Ok(image) => assert_eq!(image.pixels.len(), 224 * 224 * 3),
        Err(e) => {
            let status = gateway::fuzzing::http_status(&e);
            assert!((400..500).contains(&status), "{e:?} answered {status}");
        }
    }
});
