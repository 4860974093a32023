//! The built-in model's classifier: each class is a direction among the trunk's strongest
//! directions of variation.
//!
//! A random classifier over all 2048 pooled features answers by the sum of many small
//! contributions, so its top two classes are near ties that any rounding of the trunk swaps.
//! A trained classifier is not like that: its answer rests on a few strong, input-dependent
//! directions. This one is built the same way from the calibration features: their principal
//! components ([`COMPONENTS`] of them, from the eigenvectors of the images' Gram matrix), each
//! scaled to unit spread, and every class a seeded random unit vector in that space. An image's
//! class is the direction its whitened components point to, so close images share a class and
//! the answer survives int8 rounding, while 1000 directions keep the answers varied.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::resnet::FEATURES;
use crate::rng::Rng;
use crate::round::{round_sig, DIGITS};
use crate::NUM_CLASSES;

/// Principal components the classifier reads.
pub(crate) const COMPONENTS: usize = 8;
/// Standard deviation of the calibration logits.
const LOGIT_STD: f64 = 3.0;

/// Classifier weights `[NUM_CLASSES, 2048]` (row-major) and bias for `features`
/// (`[rows, 2048]`, rows > [`COMPONENTS`]), class directions drawn from `rng`.
pub(crate) fn classifier(features: &[f32], rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let rows = features.len() / FEATURES;
    assert!(
        rows > COMPONENTS,
        "{rows} calibration rows cannot give {COMPONENTS} principal components"
    );
    let x = DMatrix::from_row_iterator(rows, FEATURES, features.iter().map(|&v| f64::from(v)));
    let mean: Vec<f64> = x
        .column_iter()
        .map(|c| round_sig(c.mean(), DIGITS))
        .collect();
    let centred = DMatrix::from_fn(rows, FEATURES, |r, c| x[(r, c)] - mean[c]);
    // Component i of an image is p_i · (f − mean) / spread_i.
    let (directions, spreads) = components(&centred, COMPONENTS);
    let mut weight = vec![0f32; NUM_CLASSES * FEATURES];
    for row in weight.chunks_exact_mut(FEATURES) {
        let d: Vec<f64> = (0..COMPONENTS).map(|_| f64::from(rng.normal())).collect();
        let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for (i, w) in row.iter_mut().enumerate() {
            let v: f64 = (0..COMPONENTS)
                .map(|k| d[k] / norm * directions[(k, i)] / spreads[k])
                .sum();
            *w = v as f32;
        }
    }
    let bias_of = |w: &[f32]| -> f64 {
        -w.iter()
            .zip(&mean)
            .map(|(&a, &m)| f64::from(a) * m)
            .sum::<f64>()
    };
    // Scale so the calibration logits have the chosen spread.
    let logits =
        DMatrix::from_row_slice(NUM_CLASSES, FEATURES, &weight).cast::<f64>() * centred.transpose();
    let std = (logits.norm_squared() / logits.len() as f64).sqrt();
    let scale = LOGIT_STD / round_sig(std.max(1e-12), DIGITS);
    weight
        .iter_mut()
        .for_each(|w| *w = (f64::from(*w) * scale) as f32);
    let bias = weight
        .chunks_exact(FEATURES)
        .map(|w| bias_of(w) as f32)
        .collect();
    (weight, bias)
}

/// The top `k` principal directions of `centred` (`[rows, features]`), one per row of the
/// first matrix, unit length, signed so their largest entry is positive; and the standard
/// deviation of the rows along each.
fn components(centred: &DMatrix<f64>, k: usize) -> (DMatrix<f64>, Vec<f64>) {
    let rows = centred.nrows();
    // The Gram matrix is rows × rows: its eigenvectors v give the directions Xᵀv, of length
    // √λ, far cheaper than the 2048 × 2048 covariance.
    let eigen = SymmetricEigen::new(centred * centred.transpose());
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let mut directions = DMatrix::zeros(k, centred.ncols());
    let mut spreads = Vec::with_capacity(k);
    for (i, &j) in order.iter().take(k).enumerate() {
        let mut p = centred.transpose() * eigen.eigenvectors.column(j);
        let length = p.norm().max(1e-12);
        p /= length;
        let largest = p.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs()));
        if largest.is_some_and(|v| v < 0.0) {
            p.neg_mut();
        }
        for (c, v) in p.iter().enumerate() {
            directions[(i, c)] = round_sig(*v, DIGITS);
        }
        spreads.push(round_sig(length / (rows as f64).sqrt(), DIGITS));
    }
    (directions, spreads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calibration-like features: a large shared offset, ten strong directions of variation
    /// (features 0–9, spreads 5 down to 2.3) and small noise everywhere.
    fn features(rows: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut f = Vec::with_capacity(rows * FEATURES);
        for _ in 0..rows {
            for i in 0..FEATURES {
                let strong = if i < 10 {
                    rng.normal() * (5.0 - 0.3 * i as f32)
                } else {
                    0.0
                };
                f.push(100.0 + strong + 0.01 * rng.normal());
            }
        }
        f
    }

    fn logits(w: &[f32], b: &[f32], row: &[f32]) -> Vec<f32> {
        w.chunks_exact(FEATURES)
            .zip(b)
            .map(|(wr, bj)| wr.iter().zip(row).map(|(a, x)| a * x).sum::<f32>() + bj)
            .collect()
    }

    #[test]
    fn calibration_logits_are_centred_with_the_chosen_spread() {
        let f = features(32, 5);
        let (w, b) = classifier(&f, &mut Rng::new(9));
        let all: Vec<f32> = f
            .chunks_exact(FEATURES)
            .flat_map(|row| logits(&w, &b, row))
            .collect();
        let n = all.len() as f32;
        let mean = all.iter().sum::<f32>() / n;
        let std = (all.iter().map(|z| (z - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((std - LOGIT_STD as f32).abs() < 0.1, "std {std}");
    }

    #[test]
    fn the_answer_follows_the_strong_directions_not_the_weak_ones() {
        let f = features(32, 5);
        let (w, b) = classifier(&f, &mut Rng::new(9));
        let argmax = |z: &[f32]| (0..z.len()).max_by(|&i, &j| z[i].total_cmp(&z[j])).unwrap();
        let mut answers = std::collections::HashSet::new();
        for row in f.chunks_exact(FEATURES) {
            let want = logits(&w, &b, row);
            answers.insert(argmax(&want));
            // A change along a feature that did not vary in calibration, as large as the
            // strong directions' spread, moves the logits far less than they vary.
            let mut moved = row.to_vec();
            moved[100] += 5.0;
            let got = logits(&w, &b, &moved);
            let shift = want
                .iter()
                .zip(&got)
                .map(|(a, c)| (a - c).abs())
                .fold(0.0, f32::max);
            assert!(shift < 0.3, "a weak feature moved a logit by {shift}");
        }
        assert!(answers.len() >= 8, "{} distinct answers", answers.len());
    }
}
