//! Connection hygiene on both ports: how many connections, how long a silent one may stay,
//! gRPC's HTTP/2 keepalive and connection age, and the drain delay at shutdown.

use std::time::Duration;

use super::{ConfigError, Env};

/// What a connection may hold and for how long (defaults a production operator would choose).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnConfig {
    /// `MAX_CONNECTIONS` (default 1024): open connections per port. Past it a new HTTP
    /// connection gets 503 `too_many_connections` and is closed; a gRPC one is closed at once.
    pub max_connections: usize,
    /// `HANDSHAKE_TIMEOUT` (default 10 s): a gRPC connection that sends nothing for this long
    /// after it opens is closed. HTTP/1.1: a request's head must arrive within this long of the
    /// connection opening or of the last answer, so it is also the idle keep-alive timeout.
    pub handshake_timeout: Duration,
    /// `SEND_TIMEOUT` (default 30 s): a write the client leaves blocked (it reads nothing) for
    /// this long fails and closes the connection, on both ports.
    pub send_timeout: Duration,
    /// `GRPC_KEEPALIVE_INTERVAL` (default 30 s): HTTP/2 PING on an idle gRPC connection.
    pub keepalive_interval: Duration,
    /// `GRPC_KEEPALIVE_TIMEOUT` (default 10 s): a PING unanswered for this long closes the
    /// connection (a peer that vanished, or one that only opened it).
    pub keepalive_timeout: Duration,
    /// `GRPC_MAX_CONNECTION_AGE` (default 1800 s; 0: none): then GOAWAY, calls in flight
    /// finish within `REQUEST_TIMEOUT` + 5 s, and clients reconnect (rebalancing across pods).
    pub max_connection_age: Option<Duration>,
    /// `SHUTDOWN_DELAY_SECONDS` (default 0): at SIGTERM, this long not ready but still
    /// accepting, for load balancers that learn only from `/ready`; then the drain.
    pub shutdown_delay: Duration,
}

pub(super) fn conn_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<ConnConfig, ConfigError> {
    let age = env.number("GRPC_MAX_CONNECTION_AGE", 1800.0, 0.0)?;
    Ok(ConnConfig {
        max_connections: env.number("MAX_CONNECTIONS", 1024, 1)?,
        handshake_timeout: env.seconds("HANDSHAKE_TIMEOUT", 10.0)?,
        send_timeout: env.seconds("SEND_TIMEOUT", 30.0)?,
        keepalive_interval: env.seconds("GRPC_KEEPALIVE_INTERVAL", 30.0)?,
        keepalive_timeout: env.seconds("GRPC_KEEPALIVE_TIMEOUT", 10.0)?,
        max_connection_age: (age > 0.0).then(|| Duration::from_secs_f64(age)),
        shutdown_delay: Duration::from_secs_f64(env.number("SHUTDOWN_DELAY_SECONDS", 0.0, 0.0)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<ConnConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        conn_config(&Env(move |k: &str| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        }))
    }

    #[test]
    fn defaults_and_overrides() {
        let d = read(&[]).unwrap();
        assert_eq!(d.max_connections, 1024);
        assert_eq!(d.max_connection_age, Some(Duration::from_secs(1800)));
        assert_eq!(d.shutdown_delay, Duration::ZERO);
        assert_eq!(d.send_timeout, Duration::from_secs(30));
        let c = read(&[
            ("GRPC_MAX_CONNECTION_AGE", "0"),
            ("SHUTDOWN_DELAY_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(c.max_connection_age, None);
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        for (var, value) in [
            ("MAX_CONNECTIONS", "0"),
            ("HANDSHAKE_TIMEOUT", "-1"),
            ("SEND_TIMEOUT", "0"),
            ("SHUTDOWN_DELAY_SECONDS", "soon"),
        ] {
            assert_eq!(read(&[(var, value)]).unwrap_err().var, var);
        }
    }
}
