//! Between decoding and the engine: [`admission`] counts images in the system against
//! `MAX_QUEUE_SIZE` (no room → 429 at once), [`queue`] holds the decoded images in arrival order
//! and hands out batches, and the [`batcher`] thread decides when a batch starts on which lane and
//! copies its images straight into the lane's batch buffer.

pub mod admission;
pub mod batcher;
pub mod queue;
