//! Safe launch wrappers (feature `cuda`): NVRTC compiles the sources once per context, and each
//! launch checks buffer sizes and ranges before the `unsafe` call, so a wrong size is an error,
//! not an out-of-bounds write on the device.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

use crate::{Affine, KernelError, NORMALIZE_CU, SOFTMAX_THREADS, SOFTMAX_TOPK_CU};

const NORMALIZE_THREADS: u32 = 256;

/// The compiled kernels of one CUDA context.
pub struct Kernels {
    normalize: CudaFunction,
    softmax_topk: CudaFunction,
}

fn driver(kernel: &'static str) -> impl Fn(cudarc::driver::DriverError) -> KernelError {
    move |e| KernelError::Driver {
        kernel,
        message: e.to_string(),
    }
}

fn bad(kernel: &'static str, reason: String) -> KernelError {
    KernelError::Launch { kernel, reason }
}

fn compile(
    ctx: &Arc<CudaContext>,
    kernel: &'static str,
    src: &str,
    arch: Option<&'static str>,
) -> Result<CudaFunction, KernelError> {
    let opts = CompileOptions {
        arch,
        name: Some(format!("{kernel}.cu")),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(src, opts).map_err(|e| KernelError::Compile {
        kernel,
        log: e.to_string(),
    })?;
    let module = ctx.load_module(ptx).map_err(driver(kernel))?;
    module.load_function(kernel).map_err(driver(kernel))
}

impl Kernels {
    /// Compiles both kernels for `arch` (e.g. `compute_90`; `None`: NVRTC's default, which runs
    /// on any GPU the driver supports) and loads them into `ctx`.
    pub fn compile(
        ctx: &Arc<CudaContext>,
        arch: Option<&'static str>,
    ) -> Result<Self, KernelError> {
        Ok(Kernels {
            normalize: compile(ctx, "normalize_u8_hwc_to_f16_nhwc", NORMALIZE_CU, arch)?,
            softmax_topk: compile(ctx, "softmax_topk", SOFTMAX_TOPK_CU, arch)?,
        })
    }

    /// `pixels` u8 RGB pixels of `src` → `pixels × channels_out` fp16 (as `u16` bits) in `dst`.
    pub fn normalize(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<u8>,
        dst: &mut CudaSlice<u16>,
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
        if src.len() < pixels * 3 || dst.len() < pixels * channels_out {
            return Err(bad(
                K,
                format!(
                    "{pixels} pixels need {} B in and {} halves out; have {} and {}",
                    pixels * 3,
                    pixels * channels_out,
                    src.len(),
                    dst.len()
                ),
            ));
        }
        let n =
            i32::try_from(pixels).map_err(|_| bad(K, format!("{pixels} pixels is too many")))?;
        if n == 0 {
            return Ok(());
        }
        let c = channels_out as i32;
        let cfg = LaunchConfig {
            grid_dim: ((n as u32).div_ceil(NORMALIZE_THREADS), 1, 1),
            block_dim: (NORMALIZE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let [s0, s1, s2] = affine.scale;
        let [b0, b1, b2] = affine.bias;
        let mut launch = stream.launch_builder(&self.normalize);
        launch.arg(src).arg(dst).arg(&n).arg(&c);
        launch.arg(&s0).arg(&s1).arg(&s2).arg(&b0).arg(&b1).arg(&b2);
        // SAFETY: the arguments match the kernel's signature in order and type (const u8*,
        // u16*, int, int, six floats); `src` holds 3 × `n` bytes and `dst` `n` × `c` halves
        // (checked above), which is all the kernel touches.
        unsafe { launch.launch(cfg) }.map_err(driver(K))?;
        Ok(())
    }

    /// Softmax and top-`k` of each of the `images` rows of `classes` logits: `k` indices and
    /// probabilities per image, highest first.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_topk(
        &self,
        stream: &Arc<CudaStream>,
        logits: &CudaSlice<f32>,
        images: usize,
        classes: usize,
        k: usize,
        top_index: &mut CudaSlice<i32>,
        top_prob: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const K: &str = "softmax_topk";
        if classes == 0 || k == 0 || k > classes || classes > 12_000 {
            return Err(bad(
                K,
                format!("k {k} of {classes} classes (1 ≤ k ≤ classes ≤ 12000)"),
            ));
        }
        if logits.len() < images * classes
            || top_index.len() < images * k
            || top_prob.len() < images * k
        {
            return Err(bad(
                K,
                format!(
                    "{images} rows need {} logits and {} outputs",
                    images * classes,
                    images * k
                ),
            ));
        }
        let rows = u32::try_from(images).map_err(|_| bad(K, format!("{images} rows")))?;
        if rows == 0 {
            return Ok(());
        }
        let (c, kk) = (classes as i32, k as i32);
        let cfg = LaunchConfig {
            grid_dim: (rows, 1, 1),
            block_dim: (SOFTMAX_THREADS, 1, 1),
            shared_mem_bytes: (classes * 4) as u32,
        };
        let mut launch = stream.launch_builder(&self.softmax_topk);
        launch
            .arg(logits)
            .arg(&c)
            .arg(&kk)
            .arg(top_index)
            .arg(top_prob);
        // SAFETY: the arguments match the kernel's signature (const float*, int, int, int*,
        // float*); each block reads its `classes` logits and writes `k` outputs inside the
        // checked lengths; the dynamic shared memory holds one row (≤ 48 KB for ≤ 12000 classes).
        unsafe { launch.launch(cfg) }.map_err(driver(K))?;
        Ok(())
    }
}
