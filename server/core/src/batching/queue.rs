//! The batcher's queue of admitted inputs (preprocessed images, or tensors a client made) with
//! the rules for taking a batch: one input kind per batch, the oldest input's; within it oldest
//! first, passing over inputs of the other kind (so it is not a plain FIFO: an input of the
//! other kind may wait while younger ones of the batch's kind go).
//! Owned by the batcher thread alone; no locks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::batching::admission::Permit;

/// What a request receives from the engine.
#[derive(Debug)]
pub struct InferOutput {
    /// The model's output row for this image.
    pub logits: Vec<f32>,
    /// Enqueue → batch start.
    pub queue_wait: Duration,
    /// Images in the batch this one ran in.
    pub batch_size: usize,
    /// The number of that batch (the batcher counts from 1), shared by every input in it.
    pub batch: u64,
    /// Engine stage timings of that batch.
    pub stages: Vec<engine::StageTiming>,
}

/// The reply to one request.
pub type InferReply = Result<InferOutput, engine::EngineError>;

/// One admitted input waiting for a batch.
#[derive(Debug)]
pub struct Pending {
    /// A u8 HWC 224×224×3 image, or an f32 NCHW tensor, as `kind` says.
    pub input: bytes::Bytes,
    /// What `input` is; a batch holds one kind.
    pub kind: engine::InputKind,
    /// When it entered the queue.
    pub enqueued: Instant,
    /// Past this, nobody wants the answer.
    pub deadline: Instant,
    /// Where the answer goes; closed when the client has gone.
    pub reply: oneshot::Sender<InferReply>,
    /// Its place in the admission count: taken before the body was read, released by the
    /// batcher when its batch starts ([`Permit::release`]), or on drop if it never gets there.
    pub permit: Permit,
    /// The request's span, when it is recorded: the batch span links to it.
    pub link: Option<opentelemetry::trace::SpanContext>,
    /// Enqueue → batch start (`Span::none()` when the request is not traced).
    pub queue_span: tracing::Span,
}

impl Pending {
    fn is_dead(&self, now: Instant) -> bool {
        self.reply.is_closed() || now >= self.deadline
    }
}

/// The requests taken by [`Queue::next_batch`].
#[derive(Debug, Default)]
pub struct Taken {
    /// To run, oldest first.
    pub batch: Vec<Pending>,
    /// Dropped because their client went away or their deadline passed.
    pub dropped: usize,
}

/// Pending inputs, oldest first (see the module for how a batch is taken).
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Pending>,
}

impl Queue {
    /// Appends one image.
    pub fn push(&mut self, item: Pending) {
        self.items.push_back(item);
    }

    /// Images waiting (some may be dead and not yet dropped).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Inputs waiting of the oldest one's kind: what the next batch can hold.
    pub fn len_like_oldest(&self) -> usize {
        let Some(kind) = self.items.front().map(|p| p.kind) else {
            return 0;
        };
        self.items.iter().filter(|p| p.kind == kind).count()
    }

