//! The CPU twin of the CUDA device: the same operations on the same bytes (fp16 NHWC slots, the
//! weight arena at its offsets), with the arithmetic cuDNN's half configuration does: products
//! summed in fp32, bias and shortcut added in fp32, the activation, then **one** rounding to fp16
//! per step. The pooled features and the classifier are fp32, as on the GPU. Matrix products go
//! through `matrixmultiply`'s sgemm (im2col for the spatial filters).
//!
//! It has no graphs (every batch launches its steps) and no asynchrony: marks are wall-clock
//! instants.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use half::f16;
use kernels::Affine;

use super::device::{ConvArgs, DeviceOps, GpuError, Mark};
use super::layout::{widen, ConvGeom, PoolGeom, Region};
use super::model::ConvLayer;

/// The CPU twin (one per lane thread).
#[derive(Debug, Default)]
pub struct CpuTwin {
    marks: [Option<Instant>; 4],
    staged: Vec<f32>,
}

/// A twin allocation: bytes laid out exactly as on the device.
pub type TwinBuf = RefCell<Vec<u8>>;

fn short(what: &str, need: usize, have: usize) -> GpuError {
    GpuError::Failed(format!("{what}: needs {need} bytes, the buffer has {have}"))
}

/// The first `count` fp16 values of `bytes`, widened (exactly) to f32.
fn read_f16(bytes: &[u8], count: usize, what: &str) -> Result<Vec<f32>, GpuError> {
    let b = bytes
        .get(..count * 2)
        .ok_or_else(|| short(what, count * 2, bytes.len()))?;
    Ok(widen(b, 2))
}

/// The first `count` fp32 values of `bytes`.
fn read_f32(bytes: &[u8], count: usize, what: &str) -> Result<Vec<f32>, GpuError> {
    let b = bytes
        .get(..count * 4)
        .ok_or_else(|| short(what, count * 4, bytes.len()))?;
    Ok(widen(b, 4))
}

fn region<'a>(bytes: &'a [u8], r: Region, what: &str) -> Result<&'a [u8], GpuError> {
    bytes
        .get(r.offset..r.offset + r.bytes)
        .ok_or_else(|| short(what, r.offset + r.bytes, bytes.len()))
}

/// Writes `values` rounded to fp16 (nearest even) at the start of `dst`.
fn write_f16(dst: &mut [u8], values: &[f32], what: &str) -> Result<(), GpuError> {
    let len = dst.len();
    let out = dst
        .get_mut(..values.len() * 2)
        .ok_or_else(|| short(what, values.len() * 2, len))?;
    for (o, v) in out.chunks_exact_mut(2).zip(values) {
        o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
    }
    Ok(())
}

