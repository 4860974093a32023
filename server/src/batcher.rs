//! The batcher thread: owns the [`Queue`] and the lanes' batch buffers, and decides when a
//! batch starts.
//!
//! Rules: an idle lane takes whatever is waiting at once (no added latency when there is spare
//! capacity). A busy lane with a second buffer (GPU lanes, where copy and compute overlap) may
//! hold one more batch in its slot; that batch is formed only when `MAX_BATCH_SIZE` images wait or the oldest has waited `MAX_BATCH_DELAY_MS`, so
//! batches grow exactly while waiting costs nothing. Each image is copied once, straight into
//! the lane's reusable batch buffer.

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, Receiver, Sender};
use engine::{BatchBuffer, BatchOutput, EngineError, Job, Lanes};

use crate::metrics::Metrics;
use crate::queue::{InferOutput, Pending, Queue};
use crate::trace::{BatchSpan, Tracer};

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
    /// Batch spans.
    pub tracer: Tracer,
    /// `cpu` or `cuda:N`, for the batch span.
    pub device: &'static str,
}

/// Settings of the batcher thread.
pub struct BatcherConfig {
    /// Largest batch.
    pub max_batch: usize,
    /// How long a batch may grow while every lane is busy.
    pub max_delay: Duration,
}

/// Starts the batcher thread. It runs until `requests` is closed and everything queued has been
/// answered, then shuts the lanes down.
pub fn spawn(
    config: BatcherConfig,
    lanes: Lanes,
    buffers: Vec<Vec<BatchBuffer>>,
    requests: Receiver<Pending>,
    telemetry: Telemetry,
) -> std::io::Result<std::thread::JoinHandle<()>> {
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
        done_tx,
        metrics: telemetry.metrics,
        tracer: telemetry.tracer,
        device: telemetry.device,
    };
    std::thread::Builder::new()
        .name("batcher".into())
        .spawn(move || {
            b.run(requests, done_rx);
            b.lanes.shutdown();
        })
}

struct Batcher {
    config: BatcherConfig,
    lanes: Lanes,
    state: Vec<LaneState>,
    queue: Queue,
    done_tx: Sender<Finished>,
    metrics: Metrics,
    tracer: Tracer,
    device: &'static str,
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
            if let Some(rx) = &open {
                // Take everything already waiting, so one wake-up forms one full batch.
                while self.queue.len() < self.config.max_batch {
                    let Ok(p) = rx.try_recv() else { break };
                    self.queue.push(p);
                }
            }
            self.dispatch(open.is_none());
            if open.is_none()
                && self.queue.is_empty()
                && self.state.iter().all(|s| s.in_flight == 0)
            {
                return;
            }
        }
    }

    /// When the queued batch may start on a busy lane, if that is what we wait for.
    fn wake_at(&self, flushing: bool) -> Option<Instant> {
        let oldest = self.queue.oldest()?;
        let slot_free = self.state.iter().any(|s| s.in_flight < s.depth);
        (slot_free && !flushing).then(|| oldest + self.config.max_delay)
    }

    fn dispatch(&mut self, flushing: bool) {
        let now = Instant::now();
        loop {
            if self.queue.is_empty() {
                return;
            }
            let idle = self.state.iter().position(|s| s.in_flight == 0);
            let due = flushing
                || self.queue.len() >= self.config.max_batch
                || self
                    .queue
                    .oldest()
                    .is_some_and(|t| now >= t + self.config.max_delay);
            let lane = idle.or_else(|| {
                due.then(|| self.state.iter().position(|s| s.in_flight < s.depth))
                    .flatten()
            });
            let Some(lane) = lane else {
                let dropped = self.queue.drop_dead(now);
                self.metrics
                    .rejected
                    .with_label_values(&["cancelled"])
                    .inc_by(dropped as u64);
                return;
            };
            let taken = self.queue.next_batch(self.config.max_batch, now);
            self.metrics
                .rejected
                .with_label_values(&["cancelled"])
                .inc_by(taken.dropped as u64);
            if !taken.batch.is_empty() {
                self.submit(lane, taken.batch, now);
            }
        }
    }

    fn submit(&mut self, lane: usize, batch: Vec<Pending>, now: Instant) {
        let mut buffer = self.state[lane]
            .buffers
            .pop()
            .expect("a lane with room has a free buffer");
        buffer.clear();
        let mut tickets = Vec::with_capacity(batch.len());
        let links: Vec<_> = batch.iter().filter_map(|p| p.trace).collect();
        let span =
            (!links.is_empty()).then(|| BatchSpan::begin(&self.tracer, links, lane, self.device));
        for p in batch {
            buffer.push(&p.image);
            let wait = now - p.enqueued;
            self.metrics.queue_wait.observe(wait.as_secs_f64());
            tickets.push((p.reply, wait)); // the image and the permit are released here
        }
        let n = tickets.len();
        self.metrics.batch_size.observe(n as f64);
        self.state[lane].in_flight += 1;
        let done_tx = self.done_tx.clone();
        let job = Job {
            batch: buffer,
            done: Box::new(move |buffer, result| {
                if let Some(span) = span {
                    span.end(n, result.as_ref().err());
                }
                reply_all(tickets, result);
                let _ = done_tx.send(Finished { lane, buffer });
            }),
        };
        if let Err(job) = self.lanes.try_submit(lane, job) {
            // The lane is gone: answer the batch now rather than leave it hanging.
            (job.done)(job.batch, Err(EngineError::ShutDown));
        }
    }
}

type Ticket = (
    tokio::sync::oneshot::Sender<crate::queue::InferReply>,
    Duration,
);

fn reply_all(tickets: Vec<Ticket>, result: Result<BatchOutput<'_>, EngineError>) {
    let batch_size = tickets.len();
    for (i, (reply, queue_wait)) in tickets.into_iter().enumerate() {
        let answer = match &result {
            Ok(out) => Ok(InferOutput {
                logits: out.logits[i * out.classes..(i + 1) * out.classes].to_vec(),
                queue_wait,
                batch_size,
                stages: out.timings.to_vec(),
            }),
            Err(e) => Err(e.clone()),
        };
        let _ = reply.send(answer); // a closed receiver means the client has gone
    }
}
