//! ONNX Runtime as a tool for transforming models, not for serving them: its basic graph
//! optimisations written back out as ONNX ([`optimize_onnx`]: constants folded, batch norms
//! fused into their convolutions), and a [`Probe`] that runs a model and returns every output
//! it declares (calibration reads intermediate tensors by declaring them as outputs).

use std::path::Path;

use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

use crate::runtime::environment;
use crate::{EngineError, IMAGE_CHANNELS, IMAGE_SIDE};

/// `bytes` after ONNX Runtime's basic optimisations (standard ONNX operators only), written
/// through the file `scratch` (removed after). [`crate::init_onnx_runtime`] must have succeeded.
pub fn optimize_onnx(bytes: &[u8], scratch: &Path) -> Result<Vec<u8>, EngineError> {
    let mut builder = Session::builder(environment()?)
        .map_err(EngineError::model_load)?
        .with_optimization_level(GraphOptimizationLevel::Level1)
        .map_err(EngineError::model_load)?
        .with_optimized_model_path(scratch)
        .map_err(EngineError::model_load)?;
    drop(
        builder
            .commit_from_memory(bytes)
            .map_err(EngineError::model_load)?,
    );
    let out = std::fs::read(scratch)
        .map_err(|e| EngineError::model_load(format!("{}: {e}", scratch.display())))?;
    let _ = std::fs::remove_file(scratch);
    Ok(out)
}

/// A model whose every declared output is returned, for batches of f32 NCHW images.
pub struct Probe {
    session: Session,
    input: String,
    outputs: Vec<String>,
}

impl Probe {
    /// A session of `bytes` with `threads` intra-op threads and no graph rewriting beyond the
    /// basic level (the outputs must stay the declared tensors).
    pub fn new(bytes: &[u8], threads: usize) -> Result<Self, EngineError> {
        let session = Session::builder(environment()?)
            .map_err(EngineError::model_load)?
            .with_optimization_level(GraphOptimizationLevel::Level1)
            .map_err(EngineError::model_load)?
            .with_intra_threads(threads.max(1))
            .map_err(EngineError::model_load)?
            .commit_from_memory(bytes)
            .map_err(EngineError::model_load)?;
        let [input] = session.inputs() else {
            return Err(EngineError::model_load(
                "the model must have exactly one input",
            ));
        };
        let input = input.name().to_string();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Ok(Probe {
            session,
            input,
            outputs,
        })
    }

    /// The names of the outputs, in the order [`Probe::run`] returns them.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Runs `n` images of f32 NCHW `input` and returns each output, flattened.
    pub fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        let shape = [n, IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(EngineError::inference)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(EngineError::inference)?;
        self.outputs
            .iter()
            .map(|name| {
                let (_, data) = outputs[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(EngineError::inference)?;
                Ok(data.to_vec())
            })
            .collect()
    }
}
