//! No secret reaches the log: the real binary at `LOG_LEVEL=DEBUG` and `DEBUG=true`, with API keys
//! and an OTLP auth header configured, serves a request with a key, refuses one with a wrong
//! key, exports (or fails to export) its spans and stops; nothing it printed holds a secret.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &str = "sk-live-7f3a9c2e1b";
const TOKEN: &str = "tok-otlp-5d8e4b6a0c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_even_at_debug() {
    let common::Binary {
        mut child,
        addr,
        startup: mut seen,
        rest: drain,
    } = common::start_binary(|cmd| {
        cmd.env("LOG_LEVEL", "DEBUG")
            .env("DEBUG", "true")
            .env("MODEL_WARMUP", "false")
            .env("API_KEYS", format!("{KEY},second-key-000"))
            .env("ENABLE_TRACING", "true")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{TOKEN}"),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("GRACEFUL_SHUTDOWN_TIMEOUT", "5")
            .stderr(Stdio::piped());
    });
    let (ct, body) =
        common::multipart(&std::fs::read(common::images("good").join("ijg-testorig.jpg")).unwrap());
    let bearer = format!("Bearer {KEY}");
    let ok = common::request(
        addr,
        "POST",
        "/predict",
        &[("content-type", &ct), ("authorization", &bearer)],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let wrong = common::request(
        addr,
        "POST",
        "/predict",
        &[("content-type", &ct), ("x-api-key", "sk-live-wrong")],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await; // an export attempt or two
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    seen.extend(drain.join().unwrap());
    let all = format!("{}\n{stderr}", seen.join("\n"));
    assert!(seen.len() > 5, "the debug log was written: {all}");
    for secret in [KEY, "second-key-000", TOKEN] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the log:\n{all}"
        );
    }
    // And the config's Debug form, the likeliest way a secret reaches a log line, redacts them.
    let vars = [
        ("API_KEYS", KEY.to_string()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {TOKEN}"),
        ),
    ];
    let config = gateway::Config::from_lookup(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(KEY) && !debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<1 redacted>"), "{debug}");
}
