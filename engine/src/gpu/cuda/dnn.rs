//! cuDNN through `cudarc::cudnn::result` (raw descriptors, since the safe types hide their
//! handles): one handle per lane stream, the fused `ConvBiasActivationForward` per step and
//! bucket, and the algorithm choice, timed through the fused call itself.
//!
//! Descriptors are small RAII wrappers whose `Drop` ignores errors (cudarc's own unwrap, and a
//! panic while unwinding aborts). Every raw call sits in an `unsafe` block that says why its
//! handles and pointers are valid.

use std::collections::HashMap;
use std::ffi::c_void;

use cudarc::cudnn::{result, sys};
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr};

use super::super::device::{conv_shape_key, GpuError};
use super::super::layout::TensorDesc as Desc;
use super::super::model::ConvLayer;
use super::super::tune::{Choice, TuneCache, TuneKey};

const HALF: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_HALF;
const FLOAT: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
const PRECOMP: sys::cudnnConvolutionFwdAlgo_t =
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
/// Timed launches per candidate algorithm (after one untimed).
const TIMED_RUNS: usize = 3;
/// Candidates needing more workspace than this are not tried.
const MAX_WORKSPACE: usize = 1 << 30;

fn dnn_err(what: &str) -> impl Fn(result::CudnnError) -> GpuError + '_ {
    move |e| GpuError::Failed(format!("cuDNN {what}: {e}"))
}

fn int(v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Failed(format!("{v} does not fit cuDNN's int")))
}

struct Tensor(sys::cudnnTensorDescriptor_t);
impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: created by create_tensor_descriptor and destroyed only here.
        let _ = unsafe { result::destroy_tensor_descriptor(self.0) };
    }
}

struct Filter(sys::cudnnFilterDescriptor_t);
impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: created by create_filter_descriptor and destroyed only here.
        let _ = unsafe { result::destroy_filter_descriptor(self.0) };
    }
}

struct Conv(sys::cudnnConvolutionDescriptor_t);
impl Drop for Conv {
    fn drop(&mut self) {
        // SAFETY: created by create_convolution_descriptor and destroyed only here.
        let _ = unsafe { result::destroy_convolution_descriptor(self.0) };
    }
}

struct Act(sys::cudnnActivationDescriptor_t);
impl Drop for Act {
    fn drop(&mut self) {
        // SAFETY: created by create_activation_descriptor and destroyed only here.
        let _ = unsafe { sys::cudnnDestroyActivationDescriptor(self.0) };
    }
}

fn tensor(d: Desc) -> Result<Tensor, GpuError> {
    let t = Tensor(result::create_tensor_descriptor().map_err(dnn_err("tensor"))?);
    let dims = [
        int(d.dims[0])?,
        int(d.dims[1])?,
        int(d.dims[2])?,
        int(d.dims[3])?,
    ];
    let strides = [
        int(d.strides[0])?,
        int(d.strides[1])?,
        int(d.strides[2])?,
        int(d.strides[3])?,
    ];
    // SAFETY: `t.0` is a live descriptor owned by `t`.
    unsafe { result::set_tensor4d_descriptor_ex(t.0, HALF, dims, strides) }
        .map_err(dnn_err("tensor shape"))?;
    Ok(t)
}

fn activation(mode: sys::cudnnActivationMode_t) -> Result<Act, GpuError> {
    let a = Act(result::create_activation_descriptor().map_err(dnn_err("activation"))?);
    let nan = sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN;
    // For RELU, cuDNN reads `coef` as the upper bound: 0 would clip every output to zero.
    let coef = if mode == sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU {
        f64::MAX
    } else {
        0.0
    };
    // SAFETY: `a.0` is a live descriptor owned by `a`.
    unsafe { result::set_activation_descriptor(a.0, mode, nan, coef) }
        .map_err(dnn_err("activation mode"))?;
    Ok(a)
}

/// One convolution, set up for one batch size: fused, or plain (`plain`: no bias, activation
/// or shortcut, through `cudnnConvolutionForward`).
struct ConvPlan {
    x: Tensor,
    w: Filter,
    y: Tensor,
    bias: Tensor,
    conv: Conv,
    relu: bool,
    residual: bool,
    plain: bool,
    algo: sys::cudnnConvolutionFwdAlgo_t,
    workspace: usize,
}

/// Device pointers of one fused call.
pub(super) struct ConvPtrs {
    pub(super) x: u64,
    pub(super) w: u64,
    pub(super) bias: u64,
    pub(super) z: u64,
    pub(super) y: u64,
    pub(super) workspace: (u64, usize),
}

