//! Safe launch wrappers (feature `cuda`): NVRTC compiles the sources once per context (to CUBIN
//! for the device's own architecture, PTX as the fallback), and each launch checks buffer sizes
//! and ranges before the `unsafe` call, so a wrong size is an error, not an out-of-bounds write
//! on the device. Buffers are [`DevBuf`]s: an address and a length borrowed from a device
//! allocation, so the engine can keep every activation as plain bytes.

use std::ffi::CString;
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys, Ptx};

use crate::{Affine, KernelError, SOFTMAX_THREADS};

const THREADS: u32 = 256;
/// Most classes `softmax_topk` stages in shared memory: 48 KiB (the default limit of a block)
/// less its own 2 KiB of reduction arrays, at 4 bytes a class.
pub const MAX_TOPK_CLASSES: usize = (48 * 1024 - 2 * SOFTMAX_THREADS as usize * 4) / 4;

/// A device buffer as a kernel sees it: its address and its length in bytes, borrowed for `'a`.
#[derive(Clone, Copy, Debug)]
pub struct DevBuf<'a> {
    ptr: u64,
    bytes: usize,
    _borrow: PhantomData<&'a ()>,
}

impl<'a> DevBuf<'a> {
    /// The whole of `slice`.
    pub fn of<T>(slice: &'a CudaSlice<T>, stream: &CudaStream) -> Self {
        let (ptr, _sync) = slice.device_ptr(stream);
        DevBuf {
            ptr,
            bytes: slice.num_bytes(),
            _borrow: PhantomData,
        }
    }

    /// `bytes` bytes at `offset` into this buffer, `None` when out of range.
    pub fn sub(&self, offset: usize, bytes: usize) -> Option<Self> {
        (offset.checked_add(bytes)? <= self.bytes).then_some(DevBuf {
            ptr: self.ptr + offset as u64,
            bytes,
            _borrow: PhantomData,
        })
    }

    /// The device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The length in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn driver(kernel: &'static str) -> impl Fn(cudarc::driver::DriverError) -> KernelError {
    move |e| KernelError::Driver {
        kernel,
        message: e.to_string(),
        code: e.0 as u32,
    }
}

fn bad(kernel: &'static str, reason: String) -> KernelError {
    KernelError::Launch { kernel, reason }
}

fn need(
    kernel: &'static str,
    what: &str,
    buf: &DevBuf<'_>,
    bytes: usize,
) -> Result<(), KernelError> {
    if buf.bytes < bytes {
        return Err(bad(
            kernel,
            format!("{what} needs {bytes} bytes, the buffer has {}", buf.bytes),
        ));
    }
    Ok(())
}

fn int(kernel: &'static str, v: usize) -> Result<i32, KernelError> {
    i32::try_from(v).map_err(|_| bad(kernel, format!("{v} does not fit a 32-bit int")))
}

