//! Lane health: which lanes have a working backend ([`Health`], read by the server's readiness
//! and liveness), and the guard that marks the engine dead when a lane thread unwinds
//! ([`DeathWatch`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether each lane has a working backend, and whether any lane thread has died.
#[derive(Debug)]
pub struct Health {
    up: Vec<AtomicBool>,
    dead: AtomicBool,
}

impl Health {
    pub(crate) fn new(lanes: usize) -> Arc<Self> {
        Arc::new(Health {
            up: (0..lanes).map(|_| AtomicBool::new(true)).collect(),
            dead: AtomicBool::new(false),
        })
    }

    pub(crate) fn set(&self, lane: usize, up: bool) {
        self.up[lane].store(up, Ordering::Release);
    }

    /// Marks lane `lane` down and the engine dead: its device is lost (e.g. a poisoned CUDA
    /// context), and only a new process can serve again.
    pub(crate) fn mark_dead(&self, lane: usize) {
        self.set(lane, false);
        self.dead.store(true, Ordering::Release);
    }

    /// Every lane can run batches.
    pub fn all_up(&self) -> bool {
        self.up.iter().all(|u| u.load(Ordering::Acquire))
    }

    /// A lane thread ended abnormally (a panic outside the backend, e.g. in a completion
    /// callback): the process cannot serve as configured and should be restarted (liveness).
    pub fn any_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Lanes that cannot run batches now.
    pub fn down(&self) -> usize {
        self.up
            .iter()
            .filter(|u| !u.load(Ordering::Acquire))
            .count()
    }
}

/// Marks the lane down and the engine dead if the lane thread unwinds.
pub(crate) struct DeathWatch<'a> {
    pub(crate) health: &'a Health,
    pub(crate) lane: usize,
}

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.health.mark_dead(self.lane);
            tracing::error!(
                lane = self.lane,
                "engine lane thread died; the process must be restarted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::job::{BackendFactory, Job};
    use crate::lane::Lanes;
    use crate::testing::Fake;
    use crate::Backend;

    #[test]
    fn a_lane_thread_that_dies_is_reported_dead_and_down() {
        let factory: BackendFactory =
            Arc::new(|_| Ok(Box::new(Fake::healthy()) as Box<dyn Backend>));
        let mut lanes = Lanes::start(1, factory, 2, 1, &[]).unwrap();
        let health = lanes.health();
        assert!(health.all_up() && !health.any_dead());
        let mut batch = lanes.take_buffers().remove(0).remove(0);
        assert!(batch.push(&vec![0u8; crate::IMAGE_BYTES]));
        let job = Job {
            batch,
            done: Box::new(|_, _| panic!("injected panic in a completion callback")),
        };
        assert!(lanes.try_submit(0, job).is_ok());
        let start = Instant::now();
        while !health.any_dead() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the death was noticed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!health.all_up());
        lanes.shutdown();
    }
}
