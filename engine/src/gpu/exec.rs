//! The executor: runs a [`PreparedModel`] on any [`DeviceOps`], and [`PlanBackend`], the lane
//! backend around it.
//!
//! At build: the weight arena is uploaded once; the input staging (u8 images, f32 tensors), the
//! activation slots (for
//! the largest bucket), the fp32 pooled features and logits are allocated once; every conv step is
//! prepared for every bucket and one shared workspace of the largest need is allocated. Then, when
//! the device has graphs, each bucket's steps are run once and captured as a graph (no
//! allocation inside capture: everything exists by then).
//!
//! Per batch of `n`: copy the `n` inputs in (not the bucket), run the input kernel of their kind
//! (normalise images, or convert tensors) into the first slot, replay the bucket's graph of the
//! network (or launch the steps one by one), copy `n × classes` logits out, and read the stage
//! times off the marks.
//! Rows `n..bucket` hold whatever the previous batch left there; rows never mix, so that is
//! harmless.

use std::sync::Arc;

use kernels::Affine;

use super::device::{ConvArgs, DeviceOps, GpuError, Mark};
use super::layout::widen;
use super::model::{Layer, PreparedModel};
use super::plan::{bucket, buckets_up_to};
use crate::{
    Backend, BatchBuffer, EngineError, InputKind, StageTiming, IMAGE_BYTES, IMAGE_SIDE,
    TENSOR_BYTES,
};

/// A prepared model resident on one device, ready to run batches.
pub struct Executor<D: DeviceOps> {
    dev: D,
    model: Arc<PreparedModel>,
    buckets: Vec<usize>,
    affine: Affine,
    weights: D::Buf,
    input: D::Buf,
    tensors: D::Buf,
    slots: Vec<D::Buf>,
    pooled: D::Buf,
    logits: D::Buf,
    workspace: Option<D::Buf>,
    graphs: Vec<bool>,
}

/// What [`Executor::capture_graphs`] achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Graphs {
    /// Every bucket replays a captured graph.
    All,
    /// The device has no graphs (the CPU twin): every batch launches its steps.
    Unsupported,
    /// Capture failed for these buckets (with the first reason); they launch their steps.
    Failed(Vec<usize>, String),
}

impl<D: DeviceOps> Executor<D> {
    /// Uploads the model and allocates everything batches up to `max_batch` need.
    pub fn new(
        mut dev: D,
        model: Arc<PreparedModel>,
        max_batch: usize,
        affine: Affine,
    ) -> Result<Self, GpuError> {
        let buckets = buckets_up_to(max_batch);
        let max = *buckets
            .last()
            .ok_or_else(|| GpuError::Failed("the largest batch must be at least 1".into()))?;
        let weights = dev.upload(&model.arena)?;
        let input = dev.alloc(max * IMAGE_BYTES)?;
        let tensors = dev.alloc(max * TENSOR_BYTES)?;
        let slots = (0..model.plan.slots.len())
            .map(|i| dev.alloc(model.slot_bytes(i, max)))
            .collect::<Result<Vec<_>, _>>()?;
        let pooled = dev.alloc(max * model.features * 4)?;
        let logits = dev.alloc(max * model.classes * 4)?;
        let mut need = Vec::new();
        for &b in &buckets {
            for (id, layer) in model.layers.iter().enumerate() {
                if let Layer::Conv(conv) = layer {
                    need.push(dev.prepare_conv(id, conv, b)?);
                }
            }
        }
        let ws = super::layout::shared_workspace(need);
        let workspace = if ws > 0 { Some(dev.alloc(ws)?) } else { None };
        dev.reserve_out(max * model.classes)?;
        dev.finish_build();
        Ok(Executor {
            graphs: vec![false; buckets.len()],
            dev,
            model,
            buckets,
            affine,
            weights,
            input,
            tensors,
            slots,
            pooled,
            logits,
            workspace,
        })
    }

    /// The batch sizes this executor runs (a batch is rounded up to the next).
    pub fn buckets(&self) -> &[usize] {
        &self.buckets
    }

    /// Width of one output row.
    pub fn classes(&self) -> usize {
        self.model.classes
    }

