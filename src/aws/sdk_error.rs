//! Turns an SDK error (either service's) into our [`ApiError`].

use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_types::request_id::RequestId;

use super::{ApiError, ErrorKind};

/// Separates "the service said no" (by its code) from "we could not reach it".
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let request_id = err.request_id().map(str::to_string);
    match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let message = e.message().map_or_else(|| e.to_string(), str::to_string);
            ApiError::from_code(
                operation,
                e.code(),
                Some(ctx.raw().status().as_u16()),
                message,
                request_id,
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ApiError::transport(operation, DisplayErrorContext(&err).to_string())
        }
        _ => ApiError {
            operation,
            kind: ErrorKind::Other,
            code: None,
            message: DisplayErrorContext(&err).to_string(),
            request_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::operation::start_execution::StartExecutionError;
    use aws_sdk_sfn::types::error::ExecutionAlreadyExists;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    #[test]
    fn already_exists_is_final() {
        let err = SdkError::service_error(
            StartExecutionError::ExecutionAlreadyExists(
                ExecutionAlreadyExists::builder()
                    .message("exists")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ExecutionAlreadyExists")
                            .build(),
                    )
                    .build(),
            ),
            response(400),
        );
        let e = classify("StartExecution", err);
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(!e.is_retryable());
        assert!(e.message.contains("exists"), "{}", e.message);
    }

    #[test]
    fn throttling_and_5xx_are_retryable() {
        let throttled = SdkError::service_error(
            StartExecutionError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            ),
            response(400),
        );
        let e = classify("StartExecution", throttled);
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(e.is_retryable());

        let internal = SdkError::service_error(
            StartExecutionError::generic(ErrorMetadata::builder().build()),
            response(500),
        );
        assert_eq!(
            classify("StartExecution", internal).kind,
            ErrorKind::Transient
        );
    }

    #[test]
    fn unreachable_is_transient_and_access_denied_is_not() {
        let timeout: SdkError<StartExecutionError, HttpResponse> =
            SdkError::timeout_error("took too long");
        assert!(classify("StartExecution", timeout).is_retryable());
        let denied = SdkError::service_error(
            StartExecutionError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .build(),
            ),
            response(400),
        );
        let e = classify("StartExecution", denied);
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        assert!(!e.is_retryable());
    }
}
