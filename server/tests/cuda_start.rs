//! A build with the CUDA engine asked for a GPU it does not have exits at start with a message
//! naming CUDA, without a panic (needs `--features cuda`; CI runs it on its GPU-less machine).
//! Whether a GPU is present is read from the machine (its NVIDIA device nodes), not guessed from
//! the server's behaviour: where one is, the test says so and skips; where none is, a server
//! still running after 120 s is a failure (it once passed as "a GPU is present").

#![cfg(feature = "cuda")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The NVIDIA driver's device nodes exist: a GPU is present (or at least its driver).
fn gpu_present() -> bool {
    ["/dev/nvidiactl", "/dev/nvidia0"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

/// Starts the server with `MODEL_DEVICE=cuda` and `env`; its exit status and stderr, or a
/// failure if it is still running after 120 s.
fn start_on_cuda(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inference-gateway"))
        .current_dir(common::repo())
        .env("MODEL_DEVICE", "cuda")
        .env("PORT", "0")
        .env("GRPC_PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
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
            panic!("no GPU here, and the server neither failed nor exited within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    (status, stderr)
}

#[test]
fn cuda_without_a_gpu_fails_at_start_naming_cuda() {
    if gpu_present() {
        eprintln!("skipping: this machine has a GPU (/dev/nvidia*); the test is for those without");
        return;
    }
    let (status, stderr) = start_on_cuda(&[]);
    assert!(!status.success(), "exited {status}");
    assert!(
        stderr.contains("CUDA") && stderr.contains("libcuda.so.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `GPU_ENGINE=tensorrt` and `onnxruntime-cuda` without a GPU (and with the CPU build of ONNX
/// Runtime): the server exits at start naming every library missing, without a panic, and never
/// serves on the CPU instead.
#[test]
fn onnx_runtime_gpu_engines_without_their_libraries_fail_at_start_naming_them() {
    if gpu_present() {
        eprintln!("skipping: this machine has a GPU (/dev/nvidia*); the test is for those without");
        return;
    }
    for (engine, libs) in [
        (
            "tensorrt",
            &[
                "libcuda.so.1",
                "libonnxruntime_providers_tensorrt.so",
                "libnvinfer.so.10",
            ][..],
        ),
        (
            "onnxruntime-cuda",
            &[
                "libcuda.so.1",
                "libonnxruntime_providers_cuda.so",
                "libcudnn.so.9",
            ][..],
        ),
    ] {
        let (status, stderr) = start_on_cuda(&[("GPU_ENGINE", engine)]);
        assert!(!status.success(), "{engine}: exited {status}");
        assert!(
            stderr.contains(&format!("GPU_ENGINE={engine}")),
            "{engine}: {stderr}"
        );
        for lib in libs {
            assert!(stderr.contains(lib), "{engine}: {lib} not named: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{engine}: {stderr}");
        assert!(
            !stderr.contains("ready"),
            "{engine}: it must not serve: {stderr}"
        );
    }
    // int8 is TensorRT's (or the CPU's): asked of another GPU engine, refused naming the
    // variable; asked of TensorRT without its libraries, refused naming them before any
    // minutes are spent quantising.
    let (status, stderr) = start_on_cuda(&[
        ("GPU_ENGINE", "onnxruntime-cuda"),
        ("MODEL_PRECISION", "int8"),
    ]);
    assert!(
        !status.success() && stderr.contains("MODEL_PRECISION"),
        "{stderr}"
    );
    let started = Instant::now();
    let (status, stderr) =
        start_on_cuda(&[("GPU_ENGINE", "tensorrt"), ("MODEL_PRECISION", "int8")]);
    assert!(
        !status.success() && stderr.contains("libnvinfer.so.10"),
        "{stderr}"
    );
    assert!(!stderr.contains("quantised"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "{stderr}");
    let (status, stderr) = start_on_cuda(&[("GPU_ENGINE", "tensorflow")]);
    assert!(
        !status.success() && stderr.contains("GPU_ENGINE"),
        "{stderr}"
    );
}
