//! `inference-gateway plan-check`: the GPU engine's plan on its CPU twin against the CPU engine.
//!
//! Each image is preprocessed as the server does; varied synthetic inputs can be added. Both
//! engines run the same batches: ONNX Runtime (fp32, the serving CPU engine) and the GPU plan
//! (BN folded, fp16 KRSC filters and NHWC activations, fp32 pool and classifier) on
//! [`engine::gpu::twin::CpuTwin`]. One JSON line per input goes to `--json`; the summary says
//! whether the answers agree: the same top-1 wherever the CPU engine's top-2 gap is at least
//! 0.02, and the top-1 probability within 0.02.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use engine::gpu::exec::Executor;
use engine::gpu::model::PreparedModel;
use engine::gpu::twin::CpuTwin;
use engine::{Backend, BatchBuffer, CpuBackend, ModelSource, IMAGE_BYTES};

/// Gap between the CPU engine's two best probabilities above which the top-1 must agree.
const GAP: f32 = 0.02;
/// Largest allowed difference of the top-1 probabilities.
const PROB_TOLERANCE: f32 = 0.02;

/// Arguments of `plan-check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX model (default: the built-in model of MODEL_SEED, generated if absent).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A folder of images (every file in it is tried; undecodable ones are skipped and named).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Also check this many varied synthetic inputs.
    #[arg(long, default_value_t = 0)]
    varied: usize,
    /// Write one JSON line per input: {"file", "top5": [[class_id, probability], …]}.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Images per batch, on both engines.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Where the GPU plan runs: `twin` (its CPU twin) or `cuda[:N]` (a build with the CUDA
    /// engine; the twin then also runs, and the first batch is compared step by step).
    #[arg(long, default_value = "twin")]
    device: String,
    /// How the CUDA plan launches (plan B of a first GPU run).
    #[command(flatten)]
    launch: LaunchArgs,
}

/// How the CUDA plan launches: `--eager` and `--untimed` are plan B of a first GPU run.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct LaunchArgs {
    /// Launch every step of every batch instead of replaying CUDA graphs.
    #[arg(long)]
    pub(crate) eager: bool,
    /// Take IMPLICIT_PRECOMP_GEMM for every convolution without timing any algorithm.
    #[arg(long)]
    pub(crate) untimed: bool,
}

impl LaunchArgs {
    /// `(graphs, tune)`, as `cuda_config` takes them.
    fn flags(self) -> (bool, bool) {
        (!self.eager, !self.untimed)
    }
}

/// The GPU plan on the chosen device (one per process: the size difference of the variants
/// does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum PlanEngine {
    /// The CPU twin.
    Twin(Executor<CpuTwin>),
    /// The CUDA device.
    #[cfg(feature = "cuda")]
    Cuda(Executor<engine::gpu::cuda::CudaDevice>),
}