    /// When the oldest waiting image arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.items.front().map(|p| p.enqueued)
    }

    /// Takes up to `max` live inputs of the oldest live one's kind, oldest first, dropping dead
    /// ones on the way so they cost no copy and no compute. Inputs of the other kind keep their
    /// places for a later batch.
    pub fn next_batch(&mut self, max: usize, now: Instant) -> Taken {
        let mut taken = Taken::default();
        let mut kind = None;
        let mut i = 0;
        while taken.batch.len() < max && i < self.items.len() {
            let item = &self.items[i];
            if item.is_dead(now) {
                self.items.remove(i);
                taken.dropped += 1;
            } else if *kind.get_or_insert(item.kind) == item.kind {
                taken.batch.extend(self.items.remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }

    /// Drops every dead image (used while no lane can take a batch).
    pub fn drop_dead(&mut self, now: Instant) -> usize {
        let before = self.items.len();
        self.items.retain(|p| !p.is_dead(now));
        before - self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::admission::Admission;
    use std::sync::Arc;

    fn pending(
        adm: &Arc<Admission>,
        at: Instant,
        ttl: Duration,
    ) -> (Pending, oneshot::Receiver<InferReply>) {
        pending_of(adm, at, ttl, engine::InputKind::Image)
    }

    fn pending_of(
        adm: &Arc<Admission>,
        at: Instant,
        ttl: Duration,
        kind: engine::InputKind,
    ) -> (Pending, oneshot::Receiver<InferReply>) {
        let (tx, rx) = oneshot::channel();
        let p = Pending {
            input: bytes::Bytes::from_static(&[0; 4]),
            kind,
            enqueued: at,
            deadline: at + ttl,
            reply: tx,
            permit: adm.try_admit().unwrap(),
            link: None,
            queue_span: tracing::Span::none(),
        };
        (p, rx)
    }

    fn admission() -> Arc<Admission> {
        Admission::new(100, Default::default())
    }

    #[test]
    fn batches_are_fifo_and_bounded() {
        let adm = admission();
        let (mut q, now, ttl) = (Queue::default(), Instant::now(), Duration::from_secs(5));
        let mut rxs = Vec::new();
        for i in 0..5 {
            let (p, rx) = pending(&adm, now + Duration::from_millis(i), ttl);
            q.push(p);
            rxs.push(rx);
        }
        assert_eq!(q.oldest(), Some(now));
        let t = q.next_batch(3, now);
        assert_eq!(t.batch.len(), 3);
        assert_eq!(t.batch[0].enqueued, now);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_batch(8, now).batch.len(), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn cancelled_and_expired_requests_are_dropped_before_batching() {
        let adm = admission();
        let (mut q, now) = (Queue::default(), Instant::now());
        let (live, _rx_live) = pending(&adm, now, Duration::from_secs(5));
        let (gone, rx_gone) = pending(&adm, now, Duration::from_secs(5));
        let (late, _rx_late) = pending(&adm, now, Duration::from_millis(1));
        q.push(gone);
        q.push(late);
        q.push(live);
        drop(rx_gone); // the client went away
        let t = q.next_batch(8, now + Duration::from_millis(2));
        assert_eq!((t.batch.len(), t.dropped), (1, 2));
        drop(t);
        assert_eq!(adm.waiting(), 0, "permits of dropped requests are released");
    }

    #[test]
    fn a_batch_holds_one_kind_and_the_other_keeps_its_place() {
        use engine::InputKind::{Image, Tensor};
        let adm = admission();
        let (mut q, now, ttl) = (Queue::default(), Instant::now(), Duration::from_secs(5));
        let mut rxs = Vec::new();
        for (i, kind) in [Image, Tensor, Image, Tensor, Image]
            .into_iter()
            .enumerate()
        {
            let (p, rx) = pending_of(&adm, now + Duration::from_millis(i as u64), ttl, kind);
            q.push(p);
            rxs.push(rx);
        }
        let first = q.next_batch(8, now);
        let kinds: Vec<_> = first.batch.iter().map(|p| (p.kind, p.enqueued)).collect();
        let ms = |i| now + Duration::from_millis(i);
        assert_eq!(kinds, [(Image, ms(0)), (Image, ms(2)), (Image, ms(4))]);
        assert_eq!(q.oldest(), Some(ms(1)), "the tensors kept their order");
        assert_eq!(q.len_like_oldest(), 2, "the two tensors");
        let second = q.next_batch(1, now);
        assert_eq!((second.batch[0].kind, q.len()), (Tensor, 1));
    }

    #[test]
    fn drop_dead_keeps_the_living() {
        let adm = admission();
        let (mut q, now) = (Queue::default(), Instant::now());
        let (a, _ra) = pending(&adm, now, Duration::from_secs(5));
        let (b, rb) = pending(&adm, now, Duration::from_secs(5));
        q.push(a);
        q.push(b);
        drop(rb);
        assert_eq!(q.drop_dead(now), 1);
        assert_eq!(q.len(), 1);
    }
}
