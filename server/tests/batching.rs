//! Dynamic batching: an image answered alone and inside a batch gets the same top-5 and the same
//! probabilities (within 1e-5); batches really form under concurrency.

mod common;

use std::collections::HashSet;

use common::{files, predict_multipart, TestServer};
use engine::{Backend, BatchBuffer, CpuBackend, ModelSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's own top-5 (softmax over all classes), as `(class_id, probability)`.
fn top5(logits: &[f32]) -> Vec<(usize, f32)> {
    gateway::predict::top_k(logits, 5, &[])
        .into_iter()
        .map(|p| (p.class_id, p.probability))
        .collect()
}

/// The built-in model file, with ONNX Runtime loaded.
fn builtin_model() -> std::path::PathBuf {
    let dylib = std::env::var("ORT_DYLIB_PATH").unwrap();
    engine::init_onnx_runtime(dylib.as_ref()).unwrap();
    models::ensure_builtin(
        &common::repo().join(".cache/models"),
        models::DEFAULT_SEED,
        2,
    )
    .unwrap()
}

/// The first 8 good test images, preprocessed.
fn eight_images() -> Vec<Vec<u8>> {
    files("good")
        .iter()
        .take(8)
        .map(|p| {
            gateway::imaging::preprocess(&std::fs::read(p).unwrap(), 40_000_000, Default::default())
                .unwrap()
                .pixels
        })
        .collect()
}

/// Engine level, deterministic: each of 8 different images alone vs. inside one batch of all 8.
#[test]
fn same_image_alone_and_in_a_batch_of_8_agrees() {
    let path = builtin_model();
    let mut backend = CpuBackend::new(&engine::CpuConfig::new(
        ModelSource::File(path),
        2,
        models::IMAGENET_NORMALIZATION,
    ))
    .unwrap();
    let images = eight_images();
    assert_eq!(images.len(), 8);
    let (mut batch_logits, mut t) = (Vec::new(), Vec::new());
    let mut batch = BatchBuffer::new(8);
    images.iter().for_each(|i| assert!(batch.push(i)));
    backend.run(&batch, &mut batch_logits, &mut t).unwrap();
    for (i, img) in images.iter().enumerate() {
        let mut one = BatchBuffer::new(1);
        assert!(one.push(img));
        let mut alone = Vec::new();
        backend.run(&one, &mut alone, &mut t).unwrap();
        let (a, b) = (top5(&alone), top5(&batch_logits[i * 1000..(i + 1) * 1000]));
        assert_eq!(
            a.iter().map(|x| x.0).collect::<Vec<_>>(),
            b.iter().map(|x| x.0).collect::<Vec<_>>(),
            "image {i}"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x.1 - y.1).abs() <= 1e-5, "image {i}: {} vs {}", x.1, y.1);
        }
    }
}

/// Server level: concurrent requests are batched, and batched answers equal the solo answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_without_changing_answers() {
    let server = TestServer::start(&[("MAX_BATCH_SIZE", "8"), ("MAX_BATCH_DELAY_MS", "100")]).await;
    let target = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let solo = predict_multipart(server.addr, &target, "").await.unwrap();
    assert_eq!((solo.status, solo.batch_size()), (200, 1));
    let solo = solo.predictions();

    let others: Vec<Vec<u8>> = files("good")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let body = if i % 3 == 0 {
            target.clone()
        } else {
            others[i % others.len()].clone()
        };
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            (
                i % 3 == 0,
                predict_multipart(addr, &body, "").await.unwrap(),
            )
        }));
    }
    let mut sizes = HashSet::new();
    let mut batched_target = 0;
    for t in tasks {
        let (is_target, r) = t.await.unwrap();
        assert_eq!(r.status, 200);
        sizes.insert(r.batch_size());
        if is_target && r.batch_size() > 1 {
            batched_target += 1;
            let got = r.predictions();
            assert_eq!(
                got.iter().map(|p| p.0).collect::<Vec<_>>(),
                solo.iter().map(|p| p.0).collect::<Vec<_>>()
            );
            for (a, b) in got.iter().zip(&solo) {
                assert!((a.1 - b.1).abs() <= 1e-5, "batched {} vs solo {}", a.1, b.1);
            }
        }
    }
    eprintln!("batch sizes seen: {sizes:?}; target answered in a batch {batched_target} times");
    assert!(sizes.iter().any(|&s| s > 1), "no batch formed: {sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= 8),
        "batch over MAX_BATCH_SIZE: {sizes:?}"
    );
    assert!(
        batched_target > 0,
        "the target image never ran inside a batch"
    );
    server.stop().await.unwrap();
}

