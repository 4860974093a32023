//! BatchNorm folding, filter re-layout and fp16 conversion.
//!
//! Folding (fp32, before any rounding): with `a = γ / √(var + ε)`, the convolution's weights
//! become `w · a` per output channel and its bias `β + (b − mean) · a`. The filters go from KCRS
//! to KRSC (what cuDNN's NHWC tensor-core kernels read), with the input channels zero-padded to
//! `c_padded` (3 → 8 for the first layer, matching the normalisation kernel's output).

use half::f16;

use super::network::Conv;

/// A convolution ready to upload: fp16 KRSC filters and an fp32 bias.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedConv {
    /// Output channels.
    pub k: usize,
    /// Input channels after padding.
    pub c: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// `k × r × s × c` fp16.
    pub weight: Vec<f16>,
    /// `k` fp32 (cuDNN adds the bias in the compute type).
    pub bias: Vec<f32>,
}

/// The folded fp32 weights (KCRS) and bias of `conv`.
pub fn fold_bn(conv: &Conv) -> (Vec<f32>, Vec<f32>) {
    let per_k = conv.c * conv.r * conv.s;
    let mut weight = conv.weight.clone();
    let mut bias = conv.bias.clone().unwrap_or_else(|| vec![0.0; conv.k]);
    if let Some(bn) = &conv.bn {
        for k in 0..conv.k {
            let a = bn.gamma[k] / (bn.var[k] + bn.eps).sqrt();
            weight[k * per_k..(k + 1) * per_k]
                .iter_mut()
                .for_each(|w| *w *= a);
            bias[k] = bn.beta[k] + (bias[k] - bn.mean[k]) * a;
        }
    }
    (weight, bias)
}

/// KCRS → KRSC with the input channels zero-padded to `c_padded`.
pub fn kcrs_to_krsc(
    w: &[f32],
    (k, c, r, s): (usize, usize, usize, usize),
    c_padded: usize,
) -> Vec<f32> {
    assert!(c_padded >= c && w.len() == k * c * r * s);
    let mut out = vec![0.0; k * r * s * c_padded];
    for ki in 0..k {
        for ci in 0..c {
            for ri in 0..r {
                for si in 0..s {
                    out[((ki * r + ri) * s + si) * c_padded + ci] =
                        w[((ki * c + ci) * r + ri) * s + si];
                }
            }
        }
    }
    out
}

/// The channel count a layer's input is padded to: a multiple of 8 (fp16 tensor cores).
pub fn padded_channels(c: usize) -> usize {
    c.div_ceil(8) * 8
}

/// Folds, re-lays out and converts one convolution.
pub fn fuse(conv: &Conv) -> FusedConv {
    let (w, bias) = fold_bn(conv);
    let c = padded_channels(conv.c);
    let krsc = kcrs_to_krsc(&w, (conv.k, conv.c, conv.r, conv.s), c);
    FusedConv {
        k: conv.k,
        c,
        r: conv.r,
        s: conv.s,
        weight: krsc.into_iter().map(f16::from_f32).collect(),
        bias,
    }
}

#[cfg(test)]
mod tests {
    use super::super::network::BatchNorm;
    use super::*;

    /// Direct NCHW convolution (one image), the reference both sides are compared with.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        x: &[f32],
        (c, h, w): (usize, usize, usize),
        wt: &[f32],
        b: &[f32],
        k: usize,
        r: usize,
        stride: usize,
        pad: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (
            (h + 2 * pad - r) / stride + 1,
            (w + 2 * pad - r) / stride + 1,
        );
        let mut y = vec![0.0; k * oh * ow];
        for ki in 0..k {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[ki];
                    for ci in 0..c {
                        for ry in 0..r {
                            for rx in 0..r {
                                let (iy, ix) = (
                                    (oy * stride + ry) as isize - pad as isize,
                                    (ox * stride + rx) as isize - pad as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    acc += x[(ci * h + iy as usize) * w + ix as usize]
                                        * wt[((ki * c + ci) * r + ry) * r + rx];
                                }
                            }
                        }
                    }
                    y[(ki * oh + oy) * ow + ox] = acc;
                }
            }
        }
        y
    }

    fn lcg(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn folded_conv_equals_conv_then_batchnorm() {
        let (k, c, r, h) = (4, 3, 3, 6);
        let bn = BatchNorm {
            gamma: lcg(k, 1),
            beta: lcg(k, 2),
            mean: lcg(k, 3),
            var: lcg(k, 4).iter().map(|v| v + 0.6).collect(),
            eps: 1e-5,
        };
        let conv = Conv {
            name: "c".into(),
            weight: lcg(k * c * r * r, 5),
            k,
            c,
            r,
            s: r,
            bias: Some(lcg(k, 6)),
            stride: 2,
            pad: 1,
            bn: Some(bn.clone()),
            input: 0,
            residual: None,
            relu: false,
        };
        let x = lcg(c * h * h, 7);
        let plain = conv2d(
            &x,
            (c, h, h),
            &conv.weight,
            conv.bias.as_ref().unwrap(),
            k,
            r,
            2,
            1,
        );
        let per = plain.len() / k;
        let want: Vec<f32> = plain
            .iter()
            .enumerate()
            .map(|(i, y)| {
                let ki = i / per;
                (y - bn.mean[ki]) / (bn.var[ki] + bn.eps).sqrt() * bn.gamma[ki] + bn.beta[ki]
            })
            .collect();
        let (w, b) = fold_bn(&conv);
        let got = conv2d(&x, (c, h, h), &w, &b, k, r, 2, 1);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "max |folded − conv→bn| = {worst}");
    }

    #[test]
    fn krsc_layout_moves_every_weight_and_pads_channels_with_zeros() {
        let (k, c, r, s) = (2, 3, 2, 2);
        let w: Vec<f32> = (0..k * c * r * s).map(|i| i as f32 + 1.0).collect();
        let out = kcrs_to_krsc(&w, (k, c, r, s), 8);
        assert_eq!(out.len(), k * r * s * 8);
        // Weight (k=1, c=2, r=1, s=0) in KCRS sits at ((1*3+2)*2+1)*2+0 = 22 → value 23.
        assert_eq!(out[((2 + 1) * 2) * 8 + 2], 23.0);
        assert_eq!(out.iter().filter(|v| **v != 0.0).count(), w.len());
        assert_eq!(padded_channels(3), 8);
        assert_eq!(padded_channels(64), 64);
        let fused = fuse(&Conv {
            name: "x".into(),
            weight: w,
            k,
            c,
            r,
            s,
            bias: None,
            stride: 1,
            pad: 0,
            bn: None,
            input: 0,
            residual: None,
            relu: true,
        });
        assert_eq!(
            (
                fused.c,
                fused.weight.len(),
                fused.bias,
                fused.weight[((2 + 1) * 2) * 8 + 2]
            ),
            (8, 64, vec![0.0, 0.0], f16::from_f32(23.0))
        );
    }
}