fn write_f32(dst: &mut [u8], values: &[f32], what: &str) -> Result<(), GpuError> {
    let len = dst.len();
    let out = dst
        .get_mut(..values.len() * 4)
        .ok_or_else(|| short(what, values.len() * 4, len))?;
    for (o, v) in out.chunks_exact_mut(4).zip(values) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// `c[m × n] = a[m × k] · b[n × k]ᵀ` (both row-major), in fp32.
fn gemm_abt(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= n * k, "gemm operand sizes");
    let mut c = vec![0.0f32; m * n];
    // SAFETY: `a` holds m × k values read with row stride k, `b` n × k values read as its
    // transpose (row stride 1, column stride k), `c` m × n values written with row stride n; the
    // assert above and the allocation of `c` guarantee every access is in bounds.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// NHWC input → the `[n·oh·ow, r·s·c]` matrix whose rows are the receptive fields in KRSC order.
fn im2col(x: &[f32], n: usize, g: &ConvGeom) -> Vec<f32> {
    let (oh, ow, c) = (g.oh(), g.ow(), g.c);
    let row = g.r * g.s * c;
    let mut out = vec![0.0f32; n * oh * ow * row];
    for (i, dst) in out.chunks_exact_mut(row).enumerate() {
        let (ni, oy, ox) = (i / (oh * ow), i / ow % oh, i % ow);
        for ry in 0..g.r {
            let iy = (oy * g.stride + ry).wrapping_sub(g.pad);
            if iy >= g.h {
                continue;
            }
            for rx in 0..g.s {
                let ix = (ox * g.stride + rx).wrapping_sub(g.pad);
                if ix >= g.w {
                    continue;
                }
                let src = ((ni * g.h + iy) * g.w + ix) * c;
                let at = (ry * g.s + rx) * c;
                dst[at..at + c].copy_from_slice(&x[src..src + c]);
            }
        }
    }
    out
}

impl DeviceOps for CpuTwin {
    type Buf = TwinBuf;

    fn alloc(&mut self, bytes: usize) -> Result<TwinBuf, GpuError> {
        Ok(RefCell::new(vec![0; bytes]))
    }

    fn upload(&mut self, host: &[u8]) -> Result<TwinBuf, GpuError> {
        Ok(RefCell::new(host.to_vec()))
    }

    fn copy_in(&mut self, host: &[u8], dst: &TwinBuf) -> Result<(), GpuError> {
        let mut d = dst.borrow_mut();
        let len = d.len();
        d.get_mut(..host.len())
            .ok_or_else(|| short("copy in", host.len(), len))?
            .copy_from_slice(host);
        Ok(())
    }

    fn read(&mut self, src: &TwinBuf, bytes: usize) -> Result<Vec<u8>, GpuError> {
        let s = src.borrow();
        Ok(s.get(..bytes)
            .ok_or_else(|| short("read", bytes, s.len()))?
            .to_vec())
    }

    fn copy_out(&mut self, src: &TwinBuf, floats: usize) -> Result<(), GpuError> {
        self.staged = read_f32(&src.borrow(), floats, "copy out")?;
        Ok(())
    }

    fn finish(&mut self, out: &mut [f32]) -> Result<(), GpuError> {
        let staged = self
            .staged
            .get(..out.len())
            .ok_or_else(|| GpuError::Failed("finish: less was copied out".into()))?;
        out.copy_from_slice(staged);
        Ok(())
    }

    fn normalize(
        &mut self,
        src: &TwinBuf,
        dst: &TwinBuf,
        pixels: usize,
        channels: usize,
        affine: &Affine,
    ) -> Result<(), GpuError> {
        let src = src.borrow();
        let images = src
            .get(..pixels * 3)
            .ok_or_else(|| short("normalize", pixels * 3, src.len()))?;
        let values: Vec<f32> = kernels::reference::normalize(images, channels, affine)
            .iter()
            .map(|h| h.to_f32())
            .collect();
        write_f16(&mut dst.borrow_mut(), &values, "normalize")
    }

    fn tensor_in(
        &mut self,
        src: &TwinBuf,
        dst: &TwinBuf,
        images: usize,
        plane: usize,
        channels: usize,
    ) -> Result<(), GpuError> {
        let src = src.borrow();
        let bytes = images * 3 * plane * 4;
        let raw = src
            .get(..bytes)
            .ok_or_else(|| short("tensor_in", bytes, src.len()))?;
        let values: Vec<f32> = kernels::reference::tensor_to_nhwc(&widen(raw, 4), plane, channels)
            .iter()
            .map(|h| h.to_f32())
            .collect();
        write_f16(&mut dst.borrow_mut(), &values, "tensor_in")
    }

    fn prepare_conv(&mut self, _: usize, _: &ConvLayer, _: usize) -> Result<usize, GpuError> {
        Ok(0)
    }

    fn conv(
        &mut self,
        _id: usize,
        layer: &ConvLayer,
        n: usize,
        args: ConvArgs<'_, TwinBuf>,
    ) -> Result<(), GpuError> {
        let g = &layer.geom;
        let (oh, ow) = (g.oh(), g.ow());
        let x = read_f16(&args.x.borrow(), n * g.h * g.w * g.c, &layer.name)?;
        let arena = args.weights.borrow();
        let kd = g.r * g.s * g.c;
        let w = read_f16(
            region(&arena, layer.weight, &layer.name)?,
            g.k * kd,
            &layer.name,
        )?;
        // A plain convolution (a projection shortcut) has no bias: the adding one carries it.
        let bias = match layer.bias {
            Some(b) => read_f16(region(&arena, b, &layer.name)?, g.k, &layer.name)?,
            None => vec![0.0; g.k],
        };
        let m = n * oh * ow;
        let direct = g.r == 1 && g.s == 1 && g.stride == 1 && g.pad == 0;
        let mut y = if direct {
            gemm_abt(m, kd, g.k, &x, &w)
        } else {
            gemm_abt(m, kd, g.k, &im2col(&x, n, g), &w)
        };
        let z = match (layer.residual, args.z) {
            (true, Some(z)) => Some(read_f16(&z.borrow(), m * g.k, &layer.name)?),
            (false, None) => None,
            _ => {
                return Err(GpuError::Failed(format!(
                    "{}: shortcut mismatch",
                    layer.name
                )))
            }
        };
        for (i, v) in y.iter_mut().enumerate() {
            let mut acc = *v + bias[i % g.k];
            if let Some(z) = &z {
                acc += z[i];
            }
            *v = if layer.relu { acc.max(0.0) } else { acc };
        }
        write_f16(&mut args.y.borrow_mut(), &y, &layer.name)
    }

    fn max_pool(
        &mut self,
        g: &PoolGeom,
        n: usize,
        x: &TwinBuf,
        y: &TwinBuf,
    ) -> Result<(), GpuError> {
        let x = read_f16(&x.borrow(), n * g.h * g.w * g.c, "max pool")?;
        let out =
            kernels::reference::max_pool_nhwc(&x, (n, g.c, g.h, g.w), g.kernel, g.stride, g.pad);
        write_f16(&mut y.borrow_mut(), &out, "max pool")
    }

    fn avg_pool(
        &mut self,
        c: usize,
        pixels: usize,
        n: usize,
        x: &TwinBuf,
        y: &TwinBuf,
    ) -> Result<(), GpuError> {
        let x = read_f16(&x.borrow(), n * pixels * c, "average pool")?;
        let out = kernels::reference::avg_pool_nhwc(&x, n, c, pixels);
        write_f32(&mut y.borrow_mut(), &out, "average pool")
    }

    fn linear(
        &mut self,
        (inp, out): (usize, usize),
        n: usize,
        x: &TwinBuf,
        weights: &TwinBuf,
        (w, b): (Region, Region),
        y: &TwinBuf,
    ) -> Result<(), GpuError> {
        let x = read_f32(&x.borrow(), n * inp, "classifier")?;
        let arena = weights.borrow();
        let w = read_f32(region(&arena, w, "classifier")?, out * inp, "classifier")?;
        let b = read_f32(region(&arena, b, "classifier")?, out, "classifier")?;
        let mut logits = gemm_abt(n, inp, out, &x, &w);
        for row in logits.chunks_exact_mut(out) {
            row.iter_mut().zip(&b).for_each(|(v, b)| *v += b);
        }
        write_f32(&mut y.borrow_mut(), &logits, "classifier")
    }

    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        Ok(false)
    }

    fn end_capture(&mut self, _bucket: usize) -> Result<(), GpuError> {
        Ok(())
    }

    fn launch_graph(&mut self, _bucket: usize) -> Result<bool, GpuError> {
        Ok(false)
    }

    fn mark(&mut self, mark: Mark) -> Result<(), GpuError> {
        self.marks[mark as usize] = Some(Instant::now());
        Ok(())
    }

    fn elapsed(&mut self, from: Mark, to: Mark) -> Result<Duration, GpuError> {
        match (self.marks[from as usize], self.marks[to as usize]) {
            (Some(a), Some(b)) => Ok(b.saturating_duration_since(a)),
            _ => Err(GpuError::Failed("a stage mark was not recorded".into())),
        }
    }
}
