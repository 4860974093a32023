//! The CUDA device (feature `cuda`): cudarc with dynamic loading, so the binary builds and starts
//! without CUDA and fails cleanly at start when it is asked for a GPU it cannot use.
//!
//! Per lane thread: its own stream, cuDNN handle and cuBLASLt handle on the one shared context
//! (event tracking off: the stream orders everything and the executor synchronises before a
//! buffer is reused); the kernels compiled to CUBIN for the device; four timing events; one CUDA
//! graph per bucket. Every buffer is a `CudaSlice<u8>` allocated at build time.

mod blas;
mod dnn;
mod pinned;
mod setup;

pub use setup::{backend, executor, probe, CudaConfig};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaGraph, CudaSlice, CudaStream, DevicePtr, DriverError,
    PinnedHostSlice,
};
use kernels::launch::{DevBuf, Kernels};
use kernels::{Affine, KernelError};

use super::device::{ConvArgs, DeviceOps, GpuError, Mark};
use super::layout::{PoolGeom, Region};
use super::model::ConvLayer;
use super::tune::TuneCache;

use crate::error::is_sticky_cuda_error as is_sticky;

fn from_driver(what: &str, e: DriverError) -> GpuError {
    let code = e.0 as u32;
    let msg = format!("{what}: {e:?}");
    if is_sticky(code) {
        GpuError::Lost(msg)
    } else {
        GpuError::Failed(msg)
    }
}

pub(crate) fn driver(what: &str) -> impl Fn(DriverError) -> GpuError + '_ {
    move |e| from_driver(what, e)
}

fn from_kernel(e: KernelError) -> GpuError {
    match e {
        KernelError::Driver { code, .. } if is_sticky(code) => GpuError::Lost(e.to_string()),
        other => GpuError::Failed(other.to_string()),
    }
}

/// One lane's device: its stream, libraries' handles, kernels, events and graphs.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    dnn: dnn::Dnn,
    lt: blas::Lt,
    graphs: HashMap<usize, CudaGraph>,
    events: [CudaEvent; 4],
    tune_events: [CudaEvent; 2],
    staged: Option<PinnedHostSlice<f32>>,
    staged_len: usize,
    /// `CUBIN sm_90` or `PTX`, and the device's name, for the start-up log.
    pub description: String,
}

impl CudaDevice {
    fn new(ctx: Arc<CudaContext>, tune: TuneCache, timing: bool) -> Result<Self, GpuError> {
        ctx.bind_to_thread().map_err(driver("bind"))?;
        let stream = ctx.new_stream().map_err(driver("stream"))?;
        let kernels = Kernels::for_device(&ctx).map_err(from_kernel)?;
        let event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(driver("event"))
        };
        let events = [event()?, event()?, event()?, event()?];
        let tune_events = [event()?, event()?];
        let gpu = setup::uuid(&ctx)?;
        let name = ctx.name().unwrap_or_default();
        let description = format!("{name} ({gpu}), kernels as {}", kernels.form);
        Ok(CudaDevice {
            dnn: dnn::Dnn::new(&stream, gpu, tune, timing)?,
            lt: blas::Lt::new(&stream)?,
            kernels,
            stream,
            graphs: HashMap::new(),
            events,
            tune_events,
            staged: None,
            staged_len: 0,
            description,
            ctx,
        })
    }

    /// Host staging for the logits, plain pinned (not write-combined: the host reads it); sized
    /// at build time for the largest bucket, so serving never allocates it.
    fn grow_staging(&mut self, floats: usize) -> Result<(), GpuError> {
        if self.staged.as_ref().is_none_or(|s| s.len() < floats) {
            // SAFETY: a fresh allocation of `floats` f32 with no flags; nothing refers to the
            // old one (every copy into it finished at the last `finish`).
            let fresh = unsafe { self.ctx.alloc_pinned_with_flags::<f32>(floats.max(1), 0) }
                .map_err(driver("pinned logits"))?;
            self.staged = Some(fresh);
        }
        Ok(())
    }

    fn buf<'a>(&self, b: &'a CudaSlice<u8>) -> DevBuf<'a> {
        DevBuf::of(b, &self.stream)
    }

    fn ptr(&self, b: &CudaSlice<u8>) -> u64 {
        b.device_ptr(&self.stream).0
    }

    fn region(&self, arena: &CudaSlice<u8>, r: Region) -> Result<u64, GpuError> {
        if r.offset + r.bytes > arena.len() {
            return Err(GpuError::Failed(format!(
                "region {r:?} outside the weight arena"
            )));
        }
        Ok(self.ptr(arena) + r.offset as u64)
    }

    /// After a library call failed: a sticky driver error means the context is lost.
    fn check(&self, e: GpuError) -> GpuError {
        match (&e, self.stream.synchronize()) {
            (GpuError::Failed(m), Err(d)) if is_sticky(d.0 as u32) => {
                GpuError::Lost(format!("{m}; {d:?}"))
            }
            _ => e,
        }
    }
}

