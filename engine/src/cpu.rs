//! The CPU backend: normalise images (or take tensors) to f32 NCHW, run ONNX Runtime, copy the
//! logits out.

use std::time::Instant;

use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::{io_shape, take_logits, CpuConfig};
use crate::{
    Backend, BatchBuffer, EngineError, Normalization, StageTiming, IMAGE_CHANNELS, IMAGE_SIDE,
};

/// ONNX Runtime on the CPU. Not shared between threads: each lane builds its own.
pub struct CpuBackend {
    session: Session,
    input_name: String,
    classes: usize,
    normalization: Normalization,
    input: Vec<f32>,
}

impl CpuBackend {
    /// Builds a session for `config.model`. [`crate::init_onnx_runtime`] must have succeeded.
    pub fn new(config: &CpuConfig) -> Result<Self, EngineError> {
        let session = crate::onnx::session(config, &crate::onnx::Provider::Cpu)?;
        let (input_name, classes) = io_shape(&session)?;
        Ok(Self {
            session,
            input_name,
            classes,
            normalization: config.normalization,
            input: Vec::new(),
        })
    }
}

impl Backend for CpuBackend {
    fn run(
        &mut self,
        batch: &BatchBuffer,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        timings.clear();
        logits.clear();
        if batch.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.input
            .resize(batch.len() * IMAGE_CHANNELS * IMAGE_SIDE * IMAGE_SIDE, 0.0);
        self.normalization.write_batch(batch, &mut self.input);
        let normalized = Instant::now();
        timings.push(StageTiming {
            stage: "normalize",
            duration: normalized - start,
        });

        let shape = [batch.len(), IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
        let tensor =
            TensorRef::from_array_view((shape, &self.input[..])).map_err(EngineError::inference)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(EngineError::inference)?;
        take_logits(&outputs, batch.len(), self.classes, logits)?;
        timings.push(StageTiming {
            stage: "compute",
            duration: normalized.elapsed(),
        });
        Ok(())
    }

    fn classes(&self) -> usize {
        self.classes
    }
}
