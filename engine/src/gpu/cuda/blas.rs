//! The classifier on cuBLASLt, fp32 in, fp32 compute (`CUBLAS_COMPUTE_32F`, no TF32), fp32 out,
//! the bias added by the BIAS epilogue: `y[n, out] = x[n, inp] · Wᵀ + b`.
//!
//! In cuBLASLt's column-major terms: D (out × n, ld out) = op(A) · B with A = W read as the
//! column-major inp × out matrix it is (ld inp) and transposed, B = x as inp × n (ld inp); D is
//! then exactly the row-major `[n, out]` logits.

use std::collections::HashMap;
use std::ffi::c_void;

use cudarc::cublaslt::{result, sys};
use cudarc::driver::{CudaSlice, CudaStream};

use super::super::device::GpuError;

/// cuBLASLt workspace (what cudarc's safe wrapper uses on Hopper).
pub(super) const WORKSPACE: usize = 32 << 20;

fn lt_err(what: &str) -> impl Fn(result::CublasError) -> GpuError + '_ {
    move |e| GpuError::Failed(format!("cuBLASLt {what}: {e}"))
}

struct Layout(sys::cublasLtMatrixLayout_t);
impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: created by create_matrix_layout, destroyed only here.
        let _ = unsafe { result::destroy_matrix_layout(self.0) };
    }
}

struct Desc(sys::cublasLtMatmulDesc_t);
impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by create_matmul_desc, destroyed only here.
        let _ = unsafe { result::destroy_matmul_desc(self.0) };
    }
}

struct Pref(sys::cublasLtMatmulPreference_t);
impl Drop for Pref {
    fn drop(&mut self) {
        // SAFETY: created by create_matmul_pref, destroyed only here.
        let _ = unsafe { result::destroy_matmul_pref(self.0) };
    }
}

struct LinearPlan {
    desc: Desc,
    a: Layout,
    b: Layout,
    d: Layout,
    algo: sys::cublasLtMatmulAlgo_t,
}

/// The cuBLASLt state of one lane.
pub(super) struct Lt {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: HashMap<(usize, usize, usize, u64), LinearPlan>,
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in `new`, no plan refers to it any more, destroyed only here.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

/// The operands of one classifier call (device addresses).
pub(super) struct LinearPtrs {
    pub(super) x: u64,
    pub(super) w: u64,
    pub(super) bias: u64,
    pub(super) y: u64,
}

fn set_desc<T>(
    desc: &Desc,
    attr: sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<(), GpuError> {
    // SAFETY: `desc` is live; `v` points to a value of the size the attribute expects (the
    // callers pass i32 for operations, u32 for the epilogue, a pointer for the bias).
    unsafe {
        result::set_matmul_desc_attribute(
            desc.0,
            attr,
            (v as *const T).cast::<c_void>(),
            std::mem::size_of::<T>(),
        )
    }
    .map_err(lt_err("descriptor attribute"))
}

impl Lt {
    /// A handle and its workspace, allocated on `stream`.
    pub(super) fn new(stream: &std::sync::Arc<CudaStream>) -> Result<Self, GpuError> {
        let handle = result::create_handle().map_err(lt_err("handle"))?;
        let workspace = stream
            .alloc_zeros::<u8>(WORKSPACE)
            .map_err(super::driver("cuBLASLt workspace"))?;
        Ok(Lt {
            handle,
            workspace,
            plans: HashMap::new(),
        })
    }

    fn plan(
        &self,
        (inp, out, n): (usize, usize, usize),
        bias: u64,
    ) -> Result<LinearPlan, GpuError> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        let f32t = sys::cudaDataType::CUDA_R_32F;
        let desc = Desc(
            result::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32t)
                .map_err(lt_err("descriptor"))?,
        );
        set_desc(&desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?;
        set_desc(&desc, A::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?;
        set_desc(
            &desc,
            A::CUBLASLT_MATMUL_DESC_EPILOGUE,
            &(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as u32),
        )?;
        set_desc(
            &desc,
            A::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            &(bias as *const c_void),
        )?;
        let layout = |rows: usize, cols: usize, ld: usize| {
            result::create_matrix_layout(f32t, rows as u64, cols as u64, ld as i64)
                .map(Layout)
                .map_err(lt_err("layout"))
        };
        let (a, b, d) = (
            layout(inp, out, inp)?,
            layout(inp, n, inp)?,
            layout(out, n, out)?,
        );
        let pref = Pref(result::create_matmul_pref().map_err(lt_err("preference"))?);
        let ws = WORKSPACE as u64;
        // SAFETY: `pref` is live and the attribute takes a u64.
        unsafe {
            result::set_matmul_pref_attribute(
                pref.0,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws as *const u64).cast::<c_void>(),
                8,
            )
        }
        .map_err(lt_err("preference"))?;
        // SAFETY: every handle, descriptor and layout passed is live.
        let heuristic = unsafe {
            result::get_matmul_algo_heuristic(self.handle, desc.0, a.0, b.0, d.0, d.0, pref.0)
        }
        .map_err(lt_err("no algorithm for the classifier"))?;
        Ok(LinearPlan {
            desc,
            a,
            b,
            d,
            algo: heuristic.algo,
        })
    }

    /// `y = x Wᵀ + b` for `n` rows; the plan for this shape is made on first use (host-side
    /// work only, and the executor's first use precedes any capture).
    pub(super) fn linear(
        &mut self,
        shape: (usize, usize, usize),
        p: &LinearPtrs,
        stream: &CudaStream,
    ) -> Result<(), GpuError> {
        let key = (shape.0, shape.1, shape.2, p.bias);
        if !self.plans.contains_key(&key) {
            let plan = self.plan(shape, p.bias)?;
            self.plans.insert(key, plan);
        }
        let plan = &self.plans[&key];
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (ws, _sync) = cudarc::driver::DevicePtr::device_ptr(&self.workspace, stream);
        // SAFETY: the handle, descriptor and layouts are live; `x`, `w` and `y` are device
        // allocations holding n × inp, out × inp and n × out fp32 values (checked by the
        // caller against its buffers); the bias pointer set in the plan holds `out` values; the
        // workspace holds WORKSPACE bytes, the most the preference allowed.
        unsafe {
            result::matmul(
                self.handle,
                plan.desc.0,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                p.w as *const c_void,
                plan.a.0,
                p.x as *const c_void,
                plan.b.0,
                p.y as *const c_void,
                plan.d.0,
                p.y as *mut c_void,
                plan.d.0,
                &plan.algo,
                ws as *mut c_void,
                WORKSPACE,
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .map_err(lt_err("matmul"))
    }
}
