//! A path's HTTP entry, `POST /`: checks the body, takes the id from Idempotency-Key, and
//! answers 201 only once the path has durably accepted the record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::error::AppError;
use crate::paths::{PublishError, Publisher};
use crate::record::{Record, generated_id, now_us, valid_id};
use crate::stats::{Stage, Stats, StoreOutcome};

/// One path's entry: its publisher and the limits that keep overload from growing memory.
pub struct Entry {
    pub publisher: Arc<dyn Publisher>,
    pub stats: Arc<Stats>,
    /// Requests past this many in flight get 503 at once instead of queueing.
    pub permits: Arc<Semaphore>,
    pub max_in_flight: usize,
    pub body_limit: usize,
    /// How long to wait for the middleware's acknowledgement before answering 503.
    pub publish_timeout: Duration,
}

pub async fn post_record(State(entry): State<Arc<Entry>>, request: Request) -> Response {
    let arrived = Instant::now();
    let accepted_at_us = now_us();
    let route = entry.publisher.route();
    let response = match accept(&entry, request, accepted_at_us).await {
        Ok((id, duplicate)) => {
            entry.stats.accepted(route);
            let body = json!({ "id": id, "route": route.name(), "duplicate": duplicate });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(error) => {
            entry.stats.rejected(route);
            if error.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(%route, code = error.code, "{}", error.message);
            }
            AppError {
                route: Some(route),
                ..error
            }
            .into_response()
        }
    };
    entry
        .stats
        .latency(route, Stage::Ingress, arrived.elapsed().as_micros() as u64);
    response
}

async fn accept(
    entry: &Entry,
    request: Request,
    accepted_at_us: i64,
) -> Result<(String, bool), AppError> {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let payload = read_body(body, entry.body_limit).await?;
    check_json_object(&payload)?;
    let id = match parts.headers.get("idempotency-key") {
        None => generated_id(),
        Some(value) => {
            let id = value.to_str().unwrap_or_default();
            if !valid_id(id) {
                return Err(AppError::bad_request(
                    "bad_idempotency_key",
                    "Idempotency-Key must be 1 to 200 visible ASCII characters, such as run-u3-17",
                ));
            }
            id.to_string()
        }
    };
    let Ok(_permit) = entry.permits.try_acquire() else {
        return Err(AppError::unavailable(
            "overloaded",
            format!(
                "the {} path has {} requests in flight, its limit; resend after Retry-After",
                entry.publisher.route(),
                entry.max_in_flight
            ),
        ));
    };
    let record = Record {
        id: id.clone(),
        payload,
        accepted_at_us,
    };
    let outcome =
        tokio::time::timeout(entry.publish_timeout, entry.publisher.publish(&record)).await;
    match outcome {
        Ok(Ok(accepted)) => {
            if accepted.dropped_by_broker {
                let route = entry.publisher.route();
                entry
                    .stats
                    .store_outcome(route, StoreOutcome::Duplicate { redelivered: false });
            }
            Ok((id, accepted.duplicate))
        }
        Ok(Err(error)) => Err(unavailable(&error)),
        Err(_) => Err(unavailable(&PublishError::Timeout {
            route: entry.publisher.route(),
            timeout_ms: entry.publish_timeout.as_millis() as u64,
        })),
    }
}

fn unavailable(error: &PublishError) -> AppError {
    let code = match error {
        PublishError::NotConnected { .. } => "middleware_unavailable",
        PublishError::Timeout { .. } => "middleware_timeout",
        PublishError::Refused { .. } => "middleware_refused",
    };
    AppError::unavailable(
        code,
        format!("{error}; the record was not accepted, resend it with the same Idempotency-Key"),
    )
}

fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(AppError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!(
                "Content-Type is '{content_type}'; send one JSON object with Content-Type: application/json"
            ),
            route: None,
        })
    }
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, AppError> {
    let too_large = || AppError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("the body is over the {limit}-byte limit; send one record per request"),
        route: None,
    };
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let over_limit = std::error::Error::source(&error)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large()
        } else {
            AppError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {error}"),
            )
        }
    })
}

fn check_json_object(payload: &[u8]) -> Result<(), AppError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request(
            "empty_body",
            "the body is empty; send one JSON object",
        ));
    }
    let raw: &RawValue = serde_json::from_slice(payload).map_err(|e| {
        AppError::bad_request(
            "malformed_json",
            format!(
                "the body is not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if raw.get().starts_with('{') {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "not_an_object",
            "the body is JSON but not an object; send one object such as {\"name\":\"Graeme\",\"msg\":\"protocol\"}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_pass() {
        assert!(check_json_object(br#"{"a":1}"#).is_ok());
        assert!(check_json_object(b"  {}  ").is_ok());
        assert_eq!(check_json_object(b"").unwrap_err().code, "empty_body");
        assert_eq!(check_json_object(b"[1]").unwrap_err().code, "not_an_object");
        assert_eq!(
            check_json_object(b"{\"a\":").unwrap_err().code,
            "malformed_json"
        );
    }

    #[test]
    fn content_type_must_be_json() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(check_content_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            check_content_type(&headers).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
