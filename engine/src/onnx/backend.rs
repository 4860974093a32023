//! [`OnnxBackend`]: ONNX Runtime on any provider through I/O binding, in the cuDNN engine's
//! stages. Per batch size met, four tensors that ONNX Runtime allocated are kept and reused:
//! the input and the logits in host memory (pinned on the GPU providers, so each copy is a DMA),
//! and both again in the provider's device memory. A batch is normalised into the host input
//! (`normalize`), copied to the device (`h2d`), run with both device tensors bound (`compute`),
//! and its logits copied back (`d2h`): each copy is synchronous, so each stage's time is its own.
//! On the CPU provider the "device" is host memory and the same code runs in CI.
//!
//! Binding a borrowed buffer instead makes `ort` copy it first, and deadlocks in ort
//! 2.0.0-rc.15: every bound tensor here is owned.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Instant;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

use super::{session, Provider, TensorRtOptions};
use crate::runtime::{io_shape, CpuConfig};
use crate::{
    Backend, BatchBuffer, EngineError, Normalization, StageTiming, IMAGE_CHANNELS, IMAGE_SIDE,
};

/// The tensors of one batch size.
struct Buffers {
    host_in: Tensor<f32>,
    device_in: Tensor<f32>,
    device_out: Tensor<f32>,
    host_out: Tensor<f32>,
}

/// ONNX Runtime on `provider` through I/O binding. Not shared between threads: each lane builds
/// its own (on a GPU, each session has its own CUDA stream).
pub struct OnnxBackend {
    session: Session,
    binding: IoBinding,
    input_name: String,
    output_name: String,
    classes: usize,
    normalization: Normalization,
    /// Whether failures are read for a lost GPU ([`EngineError::from_gpu_runtime`]).
    gpu: bool,
    /// Host memory: pinned on the GPU providers.
    host: Allocator,
    /// The provider's own memory (host memory on the CPU provider).
    device: Allocator,
    /// One set of tensors per batch size met.
    buffers: HashMap<usize, Buffers>,
}

impl OnnxBackend {
    /// Builds the session of `config.model` on `provider`.
    pub fn new(config: &CpuConfig, provider: &Provider) -> Result<Self, EngineError> {
        let session = session(config, provider)?;
        let (input_name, classes) = io_shape(&session)?;
        let output_name = session.outputs()[0].name().to_string();
        let binding = session.create_binding().map_err(EngineError::model_load)?;
        let (host, device) = match provider {
            Provider::Cpu => (Allocator::default(), Allocator::default()),
            Provider::Cuda { device } | Provider::TensorRt(TensorRtOptions { device, .. }) => (
                allocator(&session, pinned(*device))?,
                allocator(
                    &session,
                    (AllocationDevice::CUDA, *device, MemoryType::Default),
                )?,
            ),
        };
        Ok(Self {
            session,
            binding,
            input_name,
            output_name,
            classes,
            normalization: config.normalization,
            gpu: *provider != Provider::Cpu,
            host,
            device,
            buffers: HashMap::new(),
        })
    }

    /// This runtime failure as an engine error: on a GPU, one that poisoned the context is
    /// [`EngineError::DeviceLost`].
    fn failed(&self, e: ort::Error) -> EngineError {
        match self.gpu {
            true => EngineError::from_gpu_runtime(e),
            false => EngineError::inference(e),
        }
    }

    /// The tensors of batch size `n`, allocated on first use.
    fn buffers(&mut self, n: usize) -> Result<&mut Buffers, EngineError> {
        match self.buffers.entry(n) {
            Entry::Occupied(b) => Ok(b.into_mut()),
            Entry::Vacant(v) => {
                let input = [n, IMAGE_CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
                let output = [n, self.classes];
                let new = |a: &Allocator, shape: &[usize]| {
                    Tensor::new(a, shape.to_vec()).map_err(EngineError::inference)
                };
                Ok(v.insert(Buffers {
                    host_in: new(&self.host, &input)?,
                    device_in: new(&self.device, &input)?,
                    device_out: new(&self.device, &output)?,
                    host_out: new(&self.host, &output)?,
                }))
            }
        }
    }

    /// Runs the four stages of an `n`-input batch whose input is already in its host tensor.
    fn stages(&mut self, n: usize, timings: &mut Vec<StageTiming>) -> Result<(), ort::Error> {
        let mut clock = Clock(Instant::now(), timings);
        let b = self
            .buffers
            .get_mut(&n)
            .expect("buffers are made before the stages");
        b.host_in.copy_into(&mut b.device_in)?;
        clock.lap("h2d");
        self.binding
            .bind_input(self.input_name.as_str(), &b.device_in)?;
        self.binding
            .bind_output(self.output_name.as_str(), &mut b.device_out)?;
        drop(self.session.run_binding(&self.binding)?);
        clock.lap("compute");
        b.device_out.copy_into(&mut b.host_out)?;
        clock.lap("d2h");
        Ok(())
    }
}

/// Appends each stage's time since the last.
struct Clock<'a>(Instant, &'a mut Vec<StageTiming>);

impl Clock<'_> {
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.1.push(StageTiming {
            stage,
            duration: now - self.0,
        });
        self.0 = now;
    }
}

/// Pinned host memory, for GPU `id`.
fn pinned(id: i32) -> (AllocationDevice<'static>, i32, MemoryType) {
    (AllocationDevice::CUDA_PINNED, id, MemoryType::CPUInput)
}

/// ONNX Runtime's allocator of `device` memory on GPU `id`, for `session`.
fn allocator(
    session: &Session,
    (device, id, kind): (AllocationDevice<'static>, i32, MemoryType),
) -> Result<Allocator, EngineError> {
    let memory = MemoryInfo::new(device, id, AllocatorType::Device, kind)
        .map_err(EngineError::model_load)?;
    Allocator::new(session, memory).map_err(EngineError::model_load)
}

impl Backend for OnnxBackend {
    fn run(
        &mut self,
        batch: &BatchBuffer,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        timings.clear();
        logits.clear();
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        let start = Instant::now();
        let normalization = self.normalization;
        let b = self.buffers(n)?;
        normalization.write_batch(batch, b.host_in.extract_tensor_mut().1);
        timings.push(StageTiming {
            stage: "normalize",
            duration: start.elapsed(),
        });
        self.stages(n, timings).map_err(|e| self.failed(e))?;
        let (_, data) = self.buffers[&n].host_out.extract_tensor();
        logits.extend_from_slice(data);
        Ok(())
    }

    fn classes(&self) -> usize {
        self.classes
    }
}
