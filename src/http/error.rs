//! Every failure the API can answer, and the one place where each becomes an HTTP status, a code and a
//! message ([`ApiError::parts`], an exhaustive match). Also the JSON body extractor [`ApiJson`], which
//! turns every way a body can be wrong into `ERR0024` (or 413) instead of axum's plain-text rejections.
//!
//! Messages are PowerAuth's English texts (`powerauth-offline.md` §2.4). Details (which field, the
//! underlying error) go to the log at debug level, never into the response.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::wire::{EnvelopeStatus, ErrorBody, ErrorEnvelope, RequestEnvelope};
use crate::service::ServiceError;

/// How loud an [`ErrorDetail`] is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// The caller's mistake; worth a look when debugging a client.
    Debug,
    /// The service is degraded (the HSM away or busy).
    Warn,
    /// A failure that needs an operator.
    Error,
}

/// The internal detail of an error answer, for the log only: attached to the response by
/// `IntoResponse`, written once by the router's logging middleware, never sent to the caller.
#[derive(Debug, Clone)]
pub(crate) struct ErrorDetail {
    level: Level,
    code: &'static str,
    detail: String,
}

impl ErrorDetail {
    /// Writes the detail at its level.
    pub(crate) fn log(&self) {
        let (code, detail) = (self.code, &self.detail);
        match self.level {
            Level::Debug => tracing::debug!(code, detail = %detail, "request refused"),
            Level::Warn => tracing::warn!(code, detail = %detail, "request failed"),
            Level::Error => tracing::error!(code, detail = %detail, "request failed"),
        }
    }
}

/// The outcome label a response carries for the metrics middleware: `OK` or the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome(pub &'static str);

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// A use case failed.
    Service(ServiceError),
    /// The body is not JSON of the expected shape (ERR0024).
    MalformedBody,
    /// The body is larger than `body_limit_bytes`.
    PayloadTooLarge,
    /// Missing or wrong integration credentials.
    Unauthenticated,
    /// No such path.
    NotFound,
    /// The path exists, with another HTTP method.
    MethodNotAllowed,
    /// The request ran past `request_timeout_ms`.
    Timeout,
    /// A handler panicked (a bug); details are in the log.
    Panicked,
    /// `max_concurrent_requests` API requests are already running; nothing was done.
    Busy,
    /// The request timed out after its durable write began, and the write has not finished yet:
    /// read the activation's status to learn the outcome.
    OutcomeUnknown,
    /// The body is not declared `Content-Type: application/json`.
    UnsupportedMediaType,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

const MSG_INVALID_REQUEST: &str = "Invalid request received.";
const MSG_UNKNOWN: &str = "Unknown error occurred.";
const MSG_OUTCOME_UNKNOWN: &str = "The request was accepted but its outcome is not known yet; read the activation's status before retrying.";

