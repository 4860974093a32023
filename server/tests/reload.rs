//! Hot reload: a new model file goes live under load without one failed request (issue 16), and
//! the repository API reloads on demand with `RELOAD=false`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_code, request, TestServer};
use parking_lot::Mutex;

/// Two different seeded ResNet50 files (cached across runs in the target directory).
fn model_files() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reload-models");
    std::fs::create_dir_all(&dir).unwrap();
    let dylib =
        std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)");
    engine::init_onnx_runtime(std::path::Path::new(&dylib)).unwrap();
    let make = |seed: u64| {
        let path = dir.join(format!("seed{seed}-v{}.onnx", models::GENERATOR_VERSION));
        if !path.exists() {
            let bytes = models::generate_resnet50(seed, 2).unwrap();
            let tmp = path.with_extension(format!("{:?}.tmp", std::thread::current().id()));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        path
    };
    (make(11), make(12))
}

/// Replaces `to` atomically (write aside, rename), as a deploy tool or `kubectl cp` + `mv` would.
fn replace(to: &Path, bytes: &[u8]) {
    let tmp = to.with_file_name(".incoming.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("model.onnx")
}

async fn metric(server: &TestServer, prefix: &str) -> Vec<String> {
    let body = server.get("/metrics").await.unwrap().body;
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The `version` label of the one `model_info` series.
async fn version(server: &TestServer) -> String {
    let lines = metric(server, "model_info{").await;
    assert_eq!(lines.len(), 1, "one model_info series: {lines:?}");
    let v = lines[0].split("version=\"").nth(1).unwrap();
    v[..v.find('"').unwrap()].to_owned()
}

async fn reloads(server: &TestServer, result: &str) -> u64 {
    let want = format!("model_reloads_total{{result=\"{result}\"}} ");
    metric(server, &want)
        .await
        .first()
        .map_or(0, |l| l[want.len()..].trim().parse().unwrap())
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Answer = (u16, Option<String>, Option<(u64, f64)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_file_goes_live_under_load_without_a_failed_request() {
    let (a, b) = model_files();
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let path = scratch("load");
    replace(&path, &a);
    let p = path.to_str().unwrap();
    let server = Arc::new(
        TestServer::start(&[
            ("MODEL_PATH", p),
            ("RELOAD", "true"),
            ("MAX_BATCH_SIZE", "4"),
        ])
        .await,
    );
    let va = version(&server).await;
    let image = common::files("good")[0].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, answers, image) =
                (server.clone(), stop.clone(), answers.clone(), image.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = server.predict_file(&image, "").await.unwrap();
                    let top = (r.status == 200).then(|| r.predictions()[0]);
                    let v = r.headers.get("x-model-version").cloned();
                    answers.lock().push((r.status, v, top));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    replace(&path, &b);
    until("the new model serves", || async {
        version(&server).await != va
    })
    .await;
    let vb = version(&server).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    replace(&path, b"this is not an ONNX model, it is garbage");
    until("the garbage is refused", || async {
        reloads(&server, "failure").await >= 1
    })
    .await;
    assert_eq!(version(&server).await, vb, "the old model keeps serving");
    assert_eq!(server.get("/ready").await.unwrap().status, 200);

    replace(&path, &a);
    until("the first model serves again", || async {
        version(&server).await == va
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let answers = answers.lock().clone();
    let failed: Vec<_> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(failed.is_empty(), "every request answered 200: {failed:?}");
    assert!(reloads(&server, "success").await >= 2);
    // Each version gives one answer for the image (no mix), and the two answers differ.
    let top_of = |v: &str| -> Vec<(u64, f64)> {
        let mut tops: Vec<_> = answers
            .iter()
            .filter(|(_, ver, _)| ver.as_deref() == Some(v))
            .filter_map(|(_, _, t)| *t)
            .collect();
        tops.dedup_by(|x, y| x.0 == y.0 && (x.1 - y.1).abs() < 1e-6);
        tops
    };
    let (ta, tb) = (top_of(&va), top_of(&vb));
    assert_eq!(
        (ta.len(), tb.len()),
        (1, 1),
        "one answer per version: {ta:?} {tb:?}"
    );
    assert!(
        ta[0] != tb[0],
        "the answer changes with the model: {ta:?} {tb:?}"
    );
    eprintln!(
        "{} answers, all 200; versions {va} → {vb} → {va}",
        answers.len()
    );
    Arc::into_inner(server).unwrap().stop().await.unwrap();
}

async fn post(server: &TestServer, path: &str) -> common::Reply {
    request(server.addr, "POST", path, &[], &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_api_reloads_on_demand_without_reload_set() {
    let (a, b) = model_files();
    let path = scratch("api");
    replace(&path, &std::fs::read(&a).unwrap());
    let server = TestServer::start(&[("MODEL_PATH", path.to_str().unwrap())]).await;
    let va = version(&server).await;

    let index = post(&server, "/v2/repository/index").await;
    assert_eq!(index.status, 200);
    let entry = &index.json()[0];
    assert_eq!(
        (
            entry["name"].as_str(),
            entry["version"].as_str(),
            entry["state"].as_str()
        ),
        (Some("resnet50"), Some(va.as_str()), Some("READY"))
    );

    replace(&path, &std::fs::read(&b).unwrap());
    let load = post(&server, "/v2/repository/models/resnet50/load").await;
    assert_eq!(
        load.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&load.body)
    );
    let vb = load.json()["version"].as_str().unwrap().to_owned();
    assert_ne!(vb, va);
    assert_eq!(version(&server).await, vb);

    let other = post(&server, "/v2/repository/models/densenet/load").await;
    assert_eq!(
        (other.status, error_code(&other).as_str()),
        (404, "model_not_found")
    );
    let unload = post(&server, "/v2/repository/models/resnet50/unload").await;
    assert_eq!(
        (unload.status, error_code(&unload).as_str()),
        (400, "unload_unsupported")
    );

    replace(&path, &[0u8; 1000]);
    let bad = post(&server, "/v2/repository/models/resnet50/load").await;
    assert_eq!(
        (bad.status, error_code(&bad).as_str()),
        (400, "model_load_failed")
    );
    assert_eq!(version(&server).await, vb, "the old model keeps serving");
    assert_eq!(reloads(&server, "failure").await, 1);

    // SIGHUP reloads too.
    replace(&path, &std::fs::read(&a).unwrap());
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    until("SIGHUP reloads", || async { version(&server).await == va }).await;
    server.stop().await.unwrap();
}

/// A first load that fails ends `run` with the load's error, and stops everything `run` started:
/// the reload worker and the triggers once outlived it, holding the server (its model slot and
/// test hooks) for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_load_ends_run_and_stops_what_it_started() {
    let fault: gateway::BatcherFault = Arc::new(|_| {});
    let hooks = gateway::Hooks {
        batcher_fault: Some(fault.clone()),
        ..gateway::Hooks::default()
    };
    let missing = std::env::temp_dir().join("gw-no-such-dir/model.onnx");
    let config = common::config(&[
        ("MODEL_PATH", missing.to_str().unwrap()),
        ("RELOAD", "true"),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = gateway::run_with(config, listener, std::future::pending(), hooks);
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns after a failed first load");
    let err = result.expect_err("the load failed");
    assert!(matches!(err, gateway::ServeError::Load(_)), "{err}");
    assert!(err.to_string().contains("model.onnx"), "{err}");
    assert_eq!(
        Arc::strong_count(&fault),
        1,
        "a task started by run still holds the server"
    );
}
