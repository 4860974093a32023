//! The model slot: the pipeline that serves now, the batcher threads of those that served
//! before (still finishing), and the server's readiness. A new pipeline goes in with one write
//! ([`Slot::install`]); requests that hold the old one finish on it. At shutdown the slot goes
//! not-ready, then draining, then gives up its pipeline and joins every batcher by a deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};

use super::Pipeline;
use crate::error::ApiError;
use crate::telemetry::metrics::{Metrics, ModelLabels};

/// The serving pipeline and the server's state around it.
pub struct Slot {
    pipeline: RwLock<Option<Arc<Pipeline>>>,
    /// Shutting down: no new work, the pipeline is being drained.
    draining: AtomicBool,
    /// SIGTERM arrived: not ready, still serving (`SHUTDOWN_DELAY_SECONDS`), then draining.
    stopping: AtomicBool,
    /// Batcher threads: the serving one and any retired by a reload that are still finishing.
    batchers: Mutex<Vec<JoinHandle<()>>>,
    /// The `model_info` series of the serving model, and what its labels are made of.
    model_labels: Mutex<Option<ModelLabels>>,
    labels: ModelLabels,
    metrics: Metrics,
    /// Told when the first pipeline goes in and when draining starts.
    changed: tokio::sync::Notify,
}

impl Slot {
    /// An empty slot; `labels` is the `model_info` series without its version.
    pub fn new(labels: ModelLabels, metrics: Metrics) -> Self {
        Slot {
            pipeline: RwLock::new(None),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            batchers: Mutex::default(),
            model_labels: Mutex::default(),
            labels,
            metrics,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until a pipeline serves or the slot drains (no polling): `true` if one serves.
    pub async fn serving(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a change between the check and the wait is seen.
            changed.as_mut().enable();
            if self.draining() {
                return false;
            }
            if self.current().is_some() {
                return true;
            }
            changed.await;
        }
    }

    /// Serves `pipeline` from now on: requests that hold the previous one finish on it, and its
    /// batcher stops when the last lets go. `model_info` follows.
    /// Returns `false` (and drops `pipeline`) when the server is shutting down.
    pub fn install(&self, pipeline: Pipeline, thread: JoinHandle<()>) -> bool {
        let labels = ModelLabels {
            version: pipeline.version.clone(),
            ..self.labels.clone()
        };
        {
            let mut slot = self.pipeline.write();
            if self.draining() {
                drop(slot);
                self.retire(pipeline, thread);
                return false;
            }
            *slot = Some(Arc::new(pipeline));
        }
        self.changed.notify_waiters();
        let previous = self.model_labels.lock().replace(labels.clone());
        if let Some(old) = previous.filter(|old| *old != labels) {
            self.metrics.model_info.remove(&old);
        }
        self.metrics.model_info.get_or_create(&labels).set(1);
        let mut threads = self.batchers.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        true
    }

    /// A pipeline built and not used (a refused reload): its batcher stops once it is dropped.
    pub fn retire(&self, pipeline: Pipeline, thread: JoinHandle<()>) {
        drop(pipeline);
        self.batchers.lock().push(thread);
    }

    /// Shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The pipeline, when loaded and not draining.
    pub fn pipeline(&self) -> Result<Arc<Pipeline>, ApiError> {
        if self.draining() {
            return Err(ApiError::NotReady("draining"));
        }
        self.pipeline
            .read()
            .clone()
            .ok_or(ApiError::NotReady("the model is loading"))
    }

    /// The pipeline serving, draining or not (the repository index shows its version).
    pub fn current(&self) -> Option<Arc<Pipeline>> {
        self.pipeline.read().clone()
    }

    /// Alive: every engine lane thread is running (a dead one needs a process restart, which
    /// a liveness probe failing on 503 brings about).
    pub fn alive(&self) -> Result<(), ApiError> {
        let Some(p) = self.current() else {
            return Ok(());
        };
        if p.health.any_dead() {
            return Err(ApiError::NotReady(
                "an engine lane died or lost its GPU; restart the process",
            ));
        }
        if p.batcher_died.load(Ordering::Acquire) {
            return Err(ApiError::NotReady(
                "the batcher thread died; restart the process",
            ));
        }
        Ok(())
    }

    /// Ready: loaded, warmed up, not stopping, and every engine lane up.
    pub fn ready(&self) -> Result<(), ApiError> {
        self.alive()?;
        if self.stopping.load(Ordering::Acquire) {
            return Err(ApiError::NotReady("shutting down"));
        }
        if !self.pipeline()?.health.all_up() {
            return Err(ApiError::NotReady("an engine lane is restarting"));
        }
        Ok(())
    }

    /// SIGTERM: not ready from now on, still serving.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Draining from now on: no request gets the pipeline. Under the pipeline lock, so a reload
    /// finishing now either swapped in before this (and is drained like the rest) or sees
    /// `draining` and drops its new pipeline.
    pub fn drain(&self) {
        let _slot = self.pipeline.write();
        self.draining.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Lets go of the pipeline (its batcher sees the queue close once handlers let go too) and
    /// returns every batcher thread to join.
    pub fn close(&self) -> Vec<JoinHandle<()>> {
        self.pipeline.write().take();
        std::mem::take(&mut *self.batchers.lock())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiter_for_the_first_pipeline_waits_without_polling_and_wakes_at_the_drain() {
        let labels = ModelLabels {
            device: "cpu".into(),
            engine: "onnxruntime",
            model: "m".into(),
            precision: "fp32",
            preprocess: "exact",
            version: String::new(),
        };
        let slot = Arc::new(Slot::new(labels, Metrics::new()));
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.serving().await }
        });
        // An hour of the paused clock: nothing wakes the waiter but the slot itself.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        slot.drain();
        assert!(!waiter.await.unwrap(), "drained: no pipeline serves");
        assert!(!slot.serving().await);
    }
}