    /// The device (for its own reports).
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Runs every bucket once, then captures its network steps (not the input kernel, which
    /// depends on the batch's kind) as a graph where the device can.
    pub fn capture_graphs(&mut self) -> Result<Graphs, GpuError> {
        let (mut failed, mut reason) = (Vec::new(), None);
        for i in 0..self.buckets.len() {
            let b = self.buckets[i];
            self.input_kernel(InputKind::Image, b)?;
            self.run_network(b)?;
            if !self.dev.begin_capture()? {
                return Ok(Graphs::Unsupported);
            }
            let recorded = self.run_network(b);
            let ended = self.dev.end_capture(b);
            match recorded.and(ended) {
                Ok(()) => self.graphs[i] = true,
                Err(e @ GpuError::Lost(_)) => return Err(e),
                Err(e) => {
                    failed.push(b);
                    reason.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Ok(match reason {
            None => Graphs::All,
            Some(r) => Graphs::Failed(failed, r),
        })
    }

    /// Runs the first `n` images of `images` (u8 HWC, `n × IMAGE_BYTES`), writing `n × classes`
    /// logits and the `h2d`, `compute` and `d2h` timings.
    pub fn run(
        &mut self,
        images: &[u8],
        n: usize,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), GpuError> {
        self.run_kind(InputKind::Image, images, n, (logits, timings))
    }

    /// Runs the first `n` inputs of kind `kind` in `inputs` (`n × kind.bytes()`), as [`run`].
    ///
    /// [`run`]: Executor::run
    pub fn run_kind(
        &mut self,
        kind: InputKind,
        inputs: &[u8],
        n: usize,
        (logits, timings): (&mut Vec<f32>, &mut Vec<StageTiming>),
    ) -> Result<(), GpuError> {
        let outcome = self.run_batch(kind, inputs, n, logits, timings);
        if outcome.is_err() {
            // A copy of this batch may still be in flight: its buffer goes back to the batcher
            // only once the stream is idle.
            let _ = self.dev.sync();
        }
        outcome
    }

    fn run_batch(
        &mut self,
        kind: InputKind,
        inputs: &[u8],
        n: usize,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), GpuError> {
        logits.clear();
        timings.clear();
        if n == 0 {
            return Ok(());
        }
        let (b, inputs) = self.batch_input(kind, inputs, n)?;
        let bi = self.buckets.iter().position(|&x| x == b).unwrap_or(0);
        self.dev.mark(Mark::Start)?;
        let staging = match kind {
            InputKind::Image => &self.input,
            InputKind::Tensor => &self.tensors,
        };
        self.dev.copy_in(inputs, staging)?;
        self.dev.mark(Mark::Copied)?;
        // Only the n rows copied in: rows n..b of the first slot keep the previous batch's
        // (finite) values, which the graph runs over harmlessly (rows never mix).
        self.input_kernel(kind, n)?;
        if !(self.graphs[bi] && self.dev.launch_graph(b)?) {
            self.run_network(b)?;
        }
        self.dev.mark(Mark::Computed)?;
        logits.resize(n * self.model.classes, 0.0);
        self.dev.copy_out(&self.logits, logits.len())?;
        self.dev.mark(Mark::Done)?;
        self.dev.finish(logits)?;
        for (stage, from, to) in [
            ("h2d", Mark::Start, Mark::Copied),
            ("compute", Mark::Copied, Mark::Computed),
            ("d2h", Mark::Computed, Mark::Done),
        ] {
            let duration = self.dev.elapsed(from, to)?;
            timings.push(StageTiming { stage, duration });
        }
        Ok(())
    }

    /// Runs `n` images step by step (no graph) and returns every step's output for them, widened
    /// to f32: fp16 activations, then the fp32 pooled features and logits. For checks that
    /// compare devices step by step; never on the serving path.
    pub fn run_traced(&mut self, images: &[u8], n: usize) -> Result<Vec<Vec<f32>>, GpuError> {
        let (b, images) = self.batch_input(InputKind::Image, images, n)?;
        self.dev.copy_in(images, &self.input)?;
        self.input_kernel(InputKind::Image, b)?;
        let mut outputs = Vec::new();
        for id in 0..self.model.layers.len() {
            self.run_step(id, b)?;
            let step = &self.model.plan.steps[id];
            let per_image = self.model.plan.shapes[step.op + 1].len();
            let (buf, width) = match self.model.layers[id] {
                Layer::AvgPool { .. } => (&self.pooled, 4),
                Layer::Linear { .. } => (&self.logits, 4),
                _ => (&self.slots[step.writes], 2),
            };
            let bytes = self.dev.read(buf, n * per_image * width)?;
            outputs.push(widen(&bytes, width));
        }
        Ok(outputs)
    }

    /// The bucket a batch of `n` runs in, and its `n` inputs out of `images`.
    fn batch_input<'a>(
        &self,
        kind: InputKind,
        images: &'a [u8],
        n: usize,
    ) -> Result<(usize, &'a [u8]), GpuError> {
        let b = bucket(n, &self.buckets).ok_or_else(|| {
            GpuError::Failed(format!(
                "a batch of {n} is larger than the largest bucket ({})",
                self.buckets.last().unwrap_or(&0)
            ))
        })?;
        let bytes = n * kind.bytes();
        let images = images
            .get(..bytes)
            .ok_or_else(|| GpuError::Failed(format!("{n} inputs need {bytes} bytes")))?;
        Ok((b, images))
    }

    /// Every step of the network for a batch of `b` (a bucket): what a graph holds.
    fn run_network(&mut self, b: usize) -> Result<(), GpuError> {
        for id in 0..self.model.layers.len() {
            self.run_step(id, b)?;
        }
        Ok(())
    }

    /// The first `b` staged inputs of `kind` → the first slot's fp16 NHWC: u8 images
    /// normalised, or f32 tensors converted.
    fn input_kernel(&mut self, kind: InputKind, b: usize) -> Result<(), GpuError> {
        let plan = &self.model.plan;
        let (first, channels) = (&self.slots[plan.io_slots.0], plan.shapes[0].c);
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        match kind {
            InputKind::Image => {
                self.dev
                    .normalize(&self.input, first, b * plane, channels, &self.affine)
            }
            InputKind::Tensor => self.dev.tensor_in(&self.tensors, first, b, plane, channels),
        }
    }

    /// Step `id` of the network for a batch of `b`.
    fn run_step(&mut self, id: usize, b: usize) -> Result<(), GpuError> {
        let step = &self.model.plan.steps[id];
        let x = &self.slots[step.reads[0]];
        let y = &self.slots[step.writes];
        match &self.model.layers[id] {
            Layer::Conv(conv) => {
                let args = ConvArgs {
                    x,
                    weights: &self.weights,
                    z: step.reads.get(1).map(|&s| &self.slots[s]),
                    y,
                    workspace: self.workspace.as_ref(),
                };
                self.dev.conv(id, conv, b, args)?;
            }
            Layer::MaxPool(g) => self.dev.max_pool(g, b, x, y)?,
            Layer::AvgPool { c, pixels } => {
                self.dev.avg_pool(*c, *pixels, b, x, &self.pooled)?;
            }
            Layer::Linear {
                inp,
                out,
                weight,
                bias,
            } => self.dev.linear(
                (*inp, *out),
                b,
                &self.pooled,
                &self.weights,
                (*weight, *bias),
                &self.logits,
            )?,
        }
        Ok(())
    }
}

impl From<GpuError> for EngineError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Lost(m) => EngineError::DeviceLost(m.into()),
            GpuError::Unavailable(m) => EngineError::DeviceUnavailable(m.into()),
            GpuError::Failed(m) => EngineError::Inference(m.into()),
        }
    }
}

