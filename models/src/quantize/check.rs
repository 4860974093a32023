//! How closely two models agree: top-1 and logits over a set of images.

use std::sync::Arc;

use engine::{Backend, BatchBuffer, CpuBackend, CpuConfig, ModelSource};

use crate::ModelError;

/// The agreement of a model with a reference over some images.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Images whose top-1 class is the reference's.
    pub same_top1: usize,
    /// Largest absolute logit difference.
    pub max_abs_error: f32,
    /// Mean absolute logit difference.
    pub mean_abs_error: f32,
    /// Mean spread (max − min) of the reference's logits per image, to read the errors against.
    pub mean_logit_spread: f32,
}

impl Agreement {
    /// The share of images with the same top-1, 0–1.
    pub fn top1(&self) -> f64 {
        self.same_top1 as f64 / self.images.max(1) as f64
    }
}

/// Logits of `model` for `images`, `[images, classes]`.
pub fn logits(
    model: Arc<[u8]>,
    images: &[Vec<u8>],
    threads: usize,
) -> Result<Vec<f32>, ModelError> {
    outputs(model, images, threads, 8)
}

/// The output rows of `model` for `images` (u8 HWC 224×224×3), run `batch` at a time on the
/// CPU engine.
pub fn outputs(
    model: Arc<[u8]>,
    images: &[Vec<u8>],
    threads: usize,
    batch: usize,
) -> Result<Vec<f32>, ModelError> {
    let config = CpuConfig::new(
        ModelSource::Bytes(model),
        threads,
        crate::IMAGENET_NORMALIZATION,
    );
    let mut backend = CpuBackend::new(&config)?;
    let (mut all, mut out, mut timings) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in images.chunks(batch) {
        let mut batch = BatchBuffer::new(chunk.len());
        for img in chunk {
            if !batch.push(img) {
                return Err(ModelError::Invalid("an image is not 224×224×3".into()));
            }
        }
        backend.run(&batch, &mut out, &mut timings)?;
        all.extend_from_slice(&out);
    }
    Ok(all)
}

/// How `candidate` agrees with `reference` on `images`.
pub fn agreement(
    reference: Arc<[u8]>,
    candidate: Arc<[u8]>,
    images: &[Vec<u8>],
    threads: usize,
) -> Result<Agreement, ModelError> {
    let want = logits(reference, images, threads)?;
    let got = logits(candidate, images, threads)?;
    Ok(compare(&want, &got, images.len()))
}

/// [`Agreement`] of two `[n, classes]` logit matrices.
pub fn compare(want: &[f32], got: &[f32], n: usize) -> Agreement {
    let classes = want.len() / n.max(1);
    let argmax = |r: &[f32]| {
        (0..r.len())
            .max_by(|&a, &b| r[a].total_cmp(&r[b]))
            .unwrap_or(0)
    };
    let mut a = Agreement {
        images: n,
        ..Default::default()
    };
    let (mut sum, mut spread) = (0f64, 0f64);
    for (w, g) in want.chunks_exact(classes).zip(got.chunks_exact(classes)) {
        a.same_top1 += usize::from(argmax(w) == argmax(g));
        for (x, y) in w.iter().zip(g) {
            let e = (x - y).abs();
            a.max_abs_error = a.max_abs_error.max(e);
            sum += f64::from(e);
        }
        let (lo, hi) = w
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        spread += f64::from(hi - lo);
    }
    a.mean_abs_error = (sum / want.len().max(1) as f64) as f32;
    a.mean_logit_spread = (spread / n.max(1) as f64) as f32;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_top1_and_logit_errors() {
        let want = [1.0, 3.0, 2.0, 5.0, 0.0, 1.0];
        let got = [1.0, 2.5, 2.6, 4.0, 0.0, 1.5];
        let a = compare(&want, &got, 2);
        assert_eq!((a.images, a.same_top1), (2, 1));
        assert!((a.max_abs_error - 1.0).abs() < 1e-6);
        assert!((a.mean_abs_error - 2.6 / 6.0).abs() < 1e-6);
        assert!((a.mean_logit_spread - 3.5).abs() < 1e-6);
        assert!((a.top1() - 0.5).abs() < 1e-12);
    }
}
