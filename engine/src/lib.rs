//! The inference engine: batches of preprocessed images in, logits out.
//!
//! Data flow: the server's batcher fills a [`BatchBuffer`] (u8 HWC 224×224×3 images, or f32
//! NCHW tensors the client normalised itself: one [`InputKind`] per batch, one slot each,
//! allocated once per lane and reused) and hands it with a completion callback to one of
//! the [`Lanes`]. Each lane is a dedicated OS thread that owns one [`Backend`] (backends need not
//! be `Send`: a GPU backend's handles live on its thread). The backend normalises the images
//! itself (on the CPU one vectorisable pass to f32 NCHW; on the GPU, one kernel before the
//! network; tensors are only converted),
//! runs the model and writes `[n, classes]` logits. The callback gets the buffer back together
//! with the logits or an [`EngineError`], which is `Clone` so one failure reaches every request
//! of the batch.
//!
//! This crate knows nothing of HTTP, metrics exporters or the environment: it reports stage
//! timings and the caller decides what to do with them.

mod batch;
mod cpu;
mod error;
pub mod gpu;
mod health;
mod job;
mod lane;
mod onnx;
pub mod probe;
mod runtime;
mod supervise;
#[cfg(test)]
mod testing;

use std::time::Duration;

pub use batch::{
    tensors_to_f32, BatchBuffer, HostMemory, InputKind, Normalization, IMAGE_BYTES, IMAGE_CHANNELS,
    IMAGE_SIDE, SLOT_BYTES, TENSOR_BYTES,
};
pub use cpu::CpuBackend;
pub use error::EngineError;
pub use health::Health;
pub use job::{BackendFactory, BatchOutput, Job, JobDone};
pub use lane::Lanes;
#[cfg(feature = "cuda")]
pub use onnx::probe as probe_providers;
pub use onnx::{OnnxBackend, Provider, TensorRtOptions};
pub use runtime::{init_onnx_runtime, CpuConfig, ModelSource};

/// Time spent in one named stage of executing a batch (`normalize`, `h2d`, `compute`, `d2h`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageTiming {
    /// Stage name, used as a metric label by the caller.
    pub stage: &'static str,
    /// Wall time of the stage for the whole batch.
    pub duration: Duration,
}

/// A model executor owned by one lane thread.
pub trait Backend {
    /// Runs the model on the `batch.len()` images of `batch`, writing `batch.len() × classes()`
    /// logits into `logits` (cleared first) and the stage timings into `timings` (cleared first).
    fn run(
        &mut self,
        batch: &BatchBuffer,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError>;

    /// Width of one output row (1000 for ImageNet classifiers).
    fn classes(&self) -> usize;

    /// Allocates a batch buffer for up to `capacity` images in the memory this backend reads
    /// fastest (plain heap on the CPU; pinned host memory on the GPU).
    fn alloc_batch(&self, capacity: usize) -> BatchBuffer {
        BatchBuffer::new(capacity)
    }
}

/// Batch sizes worth running once before serving: powers of two up to `max`, and `max` itself.
pub fn warmup_batch_sizes(max: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2))
        .take_while(|&s| s < max)
        .collect();
    if max > 0 {
        sizes.push(max);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_sizes_cover_powers_of_two_and_max() {
        assert_eq!(warmup_batch_sizes(1), vec![1]);
        assert_eq!(warmup_batch_sizes(8), vec![1, 2, 4, 8]);
        assert_eq!(warmup_batch_sizes(12), vec![1, 2, 4, 8, 12]);
        assert!(warmup_batch_sizes(0).is_empty());
    }
}
