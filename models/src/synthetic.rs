//! Varied synthetic images (gradients, stripes, blocks, noise), deterministic per seed: the
//! calibration set of the built-in model and test inputs that need no files.

use engine::{IMAGE_BYTES, IMAGE_SIDE};

use crate::rng::Rng;

/// `count` preprocessed-size images (u8 HWC 224×224×3), reproducible from `seed`.
pub fn varied_images(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| image(&mut rng)).collect()
}

fn colour(rng: &mut Rng) -> [f32; 3] {
    [
        rng.uniform(0.0, 255.0),
        rng.uniform(0.0, 255.0),
        rng.uniform(0.0, 255.0),
    ]
}

fn image(rng: &mut Rng) -> Vec<u8> {
    let (c0, c1) = (colour(rng), colour(rng));
    let angle = rng.uniform(0.0, std::f32::consts::TAU);
    let stripe_angle = rng.uniform(0.0, std::f32::consts::TAU);
    let freq = rng.uniform(0.02, 0.6);
    let amp = rng.uniform(0.0, 90.0);
    let phase = [
        rng.uniform(0.0, 6.3),
        rng.uniform(0.0, 6.3),
        rng.uniform(0.0, 6.3),
    ];
    let noise = rng.uniform(0.0, 50.0);
    let side = IMAGE_SIDE as f32;
    let blocks: Vec<([f32; 4], [f32; 3])> = (0..rng.below(5))
        .map(|_| {
            let (x, y) = (rng.uniform(0.0, side), rng.uniform(0.0, side));
            let (w, h) = (rng.uniform(10.0, 120.0), rng.uniform(10.0, 120.0));
            ([x, y, x + w, y + h], colour(rng))
        })
        .collect();
    let (ca, sa) = (angle.cos(), angle.sin());
    let (cs, ss) = (stripe_angle.cos(), stripe_angle.sin());
    let mut out = vec![0u8; IMAGE_BYTES];
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let (x, y) = ((i % IMAGE_SIDE) as f32, (i / IMAGE_SIDE) as f32);
        let t = (((x - side / 2.0) * ca + (y - side / 2.0) * sa) / side + 0.5).clamp(0.0, 1.0);
        let along = x * cs + y * ss;
        let block = blocks
            .iter()
            .find(|(r, _)| x >= r[0] && x < r[2] && y >= r[1] && y < r[3])
            .map(|(_, c)| *c);
        for c in 0..3 {
            let base = block.unwrap_or([c0[c] + (c1[c] - c0[c]) * t; 3])[c];
            let v = base + amp * (freq * along + phase[c]).sin() + noise * rng.normal();
            px[c] = v.clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_reproducible_and_differ() {
        let a = varied_images(3, 4);
        assert_eq!(a, varied_images(3, 4));
        assert_eq!(a[0].len(), IMAGE_BYTES);
        assert_ne!(a[0], a[1]);
        let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((0..4).any(|i| (mean(&a[i]) - mean(&a[0])).abs() > 5.0));
    }
}