/// The cuDNN state of one lane.
pub(super) struct Dnn {
    handle: sys::cudnnHandle_t,
    relu: Act,
    identity: Act,
    plans: HashMap<(usize, usize), ConvPlan>,
    pub(super) tune: TuneCache,
    pub(super) tuned: usize,
    /// Time the candidate algorithms (else plan B: IMPLICIT_PRECOMP_GEMM, untimed, uncached).
    timing: bool,
    gpu: String,
    pub(super) version: u64,
    scratch: Vec<CudaSlice<u8>>,
}

impl Drop for Dnn {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: the handle was created in `new`, every descriptor using it is gone (the
        // activation descriptors hold no reference to it), and it is destroyed only here.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

impl Dnn {
    /// A handle bound to `stream`, with `tune` as the known algorithm choices of GPU `gpu`.
    pub(super) fn new(
        stream: &CudaStream,
        gpu: String,
        tune: TuneCache,
        timing: bool,
    ) -> Result<Self, GpuError> {
        let handle = result::create_handle().map_err(dnn_err("handle"))?;
        // SAFETY: `handle` is live; the stream outlives the handle (both belong to the lane's
        // device, which drops the handle first).
        unsafe { result::set_stream(handle, stream.cu_stream() as sys::cudaStream_t) }
            .map_err(dnn_err("set_stream"))?;
        Ok(Dnn {
            handle,
            relu: activation(sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU)?,
            identity: activation(sys::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY)?,
            plans: HashMap::new(),
            tune,
            tuned: 0,
            timing,
            gpu,
            version: result::get_version() as u64,
            scratch: Vec::new(),
        })
    }

    /// Frees the tuning scratch buffers (before any graph capture).
    pub(super) fn drop_scratch(&mut self) {
        self.scratch.clear();
    }

    fn descriptors(layer: &ConvLayer, n: usize) -> Result<ConvPlan, GpuError> {
        let g = &layer.geom;
        let w = Filter(result::create_filter_descriptor().map_err(dnn_err("filter"))?);
        let fd = g.filter_dims();
        let nhwc = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        // SAFETY: `w.0` is a live descriptor owned by `w`.
        unsafe {
            result::set_filter4d_descriptor(
                w.0,
                HALF,
                nhwc,
                [int(fd[0])?, int(fd[1])?, int(fd[2])?, int(fd[3])?],
            )
        }
        .map_err(dnn_err("filter shape"))?;
        let conv = Conv(result::create_convolution_descriptor().map_err(dnn_err("conv"))?);
        let (p, s) = (int(g.pad)?, int(g.stride)?);
        let mode = sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION;
        // SAFETY: `conv.0` is a live descriptor owned by `conv`.
        unsafe {
            result::set_convolution2d_descriptor(conv.0, p, p, s, s, 1, 1, mode, FLOAT).and_then(
                |()| {
                    result::set_convolution_math_type(
                        conv.0,
                        sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
                    )
                },
            )
        }
        .map_err(dnn_err("conv parameters"))?;
        Ok(ConvPlan {
            x: tensor(g.x_desc(n))?,
            y: tensor(g.y_desc(n))?,
            bias: tensor(super::super::layout::nhwc(1, g.k, 1, 1))?,
            w,
            conv,
            relu: layer.relu,
            residual: layer.residual,
            plain: layer.bias.is_none(),
            algo: PRECOMP,
            workspace: 0,
        })
    }

    fn key(&self, layer: &ConvLayer, n: usize) -> TuneKey {
        TuneKey {
            gpu: self.gpu.clone(),
            cudnn: self.version,
            shape: conv_shape_key(&layer.geom, n, layer),
            activation: match (layer.bias.is_none(), layer.relu) {
                (true, _) => "plain",
                (false, true) => "relu",
                (false, false) => "identity",
            }
            .into(),
            math: "tensor_op".into(),
        }
    }

    fn workspace_of(
        &self,
        plan: &ConvPlan,
        algo: sys::cudnnConvolutionFwdAlgo_t,
    ) -> Result<usize, result::CudnnError> {
        // SAFETY: the handle and every descriptor of `plan` are live.
        unsafe {
            result::get_convolution_forward_workspace_size(
                self.handle,
                plan.x.0,
                plan.w.0,
                plan.conv.0,
                plan.y.0,
                algo,
            )
        }
    }

    /// Sets up step `id` for batches of `n`: descriptors, then the algorithm (from the cache, or
    /// timed now); returns the workspace it needs.
    pub(super) fn prepare(
        &mut self,
        id: usize,
        layer: &ConvLayer,
        n: usize,
        stream: &std::sync::Arc<CudaStream>,
        events: &[CudaEvent; 2],
    ) -> Result<usize, GpuError> {
        let mut plan = Self::descriptors(layer, n)?;
        let key = self.key(layer, n);
        let choice = match self.tune.get(&key) {
            _ if !self.timing => Choice {
                algo: PRECOMP as i32,
                workspace: 0,
                micros: f32::NAN,
            },
            Some(c) => c,
            None => {
                let c = self.tune_one(&plan, layer, n, stream, events)?;
                self.tune.insert(key, c);
                self.tuned += 1;
                c
            }
        };
        plan.algo = algo_from(choice.algo).unwrap_or(PRECOMP);
        plan.workspace = self
            .workspace_of(&plan, plan.algo)
            .map_err(dnn_err(&layer.name))?
            .max(choice.workspace);
        let need = plan.workspace;
        self.plans.insert((id, n), plan);
        Ok(need)
    }

    /// The candidates cuDNN's heuristics list (IMPLICIT_PRECOMP_GEMM only for a fused call with
    /// an identity activation, the one algorithm it accepts then), each timed through the call
    /// the step makes; the fastest wins. When none runs, the safe IMPLICIT_PRECOMP_GEMM is
    /// chosen untimed (as it is for every step when timing is off: plan B).
    fn tune_one(
        &mut self,
        plan: &ConvPlan,
        layer: &ConvLayer,
        n: usize,
        stream: &std::sync::Arc<CudaStream>,
        events: &[CudaEvent; 2],
    ) -> Result<Choice, GpuError> {
        let mut candidates = vec![PRECOMP];
        if layer.relu || plan.plain {
            let mut perf = [zero_perf(); 8];
            let mut count = 0i32;
            // SAFETY: live handle and descriptors; `perf` has room for the 8 requested results
            // and `count` receives how many were written.
            let listed = unsafe {
                result::get_convolution_forward_algorithm(
                    self.handle,
                    plan.x.0,
                    plan.w.0,
                    plan.conv.0,
                    plan.y.0,
                    8,
                    &mut count,
                    perf.as_mut_ptr(),
                )
            };
            if listed.is_ok() {
                candidates = perf[..count.clamp(0, 8) as usize]
                    .iter()
                    .filter(|p| p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS)
                    .map(|p| p.algo)
                    .collect();
                if !candidates.contains(&PRECOMP) {
                    candidates.push(PRECOMP);
                }
                // The listing names an algorithm once per math type: time each once.
                let mut seen = Vec::new();
                candidates.retain(|a| {
                    let new = !seen.contains(a);
                    seen.push(*a);
                    new
                });
            }
        }
        let g = &layer.geom;
        let sizes = [
            n * g.h * g.w * g.c * 2,
            g.k * g.r * g.s * g.c * 2,
            n * g.oh() * g.ow() * g.k * 2,
            g.k * 2,
        ];
        let mut best: Option<Choice> = None;
        for algo in candidates {
            let Ok(ws) = self.workspace_of(plan, algo) else {
                continue;
            };
            if ws > MAX_WORKSPACE {
                continue;
            }
            let Some(micros) = self.time(plan, algo, &sizes, ws, stream, events)? else {
                continue;
            };
            if best.is_none_or(|b| micros < b.micros) {
                best = Some(Choice {
                    algo: algo as i32,
                    workspace: ws,
                    micros,
                });
            }
        }
        Ok(best.unwrap_or(Choice {
            algo: PRECOMP as i32,
            workspace: 0,
            micros: f32::NAN,
        }))
    }

    /// Microseconds per fused call with `algo`, on scratch buffers; `None` when cuDNN refuses it.
    #[allow(clippy::too_many_arguments)]
    fn time(
        &mut self,
        plan: &ConvPlan,
        algo: sys::cudnnConvolutionFwdAlgo_t,
        sizes: &[usize; 4],
        ws: usize,
        stream: &std::sync::Arc<CudaStream>,
        events: &[CudaEvent; 2],
    ) -> Result<Option<f32>, GpuError> {
        let needs = [sizes[0], sizes[1], sizes[2], sizes[3], ws.max(1)];
        for (i, &bytes) in needs.iter().enumerate() {
            if self.scratch.get(i).is_none_or(|b| b.len() < bytes) {
                let buf = stream
                    .alloc_zeros::<u8>(bytes)
                    .map_err(super::driver("tuning scratch"))?;
                if i < self.scratch.len() {
                    self.scratch[i] = buf;
                } else {
                    self.scratch.push(buf);
                }
            }
        }
        let ptr = |i: usize| self.scratch[i].device_ptr(stream).0;
        let ptrs = ConvPtrs {
            x: ptr(0),
            w: ptr(1),
            bias: ptr(3),
            z: ptr(2),
            y: ptr(2),
            workspace: (ptr(4), ws),
        };
        let call = || self.launch_with(plan, algo, &ptrs);
        if call().is_err() {
            return Ok(None);
        }
        events[0].record(stream).map_err(super::driver("event"))?;
        for _ in 0..TIMED_RUNS {
            if call().is_err() {
                return Ok(None);
            }
        }
        events[1].record(stream).map_err(super::driver("event"))?;
        let ms = events[0]
            .elapsed_ms(&events[1])
            .map_err(super::driver("tuning"))?;
        Ok(Some(ms * 1000.0 / TIMED_RUNS as f32))
    }

    fn launch_with(
        &self,
        plan: &ConvPlan,
        algo: sys::cudnnConvolutionFwdAlgo_t,
        p: &ConvPtrs,
    ) -> Result<(), result::CudnnError> {
        let alpha1 = 1.0f32;
        if plan.plain {
            let beta = 0.0f32;
            // SAFETY: the handle and descriptors are live; `x`, `w` and `y` are device
            // allocations of at least the sizes their descriptors imply (as below); the
            // workspace holds `p.workspace.1` bytes; alpha and beta are fp32, as the half
            // configuration with fp32 compute requires.
            return unsafe {
                result::convolution_forward(
                    self.handle,
                    (&alpha1 as *const f32).cast::<c_void>(),
                    plan.x.0,
                    p.x as *const c_void,
                    plan.w.0,
                    p.w as *const c_void,
                    plan.conv.0,
                    algo,
                    p.workspace.0 as *mut c_void,
                    p.workspace.1,
                    (&beta as *const f32).cast::<c_void>(),
                    plan.y.0,
                    p.y as *mut c_void,
                )
            };
        }
        // Without a shortcut, `z` is the output itself scaled by zero (cuDNN allows z = y).
        let alpha2 = if plan.residual { 1.0f32 } else { 0.0 };
        let act = if plan.relu {
            &self.relu
        } else {
            &self.identity
        };
        // SAFETY: the handle and descriptors are live; every pointer is a device allocation of at
        // least the size its descriptor implies (the executor's slots are sized from the same
        // geometry, checked by its tests; the scratch buffers above are sized here); the
        // workspace holds `p.workspace.1` bytes; alpha/beta are fp32 as the half configuration
        // with fp32 compute requires.
        unsafe {
            result::convolution_bias_activation_forward(
                self.handle,
                (&alpha1 as *const f32).cast::<c_void>(),
                plan.x.0,
                p.x as *const c_void,
                plan.w.0,
                p.w as *const c_void,
                plan.conv.0,
                algo,
                p.workspace.0 as *mut c_void,
                p.workspace.1,
                (&alpha2 as *const f32).cast::<c_void>(),
                plan.y.0,
                p.z as *const c_void,
                plan.bias.0,
                p.bias as *const c_void,
                act.0,
                plan.y.0,
                p.y as *mut c_void,
            )
        }
    }

    /// Runs step `id`, prepared for `n`.
    pub(super) fn conv(&self, id: usize, n: usize, ptrs: &ConvPtrs) -> Result<(), GpuError> {
        let plan = self
            .plans
            .get(&(id, n))
            .ok_or_else(|| GpuError::Failed(format!("step {id} was not prepared for {n}")))?;
        if ptrs.workspace.1 < plan.workspace {
            return Err(GpuError::Failed(format!(
                "step {id}: the workspace is too small"
            )));
        }
        let ptrs = ConvPtrs {
            workspace: (ptrs.workspace.0, plan.workspace),
            ..*ptrs
        };
        self.launch_with(plan, plan.algo, &ptrs).map_err(|e| {
            let kind = if plan.plain { "plain" } else { "fused" };
            GpuError::Failed(format!("cuDNN {kind} convolution (step {id}, n {n}): {e}"))
        })
    }
}

impl Clone for ConvPtrs {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for ConvPtrs {}

fn zero_perf() -> sys::cudnnConvolutionFwdAlgoPerf_t {
    sys::cudnnConvolutionFwdAlgoPerf_t {
        algo: PRECOMP,
        status: sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
        time: 0.0,
        memory: 0,
        determinism: sys::cudnnDeterminism_t::CUDNN_NON_DETERMINISTIC,
        mathType: sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        reserved: [0; 3],
    }
}

/// The algorithm with cuDNN id `id`.
fn algo_from(id: i32) -> Option<sys::cudnnConvolutionFwdAlgo_t> {
    use sys::cudnnConvolutionFwdAlgo_t as A;
    [
        A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        A::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        A::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        A::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
    ]
    .into_iter()
    .find(|a| *a as i32 == id)
}
