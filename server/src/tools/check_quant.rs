//! `inference-gateway check-quantisation`: how the int8 model agrees with the fp32 one, per
//! calibration method: top-1 agreement and logit error over the calibration set, a folder of
//! images (the good test images by default) and varied synthetic inputs. Writes the quantised
//! models it makes to `--out` when asked; serves nothing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gateway::config::{Config, Precision};
use gateway::precision;
use models::quantize::{self, check, Method};

/// Arguments of `check-quantisation`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Calibration methods to compare (`minmax`, `percentile`, `percentile:P`; default:
    /// minmax, percentile:99.99 and percentile:99.999).
    #[arg(long = "method")]
    methods: Vec<String>,
    /// A folder of images to compare on (default: testdata/images/good, from the repository root).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Varied synthetic inputs to compare on (a seed apart from the calibration set's).
    #[arg(long, default_value_t = 1000)]
    varied: usize,
    /// Shape the int8 model for TensorRT (symmetric int8, float biases), run here as simulated
    /// quantisation on ONNX Runtime's CPU provider, instead of for ONNX Runtime's CPU kernels.
    #[arg(long)]
    tensorrt: bool,
    /// Write each int8 model here, as `int8-METHOD.onnx`.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the comparison and prints one table row per method and image set.
pub fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let mc = &config.model;
    let model = gateway::lifecycle::load_model(mc, mc.path.as_deref())?;
    let builtin = model.origin == models::Origin::Builtin;
    let calibration = precision::calibration_images(mc, builtin)?;
    let good = args
        .images
        .clone()
        .unwrap_or_else(|| PathBuf::from("testdata/images/good"));
    let sets = [
        ("calibration", calibration.clone()),
        ("images", folder(&good)?),
        (
            "varied",
            models::varied_images(mc.seed.wrapping_add(1000), args.varied),
        ),
    ];
    let methods: Vec<Method> = match args.methods.as_slice() {
        [] => vec![
            Method::MinMax,
            Method::Percentile(99.99),
            Method::Percentile(99.999),
        ],
        given => given
            .iter()
            .map(|m| Method::parse(m).with_context(|| format!("--method {m}")))
            .collect::<anyhow::Result<_>>()?,
    };
    println!(
        "model {} ({}), {} calibration images, precision check at INT8_MIN_AGREEMENT {:.0}%, \
         weights in ±{} on this CPU",
        model.path.display(),
        model.origin,
        calibration.len(),
        100.0 * mc.precision.min_agreement,
        quantize::weight_max()
    );
    println!("| method | set | images | top-1 agreement | mean abs logit error | max abs | mean logit spread |");
    println!("|---|---|---|---|---|---|---|");
    let fp32 = model.bytes.clone();
    let target = match args.tensorrt {
        true => quantize::Target::TensorRt,
        false => quantize::Target::OnnxRuntimeCpu,
    };
    let want: Vec<Vec<f32>> = sets
        .iter()
        .map(|(_, imgs)| check::logits(fp32.clone(), imgs, mc.engine_threads))
        .collect::<Result<_, _>>()?;
    for method in methods {
        let scratch = std::env::temp_dir().join("check-quantisation.onnx");
        let int8: Arc<[u8]> = quantize::quantize(
            &fp32,
            &calibration,
            method,
            mc.engine_threads,
            &scratch,
            target,
        )?
        .into();
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join(format!(
                    "int8-{}.onnx",
                    method.to_string().replace(':', "-")
                )),
                &int8,
            )?;
        }
        for ((name, imgs), want) in sets.iter().zip(&want) {
            let got = check::logits(int8.clone(), imgs, mc.engine_threads)?;
            let a = check::compare(want, &got, imgs.len());
            println!(
                "| {method} | {name} | {} | {:.1}% | {:.3} | {:.3} | {:.2} |",
                a.images,
                100.0 * a.top1(),
                a.mean_abs_error,
                a.max_abs_error,
                a.mean_logit_spread
            );
        }
    }
    if mc.precision.precision == Precision::Fp32 {
        println!("(MODEL_PRECISION=fp32 here: the server would not quantise)");
    }
    Ok(())
}

/// The images of `dir` that decode, preprocessed as served (a missing folder: none).
fn folder(dir: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    if !dir.is_dir() {
        eprintln!("{}: no such folder; comparing without it", dir.display());
        return Ok(Vec::new());
    }
    Ok(precision::read_dir_images(dir)?)
}
