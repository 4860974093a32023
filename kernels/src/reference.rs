//! CPU versions of the kernels, operation for operation (fp32 arithmetic, fp16 rounding to
//! nearest even, ties in top-k to the lower class id).

use half::f16;

use crate::Affine;

/// What `normalize_u8_hwc_to_f16_nhwc` writes for `images` (u8 HWC, 3 channels per pixel):
/// `channels_out` fp16 values per pixel, the first three normalised, the rest zero.
pub fn normalize(images: &[u8], channels_out: usize, affine: &Affine) -> Vec<f16> {
    assert!(channels_out >= 3 && images.len() % 3 == 0);
    let mut out = Vec::with_capacity(images.len() / 3 * channels_out);
    for px in images.chunks_exact(3) {
        for ((&x, scale), bias) in px.iter().zip(affine.scale).zip(affine.bias) {
            out.push(f16::from_f32(f32::from(x) * scale + bias));
        }
        out.extend(std::iter::repeat_n(f16::ZERO, channels_out - 3));
    }
    out
}

/// What `tensor_f32_nchw_to_f16_nhwc` writes: f32 NCHW images of `plane` pixels → fp16 NHWC,
/// padded with zeros to `channels_out`.
pub fn tensor_to_nhwc(tensors: &[f32], plane: usize, channels_out: usize) -> Vec<f16> {
    assert!(channels_out >= 3 && plane > 0 && tensors.len() % (3 * plane) == 0);
    let mut out = Vec::with_capacity(tensors.len() / 3 * channels_out);
    for image in tensors.chunks_exact(3 * plane) {
        for p in 0..plane {
            out.extend((0..3).map(|c| f16::from_f32(image[c * plane + p])));
            out.extend(std::iter::repeat_n(f16::ZERO, channels_out - 3));
        }
    }
    out
}

/// What `softmax_topk` returns for each `classes`-wide row of `logits`: the `k` most probable
/// `(class, probability)`, highest first, ties to the lower class.
pub fn softmax_topk(logits: &[f32], classes: usize, k: usize) -> Vec<Vec<(usize, f32)>> {
    assert!(classes > 0 && k <= classes && logits.len() % classes == 0);
    logits
        .chunks_exact(classes)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(k)
                .map(|c| (c, (row[c] - max).exp() / total))
                .collect()
        })
        .collect()
}

/// What `max_pool_f16_nhwc` computes on `n` NHWC images of `c × h × w` (values already fp16,
/// widened): the maximum of each window, padded positions ignored.
#[allow(clippy::too_many_arguments)]
pub fn max_pool_nhwc(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let (oh, ow) = (
        (h + 2 * pad - kernel) / stride + 1,
        (w + 2 * pad - kernel) / stride + 1,
    );
    assert!(x.len() >= n * h * w * c, "max pool input");
    let mut out = vec![f32::NEG_INFINITY; n * oh * ow * c];
    for (i, px) in out.chunks_exact_mut(c).enumerate() {
        let (img, oy, ox) = (i / (oh * ow), i / ow % oh, i % ow);
        for ky in 0..kernel {
            let iy = (oy * stride + ky).wrapping_sub(pad);
            for kx in 0..kernel {
                let ix = (ox * stride + kx).wrapping_sub(pad);
                if iy < h && ix < w {
                    let src = ((img * h + iy) * w + ix) * c;
                    for (o, v) in px.iter_mut().zip(&x[src..src + c]) {
                        *o = o.max(*v);
                    }
                }
            }
        }
    }
    out
}

