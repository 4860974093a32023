//! The hot path of `/predict`, one stage per benchmark group, on the project's test images, and
//! the batcher's decision.

// criterion's macros define undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

fn image(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/images/good")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (testdata/ of the repository)", path.display()))
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for name in [
        "ijg-testorig.jpg",
        "progressive-cat.jpg",
        "png-interlaced.png",
        "webp-lossy-alpha.webp",
    ] {
        let bytes = image(name);
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| gateway::imaging::decode_rgb(black_box(bytes), 40_000_000).unwrap())
        });
    }
    g.finish();
}

/// A large photo (2048×1536, 4:2:0) decoded whole (`exact`) and at the DCT scale Pillow's draft
/// picks (`draft`, 1/2 here), then resized and cropped: the host work of `/predict` on it.
fn photo(c: &mut Criterion) {
    use gateway::imaging::{preprocess, Preprocess};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/data/large/landscape-2048x1536.jpg");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut g = c.benchmark_group("photo_decode_preprocess");
    for mode in [Preprocess::Exact, Preprocess::Draft] {
        g.bench_with_input(
            BenchmarkId::from_parameter(mode.name()),
            &bytes,
            |b, bytes| b.iter(|| preprocess(black_box(bytes), 40_000_000, mode).unwrap()),
        );
    }
    g.finish();
}

/// Resize(256) + CenterCrop(224) with each horizontal-pass kernel this CPU runs (scalar, SSE4.1,
/// AVX2): the speed-up in one run, at a small upscale, a medium and a 12 MP downscale.
fn resize(c: &mut Criterion) {
    use gateway::imaging::resize::{resize_centre_crop_with, Kernel};
    let mut g = c.benchmark_group("resize_crop");
    for (w, h) in [(227usize, 149usize), (320, 240), (1280, 960), (4032, 3024)] {
        let src: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Elements((w * h) as u64));
        for kernel in Kernel::available() {
            g.bench_with_input(
                BenchmarkId::new(format!("{kernel:?}"), format!("{w}x{h}")),
                &src,
                |b, src| b.iter(|| resize_centre_crop_with(kernel, black_box(src), w, h, 256, 224)),
            );
        }
    }
    g.finish();
}

fn normalise(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalise");
    for n in [1usize, 8] {
        let mut batch = engine::BatchBuffer::new(n);
        for img in models::varied_images(3, n) {
            assert!(batch.push(&img));
        }
        let mut out = Vec::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| models::IMAGENET_NORMALIZATION.to_nchw(black_box(&batch), &mut out))
        });
    }
    g.finish();
}

fn multipart(c: &mut Criterion) {
    let jpeg = image("progressive-cat.jpg");
    let boundary = "----benchboundary7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&jpeg);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body = bytes::Bytes::from(body);
    let kind =
        gateway::intake::body_kind(&format!("multipart/form-data; boundary={boundary}")).unwrap();
    c.bench_function("multipart_intake", |b| {
        b.iter(|| gateway::intake::image_bytes(black_box(body.clone()), &kind).unwrap())
    });
}

fn answer(c: &mut Criterion) {
    let logits: Vec<f32> = (0..1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let labels = models::imagenet_labels();
    c.bench_function("top5_and_json", |b| {
        b.iter(|| {
            let predictions = gateway::predict::top_k(black_box(&logits), 5, labels);
            serde_json::to_vec(&gateway::predict::PredictResponse {
                model: "resnet50",
                predictions,
            })
            .unwrap()
        })
    });
}

/// The batcher's per-batch decision: take `max` live images from a queue of `2 × max`, a quarter of
/// them dead (deadline passed), which are dropped on the way.
fn next_batch(c: &mut Criterion) {
    use gateway::batching::admission::Admission;
    use gateway::batching::queue::{Pending, Queue};
    let admission = Admission::new(1 << 20, Default::default());
    let now = Instant::now();
    let mut g = c.benchmark_group("next_batch");
    for max in [8usize, 64, 256] {
        let setup = || {
            let mut q = Queue::default();
            let mut replies = Vec::new();
            for i in 0..2 * max {
                let (reply, rx) = tokio::sync::oneshot::channel();
                let ttl = if i % 4 == 3 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(30)
                };
                q.push(Pending {
                    input: bytes::Bytes::new(),
                    kind: engine::InputKind::Image,
                    enqueued: now,
                    deadline: now + ttl,
                    reply,
                    permit: admission.try_admit().expect("room"),
                    link: None,
                    queue_span: tracing::Span::none(),
                });
                replies.push(rx);
            }
            (q, replies)
        };
        g.throughput(Throughput::Elements(max as u64));
        g.bench_function(BenchmarkId::from_parameter(max), |b| {
            b.iter_batched(
                setup,
                |(mut q, replies)| (q.next_batch(black_box(max), now), q, replies),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(hot_path, decode, photo, resize, normalise, multipart, answer, next_batch);
criterion_main!(hot_path);
