//! The batcher thread: owns the [`Queue`] and the lanes' batch buffers, and decides when a
//! batch starts.
//!
//! Rules ([`pick_lane`]):
//! - An idle lane takes whatever is waiting at once (no added latency when there is spare
//!   capacity), unless more admitted images are still being read or decoded. Then it waits for
//!   them, up to `MAX_BATCH_DELAY_MS`, so requests that arrive together run together instead
//!   of the first running alone and the rest queueing behind it. A lone client never waits.
//! - A busy lane with a second buffer (GPU lanes, where copy and compute overlap) may hold one
//!   more batch in its slot; that batch is formed only when `MAX_BATCH_SIZE` images wait or the
//!   oldest has waited `MAX_BATCH_DELAY_MS`, so batches grow exactly while waiting costs nothing.
//!
//! Each image is copied once, straight into the lane's reusable batch buffer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, Receiver, Sender};
use engine::{BatchBuffer, BatchOutput, EngineError, Job, Lanes};

use crate::batching::admission::Admission;
use crate::batching::queue::{InferOutput, Pending, Queue};
use crate::telemetry::metrics::{Metrics, ReasonLabel};
use crate::telemetry::trace::spans;

struct LaneState {
    in_flight: usize,
    /// Batches this lane may have out: one per buffer it allocated (1 on the CPU, where a
    /// pre-formed batch would only be smaller; 2 where copy and compute overlap).
    depth: usize,
    buffers: Vec<BatchBuffer>,
}

/// A lane finished a batch and gives its buffer back.
struct Finished {
    lane: usize,
    buffer: BatchBuffer,
}

/// Where the batcher reports: metrics, and a span per executed batch that holds a traced request.
pub struct Telemetry {
    /// Batch size, queue wait, cancellations.
    pub metrics: Metrics,
    /// The server's subscriber: batch spans are made under it.
    pub dispatch: tracing::Dispatch,
    /// `cpu` or `cuda:N`, for the batch span.
    pub device: Arc<str>,
}

/// Called by the batcher thread with the number of each batch it starts (fault-injection
/// tests: a panic here kills the batcher thread).
pub type BatcherFault = Arc<dyn Fn(usize) + Send + Sync>;

/// Settings of the batcher thread.
pub struct BatcherConfig {
    /// Largest batch.
    pub max_batch: usize,
    /// How long a batch may grow while every lane is busy, or while an idle lane waits for
    /// admitted images that are still being decoded.
    pub max_delay: Duration,
    /// Test seam: called with each batch's number before it starts.
    pub fault: Option<BatcherFault>,
}

/// Sets its flag if the batcher thread unwinds: the server then fails `/health` (the process
/// cannot serve without its batcher) instead of answering every request 503 while looking ready.
struct DeathWatch(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, std::sync::atomic::Ordering::Release);
            tracing::error!("the batcher thread died; the process must be restarted");
        }
    }
}

/// Starts the batcher thread. It runs until `requests` is closed and everything queued has been
/// answered, then shuts the lanes down. The flag returned turns true if the thread dies.
pub fn spawn(
    config: BatcherConfig,
    lanes: Lanes,
    buffers: Vec<Vec<BatchBuffer>>,
    requests: Receiver<Pending>,
    admission: Arc<Admission>,
    telemetry: Telemetry,
) -> std::io::Result<(
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
)> {
    let total: usize = buffers.iter().map(Vec::len).sum();
    let (done_tx, done_rx) = bounded(total.max(1));
    let state = buffers
        .into_iter()
        .map(|buffers| LaneState {
            in_flight: 0,
            depth: buffers.len(),
            buffers,
        })
        .collect();
    let mut b = Batcher {
        config,
        lanes,
        state,
        queue: Queue::default(),
        admission,
        done_tx,
        metrics: telemetry.metrics,
        device: telemetry.device,
        started: 0,
    };
    let died = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = DeathWatch(died.clone());
    let thread = std::thread::Builder::new()
        .name("batcher".into())
        .spawn(move || {
            let _watch = watch;
            let _dispatch = tracing::dispatcher::set_default(&telemetry.dispatch);
            b.run(requests, done_rx);
            b.lanes.shutdown();
        })?;
    Ok((thread, died))
}