/// What `avg_pool_f16_to_f32` computes: per image and channel, the fp32 sum over `pixels`
/// positions in order, divided once.
pub fn avg_pool_nhwc(x: &[f32], n: usize, c: usize, pixels: usize) -> Vec<f32> {
    assert!(x.len() >= n * pixels * c, "average pool input");
    let mut out = vec![0.0f32; n * c];
    for (img, o) in out.chunks_exact_mut(c).enumerate() {
        for px in x[img * pixels * c..(img + 1) * pixels * c].chunks_exact(c) {
            o.iter_mut().zip(px).for_each(|(a, v)| *a += v);
        }
        o.iter_mut().for_each(|a| *a /= pixels as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];

    #[test]
    fn normalization_matches_the_definition_and_pads_with_zeros() {
        let affine = Affine::from_mean_std(MEAN, STD);
        let out = normalize(&[0, 128, 255, 10, 20, 30], 8, &affine);
        assert_eq!(out.len(), 16);
        for (i, &x) in [0u8, 128, 255].iter().enumerate() {
            let want = (f32::from(x) / 255.0 - MEAN[i]) / STD[i];
            assert!(
                (out[i].to_f32() - want).abs() < 2e-3,
                "channel {i}: {} vs {want}",
                out[i]
            );
        }
        assert!(out[3..8].iter().all(|v| *v == f16::ZERO));
        assert!((out[8].to_f32() - (10.0 / 255.0 - MEAN[0]) / STD[0]).abs() < 2e-3);
    }

    #[test]
    fn tensors_are_transposed_to_nhwc_and_padded() {
        // Two images of two pixels: channel planes [r0 r1 | g0 g1 | b0 b1].
        let t = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0,
        ];
        let out: Vec<f32> = tensor_to_nhwc(&t, 2, 4)
            .iter()
            .map(|h| h.to_f32())
            .collect();
        let want = [1.0, 3.0, 5.0, 0.0, 2.0, 4.0, 6.0, 0.0];
        assert_eq!(out[..8], want);
        assert_eq!(out[8..12], [-1.0, -3.0, -5.0, 0.0]);
    }

    #[test]
    fn topk_is_sorted_sums_below_one_and_breaks_ties_low() {
        let logits = [
            1.0, 3.0, 3.0, -2.0, 0.5, /* row 2 */ 0.0, 0.0, 0.0, 0.0, 9.0,
        ];
        let top = softmax_topk(&logits, 5, 3);
        assert_eq!(top[0].iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 0]);
        assert!((top[0][0].1 - top[0][1].1).abs() < 1e-7);
        assert!(top[0].iter().map(|p| p.1).sum::<f32>() < 1.0);
        assert_eq!(top[1][0].0, 4);
        assert_eq!(top[1][1..].iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1]);
        let all = softmax_topk(&logits[..5], 5, 5);
        assert!((all[0].iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pools_take_window_maxima_ignoring_padding_and_channel_means() {
        // One 2-channel 3×3 image; channel 1 is channel 0 negated.
        let x: Vec<f32> = (0..9).flat_map(|v| [v as f32, -(v as f32)]).collect();
        let y = max_pool_nhwc(&x, (1, 2, 3, 3), 3, 2, 1);
        // 2×2 outputs; windows clipped by the padding.
        assert_eq!(y, vec![4.0, 0.0, 5.0, -1.0, 7.0, -3.0, 8.0, -4.0]);
        let m = avg_pool_nhwc(&x, 1, 2, 9);
        assert_eq!(m, vec![4.0, -4.0]);
    }

    #[test]
    fn the_kernels_are_the_ones_the_references_describe() {
        assert!(crate::POOL_CU.contains("extern \"C\" __global__ void max_pool_f16_nhwc("));
        assert!(crate::POOL_CU.contains("extern \"C\" __global__ void avg_pool_f16_to_f32("));
        assert!(crate::NORMALIZE_CU
            .contains("extern \"C\" __global__ void normalize_u8_hwc_to_f16_nhwc("));
        assert!(crate::NORMALIZE_CU
            .contains("extern \"C\" __global__ void tensor_f32_nchw_to_f16_nhwc("));
        assert!(crate::SOFTMAX_TOPK_CU.contains("extern \"C\" __global__ void softmax_topk("));
        assert!(
            crate::SOFTMAX_TOPK_CU.contains(&format!("#define THREADS {}", crate::SOFTMAX_THREADS))
        );
    }
}
