//! CUDA kernels for the GPU engine, compiled at run time with NVRTC, and their CPU references.
//!
//! Data flow on the GPU: the batcher's u8 HWC images (224×224×3, in a pinned buffer) are copied
//! to the device; [`NORMALIZE_CU`] turns them into the first layer's fp16 NHWC input, normalised
//! and padded to 8 channels (client-made f32 NCHW tensors take the same route through
//! `tensor_f32_nchw_to_f16_nhwc`, converted and padded only); after the network, [`SOFTMAX_TOPK_CU`] reduces each row of logits
//! to its k most probable classes, so only k pairs per image cross back over PCIe.
//!
//! [`reference`] computes exactly what each kernel computes, on the CPU: it is what the GPU
//! results are tested against, and what the engine's CPU path is checked against. The launch
//! wrappers ([`launch`], feature `cuda`) check every size before an `unsafe` launch.

pub mod reference;

#[cfg(feature = "cuda")]
pub mod launch;

/// CUDA C of the input kernels: `normalize_u8_hwc_to_f16_nhwc` (images) and
/// `tensor_f32_nchw_to_f16_nhwc` (tensors the client normalised).
pub const NORMALIZE_CU: &str = include_str!("../cuda/normalize.cu");
/// CUDA C of the `softmax_topk` kernel.
pub const SOFTMAX_TOPK_CU: &str = include_str!("../cuda/softmax_topk.cu");
/// CUDA C of `max_pool_f16_nhwc` and `avg_pool_f16_to_f32`.
pub const POOL_CU: &str = include_str!("../cuda/pool.cu");
/// Every kernel source with the kernels it defines (what NVRTC compiles and CI checks).
pub const SOURCES: [(&str, &str, &[&str]); 3] = [
    (
        "normalize.cu",
        NORMALIZE_CU,
        &[
            "normalize_u8_hwc_to_f16_nhwc",
            "tensor_f32_nchw_to_f16_nhwc",
        ],
    ),
    ("softmax_topk.cu", SOFTMAX_TOPK_CU, &["softmax_topk"]),
    (
        "pool.cu",
        POOL_CU,
        &["max_pool_f16_nhwc", "avg_pool_f16_to_f32"],
    ),
];
/// Threads per block of `softmax_topk` (a power of two; the kernel's reductions rely on it).
pub const SOFTMAX_THREADS: u32 = 256;
/// Channels of the first layer's input: RGB padded with zeros to a tensor-core-friendly 8.
pub const PADDED_CHANNELS: usize = 8;

/// `x * scale + bias` per channel, i.e. `(x / 255 - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Per channel (R, G, B).
    pub scale: [f32; 3],
    /// Per channel (R, G, B).
    pub bias: [f32; 3],
}

impl Affine {
    /// From the mean and standard deviation of inputs scaled to 0–1 (ImageNet's, for ResNet50).
    pub fn from_mean_std(mean: [f32; 3], std: [f32; 3]) -> Self {
        Affine {
            scale: std::array::from_fn(|c| 1.0 / (255.0 * std[c])),
            bias: std::array::from_fn(|c| -mean[c] / std[c]),
        }
    }
}

/// Why a kernel could not be compiled or launched.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// NVRTC refused the source (the log says why).
    #[error("NVRTC could not compile {kernel}: {log}")]
    Compile {
        /// Which kernel.
        kernel: &'static str,
        /// The compiler's log.
        log: String,
    },
    /// A buffer is too small for the launch, or a size is out of range.
    #[error("bad launch of {kernel}: {reason}")]
    Launch {
        /// Which kernel.
        kernel: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The CUDA driver reported an error.
    #[error("CUDA driver error in {kernel}: {message}")]
    Driver {
        /// Which kernel (or step).
        kernel: &'static str,
        /// The driver's message.
        message: String,
        /// The driver's `CUresult` code (700 is an illegal address, which poisons the context).
        code: u32,
    },
}
