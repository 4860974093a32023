//! The `loadtest` binary: JSON report, SLO exit status, sweep and chart.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestServer;

fn loadtest(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_thresholds_set_the_exit_status_and_json_has_the_numbers() {
    let server = TestServer::start(Duration::from_millis(10)).await;
    let dir = tempdir("slo");
    let json = dir.join("r.json");
    let url = server.url("/predict");
    let (url2, json2) = (url.clone(), json.clone());
    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "--url",
            &url2,
            "-c",
            "2",
            "-n",
            "40",
            "--warmup",
            "0s",
            "--generate",
            "2",
            "--image-size",
            "64x48",
            "--slo",
            "p99<2s,errors<1%",
            "--json",
            json2.to_str().unwrap(),
            "-q",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pass  p99<2s"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["requests"], 40);
    assert_eq!(report["statuses"]["200"], 40);
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() >= 10.0);
    assert_eq!(report["server"]["batches"], 40.0);
    assert_eq!(report["slo_passed"], true);

    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "--url", &url, "-c", "2", "-n", "20", "--warmup", "0s", "--slo", "p50<1ms", "-q",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "a missed SLO exits 3");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  p50<1ms"));
    let bad = loadtest(&["--slo", "p99<fast"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--slo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_finds_the_best_step_within_the_slo_and_draws_it() {
    // 20 ms per request: concurrency c gives 50·c/s; the p99 stays ~20 ms until the timer's
    // bunching and 2 cores show, so every step here should meet p99<500ms.
    let server = TestServer::start(Duration::from_millis(20)).await;
    let dir = tempdir("sweep");
    let (json, svg) = (dir.join("s.json"), dir.join("s.svg"));
    let url = server.url("/");
    let (j, s) = (json.clone(), svg.clone());
    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "--url",
            &url,
            "--sweep",
            "concurrency=1..8",
            "--slo",
            "p99<500ms",
            "-d",
            "600ms",
            "--warmup",
            "100ms",
            "--json",
            j.to_str().unwrap(),
            "--chart",
            s.to_str().unwrap(),
            "-q",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    let rps: Vec<f64> = steps
        .iter()
        .map(|s| s["goodput_rps"].as_f64().unwrap())
        .collect();
    assert!(
        rps.windows(2).all(|w| w[1] > w[0] * 1.5),
        "throughput rises with concurrency: {rps:?}"
    );
    assert_eq!(report["best"], 3);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("SLO p99&lt;500ms") && chart.contains("c=8")
    );

    let url = server.url("/");
    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "--url",
            &url,
            "--sweep",
            "concurrency=1,2",
            "--slo",
            "p99<5ms",
            "-d",
            "300ms",
            "--warmup",
            "0s",
            "-q",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "no step met the SLO");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no step met"));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