impl ApiError {
    /// HTTP status, code and message: the whole mapping of `spec/api.md`.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Service(e) => match e {
                ServiceError::InvalidRequest(_) => {
                    (StatusCode::BAD_REQUEST, "ERR0024", MSG_INVALID_REQUEST)
                }
                ServiceError::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "ERR_AUTHORIZATION",
                    "The integration credential does not allow this request.",
                ),
                ServiceError::ApplicationNotFound => (
                    StatusCode::BAD_REQUEST,
                    "ERR0015",
                    "Application or application version does not exist.",
                ),
                ServiceError::NoMasterKeyPair => (
                    StatusCode::BAD_REQUEST,
                    "ERR0003",
                    "No master server key pair configured in database.",
                ),
                ServiceError::ActivationNotFound => (
                    StatusCode::BAD_REQUEST,
                    "ERR0009",
                    "Activation with given activation ID was not found.",
                ),
                ServiceError::IncorrectState => (
                    StatusCode::BAD_REQUEST,
                    "ERR0008",
                    "Incorrect activation state.",
                ),
                ServiceError::InvalidKeyFormat => (
                    StatusCode::BAD_REQUEST,
                    "ERR0010",
                    "Key with invalid format was provided.",
                ),
                ServiceError::SignatureFailed(_) => (
                    StatusCode::BAD_REQUEST,
                    "ERR0013",
                    "Unable to compute signature.",
                ),
                ServiceError::HsmUnavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ERR_HSM_UNAVAILABLE",
                    "The HSM is unavailable; nothing was changed. Try again later.",
                ),
                ServiceError::NoApplicationId => (
                    StatusCode::BAD_REQUEST,
                    "ERR0002",
                    "No application ID was set.",
                ),
                ServiceError::ActivationExpired => (
                    StatusCode::BAD_REQUEST,
                    "ERR0007",
                    "This activation is already expired.",
                ),
                ServiceError::InvalidInputFormat => (
                    StatusCode::BAD_REQUEST,
                    "ERR0011",
                    "Invalid input parameter format.",
                ),
                ServiceError::DecryptionFailed => (
                    StatusCode::BAD_REQUEST,
                    "ERR0018",
                    "Data decryption failed.",
                ),
                ServiceError::InvalidActivationOtp => (
                    StatusCode::BAD_REQUEST,
                    "ERR0031",
                    "Activation OTP does not match value stored in database.",
                ),
                ServiceError::InvalidActivationProperties => (
                    StatusCode::BAD_REQUEST,
                    "ERR0040",
                    "Activation cannot be created with the specified properties.",
                ),
                ServiceError::DuplicateApplication => (
                    StatusCode::BAD_REQUEST,
                    "ERR0043",
                    "Duplicate application or application version.",
                ),
                ServiceError::TemporaryKeyNotFound => (
                    StatusCode::BAD_REQUEST,
                    "ERR0045",
                    "Missing temporary key pair.",
                ),
                ServiceError::UnsupportedProtocolVersion(_) => (
                    StatusCode::BAD_REQUEST,
                    "ERR0024",
                    "Unsupported protocol version: this server accepts ECIES protocol 3.3 only (PowerAuth mobile SDK 1.9 or newer).",
                ),
                ServiceError::OutcomeUnknown(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ERR_OUTCOME_UNKNOWN",
                    MSG_OUTCOME_UNKNOWN,
                ),
                ServiceError::StoreUnavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ERR_STORE_UNAVAILABLE",
                    "The store is unavailable until the service restarts; nothing was changed. Try again later.",
                ),
                ServiceError::Internal(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "ERR0000", MSG_UNKNOWN)
                }
            },
            Self::MalformedBody => (StatusCode::BAD_REQUEST, "ERR0024", MSG_INVALID_REQUEST),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERR0024",
                "Request body exceeds the configured size limit.",
            ),
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "ERR_AUTHENTICATION",
                "Integration credentials are missing or invalid.",
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "ERROR_NOT_FOUND",
                "Resource not found.",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "ERROR_METHOD_NOT_ALLOWED",
                "Method not allowed; every API method is a POST.",
            ),
            Self::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_TIMEOUT",
                "The request did not finish in time. Try again later.",
            ),
            Self::Panicked => (StatusCode::INTERNAL_SERVER_ERROR, "ERR0000", MSG_UNKNOWN),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_BUSY",
                "Too many requests are in progress; nothing was changed. Try again later.",
            ),
            Self::OutcomeUnknown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_OUTCOME_UNKNOWN",
                MSG_OUTCOME_UNKNOWN,
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ERROR_UNSUPPORTED_MEDIA_TYPE",
                "Request body must be sent with Content-Type: application/json.",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let detail = match &self {
            Self::Service(e @ ServiceError::InvalidRequest(_)) => Some((Level::Debug, e)),
            Self::Service(e @ ServiceError::UnsupportedProtocolVersion(_)) => {
                Some((Level::Debug, e))
            }
            Self::Service(e @ ServiceError::HsmUnavailable(_)) => Some((Level::Warn, e)),
            Self::Service(
                e @ (ServiceError::SignatureFailed(_)
                | ServiceError::Internal(_)
                | ServiceError::OutcomeUnknown(_)
                | ServiceError::StoreUnavailable(_)),
            ) => Some((Level::Error, e)),
            _ => None,
        }
        .map(|(level, e)| ErrorDetail {
            level,
            code,
            detail: e.to_string(),
        });
        let localized_message = match self {
            Self::NotFound => None,
            _ => Some(message.to_owned()),
        };
        let body = ErrorEnvelope {
            status: EnvelopeStatus::Error,
            response_object: ErrorBody {
                code: code.to_owned(),
                message: message.to_owned(),
                localized_message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"offline-signer\""),
            );
        }
        response.extensions_mut().insert(Outcome(code));
        if let Some(detail) = detail {
            response.extensions_mut().insert(detail);
        }
        response
    }
}

