//! The GPU engine's build step, the part a TensorRT-like builder does before any kernel runs,
//! all plain CPU code (tested in CI without a GPU):
//!
//! 1. [`network`]: the model as a list of operations with fp32 weights (the `models` crate turns
//!    an ONNX ResNet into this; the engine knows nothing of ONNX).
//! 2. [`fold`]: BatchNorm folded into each convolution in fp32, filters re-laid out from KCRS to
//!    KRSC (NHWC), input channels padded to a tensor-core-friendly count, converted to fp16.
//! 3. [`plan`]: shapes of every activation, conv + bias + residual + ReLU fused into one step,
//!    activation buffers reused once their last reader has run, and the batch-size buckets
//!    (one CUDA graph each) a batch is rounded up to.
//! 4. [`tune`]: the on-disk cache of the fastest convolution algorithm per GPU, cuDNN version and
//!    layer shape, so autotuning runs once per machine.
//!
//! 5. [`model`]: the plan with every weight in one 256-byte-aligned arena ([`layout`]).
//! 6. [`exec`]: the executor, written once against the device-operations interface
//!    ([`device`]), and [`exec::PlanBackend`], the lane backend around it. Two devices implement
//!    the interface: cuDNN/cuBLASLt/NVRTC through cudarc (`cuda`, feature `cuda`) and the CPU
//!    twin ([`twin`]), which runs the same plan, slots, buckets and fp16 weights with cuDNN's
//!    arithmetic so that everything but the library calls is proven without a GPU.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod exec;
pub mod fold;
pub mod layout;
pub mod model;
pub mod network;
pub mod plan;
pub mod tune;
pub mod twin;

#[cfg(test)]
mod tests;

/// The normalisation kernel's per-channel affine map for `norm`.
pub fn affine_of(norm: crate::Normalization) -> kernels::Affine {
    kernels::Affine::from_mean_std(norm.mean, norm.std)
}