struct Batcher {
    config: BatcherConfig,
    lanes: Lanes,
    state: Vec<LaneState>,
    queue: Queue,
    /// Counts admitted images whose batch has not started, including those not yet queued.
    admission: Arc<Admission>,
    done_tx: Sender<Finished>,
    metrics: Metrics,
    device: Arc<str>,
    /// Batches started so far.
    started: usize,
}

impl Batcher {
    fn run(&mut self, requests: Receiver<Pending>, done: Receiver<Finished>) {
        let mut open = Some(requests);
        loop {
            let wake = self.wake_at(open.is_none());
            let timeout = wake.map_or(never(), crossbeam_channel::at);
            let incoming = open.clone().unwrap_or_else(never);
            select! {
                recv(incoming) -> msg => match msg {
                    Ok(p) => self.queue.push(p),
                    Err(_) => open = None,
                },
                recv(done) -> msg => {
                    let f: Finished = msg.expect("the batcher holds a sender");
                    self.state[f.lane].in_flight -= 1;
                    self.state[f.lane].buffers.push(f.buffer);
                },
                recv(timeout) -> _ => {},
            }
            let mut backlog = 0;
            if let Some(rx) = &open {
                // Take everything already waiting, so one wake-up forms one full batch.
                while self.queue.len() < self.config.max_batch {
                    let Ok(p) = rx.try_recv() else { break };
                    self.queue.push(p);
                }
                backlog = rx.len();
            }
            // Admitted, and neither queued here nor in the channel: still being read or decoded.
            let arriving = self
                .admission
                .waiting()
                .saturating_sub(self.queue.len() + backlog);
            self.dispatch(open.is_none(), arriving);
            if open.is_none()
                && self.queue.is_empty()
                && self.state.iter().all(|s| s.in_flight == 0)
            {
                return;
            }
        }
    }

    /// When the queued images become due (the oldest has waited `max_delay`), if a lane could
    /// then take them: a busy lane's free slot, or an idle lane waiting for arriving images.
    fn wake_at(&self, flushing: bool) -> Option<Instant> {
        let oldest = self.queue.oldest()?;
        let slot_free = self.state.iter().any(|s| s.in_flight < s.depth);
        (slot_free && !flushing).then(|| oldest + self.config.max_delay)
    }

    /// Starts every batch the rules allow. `arriving` counts admitted images not yet queued; a
    /// batch started here releases as many permits as it takes from the queue, so it stays
    /// right across the loop.
    fn dispatch(&mut self, flushing: bool, arriving: usize) {
        let now = Instant::now();
        loop {
            if self.queue.is_empty() {
                return;
            }
            let moment = Moment {
                // A batch holds one kind: 7 images and a tensor are not a full batch of 8.
                queued: self.queue.len_like_oldest(),
                oldest: self.queue.oldest(),
                arriving,
                flushing,
                now,
            };
            let lane = pick_lane(&self.state, &moment, &self.config);
            let Some(lane) = lane else {
                let dropped = self.queue.drop_dead(now);
                self.count_cancelled(dropped);
                return;
            };
            let taken = self.queue.next_batch(self.config.max_batch, now);
            self.count_cancelled(taken.dropped);
            if !taken.batch.is_empty() {
                self.submit(lane, taken.batch, now);
            }
        }
    }

