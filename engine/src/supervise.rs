//! Lane recovery: after a panic the lane rebuilds its backend; while it cannot, it answers every
//! job at once with [`EngineError::Restarting`] and retries with backoff, and its [`Health`]
//! says it is down so the server's readiness can tell the truth.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::health::Health;
use crate::job::{BackendFactory, Job};
use crate::{Backend, EngineError};

/// First and longest pause between rebuild attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Rebuilds lane `lane`'s backend until it works, failing the jobs that arrive meanwhile.
/// Returns `None` when the lane's channel closed (shutdown) before a backend could be built.
pub(crate) fn rebuild(
    lane: usize,
    factory: &BackendFactory,
    jobs: &Receiver<Job>,
    health: &Health,
) -> Option<Box<dyn Backend>> {
    health.set(lane, false);
    let mut pause = BACKOFF.0;
    loop {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(lane)))
            .unwrap_or_else(|_| {
                Err(EngineError::Panicked(
                    "the backend panicked while being built".into(),
                ))
            });
        let error = match attempt {
            Ok(backend) => {
                tracing::info!(lane, "engine lane rebuilt; serving again");
                health.set(lane, true);
                return Some(backend);
            }
            Err(e) => e,
        };
        tracing::error!(lane, error = %error, retry_in = ?pause, "cannot rebuild the engine lane's backend");
        let until = std::time::Instant::now() + pause;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match jobs.recv_timeout(left) {
                Ok(job) => {
                    let why = format!("the engine lane is restarting after a failure ({error})");
                    (job.done)(job.batch, Err(EngineError::Restarting(why.into())));
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        pause = (pause * 2).min(BACKOFF.1);
    }
}