/// A successful answer: `{"status": "OK", "responseObject": T}` with HTTP 200.
#[derive(Debug)]
pub struct ApiOk<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiOk<T> {
    fn into_response(self) -> Response {
        let body = super::wire::ResponseEnvelope {
            status: EnvelopeStatus::Ok,
            response_object: self.0,
        };
        let mut response = (StatusCode::OK, Json(body)).into_response();
        response.extensions_mut().insert(Outcome("OK"));
        response
    }
}

/// The `requestObject` of a JSON body, or [`ApiError::UnsupportedMediaType`] /
/// [`ApiError::PayloadTooLarge`] / [`ApiError::MalformedBody`].
///
/// In order: the `Content-Type` must be `application/json` (parameters such as `charset` allowed);
/// the body is read whole (bounded by axum's `DefaultBodyLimit`, which the router sets from
/// `body_limit_bytes`) and parsed with `serde_json`; every field of `requestObject` is checked
/// against [`super::input`]'s rules; only then is the typed request built.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Whether the request declares a JSON body.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            tracing::debug!("request refused: Content-Type is not application/json");
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                tracing::debug!(status = %rejection.status(), "cannot read the request body");
                ApiError::MalformedBody
            }
        })?;
        let envelope = serde_json::from_slice::<RequestEnvelope<serde_json::Value>>(&bytes)
            .map_err(|e| {
                // Position and category only: serde's text may quote request data.
                tracing::debug!(line = e.line(), column = e.column(), category = ?e.classify(), "malformed request body");
                ApiError::MalformedBody
            })?;
        if let Err(refused) = super::input::check(&envelope.request_object) {
            tracing::debug!(field = %refused.field, rule = refused.rule, "request refused");
            return Err(ApiError::MalformedBody);
        }
        match serde_json::from_value::<T>(envelope.request_object) {
            Ok(request) => Ok(Self(request)),
            Err(e) => {
                tracing::debug!(category = ?e.classify(), "request object of the wrong shape");
                Err(ApiError::MalformedBody)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Cause;

    #[test]
    fn every_service_error_has_its_contract_code() {
        let cases = [
            (ServiceError::InvalidRequest("x".into()), 400, "ERR0024"),
            (ServiceError::Forbidden, 403, "ERR_AUTHORIZATION"),
            (ServiceError::ApplicationNotFound, 400, "ERR0015"),
            (ServiceError::NoMasterKeyPair, 400, "ERR0003"),
            (ServiceError::ActivationNotFound, 400, "ERR0009"),
            (ServiceError::IncorrectState, 400, "ERR0008"),
            (ServiceError::InvalidKeyFormat, 400, "ERR0010"),
            (ServiceError::NoApplicationId, 400, "ERR0002"),
            (ServiceError::ActivationExpired, 400, "ERR0007"),
            (ServiceError::InvalidInputFormat, 400, "ERR0011"),
            (ServiceError::DecryptionFailed, 400, "ERR0018"),
            (ServiceError::InvalidActivationOtp, 400, "ERR0031"),
            (ServiceError::InvalidActivationProperties, 400, "ERR0040"),
            (ServiceError::DuplicateApplication, 400, "ERR0043"),
            (ServiceError::TemporaryKeyNotFound, 400, "ERR0045"),
            (
                ServiceError::UnsupportedProtocolVersion("3.2".into()),
                400,
                "ERR0024",
            ),
            (
                ServiceError::SignatureFailed(Cause::Invariant("x")),
                400,
                "ERR0013",
            ),
            (
                ServiceError::HsmUnavailable(Cause::Invariant("busy")),
                503,
                "ERR_HSM_UNAVAILABLE",
            ),
            (
                ServiceError::Internal(Cause::Invariant("x")),
                500,
                "ERR0000",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, got_code, message) = ApiError::Service(error).parts();
            assert_eq!((got_status.as_u16(), got_code), (status, code));
            assert!(message.ends_with('.'));
        }
    }

    #[tokio::test]
    async fn invalid_request_detail_stays_out_of_the_body() {
        let response =
            ApiError::Service(ServiceError::InvalidRequest("secret-detail".into())).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.extensions().get::<Outcome>(),
            Some(&Outcome("ERR0024"))
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("in-memory body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret-detail"), "{text}");
        assert!(text.contains("Invalid request received."), "{text}");
    }
}
