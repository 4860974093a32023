//! The gRPC status of every failure: the one place gRPC maps an error kind to its code, chosen
//! per kind as Triton's gRPC server answers (not derived from an HTTP status), and the `status`
//! label a call is counted under.

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

/// The `status` label of `http_requests_total` for a call answered with `code`: the HTTP status
/// gRPC's own HTTP mapping gives it, so one error-rate query reads both transports.
pub(crate) fn label(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
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
            // An unsupported image is the client's argument, as Triton says; not a 415.
            (
                DecodeError::Unsupported("12-bit".into()).into(),
                Code::InvalidArgument,
                400,
            ),
            (ApiError::Unauthorized, Code::Unauthenticated, 401),
            (
                ApiError::BodyTooLarge { limit: 1 },
                Code::ResourceExhausted,
                429,
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
            assert_eq!(label(code(&err)), status, "{err:?}");
        }
    }
}
