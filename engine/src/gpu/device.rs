//! The device-operations interface: the handful of operations the executor needs from a device.
//! Two implementations run the same [`Executor`](super::exec::Executor): cuDNN/cuBLASLt/NVRTC
//! through cudarc (feature `cuda`) and the CPU twin ([`super::twin`]), which emulates their
//! arithmetic. Everything above this trait (plan, slots, buckets, arena, ordering of copies and
//! capture) is the same code on both.

use std::time::Duration;

use kernels::Affine;

use super::layout::{ConvGeom, PoolGeom, Region};
use super::model::ConvLayer;

/// Why a device operation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// A library or the device is missing or unusable (at start).
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// The operation failed; the device is still usable.
    #[error("{0}")]
    Failed(String),
    /// The context is poisoned (e.g. an illegal address): nothing more can run in this process.
    #[error("the CUDA context is lost: {0}")]
    Lost(String),
}

/// One of the instants the executor marks on the stream, to time the stages between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Before the host-to-device copy.
    Start = 0,
    /// After the copy of the images.
    Copied = 1,
    /// After the network (normalisation included).
    Computed = 2,
    /// After the logits reached the host.
    Done = 3,
}

/// The operands of one fused convolution. Slots and the workspace are the executor's buffers.
pub struct ConvArgs<'a, B> {
    /// Input activations (fp16 NHWC).
    pub x: &'a B,
    /// The weight arena (filters and bias at the layer's regions).
    pub weights: &'a B,
    /// The shortcut added before the activation, when the layer has one.
    pub z: Option<&'a B>,
    /// Output activations (fp16 NHWC); never the same buffer as `x` or `z`.
    pub y: &'a B,
    /// Scratch of at least the size [`DeviceOps::prepare_conv`] asked for.
    pub workspace: Option<&'a B>,
}

/// What a device must do to run a prepared model. Buffers are the device's own type; each
/// method works on a batch of `n` images (always a bucket size).
pub trait DeviceOps {
    /// A device allocation.
    type Buf;

    /// Allocates `bytes` of zeroed device memory. Only at build time, never while capturing.
    fn alloc(&mut self, bytes: usize) -> Result<Self::Buf, GpuError>;
    /// Allocates and fills device memory with `host`.
    fn upload(&mut self, host: &[u8]) -> Result<Self::Buf, GpuError>;
    /// Copies `host` (the filled part of a batch buffer: `n` images, not the bucket) to the
    /// start of `dst`, asynchronously on the stream.
    fn copy_in(&mut self, host: &[u8], dst: &Self::Buf) -> Result<(), GpuError>;
    /// Reserves host staging for `floats` fp32 outputs (at build time, so no batch allocates).
    fn reserve_out(&mut self, _floats: usize) -> Result<(), GpuError> {
        Ok(())
    }
    /// The build is over: free what only building needed (tuning scratch).
    fn finish_build(&mut self) {}
    /// Waits for everything queued on the stream (after a failed batch, before its host buffer
    /// is handed back while a copy may still read it).
    fn sync(&mut self) -> Result<(), GpuError> {
        Ok(())
    }
    /// Reads the first `bytes` of `src` back to the host, waiting for them (checks and tests
    /// only: never on the serving path).
    fn read(&mut self, src: &Self::Buf, bytes: usize) -> Result<Vec<u8>, GpuError>;
    /// Starts copying `floats` fp32 values from the start of `src` to the host.
    fn copy_out(&mut self, src: &Self::Buf, floats: usize) -> Result<(), GpuError>;
    /// Waits for the stream and writes what [`DeviceOps::copy_out`] copied into `out`.
    fn finish(&mut self, out: &mut [f32]) -> Result<(), GpuError>;

    /// `pixels` u8 RGB pixels of `src` → `channels` fp16 per pixel in `dst` (the NVRTC kernel).
    fn normalize(
        &mut self,
        src: &Self::Buf,
        dst: &Self::Buf,
        pixels: usize,
        channels: usize,
        affine: &Affine,
    ) -> Result<(), GpuError>;
    /// `images` f32 NCHW tensors of `plane` pixels in `src` → `channels` fp16 per pixel in `dst`
    /// (the NVRTC kernel; the client normalised them).
    fn tensor_in(
        &mut self,
        src: &Self::Buf,
        dst: &Self::Buf,
        images: usize,
        plane: usize,
        channels: usize,
    ) -> Result<(), GpuError>;
    /// Sets up step `id` for batches of `n` (descriptors, algorithm choice) and returns the
    /// workspace bytes it needs.
    fn prepare_conv(&mut self, id: usize, layer: &ConvLayer, n: usize) -> Result<usize, GpuError>;
    /// Runs step `id` (prepared for `n`).
    fn conv(
        &mut self,
        id: usize,
        layer: &ConvLayer,
        n: usize,
        args: ConvArgs<'_, Self::Buf>,
    ) -> Result<(), GpuError>;
    /// Max pooling, fp16 in and out.
    fn max_pool(
        &mut self,
        g: &PoolGeom,
        n: usize,
        x: &Self::Buf,
        y: &Self::Buf,
    ) -> Result<(), GpuError>;
    /// Mean over `pixels` positions of `c` channels: fp16 NHWC in, fp32 `[n, c]` out.
    fn avg_pool(
        &mut self,
        c: usize,
        pixels: usize,
        n: usize,
        x: &Self::Buf,
        y: &Self::Buf,
    ) -> Result<(), GpuError>;
    /// fp32 `y[n, out] = x[n, inp] · Wᵀ + b` (`inp_out` = `(inp, out)`), `W` and `b` at their
    /// arena `regions`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        inp_out: (usize, usize),
        n: usize,
        x: &Self::Buf,
        weights: &Self::Buf,
        regions: (Region, Region),
        y: &Self::Buf,
    ) -> Result<(), GpuError>;

    /// Starts recording the stream's work into a graph; `false` when this device has no graphs.
    fn begin_capture(&mut self) -> Result<bool, GpuError>;
    /// Ends the recording and keeps it as bucket `bucket`'s graph.
    fn end_capture(&mut self, bucket: usize) -> Result<(), GpuError>;
    /// Replays bucket `bucket`'s graph; `false` when there is none (then the executor launches
    /// the steps one by one).
    fn launch_graph(&mut self, bucket: usize) -> Result<bool, GpuError>;

    /// Records `mark` on the stream.
    fn mark(&mut self, mark: Mark) -> Result<(), GpuError>;
    /// Time between two marks of the last batch (after `copy_out` returned).
    fn elapsed(&mut self, from: Mark, to: Mark) -> Result<Duration, GpuError>;
}

/// The geometry a conv's tuning key names: batch, shapes, activation and residual.
pub fn conv_shape_key(g: &ConvGeom, n: usize, layer: &ConvLayer) -> String {
    super::tune::shape_key(
        n,
        g.c,
        g.h,
        g.w,
        g.k,
        g.r,
        g.s,
        g.stride,
        g.pad,
        layer.residual,
    )
}
