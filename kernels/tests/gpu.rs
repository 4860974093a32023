//! The kernels on a real GPU against their CPU references. Skips, saying why, where there is no
//! GPU or no CUDA driver/NVRTC library (CI); needs `--features cuda`.

#![cfg(feature = "cuda")]

use kernels::launch::Kernels;
use kernels::{reference, Affine, PADDED_CHANNELS};

fn gpu() -> Option<std::sync::Arc<cudarc::driver::CudaContext>> {
    // SAFETY: these only try to open the shared libraries; nothing is called through them.
    let present = unsafe {
        cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present()
    };
    if !present {
        eprintln!("skipping GPU test: libcuda.so.1 or libnvrtc not found (no GPU here)");
        return None;
    }
    match cudarc::driver::CudaContext::new(0) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            eprintln!("skipping GPU test: no usable GPU ({e})");
            None
        }
    }
}

#[test]
fn kernels_match_their_references_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    let stream = ctx.default_stream();
    let k = Kernels::compile(&ctx, None).expect("NVRTC compiles the kernels");
    let affine = Affine::from_mean_std([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let images: Vec<u8> = (0..2 * 224 * 224 * 3)
        .map(|i| (i * 7919 % 256) as u8)
        .collect();
    let pixels = images.len() / 3;
    let src = stream.clone_htod(&images).unwrap();
    let mut dst = stream.alloc_zeros::<u16>(pixels * PADDED_CHANNELS).unwrap();
    k.normalize(&stream, &src, &mut dst, pixels, PADDED_CHANNELS, &affine)
        .unwrap();
    let got = stream.clone_dtoh(&dst).unwrap();
    let want: Vec<u16> = reference::normalize(&images, PADDED_CHANNELS, &affine)
        .iter()
        .map(|h| h.to_bits())
        .collect();
    let off = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| (**a as i32 - **b as i32).abs() > 1)
        .count();
    assert_eq!(off, 0, "fp16 outputs more than one ulp from the reference");

    let (rows, classes, topk) = (5, 1000, 5);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 37 % 1013) as f32 - 500.0) / 50.0)
        .collect();
    let d_logits = stream.clone_htod(&logits).unwrap();
    let mut idx = stream.alloc_zeros::<i32>(rows * topk).unwrap();
    let mut prob = stream.alloc_zeros::<f32>(rows * topk).unwrap();
    k.softmax_topk(&stream, &d_logits, rows, classes, topk, &mut idx, &mut prob)
        .unwrap();
    let (idx, prob) = (
        stream.clone_dtoh(&idx).unwrap(),
        stream.clone_dtoh(&prob).unwrap(),
    );
    for (r, want) in reference::softmax_topk(&logits, classes, topk)
        .iter()
        .enumerate()
    {
        for (j, (c, p)) in want.iter().enumerate() {
            assert_eq!(idx[r * topk + j] as usize, *c, "row {r} rank {j}");
            assert!((prob[r * topk + j] - p).abs() < 1e-5, "row {r} rank {j}");
        }
    }
}
