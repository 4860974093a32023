//! `ENABLE_TRACING` and the standard OpenTelemetry variables, turned into a [`TraceConfig`].

use std::time::Duration;

use super::{AppConfig, ConfigError, Env};
use crate::telemetry::trace::{Endpoint, Sampler, TraceConfig};

fn millis<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    var: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(env.number(var, default, 1)?))
}

/// `k=v,k=v` (values may be percent-encoded, as the spec allows; `%20` and `%2C` are decoded).
fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?} is not key=value"))?;
            let v = v
                .trim()
                .replace("%20", " ")
                .replace("%2C", ",")
                .replace("%3D", "=");
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

/// Reads the tracing variables. Tracing is on only with `ENABLE_TRACING=true`; the `OTEL_*`
/// variables are validated either way, so a typo fails at start, not when tracing is turned on.
/// `service.name` is `OTEL_SERVICE_NAME`, else the app's name; `service.version` its version.
pub(super) fn trace_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    app: &AppConfig,
) -> Result<TraceConfig, ConfigError> {
    let disabled_sdk = env.flag("OTEL_SDK_DISABLED", false)?;
    let exporter_none = env.parse("OTEL_TRACES_EXPORTER", false, |s| match s {
        "otlp" => Ok(false),
        "none" => Ok(true),
        _ => Err("only otlp (or none) is supported".into()),
    })?;
    let endpoint = match env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(_) => env.parse("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, |s| {
            Endpoint::parse(s, false).map(Some)
        })?,
        None => env.parse("OTEL_EXPORTER_OTLP_ENDPOINT", None, |s| {
            Endpoint::parse(s, true).map(Some)
        })?,
    };
    let endpoint =
        endpoint.unwrap_or_else(|| Endpoint::parse("http://localhost:4318", true).expect("valid"));
    let sampler_arg = env.get("OTEL_TRACES_SAMPLER_ARG");
    // A bad ratio names its own variable, whatever the sampler.
    if let Some(arg) = &sampler_arg {
        Sampler::from_env(Some("traceidratio"), Some(arg)).map_err(|reason| ConfigError {
            var: "OTEL_TRACES_SAMPLER_ARG",
            value: arg.clone(),
            reason,
        })?;
    }
    let sampler = env.parse(
        "OTEL_TRACES_SAMPLER",
        Sampler::from_env(None, None).expect("default"),
        |s| Sampler::from_env(Some(s), sampler_arg.as_deref()),
    )?;
    let name = env
        .get("OTEL_SERVICE_NAME")
        .unwrap_or_else(|| app.name.clone());
    let mut resource = vec![
        ("service.name".to_owned(), name),
        ("service.version".to_owned(), app.version.clone()),
        (
            "telemetry.sdk.name".to_owned(),
            "inference-gateway".to_owned(),
        ),
        ("telemetry.sdk.language".to_owned(), "rust".to_owned()),
    ];
    for (k, v) in env.parse("OTEL_RESOURCE_ATTRIBUTES", Vec::new(), pairs)? {
        if !resource.iter().any(|(key, _)| *key == k) {
            resource.push((k, v));
        }
    }
    Ok(TraceConfig {
        enabled: env.flag("ENABLE_TRACING", false)? && !disabled_sdk && !exporter_none,
        endpoint,
        headers: super::Redacted(env.parse("OTEL_EXPORTER_OTLP_HEADERS", Vec::new(), pairs)?),
        timeout: millis(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        sampler,
        resource,
        max_queue: env.number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1)?,
        max_batch: env.number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)?,
        delay: millis(env, "OTEL_BSP_SCHEDULE_DELAY", 5000)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::Root;
    use std::collections::HashMap;

    fn trace(vars: &[(&str, &str)]) -> Result<TraceConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Through the whole config, as the server reads it (the app identity comes from there).
        super::super::Config::from_lookup(|k| map.get(k).cloned()).map(|c| c.telemetry.trace)
    }

    #[test]
    fn defaults_follow_the_spec_and_app_identity() {
        let t = trace(&[("APP_NAME", "gw"), ("APP_VERSION", "1.2.3")]).unwrap();
        assert!(!t.enabled);
        assert_eq!(
            t.endpoint,
            Endpoint::parse("http://localhost:4318/v1/traces", false).unwrap()
        );
        assert_eq!(t.sampler, Sampler::ParentBased(Root::AlwaysOn));
        assert_eq!(t.resource[0], ("service.name".into(), "gw".into()));
        assert_eq!(t.resource[1], ("service.version".into(), "1.2.3".into()));
        assert_eq!(
            (t.max_queue, t.max_batch, t.delay),
            (2048, 512, Duration::from_secs(5))
        );
    }

    #[test]
    fn otel_variables_are_honoured() {
        let t = trace(&[
            ("ENABLE_TRACING", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20x,x-a=b",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=staging,service.name=ignored",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ])
        .unwrap();
        assert!(t.enabled);
        assert_eq!(
            (t.endpoint.host.as_str(), t.endpoint.path.as_str()),
            ("jaeger", "/v1/traces")
        );
        assert_eq!(t.sampler, Sampler::ParentBased(Root::Ratio(0.1)));
        assert_eq!(t.headers[0], ("authorization".into(), "Bearer x".into()));
        assert!(t
            .resource
            .contains(&("deployment.environment".into(), "staging".into())));
        assert_eq!(
            t.resource
                .iter()
                .filter(|(k, _)| k == "service.name")
                .count(),
            1
        );
        assert_eq!(t.delay, Duration::from_millis(200));
        let t = trace(&[("ENABLE_TRACING", "true"), ("OTEL_SDK_DISABLED", "true")]).unwrap();
        assert!(!t.enabled);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "jaeger:4318"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ] {
            let err = trace(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }
}