/// Requests that arrive together run together: eight requests admitted while the engine is
/// idle form one batch of 8, although the first of them is decoded long before the last.
/// (Without the wait, the first would start alone at once and the other seven queue behind
/// it.) A lone request, on the same server, still starts at once despite the long delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_admitted_together_share_one_batch_and_a_lone_one_does_not_wait() {
    let server = TestServer::start(&[
        ("MAX_BATCH_SIZE", "8"),
        ("MAX_BATCH_DELAY_MS", "3000"),
        ("DECODE_THREADS", "1"),
    ])
    .await;
    let image = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let started = std::time::Instant::now();
    let solo = predict_multipart(server.addr, &image, "").await.unwrap();
    assert_eq!((solo.status, solo.batch_size()), (200, 1));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "a lone request waited for a batch: {:?}",
        started.elapsed()
    );

    // Each request is admitted once its body has arrived. All but the last byte of each body
    // first; then the eight last bytes at once: all eight are admitted while the first of these
    // 3 MP photos is still decoding (on the one decode thread, ~8 x 60 ms in all).
    let photo =
        std::fs::read(common::repo().join("server/tests/data/large/landscape-2048x1536.jpg"))
            .unwrap();
    let (content_type, body) = common::multipart(&photo);
    let (most, last) = body.split_at(body.len() - 1);
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = common::head(
            "POST",
            "/predict",
            &[("content-type", &content_type)],
            body.len(),
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(most).await.unwrap();
        streams.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for s in &mut streams {
        s.write_all(last).await.unwrap();
    }
    let mut tasks = Vec::new();
    for mut s in streams {
        tasks.push(tokio::spawn(async move {
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.unwrap();
            common::parse(&raw).expect("an HTTP response")
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.batch_size(),
            8,
            "server-timing: {}",
            r.headers["server-timing"]
        );
    }
    server.stop().await.unwrap();
}

/// The GPU engines' ONNX Runtime path (`engine::OnnxBackend`: the shared session builder, I/O
/// binding, the host and "device" tensors per batch size and the copies between them), run here
/// through the CPU provider, gives the CPU engine's logits exactly, for batches of 1, 3 and 8
/// and for both input kinds, in the cuDNN engine's stages.
#[test]
fn the_io_binding_backend_on_the_cpu_provider_equals_the_cpu_engine() {
    let path = builtin_model();
    let config = engine::CpuConfig::new(ModelSource::File(path), 2, models::IMAGENET_NORMALIZATION);
    let mut cpu = CpuBackend::new(&config).unwrap();
    let mut bound = engine::OnnxBackend::new(&config, &engine::Provider::Cpu).unwrap();
    assert_eq!(engine::Provider::Cpu.label(), "onnxruntime");
    let images = eight_images();
    let (mut want, mut got, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for n in [1, 3, 8, 1] {
        let mut batch = bound.alloc_batch(8);
        images.iter().take(n).for_each(|i| assert!(batch.push(i)));
        cpu.run(&batch, &mut want, &mut t).unwrap();
        bound.run(&batch, &mut got, &mut t).unwrap();
        assert_eq!(got.len(), n * 1000);
        assert!(got == want, "batch of {n}: the logits differ");
        assert_eq!(
            t.iter().map(|s| s.stage).collect::<Vec<_>>(),
            ["normalize", "h2d", "compute", "d2h"]
        );
    }
    // A tensor input (KServe's FP32 model) through the same binding.
    let tensor: Vec<u8> = (0..3 * 224 * 224)
        .flat_map(|i| ((i % 97) as f32 / 97.0 - 0.5).to_le_bytes())
        .collect();
    let mut batch = BatchBuffer::new(1);
    batch.reset(engine::InputKind::Tensor);
    assert!(batch.push(&tensor));
    cpu.run(&batch, &mut want, &mut t).unwrap();
    bound.run(&batch, &mut got, &mut t).unwrap();
    assert!(got == want, "tensor input: the logits differ");
}
