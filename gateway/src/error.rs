//! The API's error shape: `{"error": {"code", "message", "retriable"}}` with a stable code
//! and the code's HTTP status. Every extractor rejection is turned into it, so a client
//! sees one error format whatever went wrong.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fjord_protocol::{ErrorCode, ErrorDetails, FjordError};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError(pub FjordError);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(FjordError::new(code, message))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl From<FjordError> for ApiError {
    fn from(e: FjordError) -> Self {
        Self(e)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(ErrorCode::RequestTooLarge, "request body is larger than the server's limit")
        } else {
            Self::bad_request(format!("could not read the request body: {}", r.body_text()))
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "unknown_topic", "message": "topic `orders` does not exist", "retriable": false}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unknown_topic`, `not_enough_replicas`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retriable: bool,
    /// Facts a client acts on, for the errors that have them: the partition's end
    /// offset (`offset_mismatch`), the next sequence (`out_of_order_sequence`), the
    /// current producer epoch (`producer_fenced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

impl ErrorBody {
    pub fn from_error(e: &FjordError) -> Self {
        // Internal details stay in the log; clients get a generic message.
        let message = if e.code.http_status() >= 500 && !e.code.retriable() {
            "internal server error; see the server log".to_owned()
        } else {
            e.message.clone()
        };
        Self {
            error: ErrorDetail {
                code: e.code.as_str().to_owned(),
                message,
                retriable: e.code.retriable(),
                details: e.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() && !self.0.code.retriable() {
            tracing::error!(code = %self.0.code, message = %self.0.message, "request failed");
        }
        let mut response = (status, axum::Json(ErrorBody::from_error(&self.0))).into_response();
        if self.0.code.retriable() {
            let secs = self.0.details.as_ref().and_then(|d| d.retry_after_ms).map_or(1, |ms| ms.div_ceil(1000).max(1));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.0.code == ErrorCode::Unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fjord\""));
        }
        response
    }
}

/// Parses a JSON body into `T`, answering `invalid_json` with serde's precise message.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))
}