    fn count_cancelled(&self, n: usize) {
        if n > 0 {
            let reason = "cancelled";
            self.metrics
                .rejected
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n as u64);
        }
    }

    fn submit(&mut self, lane: usize, batch: Vec<Pending>, now: Instant) {
        self.started += 1;
        if let Some(fault) = &self.config.fault {
            fault(self.started);
        }
        let mut buffer = self.state[lane]
            .buffers
            .pop()
            .expect("a lane with room has a free buffer");
        buffer.reset(batch.first().map_or_else(Default::default, |p| p.kind));
        let mut tickets: Vec<Ticket> = Vec::with_capacity(batch.len());
        let links: Vec<_> = batch.iter().filter_map(|p| p.link.clone()).collect();
        let span =
            (!links.is_empty()).then(|| spans::batch(links, batch.len(), lane, &self.device));
        for p in fill(&mut buffer, batch, now) {
            self.metrics.queue_wait.observe(p.1.as_secs_f64());
            tickets.push(p);
        }
        if tickets.is_empty() {
            self.state[lane].buffers.push(buffer);
            return;
        }
        let n = tickets.len();
        let number = self.started as u64;
        self.metrics.batch_size.observe(n as f64);
        self.state[lane].in_flight += 1;
        let done_tx = self.done_tx.clone();
        let job = Job {
            batch: buffer,
            done: Box::new(move |buffer, result| {
                if let (Some(span), Err(e)) = (&span, &result) {
                    spans::batch_failed(span, e);
                }
                drop(span); // ends it: the batch is done
                reply_all(tickets, number, result);
                let _ = done_tx.send(Finished { lane, buffer });
            }),
        };
        if let Err(job) = self.lanes.try_submit(lane, job) {
            // The lane is gone: answer the batch now rather than leave it hanging.
            (job.done)(job.batch, Err(EngineError::ShutDown));
        }
    }
}

/// What the batcher knows when it decides whether a batch starts.
struct Moment {
    /// Images in the queue.
    queued: usize,
    /// When the oldest of them arrived.
    oldest: Option<Instant>,
    /// Admitted images still being read or decoded.
    arriving: usize,
    /// Shutting down: everything queued runs now.
    flushing: bool,
    now: Instant,
}

/// The lane the queued images should start on now, if any (the module's rules).
fn pick_lane(lanes: &[LaneState], m: &Moment, config: &BatcherConfig) -> Option<usize> {
    if m.queued == 0 {
        return None;
    }
    let due = m.flushing
        || m.queued >= config.max_batch
        || m.oldest.is_some_and(|t| m.now >= t + config.max_delay);
    let idle = lanes
        .iter()
        .position(|s| s.in_flight == 0)
        .filter(|_| due || m.arriving == 0);
    idle.or_else(|| {
        due.then(|| lanes.iter().position(|s| s.in_flight < s.depth))
            .flatten()
    })
}

type Ticket = (
    tokio::sync::oneshot::Sender<crate::batching::queue::InferReply>,
    Duration,
);

/// Copies each input of `batch` into `buffer` and returns the tickets of those copied; an input
/// of the wrong size or kind (a bug upstream) is answered with an error at once, alone, instead
/// of shifting every later input of the batch. The inputs and permits are released here.
fn fill(buffer: &mut BatchBuffer, batch: Vec<Pending>, now: Instant) -> Vec<Ticket> {
    let mut tickets = Vec::with_capacity(batch.len());
    let size = batch.len();
    for p in batch {
        p.queue_span.record("inference.batch_size", size as i64);
        // The batch starts: the image leaves the admission count and its queue span ends.
        p.permit.release();
        drop(p.queue_span);
        if p.kind == buffer.kind() && buffer.push(&p.input) {
            tickets.push((p.reply, now - p.enqueued));
        } else {
            let why = format!(
                "the {:?} input has {} bytes, the {:?} batch takes {}",
                p.kind,
                p.input.len(),
                buffer.kind(),
                buffer.kind().bytes()
            );
            tracing::error!(error = %why, "image refused by the batch buffer");
            let _ = p.reply.send(Err(EngineError::Inference(why.into())));
        }
    }
    tickets
}

fn reply_all(tickets: Vec<Ticket>, batch: u64, result: Result<BatchOutput<'_>, EngineError>) {
    let batch_size = tickets.len();
    for (i, (reply, queue_wait)) in tickets.into_iter().enumerate() {
        let answer = match &result {
            Ok(out) => match out.logits.get(i * out.classes..(i + 1) * out.classes) {
                Some(row) => Ok(InferOutput {
                    logits: row.to_vec(),
                    queue_wait,
                    batch_size,
                    batch,
                    stages: out.timings.to_vec(),
                }),
                None => Err(EngineError::Inference(
                    format!(
                        "the engine returned {} logits for {batch_size} images of {} classes",
                        out.logits.len(),
                        out.classes
                    )
                    .into(),
                )),
            },
            Err(e) => Err(e.clone()),
        };
        let _ = reply.send(answer); // a closed receiver means the client has gone
    }
}

#[cfg(test)]
mod tests;