impl PlanEngine {
    /// Builds the plan of `model` on `device` for batches up to `max_batch`.
    pub(crate) fn build(
        device: &str,
        model: Arc<PreparedModel>,
        max_batch: usize,
        cache_dir: &Path,
        launch: LaunchArgs,
    ) -> anyhow::Result<Self> {
        let affine = engine::gpu::affine_of(models::IMAGENET_NORMALIZATION);
        if device == "twin" {
            return Ok(Self::Twin(Executor::new(
                CpuTwin::default(),
                model,
                max_batch,
                affine,
            )?));
        }
        let ordinal = match device.strip_prefix("cuda") {
            Some("") => 0,
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("--device {device}: expected twin, cuda or cuda:N"))?,
            None => anyhow::bail!("--device {device}: expected twin, cuda or cuda:N"),
        };
        Self::cuda(ordinal, model, max_batch, (cache_dir, launch.flags()))
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        ordinal: usize,
        model: Arc<PreparedModel>,
        max_batch: usize,
        (cache_dir, launch): (&Path, (bool, bool)),
    ) -> anyhow::Result<Self> {
        let cfg = gateway::lifecycle::cuda_config(ordinal, max_batch, cache_dir, launch);
        let exec =
            engine::gpu::cuda::executor(model, &cfg, 0).map_err(engine::EngineError::from)?;
        Ok(Self::Cuda(exec))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(
        _: usize,
        _: Arc<PreparedModel>,
        _: usize,
        _: (&Path, (bool, bool)),
    ) -> anyhow::Result<Self> {
        anyhow::bail!("this build has no CUDA engine (build with --features cuda)")
    }

    /// Runs `n` images, writing logits and timings.
    pub(crate) fn run(
        &mut self,
        images: &[u8],
        n: usize,
        logits: &mut Vec<f32>,
        timings: &mut Vec<engine::StageTiming>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Twin(e) => e.run(images, n, logits, timings)?,
            #[cfg(feature = "cuda")]
            Self::Cuda(e) => e.run(images, n, logits, timings)?,
        }
        Ok(())
    }

    /// Every step's output for `n` images.
    fn traced(&mut self, images: &[u8], n: usize) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(match self {
            Self::Twin(e) => e.run_traced(images, n)?,
            #[cfg(feature = "cuda")]
            Self::Cuda(e) => e.run_traced(images, n)?,
        })
    }

    fn is_twin(&self) -> bool {
        matches!(self, Self::Twin(_))
    }
}

/// Per step, the largest difference between two devices' outputs relative to the step's
/// largest value.
fn step_errors(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let scale = x.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-6);
            let worst = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            worst / scale
        })
        .collect()
}

struct Input {
    name: String,
    pixels: Vec<u8>,
}

fn inputs(args: &Args, max_pixels: u64) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    if let Some(dir) = &args.images {
        let read = gateway::imaging::folder::read(dir, max_pixels)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        for (path, image) in read {
            match image {
                Ok(p) => out.push(Input {
                    name: path.display().to_string(),
                    pixels: p.pixels,
                }),
                Err(e) => eprintln!("skipping {}: {e}", path.display()),
            }
        }
    }
    for (i, pixels) in models::varied_images(0x51A7_C0DE, args.varied)
        .into_iter()
        .enumerate()
    {
        out.push(Input {
            name: format!("varied:{i}"),
            pixels,
        });
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no inputs: give --images DIR and/or --varied N"
    );
    Ok(out)
}

/// How one input's two answers compare.
struct Comparison {
    twin_top5: Vec<(usize, f32)>,
    agree: bool,
    required: bool,
    prob_diff: f32,
    logit_error: f32,
    logit_scale: f32,
}

fn top(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|c| (c, probs[c])).collect()
}

fn compare(cpu: &[f32], twin: &[f32]) -> Comparison {
    let (pc, pt) = (
        gateway::predict::softmax(cpu),
        gateway::predict::softmax(twin),
    );
    let (tc, tt) = (top(&pc, 5), top(&pt, 5));
    let gap = tc[0].1 - tc.get(1).map_or(0.0, |t| t.1);
    let mean = cpu.iter().sum::<f32>() / cpu.len() as f32;
    let var = cpu.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / cpu.len() as f32;
    Comparison {
        agree: tc[0].0 == tt[0].0,
        required: gap >= GAP,
        prob_diff: (tc[0].1 - tt[0].1).abs(),
        logit_error: cpu
            .iter()
            .zip(twin)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max),
        logit_scale: var.sqrt(),
        twin_top5: tt,
    }
}

/// Runs `backend` on `images` (concatenated u8 HWC) and returns the logits.
fn cpu_logits(backend: &mut CpuBackend, images: &[&Input]) -> anyhow::Result<Vec<f32>> {
    let mut batch = BatchBuffer::new(images.len());
    for i in images {
        anyhow::ensure!(
            batch.push(&i.pixels),
            "{} is not {IMAGE_BYTES} bytes",
            i.name
        );
    }
    let (mut logits, mut timings) = (Vec::new(), Vec::new());
    backend.run(&batch, &mut logits, &mut timings)?;
    Ok(logits)
}

