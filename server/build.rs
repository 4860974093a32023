//! Compiles Triton's gRPC protocol (`proto/`, vendored with its BSD-3 licence) into Rust with
//! `protox` (a Rust protobuf compiler: no `protoc` needed) and `tonic-prost-build`. Byte
//! fields are `bytes::Bytes`, so raw tensor contents are sliced, never copied.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/grpc_service.proto", "proto/model_config.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let files = protox::compile(["grpc_service.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .bytes(".")
        .compile_fds(files)?;
    Ok(())
}
