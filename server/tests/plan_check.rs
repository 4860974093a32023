//! `inference-gateway plan-check` on the built-in model: the GPU plan on its CPU twin agrees with
//! ONNX Runtime on every good test image and on varied synthetic inputs, and writes one JSON line
//! per input.

mod common;

use std::process::Command;

#[test]
fn the_gpu_plan_on_its_twin_agrees_with_the_cpu_engine() {
    let out = std::env::temp_dir().join(format!("plan-check-{}.jsonl", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_inference-gateway"))
        .current_dir(common::repo())
        .env("LOG_LEVEL", "WARN")
        .args(["plan-check", "--varied", "16", "--json"])
        .arg(&out)
        .arg("--images")
        .arg(common::images("good"))
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "plan-check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    let good = common::files("good").len() as u64;
    assert_eq!(summary["inputs"], good + 16, "{summary}");
    assert_eq!(summary["top1_required_disagree"], 0, "{summary}");
    assert!(
        summary["max_top1_prob_diff"].as_f64().unwrap() <= 0.02,
        "{summary}"
    );
    // fp16 costs something, and not much: the logits differ, by a small part of their spread.
    let relative = summary["max_logit_error_over_logit_std"].as_f64().unwrap();
    assert!(relative > 0.0 && relative < 0.1, "{summary}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, good + 16);
    for line in &lines {
        let top5 = line["top5"].as_array().unwrap();
        assert_eq!(top5.len(), 5, "{line}");
        let probs: Vec<f64> = top5.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "sorted: {line}");
        assert!(top5.iter().all(|p| p[0].as_u64().unwrap() < 1000));
    }
    assert!(lines[0]["file"].as_str().unwrap().ends_with(".bmp"));
    let _ = std::fs::remove_file(out);
}