/// The whole check; fails when the agreement criterion does not hold.
pub fn run(config: &gateway::Config, args: &Args) -> anyhow::Result<()> {
    let mc = &config.model;
    let model = gateway::lifecycle::load_model(mc, args.model.as_deref())?;
    let prepared = Arc::new(models::prepare_for_gpu(&model.path)?);
    let batch = args.batch.max(1);
    let mut plan = PlanEngine::build(
        &args.device,
        prepared.clone(),
        batch,
        &mc.cache_dir,
        args.launch,
    )?;
    let mut cpu = CpuBackend::new(&engine::CpuConfig::new(
        ModelSource::File(model.path.clone()),
        mc.engine_threads,
        models::IMAGENET_NORMALIZATION,
    ))?;
    let inputs = inputs(args, config.http.max_image_pixels)?;
    let mut json = match &args.json {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => None,
    };
    let classes = prepared.classes;
    let mut results = Vec::with_capacity(inputs.len());
    let steps = if plan.is_twin() {
        None
    } else {
        let n = inputs.len().min(batch);
        let flat: Vec<u8> = inputs[..n]
            .iter()
            .flat_map(|i| i.pixels.iter().copied())
            .collect();
        let mut reference =
            PlanEngine::build("twin", prepared.clone(), batch, &mc.cache_dir, args.launch)?;
        Some(step_errors(
            &reference.traced(&flat, n)?,
            &plan.traced(&flat, n)?,
        ))
    };
    for chunk in inputs.chunks(batch) {
        let refs: Vec<&Input> = chunk.iter().collect();
        let want = cpu_logits(&mut cpu, &refs)?;
        let flat: Vec<u8> = chunk
            .iter()
            .flat_map(|i| i.pixels.iter().copied())
            .collect();
        let (mut got, mut timings) = (Vec::new(), Vec::new());
        plan.run(&flat, chunk.len(), &mut got, &mut timings)?;
        for (i, input) in chunk.iter().enumerate() {
            let row = i * classes..(i + 1) * classes;
            let c = compare(&want[row.clone()], &got[row]);
            if let Some(out) = json.as_mut() {
                let line = serde_json::json!({
                    "file": input.name,
                    "top5": c.twin_top5.iter().map(|(k, p)| serde_json::json!([k, p])).collect::<Vec<_>>(),
                    "logit_error": c.logit_error,
                });
                writeln!(out, "{line}")?;
            }
            results.push(c);
        }
    }
    if let Some(mut out) = json {
        out.flush()?;
    }
    summarise(&model.path, &args.device, &results, steps)
}

fn summarise(
    model: &Path,
    device: &str,
    results: &[Comparison],
    steps: Option<Vec<f32>>,
) -> anyhow::Result<()> {
    let n = results.len();
    let agree = results.iter().filter(|c| c.agree).count();
    let required = results.iter().filter(|c| c.required).count();
    let broken = results.iter().filter(|c| c.required && !c.agree).count();
    let worst_p = results.iter().map(|c| c.prob_diff).fold(0.0, f32::max);
    let mut errors: Vec<f32> = results.iter().map(|c| c.logit_error).collect();
    errors.sort_by(f32::total_cmp);
    let relative = results
        .iter()
        .map(|c| c.logit_error / c.logit_scale.max(1e-6))
        .fold(0.0, f32::max);
    let summary = serde_json::json!({
        "model": model.display().to_string(),
        "device": device,
        "inputs": n,
        "top1_agree": agree,
        "top1_required": required,
        "top1_required_disagree": broken,
        "max_top1_prob_diff": worst_p,
        "median_max_logit_error": errors[n / 2],
        "max_logit_error": errors[n - 1],
        "max_logit_error_over_logit_std": relative,
        "step_error_vs_twin": steps,
    });
    println!("{summary}");
    anyhow::ensure!(
        broken == 0 && worst_p <= PROB_TOLERANCE,
        "the GPU plan disagrees with the CPU engine: {broken} of {required} clear top-1s differ, \
         top-1 probabilities differ by up to {worst_p:.4} (allowed {PROB_TOLERANCE})"
    );
    Ok(())
}
