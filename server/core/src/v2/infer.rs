//! An inference of N inputs for one model, whatever the transport ([`serve`]): the pipeline,
//! the API key, the transport's parse against the model's signature, then N admissions, N queue
//! entries (which batch with everything else of their kind), one deadline (`REQUEST_TIMEOUT`
//! from the request's start), the answers back in order, the output, and Triton's statistics.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::stats::ImageCost;
use super::{Model, Output, Signature};
use crate::config::Preprocess;
use crate::error::ApiError;
use crate::infer::classify;
use crate::lifecycle::Pipeline;
use crate::service::App;

/// What a transport's parse gives: the inputs, the classification count asked, and how the
/// image model decodes JPEGs ([`super::preprocess`]).
pub type Parsed = (Vec<Bytes>, Option<usize>, Preprocess);

/// Serves one inference of `model` on `pipeline` that arrived at `started`; `parse` reads the
/// transport's request against the model's signature. The transport has checked the key (before
/// reading the request) and taken the pipeline. Records the outcome in the model's statistics;
/// the transport encodes the output.
pub async fn serve(
    app: &App,
    model: Model,
    pipeline: Arc<Pipeline>,
    started: Instant,
    parse: impl FnOnce(&Signature) -> Result<Parsed, ApiError>,
) -> Result<(Arc<Pipeline>, Output), ApiError> {
    let outcome = async {
        let sig = model.signature(&pipeline);
        let (inputs, k, mode) = parse(&sig)?;
        let rows = run(app, &pipeline, model, (inputs, mode), started).await?;
        let answered = Instant::now();
        let logits: Vec<&[f32]> = rows.iter().map(|r| r.logits.as_slice()).collect();
        let output = Output::new(&sig, pipeline.labels, &logits, k);
        let costs: Vec<ImageCost> = rows.iter().map(|r| r.cost).collect();
        Ok((pipeline, output, costs, answered.elapsed()))
    }
    .await;
    match outcome {
        Ok((pipeline, output, costs, took)) => {
            app.v2_stats.success(model, started.elapsed(), &costs, took);
            Ok((pipeline, output))
        }
        Err(e) => {
            app.v2_stats.fail(model, started.elapsed());
            Err(e)
        }
    }
}

/// One input's answer and its cost.
pub struct Row {
    /// The model's output row.
    pub logits: Vec<f32>,
    /// Where its time went.
    pub cost: ImageCost,
}

/// Runs `inputs` (encoded images, JPEGs decoded as `mode` says, or tensors, as `model` takes; at
/// most `max_batch_size`, as [`Signature::batch_of`] checked) and returns a row for each, or the
/// first failure (an input's `400` names its element).
pub async fn run(
    app: &App,
    pipeline: &Pipeline,
    model: Model,
    (inputs, mode): (Vec<Bytes>, Preprocess),
    started: Instant,
) -> Result<Vec<Row>, ApiError> {
    let permits = inputs
        .iter()
        .map(|_| app.admit())
        .collect::<Result<Vec<_>, _>>()?;
    let deadline = app.deadline(started);
    let kind = model.kind();
    let work = inputs
        .into_iter()
        .zip(permits)
        .map(|(input, permit)| classify(app, pipeline, (input, kind, mode), permit, deadline));
    let answers = app
        .by_deadline(started, async {
            Ok(futures_util::future::join_all(work).await)
        })
        .await?;
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
