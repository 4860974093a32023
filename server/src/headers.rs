//! What both transports read from a request's HTTP headers (HTTP/1.1 and gRPC alike): the API
//! key, the client's request id, its user agent. The service takes them as plain strings.

use hyper::header::HeaderMap;

/// The key a client presents: `Authorization: Bearer K` or `x-api-key: K`.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| header("x-api-key"))
}

/// The client's `x-request-id`, as sent (the service checks it).
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

/// The client's `User-Agent`, at most 256 characters.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("user-agent")?.to_str().ok()?;
    Some(v.chars().take(256).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_bearer_or_x_api_key() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            api_key(&h).map(str::to_string)
        };
        assert_eq!(with("authorization", "Bearer k1").as_deref(), Some("k1"));
        assert_eq!(with("authorization", "bearer k1").as_deref(), Some("k1"));
        assert_eq!(with("x-api-key", "k2").as_deref(), Some("k2"));
        assert_eq!(with("authorization", "Basic k1"), None);
        assert_eq!(api_key(&HeaderMap::new()), None);
    }
}
