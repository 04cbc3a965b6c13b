//! Extractors whose rejections come out in the API's one error shape
//! ([`ApiError`], `invalid_request`), so handlers never map them one by one.

use crate::error::{ApiError, ApiResult};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use fjord_protocol::ErrorCode;
use serde::de::DeserializeOwned;

/// Path parameters; a malformed one (a partition that is not a number, say) is a 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(r) => Err(ApiError::bad_request(format!("bad path: {}", r.body_text()))),
        }
    }
}

/// The query string; an unknown type or a malformed value is a 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(r) => Err(ApiError::bad_request(format!("bad query string: {}", r.body_text()))),
        }
    }
}

/// The body's media type, lower-cased, without parameters; `None` without a
/// `Content-Type`.
pub fn media_type(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("Content-Type is not valid text"))?;
            Ok(Some(s.split(';').next().unwrap_or("").trim().to_ascii_lowercase()))
        }
    }
}

/// A JSON body: `Content-Type` absent or `application/json`.
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    match media_type(headers).unwrap_or_else(|_| Some(String::new())) {
        None => Ok(()),
        Some(m) if m == "application/json" => Ok(()),
        Some(m) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type `{m}` is not supported; use application/json"),
        )),
    }
}