fn grid(kernel: &'static str, threads: usize) -> Result<LaunchConfig, KernelError> {
    let blocks = u32::try_from(threads.div_ceil(THREADS as usize))
        .map_err(|_| bad(kernel, format!("{threads} threads is too many")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Compiles `src` with NVRTC for the real architecture `arch` (e.g. `sm_90`) to CUBIN. Needs only
/// `libnvrtc` (no driver, no GPU), so CI checks every kernel this way.
pub fn compile_cubin(name: &str, src: &str, arch: &str) -> Result<Vec<u8>, KernelError> {
    let fail = |log: String| KernelError::Compile {
        kernel: "nvrtc",
        log: format!("{name}: {log}"),
    };
    let src = CString::new(src).map_err(|e| fail(e.to_string()))?;
    let cname = CString::new(name).map_err(|e| fail(e.to_string()))?;
    let prog = nvrtc::create_program(&src, Some(&cname)).map_err(|e| fail(format!("{e:?}")))?;
    // No FMA contraction: the kernels round as their CPU references do (x·s, then + b).
    let options = [
        format!("--gpu-architecture={arch}"),
        "--fmad=false".to_string(),
    ];
    // SAFETY: `prog` is the live program created above; each call below gets it and buffers
    // sized by NVRTC's own size queries; it is destroyed exactly once, at the end.
    unsafe {
        let outcome = match nvrtc::compile_program(prog, &options) {
            Err(e) => {
                let log = nvrtc::get_program_log(prog)
                    .map(|l| l.iter().map(|&c| c as u8 as char).collect::<String>())
                    .unwrap_or_default();
                Err(fail(format!("{e:?}: {}", log.trim_end_matches('\0'))))
            }
            Ok(()) => {
                let mut size = 0usize;
                match nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size).result() {
                    Err(e) => Err(fail(format!("no CUBIN size: {e:?}"))),
                    Ok(()) => {
                        let mut cubin = vec![0u8; size];
                        nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
                            .result()
                            .map(|()| cubin)
                            .map_err(|e| fail(format!("no CUBIN: {e:?}")))
                    }
                }
            }
        };
        let _ = nvrtc::destroy_program(prog);
        outcome
    }
}

/// The compiled kernels of one CUDA context.
pub struct Kernels {
    normalize: CudaFunction,
    tensor_in: CudaFunction,
    softmax_topk: CudaFunction,
    max_pool: CudaFunction,
    avg_pool: CudaFunction,
    /// What was loaded, for the start-up log (`CUBIN sm_90` or `PTX`).
    pub form: String,
}

fn load(
    ctx: &Arc<CudaContext>,
    image: Ptx,
    names: &[&'static str],
) -> Result<Vec<CudaFunction>, KernelError> {
    let module = ctx.load_module(image).map_err(driver("load_module"))?;
    names
        .iter()
        .map(|n| module.load_function(n).map_err(driver(n)))
        .collect()
}

impl Kernels {
    /// Compiles every kernel for the device of `ctx`: CUBIN for its exact architecture (so a PTX
    /// ISA newer than the driver cannot fail the load), or, when that fails, PTX for NVRTC's
    /// default target.
    pub fn for_device(ctx: &Arc<CudaContext>) -> Result<Self, KernelError> {
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("compute_capability"))?;
        let arch = format!("sm_{major}{minor}");
        let cubins: Result<Vec<Ptx>, KernelError> = crate::SOURCES
            .iter()
            .map(|(name, src, _)| compile_cubin(name, src, &arch).map(Ptx::from_binary))
            .collect();
        match cubins {
            Ok(images) => Self::load_all(ctx, images, format!("CUBIN {arch}")),
            Err(_) => {
                let ptx: Result<Vec<Ptx>, KernelError> = crate::SOURCES
                    .iter()
                    .map(|(name, src, _)| {
                        cudarc::nvrtc::compile_ptx_with_opts(
                            src,
                            cudarc::nvrtc::CompileOptions {
                                name: Some((*name).to_string()),
                                fmad: Some(false),
                                ..Default::default()
                            },
                        )
                        .map_err(|e| KernelError::Compile {
                            kernel: "nvrtc",
                            log: format!("{name}: {e}"),
                        })
                    })
                    .collect();
                Self::load_all(ctx, ptx?, "PTX".into())
            }
        }
    }

    fn load_all(
        ctx: &Arc<CudaContext>,
        images: Vec<Ptx>,
        form: String,
    ) -> Result<Self, KernelError> {
        let mut fns = Vec::new();
        for ((_, _, names), image) in crate::SOURCES.iter().zip(images) {
            fns.extend(load(ctx, image, names)?);
        }
        let [normalize, tensor_in, softmax_topk, max_pool, avg_pool]: [CudaFunction; 5] = fns
            .try_into()
            .map_err(|_| bad("load", "expected five kernels".into()))?;
        Ok(Kernels {
            normalize,
            tensor_in,
            softmax_topk,
            max_pool,
            avg_pool,
            form,
        })
    }

    /// `pixels` u8 RGB pixels of `src` → `pixels × channels_out` fp16 in `dst`.
    pub fn normalize(
        &self,
        stream: &Arc<CudaStream>,
        src: DevBuf<'_>,
        dst: DevBuf<'_>,
        pixels: usize,
        channels_out: usize,
        affine: &Affine,
    ) -> Result<(), KernelError> {
        const K: &str = "normalize_u8_hwc_to_f16_nhwc";
        if !(3..=64).contains(&channels_out) {
            return Err(bad(
                K,
                format!("channels_out {channels_out} is not in 3..=64"),
            ));
        }
        need(K, "the input", &src, pixels * 3)?;
        need(K, "the output", &dst, pixels * channels_out * 2)?;
        let (n, c) = (int(K, pixels)?, int(K, channels_out)?);
        if n == 0 {
            return Ok(());
        }
        let [s0, s1, s2] = affine.scale;
        let [b0, b1, b2] = affine.bias;
        let (sp, dp) = (src.ptr, dst.ptr);
        let mut launch = stream.launch_builder(&self.normalize);
        launch.arg(&sp).arg(&dp).arg(&n).arg(&c);
        launch.arg(&s0).arg(&s1).arg(&s2).arg(&b0).arg(&b1).arg(&b2);
        // SAFETY: the arguments match the kernel's signature in order and type (two pointers,
        // int, int, six floats); `src` holds 3 × `n` bytes and `dst` `n` × `c` halves (checked
        // above), which is all the kernel touches.
        unsafe { launch.launch(grid(K, pixels)?) }.map_err(driver(K))?;
        Ok(())
    }

    /// `images` f32 NCHW tensors of `plane` pixels in `src` → fp16 NHWC with `channels_out`
    /// channels in `dst`.
    pub fn tensor_in(
        &self,
        stream: &Arc<CudaStream>,
        (src, dst): (DevBuf<'_>, DevBuf<'_>),
        (images, plane, channels_out): (usize, usize, usize),
    ) -> Result<(), KernelError> {
        const K: &str = "tensor_f32_nchw_to_f16_nhwc";
        if !(3..=64).contains(&channels_out) || plane == 0 {
            return Err(bad(
                K,
                format!("channels_out {channels_out}, plane {plane}"),
            ));
        }
        let pixels = images * plane;
        need(K, "the input", &src, pixels * 3 * 4)?;
        need(K, "the output", &dst, pixels * channels_out * 2)?;
        let (n, p, c) = (int(K, pixels)?, int(K, plane)?, int(K, channels_out)?);
        if n == 0 {
            return Ok(());
        }
        let (sp, dp) = (src.ptr, dst.ptr);
        let mut launch = stream.launch_builder(&self.tensor_in);
        launch.arg(&sp).arg(&dp).arg(&n).arg(&p).arg(&c);
        // SAFETY: the arguments match the kernel's signature in order and type (two pointers,
        // three ints); `src` holds 3 × `n` floats and `dst` `n` × `c` halves (checked above),
        // which is all the kernel touches.
        unsafe { launch.launch(grid(K, pixels)?) }.map_err(driver(K))?;
        Ok(())
    }

    /// Max pooling of `n` fp16 NHWC images of `c × h × w` into `y` (padded positions ignored).
    pub fn max_pool(
        &self,
        stream: &Arc<CudaStream>,
        (x, y): (DevBuf<'_>, DevBuf<'_>),
        (n, c, h, w): (usize, usize, usize, usize),
        (kernel, stride, pad): (usize, usize, usize),
    ) -> Result<(), KernelError> {
        const K: &str = "max_pool_f16_nhwc";
        if kernel == 0 || stride == 0 || h + 2 * pad < kernel || w + 2 * pad < kernel {
            return Err(bad(K, format!("window {kernel}/{stride}/{pad} on {h}×{w}")));
        }
        let (oh, ow) = (
            (h + 2 * pad - kernel) / stride + 1,
            (w + 2 * pad - kernel) / stride + 1,
        );
        need(K, "the input", &x, n * h * w * c * 2)?;
        need(K, "the output", &y, n * oh * ow * c * 2)?;
        let args = [n, c, h, w, oh, ow, kernel, stride, pad].map(|v| int(K, v));
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8] = args;
        let ints = [a0?, a1?, a2?, a3?, a4?, a5?, a6?, a7?, a8?];
        let (xp, yp) = (x.ptr, y.ptr);
        let mut launch = stream.launch_builder(&self.max_pool);
        launch.arg(&xp).arg(&yp);
        for v in &ints {
            launch.arg(v);
        }
        // SAFETY: two pointers then nine ints, as the kernel declares; the kernel reads
        // n·h·w·c halves of `x` and writes n·oh·ow·c halves of `y`, both checked above.
        unsafe { launch.launch(grid(K, n * oh * ow * c)?) }.map_err(driver(K))?;
        Ok(())
    }

    /// Mean over `pixels` positions of each of the `c` channels of `n` fp16 NHWC images, in fp32.
    pub fn avg_pool(
        &self,
        stream: &Arc<CudaStream>,
        (x, y): (DevBuf<'_>, DevBuf<'_>),
        (n, c, pixels): (usize, usize, usize),
    ) -> Result<(), KernelError> {
        const K: &str = "avg_pool_f16_to_f32";
        need(K, "the input", &x, n * pixels * c * 2)?;
        need(K, "the output", &y, n * c * 4)?;
        let (nn, cc, pp) = (int(K, n)?, int(K, c)?, int(K, pixels)?);
        let (xp, yp) = (x.ptr, y.ptr);
        let mut launch = stream.launch_builder(&self.avg_pool);
        launch.arg(&xp).arg(&yp).arg(&nn).arg(&cc).arg(&pp);
        // SAFETY: two pointers and three ints, as declared; reads n·pixels·c halves and writes
        // n·c floats, both checked above.
        unsafe { launch.launch(grid(K, n * c)?) }.map_err(driver(K))?;
        Ok(())
    }

    /// Softmax and top-`k` of each of the `images` rows of `classes` fp32 logits: `k` indices
    /// (i32) and probabilities (f32) per image, highest first.
    pub fn softmax_topk(
        &self,
        stream: &Arc<CudaStream>,
        logits: DevBuf<'_>,
        (images, classes, k): (usize, usize, usize),
        (top_index, top_prob): (DevBuf<'_>, DevBuf<'_>),
    ) -> Result<(), KernelError> {
        const K: &str = "softmax_topk";
        if classes == 0 || k == 0 || k > classes || classes > MAX_TOPK_CLASSES {
            return Err(bad(
                K,
                format!("k {k} of {classes} classes (1 ≤ k ≤ classes ≤ {MAX_TOPK_CLASSES})"),
            ));
        }
        need(K, "the logits", &logits, images * classes * 4)?;
        need(K, "the indices", &top_index, images * k * 4)?;
        need(K, "the probabilities", &top_prob, images * k * 4)?;
        let rows = u32::try_from(images).map_err(|_| bad(K, format!("{images} rows")))?;
        if rows == 0 {
            return Ok(());
        }
        let (c, kk) = (int(K, classes)?, int(K, k)?);
        let cfg = LaunchConfig {
            grid_dim: (rows, 1, 1),
            block_dim: (SOFTMAX_THREADS, 1, 1),
            shared_mem_bytes: (classes * 4) as u32,
        };
        let (lp, ip, pp) = (logits.ptr, top_index.ptr, top_prob.ptr);
        let mut launch = stream.launch_builder(&self.softmax_topk);
        launch.arg(&lp).arg(&c).arg(&kk).arg(&ip).arg(&pp);
        // SAFETY: the arguments match the kernel's signature (pointer, int, int, pointer,
        // pointer); each block reads its `classes` logits and writes `k` outputs inside the
        // checked lengths; the dynamic shared memory holds one row, which with the kernel's 2 KiB
        // of reduction arrays stays within a block's 48 KiB for ≤ MAX_TOPK_CLASSES classes.
        unsafe { launch.launch(cfg) }.map_err(driver(K))?;
        Ok(())
    }
}
