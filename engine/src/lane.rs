//! Lanes: dedicated OS threads, each owning one backend, fed through small bounded channels.
//!
//! The batcher submits a [`Job`] (a filled [`BatchBuffer`] and a completion callback) to a lane
//! it knows to have room; the lane runs it and calls the callback with the buffer and the
//! outcome. A panicking backend turns into [`EngineError::Panicked`] for that batch and the lane
//! builds a fresh backend before taking the next one ([`crate::supervise`]): while it cannot,
//! its [`Health`] reads down and its jobs fail at once with [`EngineError::Restarting`]. A lane
//! thread that dies outright marks the engine dead ([`DeathWatch`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::health::{DeathWatch, Health};
use crate::job::{BackendFactory, BatchOutput, Job};
use crate::supervise;
use crate::{Backend, BatchBuffer, EngineError};

/// The running lanes.
pub struct Lanes {
    senders: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    classes: usize,
    buffers: Vec<Vec<BatchBuffer>>,
    health: Arc<Health>,
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
            health: Health::new(count),
        };
        for lane in 0..count {
            // Room for every job the caller may have out on this lane (one per buffer): a lane
            // reports a batch done just before it takes the next one from the channel, so a
            // smaller channel would refuse a submit the caller's accounting allows.
            let (tx, rx) = bounded::<Job>(buffers_per_lane.max(1));
            let (factory, ready_tx, health) =
                (factory.clone(), ready_tx.clone(), lanes.health.clone());
            let warmup = warmup.to_vec();
            let sizes = (batch_capacity, buffers_per_lane);
            let handle = std::thread::Builder::new()
                .name(format!("engine-lane-{lane}"))
                .spawn(move || {
                    lane_main(lane, &factory, &rx, ready_tx, sizes, warmup, &health);
                })
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

    /// Which lanes have a working backend (shared; stays valid after shutdown).
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Output width of the model.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Hands `job` to `lane` without blocking. Succeeds whenever the caller has fewer than
    /// `buffers_per_lane` jobs out on that lane; gives the job back when the lane is gone (or the
    /// caller over-submits), and the caller decides what to do with it.
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
    factory: &BackendFactory,
    jobs: &Receiver<Job>,
    ready: Sender<(usize, Ready)>,
    (batch_capacity, buffers): (usize, usize),
    warmup: Vec<usize>,
    health: &Health,
) {
    let _watch = DeathWatch { health, lane };
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
    let mut lost: Option<EngineError> = None;
    while let Ok(job) = jobs.recv() {
        if let Some(e) = &lost {
            (job.done)(job.batch, Err(e.clone()));
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            backend.run(&job.batch, &mut logits, &mut timings)
        }))
        .unwrap_or_else(|panic| Err(EngineError::Panicked(panic_message(&panic).into())));
        if let Err(e @ EngineError::DeviceLost(_)) = &outcome {
            // Dead before the batch's callers hear of it; every later batch fails the same way
            // without touching the device, until the process is restarted.
            health.mark_dead(lane);
            tracing::error!(lane, error = %e, "the engine's device is lost; the process must restart");
            lost = Some(e.clone());
        }
        let panicked = matches!(outcome, Err(EngineError::Panicked(_)));
        let classes = backend.classes();
        let result = outcome.map(|()| BatchOutput {
            logits: &logits,
            classes,
            timings: &timings,
            lane,
        });
        if panicked {
            // Down before the batch's callers hear of the failure, so readiness never lags it.
            health.set(lane, false);
        }
        (job.done)(job.batch, result);
        if panicked {
            tracing::error!(lane, "engine lane panicked; rebuilding its backend");
            match supervise::rebuild(lane, factory, jobs, health) {
                Some(b) => backend = b,
                None => return,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobDone;
    use crate::testing::Fake;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn lanes(fail_on: Option<usize>, panic_on: Option<usize>) -> Lanes {
        let runs = Arc::new(AtomicUsize::new(0));
        let factory: BackendFactory = Arc::new(move |_| {
            Ok(Box::new(Fake {
                runs: runs.clone(),
                fail_on,
                panic_on,
            }) as Box<dyn Backend>)
        });
        Lanes::start(1, factory, 4, 2, &[1, 4]).unwrap()
    }

    type Outcome = Result<Vec<f32>, EngineError>;

    fn submit(
        l: &Lanes,
        buffer: BatchBuffer,
        tx: &crossbeam_channel::Sender<(BatchBuffer, Outcome)>,
    ) {
        let tx = tx.clone();
        let done: JobDone = Box::new(move |buf, r| {
            let _ = tx.send((buf, r.map(|o| o.logits.to_vec())));
        });
        assert!(
            l.try_submit(
                0,
                Job {
                    batch: buffer,
                    done
                }
            )
            .is_ok(),
            "submit within the budget failed"
        );
    }

    #[test]
    fn keeps_two_jobs_out_without_a_refused_submit() {
        let mut l = lanes(None, None);
        assert_eq!(l.classes(), 3);
        let mut free = l.take_buffers().remove(0);
        assert_eq!(free.len(), 2);
        let (tx, rx) = bounded::<(BatchBuffer, Outcome)>(2);
        let mut out = 0;
        for n in 0..2000u32 {
            if free.is_empty() {
                let (buf, r) = rx.recv().unwrap();
                assert!(r.is_ok());
                free.push(buf);
                out -= 1;
            }
            let mut buf = free.pop().unwrap();
            buf.clear();
            assert!(buf.push(&vec![(n % 200) as u8; crate::IMAGE_BYTES]));
            submit(&l, buf, &tx);
            out += 1;
        }
        for _ in 0..out {
            assert!(rx.recv().unwrap().1.is_ok());
        }
        l.shutdown();
    }

    #[test]
    fn a_failed_or_panicking_batch_is_reported_and_the_lane_goes_on() {
        // Runs 0 and 1 are the warm-up; run 2 fails, run 3 panics, run 4 works.
        let mut l = lanes(Some(2), Some(3));
        let mut free = l.take_buffers().remove(0);
        let (tx, rx) = bounded::<(BatchBuffer, Outcome)>(2);
        let mut results = Vec::new();
        for _ in 0..3 {
            let mut buf = free.pop().unwrap_or_else(|| BatchBuffer::new(4));
            buf.clear();
            assert!(buf.push(&vec![7u8; crate::IMAGE_BYTES]));
            assert!(buf.push(&vec![9u8; crate::IMAGE_BYTES]));
            submit(&l, buf, &tx);
            let (buf, r) = rx.recv().unwrap();
            free.push(buf);
            results.push(r);
        }
        assert!(matches!(results[0], Err(EngineError::Inference(_))));
        assert!(matches!(&results[1], Err(EngineError::Panicked(m)) if m.contains("injected")));
        assert_eq!(
            results[2].as_ref().unwrap(),
            &vec![7.0, 8.0, 9.0, 9.0, 10.0, 11.0]
        );
        l.shutdown();
    }

    #[test]
    fn a_lane_that_cannot_rebuild_reads_down_fails_fast_and_recovers() {
        // Build 0 serves; run 2 (after the two warm-up runs) panics; builds 1 and 2 fail.
        let (runs, builds) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let factory: BackendFactory =
            Arc::new(move |_| match builds.fetch_add(1, Ordering::SeqCst) {
                1 | 2 => Err(EngineError::model_load("injected build failure")),
                _ => Ok(Box::new(Fake {
                    runs: runs.clone(),
                    fail_on: None,
                    panic_on: Some(2),
                }) as Box<dyn Backend>),
            });
        let mut l = Lanes::start(1, factory, 4, 2, &[1, 4]).unwrap();
        let health = l.health();
        let mut free = l.take_buffers().remove(0);
        let (tx, rx) = bounded::<(BatchBuffer, Outcome)>(2);
        let one = |free: &mut Vec<BatchBuffer>| {
            let mut buf = free.pop().unwrap();
            buf.clear();
            assert!(buf.push(&vec![1u8; crate::IMAGE_BYTES]));
            submit(&l, buf, &tx);
            let (buf, r) = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("answered");
            free.push(buf);
            r
        };
        assert!(matches!(one(&mut free), Err(EngineError::Panicked(_))));
        assert!(!health.all_up(), "down while rebuilding");
        assert!(
            matches!(one(&mut free), Err(EngineError::Restarting(m)) if m.contains("injected build failure"))
        );
        let start = std::time::Instant::now();
        while !health.all_up() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(3),
                "rebuilt after backoff"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(one(&mut free).unwrap(), vec![1.0, 2.0, 3.0]);
        l.shutdown();
    }

    #[test]
    fn a_lost_device_marks_the_engine_dead_and_fails_later_batches_without_running_them() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let factory: BackendFactory = Arc::new(move |_| {
            Ok(Box::new(crate::testing::Lost {
                runs: counted.clone(),
            }) as Box<dyn Backend>)
        });
        let mut l = Lanes::start(1, factory, 4, 2, &[]).unwrap();
        let health = l.health();
        let mut free = l.take_buffers().remove(0);
        let (tx, rx) = bounded::<(BatchBuffer, Outcome)>(2);
        for _ in 0..3 {
            let mut buf = free.pop().unwrap();
            buf.clear();
            assert!(buf.push(&vec![1u8; crate::IMAGE_BYTES]));
            submit(&l, buf, &tx);
            let (buf, r) = rx.recv().unwrap();
            free.push(buf);
            assert!(matches!(r, Err(EngineError::DeviceLost(_))), "{r:?}");
            assert!(
                health.any_dead() && !health.all_up(),
                "dead before the callers hear"
            );
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the lost device ran one batch only"
        );
        l.shutdown();
    }

    #[test]
    fn a_backend_that_cannot_be_built_fails_start() {
        let factory: BackendFactory =
            Arc::new(|_| Err(EngineError::ModelLoad("no such model".into())));
        let err = Lanes::start(2, factory, 4, 2, &[]).err().unwrap();
        assert!(err.to_string().contains("no such model"));
    }
}
