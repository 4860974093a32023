//! `ENABLE_TRACING` and the standard OpenTelemetry variables, turned into a [`TraceConfig`] the
//! SDK's builders are given (what the builders are given wins over what they would read).
//! Every `OTEL_EXPORTER_OTLP_*` variable has its `OTEL_EXPORTER_OTLP_TRACES_*` form, which wins.
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` is checked here and read (and percent-decoded, once)
//! by the SDK itself.

use std::path::PathBuf;
use std::time::Duration;

use super::trace::{Sampler, TraceConfig};
use super::{AppConfig, ConfigError, Env};

/// The `_TRACES_` form of `var` if set, else `var`: (the name that was read, its value).
fn signal<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    traces: &'static str,
    general: &'static str,
) -> Option<(&'static str, String)> {
    env.get(traces)
        .map(|v| (traces, v))
        .or_else(|| env.get(general).map(|v| (general, v)))
}

/// `k=v,k=v` with percent-encoded values (W3C baggage octets), decoded once.
fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?} is not key=value"))?;
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .map_err(|_| format!("{p:?}: the value is not UTF-8 once decoded"))?;
            Ok((k.trim().to_owned(), v.into_owned()))
        })
        .collect()
}

fn bad(var: &'static str, value: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value,
        reason: reason.into(),
    }
}

/// The traces URL, from the signal's own variable as given or the general one + `/v1/traces`.
fn endpoint<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<String, ConfigError> {
    let (var, url) = signal(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    .unwrap_or((
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://localhost:4318".into(),
    ));
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    // The authority: up to the path, query or fragment; a host, then perhaps `:port`.
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let host_ok = authority.is_some_and(|a| {
        let host = a.rsplit_once('@').map_or(a, |(_, h)| h);
        !host.is_empty() && !host.starts_with(':') && !a.contains(char::is_whitespace)
    });
    if !host_ok {
        return Err(bad(
            var,
            url,
            "expected an http:// or https:// URL with a host",
        ));
    }
    Ok(match var {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => url,
        _ => format!("{}/v1/traces", url.trim_end_matches('/')),
    })
}

/// `service.name` and `service.version` by the spec's precedence, then the other attributes.
fn resource<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    app: &AppConfig,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut attributes = env.parse("OTEL_RESOURCE_ATTRIBUTES", Vec::new(), pairs)?;
    let mut take = |key: &str| {
        let i = attributes.iter().rposition(|(k, _)| k == key)?;
        let v = attributes.remove(i).1;
        attributes.retain(|(k, _)| k != key);
        Some(v)
    };
    let name = env
        .get("OTEL_SERVICE_NAME")
        .or_else(|| take("service.name"))
        .unwrap_or_else(|| app.name.clone());
    let version = take("service.version").unwrap_or_else(|| app.version.clone());
    let mut resource = vec![
        ("service.name".to_owned(), name),
        ("service.version".to_owned(), version),
        ("telemetry.sdk.name".to_owned(), "opentelemetry".to_owned()),
        ("telemetry.sdk.language".to_owned(), "rust".to_owned()),
    ];
    resource.extend(attributes);
    Ok(resource)
}

fn path<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    traces: &'static str,
    general: &'static str,
) -> Option<PathBuf> {
    signal(env, traces, general).map(|(_, v)| PathBuf::from(v))
}

/// The TLS files: roots, and a client certificate with its key (both or neither).
type TlsFiles = (Option<PathBuf>, Option<(PathBuf, PathBuf)>);

fn tls<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<TlsFiles, ConfigError> {
    let roots = path(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    );
    let cert = path(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    );
    let key = path(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    );
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(c), None) => {
            let value = c.display().to_string();
            let why = "set OTEL_EXPORTER_OTLP_CLIENT_KEY too";
            return Err(bad("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", value, why));
        }
        (None, Some(k)) => {
            let value = k.display().to_string();
            let why = "set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too";
            return Err(bad("OTEL_EXPORTER_OTLP_CLIENT_KEY", value, why));
        }
    };
    Ok((roots, identity))
}

/// The exporter's transport choices: only OTLP/HTTP protobuf is built in; gzip or none.
fn transport<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<bool, ConfigError> {
    if let Some((var, v)) = signal(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ) {
        if v != "http/protobuf" {
            return Err(bad(var, v, "only http/protobuf is supported"));
        }
    }
    if let Some((var, v)) = signal(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ) {
        // Checked only: the SDK reads and decodes them. The value is a secret: not echoed.
        pairs(&v).map_err(|_| bad(var, "(redacted)".into(), "expected key=value,key=value"))?;
    }
    match signal(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ) {
        None => Ok(false),
        Some((_, v)) if v == "gzip" => Ok(true),
        Some((_, v)) if v == "none" => Ok(false),
        Some((var, v)) => Err(bad(var, v, "expected gzip or none")),
    }
}

/// Reads the tracing variables. Tracing is on only with `ENABLE_TRACING=true`; the `OTEL_*`
/// variables are validated either way, so a typo fails at start, not when tracing is turned on.
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
    let sampler_arg = env.get("OTEL_TRACES_SAMPLER_ARG");
    // A bad ratio names its own variable, whatever the sampler.
    if let Some(arg) = &sampler_arg {
        Sampler::from_env(Some("traceidratio"), Some(arg))
            .map_err(|reason| bad("OTEL_TRACES_SAMPLER_ARG", arg.clone(), reason))?;
    }
    let sampler = env.parse(
        "OTEL_TRACES_SAMPLER",
        Sampler::from_env(None, None).expect("default"),
        |s| Sampler::from_env(Some(s), sampler_arg.as_deref()),
    )?;
    let timeout = match signal(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ) {
        None => Duration::from_secs(10),
        Some((var, v)) => match v.parse::<u64>() {
            Ok(ms) if ms >= 1 => Duration::from_millis(ms),
            _ => return Err(bad(var, v, "expected milliseconds, at least 1")),
        },
    };
    let (certificate, client_identity) = tls(env)?;
    Ok(TraceConfig {
        enabled: env.flag("ENABLE_TRACING", false)? && !disabled_sdk && !exporter_none,
        endpoint: endpoint(env)?,
        timeout,
        gzip: transport(env)?,
        certificate,
        client_identity,
        sampler,
        resource: resource(env, app)?,
        max_queue: env.number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1)?,
        max_batch: env.number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)?,
        delay: Duration::from_millis(env.number("OTEL_BSP_SCHEDULE_DELAY", 5000, 1)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::trace::Root;
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
        assert_eq!(t.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(
            (t.timeout, t.gzip, t.certificate.clone()),
            (Duration::from_secs(10), false, None)
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
                "deployment.environment=stag%2Cing%2520,service.name=from-attributes",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "900"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ])
        .unwrap();
        assert!(t.enabled);
        assert_eq!(t.endpoint, "http://jaeger:4318/v1/traces");
        assert_eq!(t.certificate, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!((t.timeout, t.gzip), (Duration::from_millis(700), true));
        assert_eq!(t.sampler, Sampler::ParentBased(Root::Ratio(0.1)));
        assert!(
            t.resource
                .contains(&("deployment.environment".into(), "stag,ing%20".into())),
            "decoded once: {:?}",
            t.resource
        );
        assert_eq!(
            t.resource[0],
            ("service.name".into(), "from-attributes".into())
        );
        assert_eq!(
            t.resource
                .iter()
                .filter(|(k, _)| k == "service.name")
                .count(),
            1
        );
        assert_eq!(t.delay, Duration::from_millis(200));
        let t = trace(&[
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example:4318/custom",
            ),
        ])
        .unwrap();
        assert_eq!(t.resource[0], ("service.name".into(), "svc".into()));
        assert_eq!(
            t.endpoint, "https://c.example:4318/custom",
            "the signal URL is used as given"
        );
        let t = trace(&[("ENABLE_TRACING", "true"), ("OTEL_SDK_DISABLED", "true")]).unwrap();
        assert!(!t.enabled);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
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
