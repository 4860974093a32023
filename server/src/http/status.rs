//! The HTTP status of every failure, and `Retry-After`: the one place HTTP maps an error kind
//! to its answer's status (CONTRACT.md).

use hyper::StatusCode;

use crate::error::ApiError;

/// The HTTP status of `e`.
pub(crate) fn status(e: &ApiError) -> StatusCode {
    match e {
        ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
        ApiError::BodyTooLarge { .. } | ApiError::ImageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ApiError::QueueFull(_) | ApiError::DecodeBusy => StatusCode::TOO_MANY_REQUESTS,
        ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        ApiError::NotFound | ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
        ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        ApiError::Engine(
            engine::EngineError::Restarting(_)
            | engine::EngineError::DeviceLost(_)
            | engine::EngineError::ShutDown,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds after which a retry may succeed (`Retry-After`): every 429 and 503.
pub(crate) fn retry_after(e: &ApiError) -> Option<u32> {
    match status(e) {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::DecodeError;
    use std::time::Duration;

    fn status_of(e: &ApiError) -> u16 {
        status(e).as_u16()
    }

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (ApiError::bad_request("x", "m"), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::BodyTooLarge { limit: 1 }, 413),
            (
                DecodeError::TooLarge {
                    width: 1,
                    height: 1,
                    limit: 0,
                }
                .into(),
                413,
            ),
            (DecodeError::Unsupported("12-bit".into()).into(), 415),
            (DecodeError::NotAnImage.into(), 400),
            (ApiError::QueueFull(4), 429),
            (ApiError::NotReady("draining"), 503),
            (ApiError::Deadline(Duration::from_secs(1)), 504),
            (ApiError::Engine(engine::EngineError::ShutDown), 503),
            (ApiError::DecodeBusy, 429),
            (
                ApiError::Engine(engine::EngineError::Inference("x".into())),
                500,
            ),
            (
                ApiError::Engine(engine::EngineError::DeviceLost("700".into())),
                503,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(status_of(&err), status, "{err:?}");
            // Every 429 and 503 tells the client when to come back (CONTRACT.md).
            assert_eq!(
                retry_after(&err).is_some(),
                [429, 503].contains(&status),
                "{err:?}"
            );
            let body: serde_json::Value = serde_json::from_str(&err.body(false)).unwrap();
            assert_eq!(body["error"]["code"], err.code());
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }
    }
}