fn need(what: &str, buf: &CudaSlice<u8>, bytes: usize) -> Result<(), GpuError> {
    if buf.len() < bytes {
        return Err(GpuError::Failed(format!(
            "{what}: needs {bytes} bytes, the buffer has {}",
            buf.len()
        )));
    }
    Ok(())
}

impl DeviceOps for CudaDevice {
    type Buf = CudaSlice<u8>;

    fn alloc(&mut self, bytes: usize) -> Result<CudaSlice<u8>, GpuError> {
        self.stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(driver("alloc"))
    }

    fn upload(&mut self, host: &[u8]) -> Result<CudaSlice<u8>, GpuError> {
        let buf = self.stream.clone_htod(host).map_err(driver("upload"))?;
        self.stream.synchronize().map_err(driver("upload"))?;
        Ok(buf)
    }

    fn copy_in(&mut self, host: &[u8], dst: &CudaSlice<u8>) -> Result<(), GpuError> {
        need("copy in", dst, host.len())?;
        // SAFETY: `dst` holds at least `host.len()` bytes (checked); `host` (the batch's pinned
        // buffer) stays borrowed and unchanged until `finish` synchronises the stream, before
        // the executor returns the batch.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(self.ptr(dst), host, self.stream.cu_stream())
        }
        .map_err(driver("copy in"))
    }

    fn reserve_out(&mut self, floats: usize) -> Result<(), GpuError> {
        self.grow_staging(floats)
    }

    fn finish_build(&mut self) {
        self.dnn.drop_scratch();
    }

    fn sync(&mut self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(driver("synchronize"))
    }

    fn read(&mut self, src: &CudaSlice<u8>, bytes: usize) -> Result<Vec<u8>, GpuError> {
        need("read", src, bytes)?;
        let mut out = vec![0u8; bytes];
        self.stream.synchronize().map_err(driver("read"))?;
        // SAFETY: `src` holds at least `bytes` bytes (checked) and the stream is idle, so the
        // synchronous copy reads finished values into `out`, which has room for them.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut out, self.ptr(src)) }
            .map_err(driver("read"))?;
        Ok(out)
    }

    fn copy_out(&mut self, src: &CudaSlice<u8>, floats: usize) -> Result<(), GpuError> {
        need("copy out", src, floats * 4)?;
        self.grow_staging(floats)?;
        let src_ptr = self.ptr(src);
        let staged = self
            .staged
            .as_mut()
            .ok_or_else(|| GpuError::Failed("no staging".into()))?;
        let host = staged.as_mut_slice().map_err(driver("pinned logits"))?;
        // SAFETY: `src` holds `floats` f32 (checked); the pinned staging holds at least as many
        // and is not read until `finish` has synchronised the stream.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(
                &mut host[..floats],
                src_ptr,
                self.stream.cu_stream(),
            )
        }
        .map_err(driver("copy out"))?;
        self.staged_len = floats;
        Ok(())
    }

    fn finish(&mut self, out: &mut [f32]) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(driver("synchronize"))?;
        let staged = self
            .staged
            .as_ref()
            .ok_or_else(|| GpuError::Failed("nothing was copied out".into()))?;
        let host = staged.as_slice().map_err(driver("pinned logits"))?;
        let n = out.len().min(self.staged_len);
        out[..n].copy_from_slice(&host[..n]);
        Ok(())
    }

    fn normalize(
        &mut self,
        src: &CudaSlice<u8>,
        dst: &CudaSlice<u8>,
        pixels: usize,
        channels: usize,
        affine: &Affine,
    ) -> Result<(), GpuError> {
        self.kernels
            .normalize(
                &self.stream,
                self.buf(src),
                self.buf(dst),
                pixels,
                channels,
                affine,
            )
            .map_err(from_kernel)
    }

    fn tensor_in(
        &mut self,
        src: &CudaSlice<u8>,
        dst: &CudaSlice<u8>,
        images: usize,
        plane: usize,
        channels: usize,
    ) -> Result<(), GpuError> {
        self.kernels
            .tensor_in(
                &self.stream,
                (self.buf(src), self.buf(dst)),
                (images, plane, channels),
            )
            .map_err(from_kernel)
    }

    fn prepare_conv(&mut self, id: usize, layer: &ConvLayer, n: usize) -> Result<usize, GpuError> {
        let stream = self.stream.clone();
        self.dnn.prepare(id, layer, n, &stream, &self.tune_events)
    }

    fn conv(
        &mut self,
        id: usize,
        layer: &ConvLayer,
        n: usize,
        a: ConvArgs<'_, CudaSlice<u8>>,
    ) -> Result<(), GpuError> {
        let g = &layer.geom;
        need(&layer.name, a.x, n * g.h * g.w * g.c * 2)?;
        need(&layer.name, a.y, n * g.oh() * g.ow() * g.k * 2)?;
        let z = match a.z {
            Some(z) => {
                need(&layer.name, z, n * g.oh() * g.ow() * g.k * 2)?;
                self.ptr(z)
            }
            None => self.ptr(a.y),
        };
        let workspace = a.workspace.map_or((0, 0), |w| (self.ptr(w), w.len()));
        let ptrs = dnn::ConvPtrs {
            x: self.ptr(a.x),
            w: self.region(a.weights, layer.weight)?,
            bias: match layer.bias {
                Some(b) => self.region(a.weights, b)?,
                None => 0,
            },
            z,
            y: self.ptr(a.y),
            workspace,
        };
        self.dnn.conv(id, n, &ptrs).map_err(|e| self.check(e))
    }

    fn max_pool(
        &mut self,
        g: &PoolGeom,
        n: usize,
        x: &CudaSlice<u8>,
        y: &CudaSlice<u8>,
    ) -> Result<(), GpuError> {
        self.kernels
            .max_pool(
                &self.stream,
                (self.buf(x), self.buf(y)),
                (n, g.c, g.h, g.w),
                (g.kernel, g.stride, g.pad),
            )
            .map_err(from_kernel)
    }

    fn avg_pool(
        &mut self,
        c: usize,
        pixels: usize,
        n: usize,
        x: &CudaSlice<u8>,
        y: &CudaSlice<u8>,
    ) -> Result<(), GpuError> {
        self.kernels
            .avg_pool(&self.stream, (self.buf(x), self.buf(y)), (n, c, pixels))
            .map_err(from_kernel)
    }

    fn linear(
        &mut self,
        (inp, out): (usize, usize),
        n: usize,
        x: &CudaSlice<u8>,
        weights: &CudaSlice<u8>,
        (w, b): (Region, Region),
        y: &CudaSlice<u8>,
    ) -> Result<(), GpuError> {
        need("classifier input", x, n * inp * 4)?;
        need("classifier output", y, n * out * 4)?;
        if w.bytes < inp * out * 4 || b.bytes < out * 4 {
            return Err(GpuError::Failed(
                "classifier weights smaller than their shape".into(),
            ));
        }
        let ptrs = blas::LinearPtrs {
            x: self.ptr(x),
            w: self.region(weights, w)?,
            bias: self.region(weights, b)?,
            y: self.ptr(y),
        };
        let stream = self.stream.clone();
        self.lt
            .linear((inp, out, n), &ptrs, &stream)
            .map_err(|e| self.check(e))
    }

    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        self.dnn.drop_scratch();
        self.stream
            .synchronize()
            .map_err(driver("before capture"))?;
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver("begin capture"))?;
        Ok(true)
    }

    fn end_capture(&mut self, bucket: usize) -> Result<(), GpuError> {
        let graph = self
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(driver("end capture"))?
            .ok_or_else(|| GpuError::Failed("the capture recorded nothing".into()))?;
        graph.upload().map_err(driver("graph upload"))?;
        self.graphs.insert(bucket, graph);
        Ok(())
    }

    fn launch_graph(&mut self, bucket: usize) -> Result<bool, GpuError> {
        match self.graphs.get(&bucket) {
            Some(g) => g.launch().map(|()| true).map_err(driver("graph launch")),
            None => Ok(false),
        }
    }

    fn mark(&mut self, mark: Mark) -> Result<(), GpuError> {
        self.events[mark as usize]
            .record(&self.stream)
            .map_err(driver("event"))
    }

    fn elapsed(&mut self, from: Mark, to: Mark) -> Result<Duration, GpuError> {
        let ms = self.events[from as usize]
            .elapsed_ms(&self.events[to as usize])
            .map_err(driver("event timing"))?;
        Ok(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1000.0))
    }
}
