//! The one place where errors become HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    InvalidParameter { field: String, message: String },
    #[error("no {resource} {id:?}")]
    NotFound { resource: &'static str, id: String },
    #[error("a valid token is required: Authorization: Bearer <token> or X-API-Key: <token>")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// The request repeats one already taken (e.g. a sample submitted twice).
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    #[error("{0}")]
    Unavailable(String),
    /// The request body is larger than the endpoint takes.
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
    /// A bug: the cause is logged, never sent.
    #[error("{0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] cleanfleet_store::StoreError),
}

impl From<cleanfleet_reports::ReportError> for ApiError {
    fn from(e: cleanfleet_reports::ReportError) -> Self {
        match e {
            cleanfleet_reports::ReportError::NotFound { resource, id } => {
                ApiError::NotFound { resource, id }
            }
            cleanfleet_reports::ReportError::Invalid { field, message } => {
                ApiError::invalid(field, message)
            }
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every error response: `{"error": {"code": ..., "message": ..., "field": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_parameter`, `not_found`, `too_large`,
    /// `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
    /// The request field (query parameter or path segment) at fault, for `invalid_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field, message) = match &self {
            ApiError::InvalidParameter { field, message } => (
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                Some(field.clone()),
                message.clone(),
            ),
            ApiError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found", None, self.to_string())
            }
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                self.to_string(),
            ),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", None, why.clone()),
            ApiError::Conflict { field, message } => (
                StatusCode::CONFLICT,
                "conflict",
                Some(field.clone()),
                message.clone(),
            ),
            ApiError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                None,
                why.clone(),
            ),
            ApiError::TooLarge { field, message } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                Some(field.clone()),
                message.clone(),
            ),
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error; see the server log".into(),
                )
            }
            ApiError::Store(cleanfleet_store::StoreError::Closed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                None,
                "the service is shutting down".into(),
            ),
            ApiError::Store(e) => {
                // The cause goes to the log, never to the client.
                tracing::error!(error = %e, "request failed in the store");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error; see the server log".into(),
                )
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field,
            },
        };
        (status, Json(body)).into_response()
    }
}
