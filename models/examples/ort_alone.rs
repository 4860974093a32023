//! ONNX Runtime alone on a model file: the ceiling the gateway is measured against.
//!
//! `cargo run --release -p models --example ort_alone -- MODEL.onnx [BATCH] [SECONDS] [THREADS] [SPIN]`
//! prints images/s and the median batch latency, with the session settings the server uses by
//! default ([`engine::CpuConfig::new`]: ONNX Runtime's own defaults, graph optimisation level 3).
//! `SPIN` `false` turns intra-op spinning off, as `ENGINE_SPIN=false` does for the server.

use std::time::{Duration, Instant};

use engine::{Backend, BatchBuffer, CpuBackend, ModelSource};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args
        .first()
        .expect("usage: ort_alone MODEL.onnx [BATCH] [SECONDS] [THREADS] [SPIN]");
    let batch: usize = args.get(1).map_or(1, |s| s.parse().expect("BATCH"));
    let seconds: f64 = args.get(2).map_or(10.0, |s| s.parse().expect("SECONDS"));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: usize = args.get(3).map_or(cores, |s| s.parse().expect("THREADS"));
    let dylib = std::env::var("ORT_DYLIB_PATH")
        .unwrap_or_else(|_| ".cache/onnxruntime/libonnxruntime.so".into());
    engine::init_onnx_runtime(dylib.as_ref()).expect("ONNX Runtime");
    let mut config = engine::CpuConfig::new(
        ModelSource::File(model.into()),
        threads,
        models::IMAGENET_NORMALIZATION,
    );
    if let Some(spin) = args.get(4) {
        config.spinning = spin.parse().expect("SPIN: true or false");
    }
    let mut backend = CpuBackend::new(&config).expect("session");
    let mut buf = BatchBuffer::new(batch);
    for i in 0..batch {
        let slot = buf.next_slot().unwrap();
        slot.iter_mut()
            .enumerate()
            .for_each(|(j, v)| *v = ((i * 31 + j * 7) % 251) as u8);
    }
    let (mut logits, mut t) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        backend.run(&buf, &mut logits, &mut t).unwrap(); // warm-up
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        let t0 = Instant::now();
        backend.run(&buf, &mut logits, &mut t).unwrap();
        times.push(t0.elapsed());
    }
    let total = start.elapsed().as_secs_f64();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "ort_alone batch={batch} threads={threads}: {:.1} images/s, median batch latency {:.1} ms ({} runs)",
        (times.len() * batch) as f64 / total,
        median.as_secs_f64() * 1e3,
        times.len()
    );
}
