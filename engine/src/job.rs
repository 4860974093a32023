//! Jobs: what the batcher hands a lane (a filled [`BatchBuffer`] and a completion callback),
//! what the callback gets back ([`BatchOutput`]), and how a lane builds its backend
//! ([`BackendFactory`]).

use std::sync::Arc;

use crate::{Backend, BatchBuffer, EngineError, StageTiming};

/// Builds the backend of lane `i`, on that lane's thread.
pub type BackendFactory = Arc<dyn Fn(usize) -> Result<Box<dyn Backend>, EngineError> + Send + Sync>;

/// The result of one batch, borrowed from the lane for the duration of the callback.
#[derive(Debug)]
pub struct BatchOutput<'a> {
    /// `batch.len() × classes` logits, row per image in slot order.
    pub logits: &'a [f32],
    /// Width of one row.
    pub classes: usize,
    /// Where the lane's time went.
    pub timings: &'a [StageTiming],
    /// Which lane ran it.
    pub lane: usize,
}

/// Completion callback: gets the buffer back (for reuse) and the outcome.
pub type JobDone = Box<dyn FnOnce(BatchBuffer, Result<BatchOutput<'_>, EngineError>) + Send>;

/// One batch for a lane.
pub struct Job {
    /// The images.
    pub batch: BatchBuffer,
    /// Called exactly once, on the lane thread, when the batch is done or failed.
    pub done: JobDone,
}
