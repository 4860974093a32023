//! Tests of the parent module.
use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_are_sane() {
    let c = config(&[]).unwrap();
    assert_eq!(c.http.port, 8000);
    assert_eq!(c.model.name, "resnet50");
    assert_eq!(c.model.device, Device::Cpu);
    assert!(c.model.path.is_none());
    assert!(c.http.api_keys.is_empty());
    assert_eq!(c.batching.max_batch_delay, Duration::from_millis(5));
}

#[test]
fn guide_values_parse() {
    let c = config(&[
        ("LOG_LEVEL", "DEBUG"),
        ("LOG_FORMAT", "json"),
        ("WORKERS", "2"),
        ("MAX_QUEUE_SIZE", "10"),
        ("REQUEST_TIMEOUT", "30"),
        ("GRACEFUL_SHUTDOWN_TIMEOUT", "2.5"),
        ("API_KEYS", "a, b,,"),
        ("MODEL_DEVICE", "CPU"),
    ])
    .unwrap();
    assert_eq!(c.telemetry.log_level, tracing::Level::DEBUG);
    assert_eq!(c.telemetry.log_format, LogFormat::Json);
    assert_eq!((c.app.workers, c.batching.max_queue_size), (2, 10));
    assert_eq!(
        c.http.graceful_shutdown_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(*c.http.api_keys, vec!["a", "b"]);
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("PORT", "http"),
        ("MAX_BATCH_SIZE", "0"),
        ("REQUEST_TIMEOUT", "-1"),
        ("LOG_FORMAT", "xml"),
        ("ENABLE_METRICS", "maybe"),
        ("ENABLE_DOCS", "perhaps"),
        ("PREPROCESS", "fast"),
        ("GPU_ENGINE", "tensorflow"),
        ("MODEL_DEVICE", "tpu"),
        ("MODEL_PRECISION", "fp16"),
        ("CALIBRATION_METHOD", "entropy"),
        ("INT8_MIN_AGREEMENT", "1.5"),
        ("MODEL_DEVICE", "cuda:x"),
        ("HOST", "example.com"),
    ] {
        let err = config(&[(var, value)]).unwrap_err();
        assert_eq!(err.var, var);
        assert!(err.to_string().contains(var), "{err}");
    }
}
