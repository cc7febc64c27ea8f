//! The one place errors become HTTP answers: every failure is an [`ApiError`], answered as
//! OpenAI's envelope `{"error": {"message", "type", "code"}}` with its status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bitnet_infer::InferError;
use serde_json::json;

/// What went wrong, as the client is told it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing or invalid field (400).
    #[error("{0}")]
    BadRequest(String),
    /// A prompt that does not fit a slot's context (400).
    #[error(
        "the prompt is {tokens} tokens, more than fit the context of {ctx} tokens a request \
         can use"
    )]
    ContextOverflow { tokens: usize, ctx: usize },
    /// A missing or wrong API key (401).
    #[error("invalid API key: send the server's key as `Authorization: Bearer KEY`")]
    Unauthorized,
    /// An unknown route (404).
    #[error("no route for {0}")]
    NotFound(String),
    /// A known route asked with the wrong method (405).
    #[error("{0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// A body over the size limit (413).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The queue is full (429).
    #[error("the server is busy: {0} requests are waiting; retry shortly")]
    Busy(usize),
    /// The model is still loading, or the server is stopping (503).
    #[error("{0}")]
    Unavailable(&'static str),
    /// The engine failed (500).
    #[error("the engine failed: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::ContextOverflow { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and `code` for this error.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            ApiError::ContextOverflow { .. } => {
                ("invalid_request_error", "context_length_exceeded")
            }
            ApiError::Unauthorized => ("authentication_error", "invalid_api_key"),
            ApiError::NotFound(_) => ("invalid_request_error", "not_found"),
            ApiError::MethodNotAllowed(_) => ("invalid_request_error", "method_not_allowed"),
            ApiError::TooLarge(_) => ("invalid_request_error", "request_too_large"),
            ApiError::Busy(_) => ("rate_limit_error", "rate_limit_exceeded"),
            ApiError::Unavailable(_) => ("server_error", "unavailable"),
            ApiError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    /// The envelope's JSON (also sent as a stream's last event when the engine fails mid-way).
    pub fn body(&self) -> serde_json::Value {
        let (ty, code) = self.kind();
        json!({ "error": { "message": self.to_string(), "type": ty, "code": code } })
    }
}

/// Seconds a client told 429 waits before retrying.
pub const RETRY_AFTER_S: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status(), axum::Json(self.body())).into_response();
        if matches!(self, ApiError::Busy(_)) {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        r
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::EmptyPrompt => ApiError::BadRequest("the prompt is empty".into()),
            InferError::ContextFull { tokens, ctx } => ApiError::ContextOverflow { tokens, ctx },
            e @ (InferError::TokenOutOfRange { .. }
            | InferError::Tokenizer(_)
            | InferError::Template(_)
            | InferError::Sampling(_)) => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
