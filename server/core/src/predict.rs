//! Logits → the `/predict` answer: softmax over all classes, top-k, labels.

use serde::Serialize;

/// One entry of the answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    /// Class index.
    pub class_id: usize,
    /// Human-readable class name.
    pub label: String,
    /// Softmax probability over all classes.
    pub probability: f32,
}

/// The JSON body of a successful `/predict`.
#[derive(Debug, Serialize)]
pub struct PredictResponse<'a> {
    /// Served model name.
    pub model: &'a str,
    /// Highest probability first.
    pub predictions: Vec<Prediction>,
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&z| f64::from(z - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The `k` most probable classes, highest first (ties by class id).
pub fn top_k(logits: &[f32], k: usize, labels: &[&str]) -> Vec<Prediction> {
    let probs = softmax(logits);
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let k = k.min(idx.len());
    let by_prob = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, by_prob);
        idx.truncate(k);
    }
    idx.sort_by(by_prob);
    idx.into_iter()
        .map(|i| Prediction {
            class_id: i,
            label: labels
                .get(i)
                .map_or_else(|| format!("class_{i}"), |l| (*l).to_string()),
            probability: probs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn top_k_is_sorted_and_labelled() {
        let labels = ["a", "b", "c", "d"];
        let top = top_k(&[0.1, 3.0, 2.0, -1.0], 2, &labels);
        assert_eq!(
            top.iter().map(|p| p.class_id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(top[0].label, "b");
        assert!(top[0].probability > top[1].probability);
        assert_eq!(top_k(&[0.0; 3], 10, &labels).len(), 3);
        assert_eq!(top_k(&[0.0, 1.0], 1, &[])[0].label, "class_1");
    }
}
