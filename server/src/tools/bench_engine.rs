//! `inference-gateway bench-engine`: model-only throughput of the GPU plan (no HTTP, no decode):
//! for each batch size, batches of varied images run back to back for a while, and one JSON line
//! reports images/s and the per-batch stage times. On `cuda` the batches replay their CUDA graph;
//! on `twin` they run the CPU twin (a rehearsal: slow by design).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::IMAGE_BYTES;

use super::plan_check::{LaunchArgs, PlanEngine};

/// Arguments of `bench-engine`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX model (default: the built-in model).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// `twin`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "twin")]
    device: String,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Seconds per batch size (after two warm-up batches); at least three batches run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// How the CUDA plan launches (`--eager`, `--untimed`).
    #[command(flatten)]
    launch: LaunchArgs,
}

/// Runs the benchmark and prints one JSON line per batch size.
pub fn run(config: &gateway::Config, args: &Args) -> anyhow::Result<()> {
    let mc = &config.model;
    let model = gateway::lifecycle::load_model(mc, args.model.as_deref())?;
    let prepared = Arc::new(models::prepare_for_gpu(&model.path)?);
    let max = args.batches.iter().copied().max().unwrap_or(1).max(1);
    let mut plan = PlanEngine::build(&args.device, prepared, max, &mc.cache_dir, args.launch)?;
    let images: Vec<u8> = models::varied_images(7, max.min(64))
        .concat()
        .repeat(max.div_ceil(64));
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    for &n in &args.batches {
        let batch = &images[..n * IMAGE_BYTES];
        for _ in 0..2 {
            plan.run(batch, n, &mut logits, &mut timings)?;
        }
        let (mut runs, mut stages) = (0u32, [Duration::ZERO; 3]);
        let mut latencies = Vec::new();
        let start = Instant::now();
        while runs < 3 || start.elapsed().as_secs_f64() < args.seconds {
            let t = Instant::now();
            plan.run(batch, n, &mut logits, &mut timings)?;
            latencies.push(t.elapsed());
            for (sum, t) in stages.iter_mut().zip(&timings) {
                *sum += t.duration;
            }
            runs += 1;
        }
        let wall = start.elapsed().as_secs_f64();
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let line = serde_json::json!({
            "device": args.device,
            "graphs": !args.launch.eager,
            "timed_algorithms": !args.launch.untimed,
            "batch": n,
            "batches": runs,
            "images_per_s": f64::from(runs) * n as f64 / wall,
            "batch_ms_p50": ms(latencies[latencies.len() / 2]),
            "batch_ms_p99": ms(latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]),
            "h2d_ms": ms(stages[0]) / f64::from(runs),
            "compute_ms": ms(stages[1]) / f64::from(runs),
            // The GPU alone: the batches here come from pageable memory, not the pinned
            // buffers the server copies from, so end to end understates the server's copies.
            "compute_images_per_s": f64::from(runs) * n as f64 / stages[1].as_secs_f64(),
            "d2h_ms": ms(stages[2]) / f64::from(runs),
        });
        println!("{line}");
    }
    Ok(())
}
