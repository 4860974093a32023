//! A backend for the engine's own tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{Backend, BatchBuffer, EngineError, StageTiming};

/// Logit `i` of image `n` is the image's first byte + i; fails or panics on demand.
pub(crate) struct Fake {
    pub(crate) runs: Arc<AtomicUsize>,
    pub(crate) fail_on: Option<usize>,
    pub(crate) panic_on: Option<usize>,
}

impl Backend for Fake {
    fn run(
        &mut self,
        b: &BatchBuffer,
        logits: &mut Vec<f32>,
        t: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        t.clear();
        logits.clear();
        if self.fail_on == Some(run) {
            return Err(EngineError::Inference("injected".into()));
        }
        assert!(self.panic_on != Some(run), "injected panic");
        for i in 0..b.len() {
            logits.extend((0..3).map(|c| f32::from(b.image(i)[0]) + c as f32));
        }
        Ok(())
    }
    fn classes(&self) -> usize {
        3
    }
}

impl Fake {
    /// A fake that never fails.
    pub(crate) fn healthy() -> Self {
        Fake {
            runs: Arc::new(AtomicUsize::new(0)),
            fail_on: None,
            panic_on: None,
        }
    }
}

/// A backend whose device is lost on its first batch.
pub(crate) struct Lost {
    pub(crate) runs: Arc<AtomicUsize>,
}

impl Backend for Lost {
    fn run(
        &mut self,
        _: &BatchBuffer,
        _: &mut Vec<f32>,
        _: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(EngineError::DeviceLost(
            "injected illegal address (700)".into(),
        ))
    }
    fn classes(&self) -> usize {
        3
    }
}
