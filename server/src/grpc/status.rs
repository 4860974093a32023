//! The gRPC status of every failure: the one place gRPC maps an error kind to its code, chosen
//! per kind as Triton's gRPC server answers (not derived from an HTTP status), and the `status`
//! label a refused call is counted under (the HTTP status of the same refusal).

use tonic::Code;

use crate::error::ApiError;

/// The gRPC code of `e`.
pub(crate) fn code(e: &ApiError) -> Code {
    use engine::EngineError as E;
    match e {
        ApiError::BadRequest { .. } | ApiError::Unsupported { .. } => Code::InvalidArgument,
        ApiError::Unauthorized => Code::Unauthenticated,
        ApiError::BodyTooLarge { .. }
        | ApiError::ImageTooLarge(_)
        | ApiError::QueueFull(_)
        | ApiError::DecodeBusy => Code::ResourceExhausted,
        ApiError::NotReady(_)
        | ApiError::Engine(E::Restarting(_) | E::DeviceLost(_) | E::ShutDown) => Code::Unavailable,
        ApiError::Deadline(_) => Code::DeadlineExceeded,
        ApiError::NotFound | ApiError::ModelNotFound(_) => Code::NotFound,
        ApiError::MethodNotAllowed | ApiError::NotImplemented(_) => Code::Unimplemented,
        ApiError::Engine(_) => Code::Internal,
    }
}

/// The `status` label of `http_requests_total` for a call refused with `e`: the HTTP status
/// the same refusal has on HTTP, so one query reads both transports (`serve`'s test keeps the
/// two tables equal). An answered call is 200.
pub(crate) fn label(e: &ApiError) -> u16 {
    use engine::EngineError as E;
    match e {
        ApiError::BadRequest { .. } => 400,
        ApiError::Unauthorized => 401,
        ApiError::NotFound | ApiError::ModelNotFound(_) => 404,
        ApiError::MethodNotAllowed => 405,
        ApiError::BodyTooLarge { .. } | ApiError::ImageTooLarge(_) => 413,
        ApiError::Unsupported { .. } => 415,
        ApiError::QueueFull(_) | ApiError::DecodeBusy => 429,
        ApiError::Engine(E::Restarting(_) | E::DeviceLost(_) | E::ShutDown) => 503,
        ApiError::Engine(_) => 500,
        ApiError::NotImplemented(_) => 501,
        ApiError::NotReady(_) => 503,
        ApiError::Deadline(_) => 504,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::DecodeError;

    #[test]
    fn codes_are_chosen_per_kind() {
        let cases = [
            (ApiError::bad_request("x", "m"), Code::InvalidArgument, 400),
            // An unsupported image is the client's argument, as Triton says (counted as 415).
            (
                DecodeError::Unsupported("12-bit".into()).into(),
                Code::InvalidArgument,
                415,
            ),
            (ApiError::Unauthorized, Code::Unauthenticated, 401),
            (
                ApiError::BodyTooLarge { limit: 1 },
                Code::ResourceExhausted,
                413,
            ),
            (ApiError::QueueFull(4), Code::ResourceExhausted, 429),
            (ApiError::NotReady("draining"), Code::Unavailable, 503),
            (
                ApiError::Engine(engine::EngineError::Restarting("x".into())),
                Code::Unavailable,
                503,
            ),
            (
                ApiError::Engine(engine::EngineError::Inference("x".into())),
                Code::Internal,
                500,
            ),
            (
                ApiError::Deadline(std::time::Duration::from_secs(1)),
                Code::DeadlineExceeded,
                504,
            ),
            (ApiError::ModelNotFound("m".into()), Code::NotFound, 404),
            (ApiError::NotImplemented("X"), Code::Unimplemented, 501),
        ];
        for (err, want, status) in cases {
            assert_eq!(code(&err), want, "{err:?}");
            assert_eq!(label(&err), status, "{err:?}");
        }
    }
}
