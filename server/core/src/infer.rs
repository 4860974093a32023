//! One input's way from any transport to its logits: an encoded image goes through the decode
//! pool first; a tensor goes straight in. Then the batcher's queue, a batch, and the logits
//! back over a oneshot. `/predict` and both KServe v2 transports share it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::TrySendError;
use engine::InputKind;
use tokio::sync::oneshot;
use tracing::Span;

use crate::batching::admission::Permit;
use crate::batching::queue::{InferOutput, Pending};
use crate::error::ApiError;
use crate::imaging::pool::PoolError;
use crate::imaging::{self, Preprocess};
use crate::lifecycle::Pipeline;
use crate::service::App;
use crate::telemetry::trace::spans;

/// What one input became and what its preparation cost.
pub struct Classified {
    /// The engine's answer.
    pub out: InferOutput,
    /// Decoding (zero for tensors).
    pub decode: Duration,
    /// Resizing and cropping (zero for tensors).
    pub preprocess: Duration,
    /// The DCT scale a JPEG was decoded at (1: full size; 1 for everything else).
    pub scale: u8,
}

/// One encoded image → decode pool (JPEGs as `mode` says) → batcher → logits. `permit` is its
/// admission place; `deadline` bounds it.
pub async fn classify_image(
    app: &App,
    pipeline: &Pipeline,
    (image, mode): (Bytes, Preprocess),
    permit: Permit,
    deadline: Instant,
) -> Result<Classified, ApiError> {
    let max_pixels = app.config.http.max_image_pixels;
    let pre = app
        .decode
        .run(move || imaging::preprocess(&image, max_pixels, mode))
        .await
        .map_err(|e| match e {
            PoolError::Busy => ApiError::DecodeBusy,
            PoolError::Panicked => {
                tracing::error!("an image decoder panicked; the request gets 400");
                ApiError::bad_request("invalid_image", "the image could not be decoded")
            }
        })??;
    let out = submit(
        pipeline,
        pre.pixels.into(),
        InputKind::Image,
        permit,
        deadline,
    )
    .await?;
    Ok(Classified {
        out,
        decode: pre.decode,
        preprocess: pre.preprocess,
        scale: pre.scale,
    })
}

/// One input of `kind` that needs no preparation (a tensor, or an image already preprocessed)
/// → batcher → logits.
pub async fn submit(
    pipeline: &Pipeline,
    input: Bytes,
    kind: InputKind,
    permit: Permit,
    deadline: Instant,
) -> Result<InferOutput, ApiError> {
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        input,
        kind,
        enqueued: Instant::now(),
        deadline,
        reply: tx,
        permit,
        link: spans::link(&Span::current()),
        queue_span: spans::queue(),
    };
    pipeline.requests.try_send(pending).map_err(|e| {
        let died = pipeline
            .batcher_died
            .load(std::sync::atomic::Ordering::Acquire);
        not_sent(e, died, pipeline.requests.capacity().unwrap_or(0))
    })?;
    rx.await
        .map_err(|_| ApiError::Engine(engine::EngineError::ShutDown))?
        .map_err(ApiError::Engine)
}

/// Why an admitted input could not join the batcher's queue of `capacity`: it is full (the
/// admission count should prevent it), or the batcher has stopped, because it died or because
/// its pipeline was retired.
fn not_sent<T>(e: TrySendError<T>, batcher_died: bool, capacity: usize) -> ApiError {
    match e {
        TrySendError::Full(_) => ApiError::QueueFull(capacity),
        TrySendError::Disconnected(_) if batcher_died => {
            ApiError::NotReady("the batcher thread died; restart the process")
        }
        TrySendError::Disconnected(_) => ApiError::NotReady("draining"),
    }
}

/// Any input of `kind`: images through [`classify_image`] (JPEGs as `mode` says), tensors
/// through [`submit`].
pub async fn classify(
    app: &App,
    pipeline: &Pipeline,
    (input, kind, mode): (Bytes, InputKind, Preprocess),
    permit: Permit,
    deadline: Instant,
) -> Result<Classified, ApiError> {
    match kind {
        InputKind::Image => classify_image(app, pipeline, (input, mode), permit, deadline).await,
        InputKind::Tensor => Ok(Classified {
            out: submit(pipeline, input, kind, permit, deadline).await?,
            decode: Duration::ZERO,
            preprocess: Duration::ZERO,
            scale: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_send_says_why() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        tx.try_send(1).unwrap();
        let full = not_sent(tx.try_send(2).unwrap_err(), false, 1);
        assert!(matches!(full, ApiError::QueueFull(1)), "{full}");
        drop(rx);
        let dead = not_sent(tx.try_send(3).unwrap_err(), true, 1);
        assert!(dead.to_string().contains("batcher thread died"), "{dead}");
        let retired = not_sent(tx.try_send(4).unwrap_err(), false, 1);
        assert!(retired.to_string().contains("draining"), "{retired}");
    }
}
