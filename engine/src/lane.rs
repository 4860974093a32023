//! Lanes: dedicated OS threads, each owning one backend, fed through capacity-1 channels.
//!
//! The batcher submits a [`Job`] (a filled [`BatchBuffer`] and a completion callback) to a lane
//! it knows to have room; the lane runs it and calls the callback with the buffer and the
//! outcome. A panicking backend turns into [`EngineError::Panicked`] for that batch and the lane
//! builds a fresh backend before taking the next one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

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

/// The running lanes.
pub struct Lanes {
    senders: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    classes: usize,
    buffers: Vec<Vec<BatchBuffer>>,
}

/// What a lane reports once its backend is built: output width and its batch buffers.
type Ready = Result<(usize, Vec<BatchBuffer>), EngineError>;

impl Lanes {
    /// Starts `count` lanes, building each backend on its own thread, and waits until all are
    /// built. Each lane allocates `buffers_per_lane` batch buffers of `batch_capacity` images in
    /// its backend's preferred memory ([`Lanes::take_buffers`]). `warmup` lists batch sizes each
    /// lane runs once before it is ready.
    pub fn start(
        count: usize,
        factory: BackendFactory,
        batch_capacity: usize,
        buffers_per_lane: usize,
        warmup: &[usize],
    ) -> Result<Self, EngineError> {
        let count = count.max(1);
        let (ready_tx, ready_rx) = bounded::<(usize, Ready)>(count);
        let mut lanes = Lanes {
            senders: Vec::new(),
            threads: Vec::new(),
            classes: 0,
            buffers: Vec::new(),
        };
        for lane in 0..count {
            let (tx, rx) = bounded::<Job>(1);
            let (factory, ready_tx) = (factory.clone(), ready_tx.clone());
            let warmup = warmup.to_vec();
            let sizes = (batch_capacity, buffers_per_lane);
            let handle = std::thread::Builder::new()
                .name(format!("engine-lane-{lane}"))
                .spawn(move || lane_main(lane, factory, rx, ready_tx, sizes, warmup))
                .map_err(|e| EngineError::model_load(format!("cannot spawn lane thread: {e}")))?;
            lanes.senders.push(tx);
            lanes.threads.push(handle);
        }
        drop(ready_tx);
        let mut buffers: Vec<Vec<BatchBuffer>> = (0..count).map(|_| Vec::new()).collect();
        for _ in 0..count {
            let failure = match ready_rx.recv() {
                Ok((lane, Ok((classes, bufs)))) => {
                    lanes.classes = classes;
                    buffers[lane] = bufs;
                    continue;
                }
                Ok((_, Err(e))) => e,
                Err(_) => EngineError::Panicked("a lane died while starting".into()),
            };
            lanes.shutdown();
            return Err(failure);
        }
        lanes.buffers = buffers;
        Ok(lanes)
    }

    /// The batch buffers each lane allocated, indexed by lane (taken once; later calls get none).
    pub fn take_buffers(&mut self) -> Vec<Vec<BatchBuffer>> {
        std::mem::take(&mut self.buffers)
    }

    /// Number of lanes.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Always false: there is at least one lane.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Output width of the model.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Hands `job` to `lane` without blocking. Gives the job back when the lane's slot is taken
    /// or the lane is gone; the caller decides what to do with it.
    pub fn try_submit(&self, lane: usize, job: Job) -> Result<(), Job> {
        self.senders[lane].try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }

    /// Closes the lanes' channels and waits for every lane to finish the jobs it holds.
    pub fn shutdown(self) {
        drop(self.senders);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lane_main(
    lane: usize,
    factory: BackendFactory,
    jobs: Receiver<Job>,
    ready: Sender<(usize, Ready)>,
    (batch_capacity, buffers): (usize, usize),
    warmup: Vec<usize>,
) {
    let built = factory(lane).and_then(|mut backend| {
        run_warmup(backend.as_mut(), batch_capacity, &warmup)?;
        Ok(backend)
    });
    let mut backend = match built {
        Ok(b) => {
            let bufs = (0..buffers)
                .map(|_| b.alloc_batch(batch_capacity))
                .collect();
            let _ = ready.send((lane, Ok((b.classes(), bufs))));
            b
        }
        Err(e) => {
            let _ = ready.send((lane, Err(e)));
            return;
        }
    };
    drop(ready);
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    while let Ok(job) = jobs.recv() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            backend.run(&job.batch, &mut logits, &mut timings)
        }))
        .unwrap_or_else(|panic| Err(EngineError::Panicked(panic_message(&panic).into())));
        let panicked = matches!(outcome, Err(EngineError::Panicked(_)));
        let classes = backend.classes();
        let result = outcome.map(|()| BatchOutput {
            logits: &logits,
            classes,
            timings: &timings,
            lane,
        });
        (job.done)(job.batch, result);
        if panicked {
            tracing::error!(lane, "engine lane panicked; rebuilding its backend");
            match factory(lane) {
                Ok(b) => backend = b,
                Err(e) => {
                    tracing::error!(lane, error = %e, "cannot rebuild backend; lane stops");
                    fail_remaining(jobs, e);
                    return;
                }
            }
        }
    }
}

/// Answers every job still queued for a lane that cannot run, so none of them hangs.
fn fail_remaining(jobs: Receiver<Job>, error: EngineError) {
    for job in jobs {
        (job.done)(job.batch, Err(error.clone()));
    }
}

fn run_warmup(
    backend: &mut dyn Backend,
    capacity: usize,
    sizes: &[usize],
) -> Result<(), EngineError> {
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    for &n in sizes.iter().filter(|&&n| n > 0 && n <= capacity) {
        let mut batch = backend.alloc_batch(n);
        while batch.next_slot().is_some() {}
        backend.run(&batch, &mut logits, &mut timings)?;
    }
    Ok(())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
