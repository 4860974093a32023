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
//! What remains for a GPU session (see the project notes): uploading the folded weights, the
//! cuDNN descriptors and `ConvBiasActivationForward` per fused step, cuBLASLt for the classifier,
//! graph capture per bucket, and the lane backend that runs it.

pub mod fold;
pub mod network;
pub mod plan;
pub mod tune;
