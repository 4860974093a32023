//! What the GPU providers need, loaded before ONNX Runtime is asked for them: ONNX Runtime
//! aborts inside a provider whose libraries are missing, so the server names them first.

use crate::EngineError;

/// Checks, before ONNX Runtime tries, that every library the CUDA provider (and with
/// `tensorrt`, the TensorRT provider) needs can be loaded: the driver, the provider's plugins next to `ort_dylib` (which must be onnxruntime-gpu's; loading
/// a plugin also loads what it links, and the loader names the first missing), and the NVIDIA
/// libraries by family, any major version onnxruntime-gpu builds against (CUDA 12 or 13). The
/// error names each one missing.
pub fn probe(tensorrt: bool, ort_dylib: &std::path::Path) -> Result<(), EngineError> {
    let dir = ort_dylib.parent().unwrap_or(std::path::Path::new("."));
    let plugin = |name: &str| vec![dir.join(name).display().to_string()];
    let any = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut needed = vec![
        ("the NVIDIA driver", any(&["libcuda.so.1"])),
        (
            "onnxruntime-gpu",
            plugin("libonnxruntime_providers_shared.so"),
        ),
        (
            "onnxruntime-gpu's CUDA provider",
            plugin("libonnxruntime_providers_cuda.so"),
        ),
        ("cuDNN 9", any(&["libcudnn.so.9"])),
        ("cuBLAS", any(&["libcublasLt.so.13", "libcublasLt.so.12"])),
        (
            "the CUDA runtime",
            any(&["libcudart.so.13", "libcudart.so.12"]),
        ),
    ];
    if tensorrt {
        needed.push((
            "onnxruntime-gpu's TensorRT provider",
            plugin("libonnxruntime_providers_tensorrt.so"),
        ));
        needed.push(("TensorRT 10", any(&["libnvinfer.so.10"])));
        needed.push(("TensorRT 10's ONNX parser", any(&["libnvonnxparser.so.10"])));
    }
    let missing: Vec<String> = needed
        .into_iter()
        .filter_map(|(what, names)| {
            let mut why = String::new();
            for name in &names {
                // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
                // and ONNX Runtime's own libraries, which ONNX Runtime loads next in any case.
                match unsafe { libloading::Library::new(name) } {
                    Ok(_) => return None,
                    Err(e) => why = e.to_string(),
                }
            }
            // A plugin that is there but does not load: the loader says what it lacks.
            let present = names.iter().any(|n| std::path::Path::new(n).exists());
            let names = names.join(" or ");
            Some(match present {
                true => format!("{names} ({what}: {why})"),
                false => format!("{names} ({what})"),
            })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EngineError::DeviceUnavailable(
        format!(
            "GPU_ENGINE={} cannot start: missing {} (ORT_DYLIB_PATH must be onnxruntime-gpu's \
             library, with its provider plugins beside it, and the NVIDIA libraries on \
             LD_LIBRARY_PATH; docs/GPU.md)",
            if tensorrt {
                "tensorrt"
            } else {
                "onnxruntime-cuda"
            },
            missing.join(", ")
        )
        .into(),
    ))
}
