//! An inference of N inputs for one model: N admissions, N queue entries (which batch with
//! everything else of their kind), one deadline (`REQUEST_TIMEOUT` from the request's start),
//! and the answers back in order.

use std::time::Instant;

use bytes::Bytes;

use super::stats::ImageCost;
use super::{bad, Model};
use crate::error::ApiError;
use crate::infer::classify;
use crate::{App, Pipeline};

/// One input's answer and its cost.
pub struct Row {
    /// The model's output row.
    pub logits: Vec<f32>,
    /// Where its time went.
    pub cost: ImageCost,
}

/// Runs `inputs` (encoded images or tensors, as `model` takes) and returns a row for each, or
/// the first failure (an input's `400` names its element).
pub async fn run(
    app: &App,
    pipeline: &Pipeline,
    model: Model,
    inputs: Vec<Bytes>,
    started: Instant,
) -> Result<Vec<Row>, ApiError> {
    let max = app.config.batching.max_batch_size;
    if inputs.len() > max {
        let n = inputs.len();
        return Err(bad(format!("{n} inputs exceed max_batch_size {max}")));
    }
    let mut permits = Vec::with_capacity(inputs.len());
    for _ in &inputs {
        let limit = app.admission.limit();
        permits.push(
            app.admission
                .try_admit()
                .ok_or(ApiError::QueueFull(limit))?,
        );
    }
    let timeout = app.config.http.request_timeout;
    let deadline = started + timeout;
    let kind = model.kind();
    let work = inputs
        .into_iter()
        .zip(permits)
        .map(|(input, permit)| classify(app, pipeline, (input, kind), permit, deadline));
    let answers = tokio::time::timeout_at(deadline.into(), futures_util::future::join_all(work))
        .await
        .map_err(|_| ApiError::Deadline(timeout))?;
    let mut rows = Vec::with_capacity(answers.len());
    for (i, a) in answers.into_iter().enumerate() {
        let c = a.map_err(|e| match e {
            ApiError::BadRequest { code, message } => ApiError::BadRequest {
                code,
                message: format!("input element {i}: {message}"),
            },
            other => other,
        })?;
        let cost = ImageCost {
            queue: c.out.queue_wait,
            input: c.decode + c.preprocess,
            infer: c.out.stages.iter().map(|s| s.duration).sum(),
            batch: c.out.batch,
        };
        rows.push(Row {
            logits: c.out.logits,
            cost,
        });
    }
    Ok(rows)
}
