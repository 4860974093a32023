//! Quantises an ONNX ResNet50 to QDQ int8 on synthetic calibration images and reports its
//! agreement with the float model: `cargo run --release -p models --example quantize -- IN OUT
//! [METHOD] [CALIBRATION_IMAGES]` (`QUANTIZE_TARGET=tensorrt` for TensorRT's form). The server's `check-quantisation` is the full report.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = (&args[1], &args[2]);
    let method = models::quantize::Method::parse(args.get(3).map_or("minmax", |s| s))
        .ok_or("METHOD: minmax or percentile[:P]")?;
    let count: usize = args.get(4).map_or(Ok(64), |s| s.parse())?;
    let ort =
        std::env::var("ORT_DYLIB_PATH").unwrap_or(".cache/onnxruntime/libonnxruntime.so".into());
    engine::init_onnx_runtime(std::path::Path::new(&ort))?;
    let fp32 = std::fs::read(input)?;
    let calibration = models::varied_images(7, count);
    let t = std::time::Instant::now();
    let scratch = std::env::temp_dir().join("quantize-example.onnx");
    let target = match std::env::var("QUANTIZE_TARGET").as_deref() {
        Ok("tensorrt") => models::quantize::Target::TensorRt,
        _ => models::quantize::Target::OnnxRuntimeCpu,
    };
    let int8 = models::quantize::quantize(&fp32, &calibration, method, 2, &scratch, target)?;
    println!(
        "quantised with {method} on {count} images in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::fs::write(output, &int8)?;
    let varied = models::varied_images(1234, 200);
    let a = models::quantize::check::agreement(fp32.into(), int8.into(), &varied, 2)?;
    println!("{a:?}, top-1 {:.1}%", 100.0 * a.top1());
    Ok(())
}