/// Allocates batch buffers in the memory a device copies from fastest.
pub type HostBatchAlloc = Box<dyn Fn(usize) -> BatchBuffer>;

/// A lane backend running the GPU plan on device `D`.
pub struct PlanBackend<D: DeviceOps> {
    exec: Executor<D>,
    host: Option<HostBatchAlloc>,
}

impl<D: DeviceOps> PlanBackend<D> {
    /// Wraps a built executor; `host` supplies batch buffers (pinned memory on a GPU; `None`:
    /// the heap).
    pub fn new(exec: Executor<D>, host: Option<HostBatchAlloc>) -> Self {
        PlanBackend { exec, host }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor<D> {
        &self.exec
    }
}

impl<D: DeviceOps> Backend for PlanBackend<D> {
    fn run(
        &mut self,
        batch: &BatchBuffer,
        logits: &mut Vec<f32>,
        timings: &mut Vec<StageTiming>,
    ) -> Result<(), EngineError> {
        Ok(self
            .exec
            .run_kind(batch.kind(), batch.images(), batch.len(), (logits, timings))?)
    }

    fn classes(&self) -> usize {
        self.exec.classes()
    }

    fn alloc_batch(&self, capacity: usize) -> BatchBuffer {
        match &self.host {
            Some(alloc) => alloc(capacity),
            None => BatchBuffer::new(capacity),
        }
    }
}
