//! The HTTP edge's one error type: a status, a machine-readable code and a sentence that
//! says what failed and what to do, as JSON. Internals stay in the logs.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::ErrorBody;

use contract::Route;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The path that refused, when known, so a client can keep a ledger per path.
    pub route: Option<Route>,
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            route: None,
        }
    }

    /// 503: the middleware did not durably accept the record; the client may resend it
    /// with the same Idempotency-Key.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: message.into(),
            route: None,
        }
    }
}

/// Seconds a client should wait before resending after a 503.
pub const RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.code.to_string(),
            message: self.message,
            route: self.route,
        });
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
