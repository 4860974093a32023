//! A build with the CUDA engine asked for a GPU it does not have exits at start with a message
//! naming CUDA, without a panic (needs `--features cuda`; CI runs it on its GPU-less machine).
//! Where a GPU is present the server starts instead; the test then says so and stops it.

#![cfg(feature = "cuda")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn cuda_without_a_gpu_fails_at_start_naming_cuda() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inference-gateway"))
        .current_dir(common::repo())
        .env("MODEL_DEVICE", "cuda")
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            eprintln!("skipping: a GPU is present here and the server started on it");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "exited {status}");
    assert!(
        stderr.contains("CUDA") && stderr.contains("libcuda.so.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
