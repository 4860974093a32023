//! The real binary under a real SIGTERM: in-flight requests are answered, then it exits 0.

mod common;

use std::process::Command;
use std::time::Duration;

use common::predict_multipart;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let common::Binary {
        mut child,
        addr,
        rest: drain,
        ..
    } = common::start_binary(|cmd| {
        cmd.env("GRACEFUL_SHUTDOWN_TIMEOUT", "15");
    });

    let img = std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let img = img.clone();
            tokio::spawn(async move { predict_multipart(addr, &img, "").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut answered = 0;
    for t in tasks {
        if let Ok(r) = t.await.unwrap() {
            assert_eq!(
                r.status,
                200,
                "an accepted request was not served: {}",
                String::from_utf8_lossy(&r.body)
            );
            answered += 1;
        }
    }
    let exit = child.wait().unwrap();
    let logs = drain.join().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    // The server's access log names every /predict it answered: each must have reached its
    // client (a transport error counts as "never accepted" only if the server never answered).
    let served: Vec<u64> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "request" && v["route"] == "/predict")
        .filter_map(|v| v["status"].as_u64())
        .collect();
    assert_eq!(
        served.len(),
        answered,
        "server answered {served:?}, clients got {answered}"
    );
    assert!(served.iter().all(|s| *s == 200), "{served:?}");
    assert!(answered >= 6, "only {answered} of 12 answered");
    assert!(
        logs.iter().any(|l| l.contains("shutting down")),
        "shutdown logged"
    );
    assert!(
        logs.iter().any(|l| l.contains("\"stopped\"")),
        "clean stop logged: {logs:?}"
    );
}
