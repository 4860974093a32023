//! Fuzzes the KServe v2 HTTP infer body (JSON, bounded types; the binary tensor extension) as
//! the server parses it, for both models. The first input byte, when below 0x80, makes the JSON
//! part that many bytes long (`Inference-Header-Content-Length`); the rest is the body. Every
//! input must give a request or a 4xx error: no panic, no 5xx, no unbounded allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let json_len = (selector < 0x80).then_some(usize::from(selector));
    if let Err(e) = gateway::fuzzing::v2_http(bytes::Bytes::copy_from_slice(body), json_len) {
        let status = gateway::fuzzing::http_status(&e);
        assert!((400..500).contains(&status), "{e:?} answered {status}");
    }
});
