//! Fuzzes the gRPC `ModelInfer` message as the server reads it: the wire scan that refuses
//! messages which would expand in memory, then prost, then the input cut, for both models.
//! Every input must give a request or a 4xx-class error: no panic, no unbounded allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = gateway::fuzzing::grpc_infer(data) {
        let status = gateway::fuzzing::http_status(&e);
        assert!((400..500).contains(&status), "{e:?} answered {status}");
    }
});
