//! Every way a request can fail, whatever the transport: each kind with its machine-readable
//! code, its `reject_reason` label, and the message and JSON body `{"error": {"code",
//! "message"}}` it is told with. Statuses are the transports' (`http::status`, `grpc::status`:
//! one place each).

use std::time::Duration;

use crate::imaging::DecodeError;

/// A request-level failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (bad multipart, bad parameter, undecodable image).
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// Missing or wrong API key.
    #[error("a valid API key is required (Authorization: Bearer <key> or x-api-key)")]
    Unauthorized,
    /// Body over `MAX_BODY_BYTES`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Image whose header claims too many pixels.
    #[error("{0}")]
    ImageTooLarge(String),
    /// Wrong content type or image format.
    #[error("{message}")]
    Unsupported {
        /// Machine-readable code.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// Admission refused: the queue is full.
    #[error("the server is at capacity ({0} images waiting); retry shortly")]
    QueueFull(usize),
    /// Every decode thread is busy and the decode queue is full (admitted, but no room to
    /// decode now).
    #[error("every image-decoding thread is busy and their queue is full; retry shortly")]
    DecodeBusy,
    /// Model not loaded yet, or draining.
    #[error("the server is not ready ({0})")]
    NotReady(&'static str),
    /// `REQUEST_TIMEOUT` passed.
    #[error("the request was not served within its deadline of {0:?}")]
    Deadline(Duration),
    /// No such route.
    #[error("no route for this path")]
    NotFound,
    /// A model name this server does not serve.
    #[error("no model named {0:?} is served here")]
    ModelNotFound(String),
    /// Route exists, method does not.
    #[error("method not allowed for this path")]
    MethodNotAllowed,
    /// A protocol method this server does not implement (gRPC `UNIMPLEMENTED`).
    #[error("{0} is not implemented by this server")]
    NotImplemented(&'static str),
    /// The engine failed on this request's batch.
    #[error("inference failed: {0}")]
    Engine(engine::EngineError),
}

impl ApiError {
    /// The snake_case code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Unsupported { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::ImageTooLarge(_) => "image_too_large",
            Self::QueueFull(_) => "queue_full",
            Self::DecodeBusy => "decode_busy",
            Self::NotReady(_) => "not_ready",
            Self::Deadline(_) => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::ModelNotFound(_) => "model_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotImplemented(_) => "not_implemented",
            Self::Engine(engine::EngineError::Restarting(_)) => "engine_restarting",
            Self::Engine(engine::EngineError::DeviceLost(_)) => "device_lost",
            Self::Engine(engine::EngineError::ShutDown) => "shutting_down",
            Self::Engine(_) => "inference_failed",
        }
    }

    /// The `reason` label of `inference_requests_rejected_total`.
    pub fn reject_reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } | Self::Unsupported { .. } | Self::ImageTooLarge(_) => {
                "bad_input"
            }
            Self::BodyTooLarge { .. } => "too_large",
            Self::Unauthorized => "unauthorized",
            Self::QueueFull(_) | Self::DecodeBusy => "queue_full",
            Self::NotReady(_) => "not_ready",
            Self::Deadline(_) => "deadline",
            Self::NotFound
            | Self::ModelNotFound(_)
            | Self::MethodNotAllowed
            | Self::NotImplemented(_) => "not_found",
            Self::Engine(_) => "engine_error",
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The JSON body. Engine failures carry runtime detail (library messages, panic text) that
    /// stays in the server log unless `debug` (`DEBUG=true`).
    pub fn body(&self, debug: bool) -> String {
        let message = self.message(debug);
        serde_json::json!({"error": {"code": self.code(), "message": message}}).to_string()
    }

    /// The message for a person: engine failures summarised unless `debug`.
    pub fn message(&self, debug: bool) -> String {
        match self {
            Self::Engine(e) if !debug => engine_summary(e).to_string(),
            _ => self.to_string(),
        }
    }
}

fn engine_summary(e: &engine::EngineError) -> &'static str {
    use engine::EngineError as E;
    match e {
        E::Inference(_) => "inference failed on this request's batch (details in the server log)",
        E::Panicked(_) => "the engine failed on this request's batch and is being restarted (details in the server log)",
        E::Restarting(_) => "the engine is restarting after a failure; retry shortly",
        E::ShutDown => "the server is shutting down; retry on another instance",
        E::DeviceLost(_) => "the GPU failed unrecoverably; this server is restarting, retry on another",
        E::RuntimeUnavailable { .. } | E::ModelLoad(_) | E::DeviceUnavailable(_) => {
            "the engine is unavailable (details in the server log)"
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Empty => Self::bad_request("empty_image", e.to_string()),
            DecodeError::NotAnImage | DecodeError::Corrupt(_) => {
                Self::bad_request("invalid_image", e.to_string())
            }
            DecodeError::TooLarge { .. } => Self::ImageTooLarge(e.to_string()),
            DecodeError::Unsupported(_) => Self::Unsupported {
                code: "unsupported_image",
                message: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_code_and_a_message() {
        let cases = [
            ApiError::bad_request("x", "m"),
            ApiError::Unauthorized,
            ApiError::BodyTooLarge { limit: 1 },
            DecodeError::Unsupported("12-bit".into()).into(),
            ApiError::QueueFull(4),
            ApiError::NotReady("draining"),
            ApiError::Deadline(Duration::from_secs(1)),
            ApiError::Engine(engine::EngineError::Inference("secret detail".into())),
        ];
        for err in cases {
            let body: serde_json::Value = serde_json::from_str(&err.body(false)).unwrap();
            assert_eq!(body["error"]["code"], err.code());
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                !message.is_empty() && !message.contains("secret"),
                "{err:?}"
            );
        }
    }
}
