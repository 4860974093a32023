//! The kernels on a real GPU against their CPU references. Skips, saying why, where there is no
//! GPU or no CUDA driver/NVRTC library (CI); needs `--features cuda`. `REQUIRE_GPU=1` (the
//! device script) turns the skip into a failure, so a run on the GPU machine cannot pass by
//! skipping.

#![cfg(feature = "cuda")]

use half::f16;
use kernels::launch::{DevBuf, Kernels};
use kernels::{reference, Affine, PADDED_CHANNELS};

fn gpu() -> Option<std::sync::Arc<cudarc::driver::CudaContext>> {
    let skip = |why: String| {
        assert!(
            std::env::var_os("REQUIRE_GPU").is_none(),
            "REQUIRE_GPU is set, but {why}"
        );
        eprintln!("skipping GPU test: {why}");
        None
    };
    // SAFETY: these only try to open the shared libraries; nothing is called through them.
    let present = unsafe {
        cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present()
    };
    if !present {
        return skip("libcuda.so.1 or libnvrtc not found (no GPU here)".into());
    }
    match cudarc::driver::CudaContext::new(0) {
        Ok(ctx) => Some(ctx),
        Err(e) => skip(format!("no usable GPU ({e})")),
    }
}

fn halves(v: &[f32]) -> Vec<u16> {
    v.iter().map(|x| f16::from_f32(*x).to_bits()).collect()
}

#[test]
fn kernels_match_their_references_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    let stream = ctx.new_stream().unwrap();
    let k = Kernels::for_device(&ctx).expect("NVRTC compiles the kernels");
    eprintln!("kernels loaded as {}", k.form);
    let affine = Affine::from_mean_std([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let images: Vec<u8> = (0..2 * 224 * 224 * 3)
        .map(|i| (i * 7919 % 256) as u8)
        .collect();
    let pixels = images.len() / 3;
    let src = stream.clone_htod(&images).unwrap();
    let dst = stream.alloc_zeros::<u16>(pixels * PADDED_CHANNELS).unwrap();
    k.normalize(
        &stream,
        DevBuf::of(&src, &stream),
        DevBuf::of(&dst, &stream),
        pixels,
        PADDED_CHANNELS,
        &affine,
    )
    .unwrap();
    let got = stream.clone_dtoh(&dst).unwrap();
    let want: Vec<u16> = reference::normalize(&images, PADDED_CHANNELS, &affine)
        .iter()
        .map(|h| h.to_bits())
        .collect();
    // Compiled without FMA contraction, the kernel rounds as the reference does: exactly equal.
    let off = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(off, 0, "fp16 outputs differ from the reference");

    // Client-made f32 NCHW tensors: conversion only, exactly as the reference rounds.
    let plane = 224 * 224;
    let tensors: Vec<f32> = (0..2 * 3 * plane)
        .map(|i| ((i * 7919) % 4001) as f32 / 1000.0 - 2.0)
        .collect();
    let src = stream.clone_htod(&tensors).unwrap();
    let dst = stream
        .alloc_zeros::<u16>(2 * plane * PADDED_CHANNELS)
        .unwrap();
    k.tensor_in(
        &stream,
        (DevBuf::of(&src, &stream), DevBuf::of(&dst, &stream)),
        (2, plane, PADDED_CHANNELS),
    )
    .unwrap();
    let got = stream.clone_dtoh(&dst).unwrap();
    let want: Vec<u16> = reference::tensor_to_nhwc(&tensors, plane, PADDED_CHANNELS)
        .iter()
        .map(|h| h.to_bits())
        .collect();
    assert_eq!(got, want, "tensor conversion differs from the reference");

    // Pools: 3 images of 16 channels × 112 × 112, fp16 values.
    let (n, c, h) = (3usize, 16usize, 112usize);
    let x: Vec<f32> = (0..n * h * h * c)
        .map(|i| f16::from_f32(((i * 2_654_435_761usize) % 2001) as f32 / 100.0 - 10.0).to_f32())
        .collect();
    let dx = stream.clone_htod(&halves(&x)).unwrap();
    let dy = stream.alloc_zeros::<u16>(n * 56 * 56 * c).unwrap();
    k.max_pool(
        &stream,
        (DevBuf::of(&dx, &stream), DevBuf::of(&dy, &stream)),
        (n, c, h, h),
        (3, 2, 1),
    )
    .unwrap();
    let got = stream.clone_dtoh(&dy).unwrap();
    assert_eq!(
        got,
        halves(&reference::max_pool_nhwc(&x, (n, c, h, h), 3, 2, 1)),
        "max pool is exact"
    );
    let dm = stream.alloc_zeros::<f32>(n * c).unwrap();
    k.avg_pool(
        &stream,
        (DevBuf::of(&dx, &stream), DevBuf::of(&dm, &stream)),
        (n, c, h * h),
    )
    .unwrap();
    let got = stream.clone_dtoh(&dm).unwrap();
    for (g, w) in got.iter().zip(reference::avg_pool_nhwc(&x, n, c, h * h)) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "average pool {g} vs {w}"
        );
    }

    let (rows, classes, topk) = (5, 1000, 5);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 37 % 1013) as f32 - 500.0) / 50.0)
        .collect();
    let d_logits = stream.clone_htod(&logits).unwrap();
    let idx = stream.alloc_zeros::<i32>(rows * topk).unwrap();
    let prob = stream.alloc_zeros::<f32>(rows * topk).unwrap();
    k.softmax_topk(
        &stream,
        DevBuf::of(&d_logits, &stream),
        (rows, classes, topk),
        (DevBuf::of(&idx, &stream), DevBuf::of(&prob, &stream)),
    )
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

    // A launch whose buffer is too small is refused before it reaches the device.
    let small = stream.alloc_zeros::<u16>(10).unwrap();
    let err = k
        .max_pool(
            &stream,
            (DevBuf::of(&dx, &stream), DevBuf::of(&small, &stream)),
            (n, c, h, h),
            (3, 2, 1),
        )
        .unwrap_err();
    assert!(err.to_string().contains("needs"), "{err}");
}
