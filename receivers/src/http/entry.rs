//! A path's HTTP entry, `POST /`: checks the body, takes the id from Idempotency-Key, and
//! answers 201 only once the path has durably accepted the record (409 when the id is stored
//! with another body and the path can tell). `entry_app` builds its router, so every check
//! runs in-process in tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use contract::Created;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::AppError;
use crate::http::read::{ReadState, read_routes};
use crate::http::slowdown;
use crate::paths::{PublishError, Publisher};
use crate::record::{self, Invalid, Record, generated_id, now_us};
use crate::redact::redact;
use crate::stats::{Stats, StoreOutcome};

/// One path's entry: its publisher and the limits that keep overload from growing memory.
pub struct Entry {
    pub publisher: Arc<dyn Publisher>,
    pub stats: Arc<Stats>,
    /// Requests past this many in flight get 503 at once instead of queueing.
    pub permits: Arc<Semaphore>,
    pub max_in_flight: usize,
    pub body_limit: usize,
    /// A client must send its whole body within this, or gets 408.
    pub body_read_timeout: Duration,
    /// How long to wait for the middleware's acknowledgement before answering 503.
    pub publish_timeout: Duration,
    /// Test only (`--test-slowdown`): 1 is normal speed, 2 answers after twice the time.
    pub slowdown: f64,
}

/// What an entry allows a request (from the receivers' flags: `Config::entry_limits`).
#[derive(Debug, Clone, Copy)]
pub struct EntryLimits {
    pub max_in_flight: usize,
    pub body_limit: usize,
    pub body_read_timeout: Duration,
    pub publish_timeout: Duration,
    pub slowdown: f64,
}

impl Entry {
    /// An entry for `publisher` with `limits`.
    pub fn new(publisher: Arc<dyn Publisher>, stats: Arc<Stats>, limits: EntryLimits) -> Entry {
        Entry {
            publisher,
            stats,
            permits: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            body_limit: limits.body_limit,
            body_read_timeout: limits.body_read_timeout,
            publish_timeout: limits.publish_timeout,
            slowdown: limits.slowdown,
        }
    }
}

/// The entry's router: `POST /` plus the read endpoints.
pub fn entry_app(entry: Arc<Entry>, read: Arc<ReadState>) -> Router {
    Router::new()
        .route("/", post(post_record).with_state(entry))
        .merge(read_routes(read))
}

pub async fn post_record(State(entry): State<Arc<Entry>>, request: Request) -> Response {
    let arrived = Instant::now();
    let accepted_at_us = now_us();
    let route = entry.publisher.route();
    let result = match receive(&entry, request, accepted_at_us).await {
        Ok((record, permit)) => publish_detached(&entry, record, permit).await,
        Err(error) => {
            entry.stats.rejected(route);
            Err(error)
        }
    };
    let response = match result {
        Ok((id, duplicate)) => {
            let body = Created {
                id,
                route,
                duplicate,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(error) => AppError {
            route: Some(route),
            ..error
        }
        .into_response(),
    };
    if entry.slowdown > 1.0 {
        // Staged slowness for the CI gate's own test: the answer takes `slowdown` times as
        // long as the work did, measured here so it scales with whatever the work costs.
        slowdown::pause(slowdown::extra(arrived.elapsed(), entry.slowdown)).await;
    }
    entry.stats.latency(
        route,
        crate::stats::Stage::Ingress,
        arrived.elapsed().as_micros() as u64,
    );
    response
}

/// Reads and checks the request, and takes a place among the requests in flight: all
/// that may end with the client gone, since nothing is published yet.
async fn receive(
    entry: &Entry,
    request: Request,
    accepted_at_us: i64,
) -> Result<(Record, OwnedSemaphorePermit), AppError> {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let payload = read_body(body, entry.body_limit, entry.body_read_timeout).await?;
    record::check_payload(&payload, entry.body_limit).map_err(invalid)?;
    let id = match parts.headers.get("idempotency-key") {
        None => generated_id(),
        Some(value) => record::check_id(Some(value.to_str().unwrap_or_default()))
            .map_err(invalid)?
            .to_string(),
    };
    let route = entry.publisher.route();
    let Ok(permit) = Arc::clone(&entry.permits).try_acquire_owned() else {
        return Err(AppError::unavailable(
            "overloaded",
            format!(
                "the {route} path has {} requests in flight, its limit; resend after Retry-After",
                entry.max_in_flight
            ),
        ));
    };
    let record = Record {
        id,
        payload,
        accepted_at_us,
    };
    Ok((record, permit))
}

/// Publishes `record` and counts its outcome in a task of its own: once a publish has
/// begun, the middleware may accept the record whether or not the client waits for the
/// answer, so its outcome is counted even when the client leaves and the handler is
/// dropped (stored <= accepted + in flight holds for every record).
async fn publish_detached(
    entry: &Arc<Entry>,
    record: Record,
    permit: OwnedSemaphorePermit,
) -> Result<(String, bool), AppError> {
    let entry = Arc::clone(entry);
    let task = tokio::spawn(async move {
        let outcome = publish(&entry, &record).await;
        let route = entry.publisher.route();
        match &outcome {
            Ok(_) => entry.stats.accepted(route),
            Err(_) => entry.stats.rejected(route),
        }
        drop(permit);
        outcome.map(|duplicate| (record.id, duplicate))
    });
    task.await.unwrap_or_else(|failed| {
        tracing::error!("a publish task failed: {failed}");
        Err(AppError::unavailable(
            "internal",
            "the record's publish failed inside the receivers; resend it with the same Idempotency-Key after Retry-After",
        ))
    })
}

/// The path's durable acceptance of `record` within the publish timeout: whether the
/// middleware saw its id before, or what the client is told.
async fn publish(entry: &Entry, record: &Record) -> Result<bool, AppError> {
    let route = entry.publisher.route();
    let outcome =
        tokio::time::timeout(entry.publish_timeout, entry.publisher.publish(record)).await;
    let error = match outcome {
        Ok(Ok(accepted)) => {
            if accepted.dropped_by_broker {
                entry
                    .stats
                    .store_outcome(route, StoreOutcome::Duplicate { redelivered: false });
            }
            return Ok(accepted.duplicate);
        }
        Ok(Err(error)) => error,
        Err(_) => PublishError::Timeout {
            route,
            timeout_ms: entry.publish_timeout.as_millis() as u64,
        },
    };
    // The detail (broker URL, library error) goes to the log, redacted; never to the client.
    tracing::warn!(%route, id = %record.id, "not accepted: {}", redact(&error.to_string()));
    Err(client_error(&error))
}

/// What a client is told of a publish that failed: what happened and what to do, no internals.
fn client_error(error: &PublishError) -> AppError {
    let resend =
        "the record was not accepted; resend it with the same Idempotency-Key after Retry-After";
    match error {
        PublishError::NotConnected { route, .. } => AppError::unavailable(
            "middleware_unavailable",
            format!("the {route} path cannot reach its middleware now; {resend}"),
        ),
        PublishError::Timeout { route, timeout_ms } => AppError::unavailable(
            "middleware_timeout",
            format!("the {route} path did not confirm within {timeout_ms} ms; {resend}"),
        ),
        PublishError::Refused { route, .. } => AppError::unavailable(
            "middleware_refused",
            format!("the {route} path's middleware refused the record; {resend}"),
        ),
        PublishError::Conflict { route } => AppError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: format!(
                "a record with this Idempotency-Key is stored already with another body (via {route}); the first body stays. Send a new record under a new key"
            ),
            route: None,
        },
        PublishError::Invalid { route, .. } => AppError::bad_request(
            "refused_by_store",
            format!(
                "the {route} path's store side refused the record as invalid (its limits differ from this entry's); nothing was stored"
            ),
        ),
    }
}

/// A record that fails the checks, as the client's 400 or 413.
pub fn invalid(invalid: Invalid) -> AppError {
    let code = invalid.code();
    match invalid {
        Invalid::TooLarge { limit } => AppError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message: format!(
                "the body is over the {limit}-byte limit; send one record per request"
            ),
            route: None,
        },
        Invalid::MissingId | Invalid::BadId => AppError::bad_request(
            code,
            "Idempotency-Key must be 1 to 200 visible ASCII characters, such as run-u3-17",
        ),
        Invalid::Empty => AppError::bad_request(code, "the body is empty; send one JSON object"),
        Invalid::Malformed { .. } => AppError::bad_request(code, format!("{invalid}")),
        Invalid::NotAnObject => AppError::bad_request(
            code,
            "the body is JSON but not an object; send one object such as {\"name\":\"Graeme\",\"msg\":\"protocol\"}",
        ),
    }
}

pub fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
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

/// Reads the whole body, at most `limit` bytes, within `timeout` (a client that stalls
/// mid-body gets 408 instead of holding the connection and the shutdown).
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, AppError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return Err(AppError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "body_timeout",
            message: format!(
                "the body did not arrive within {} ms; send the whole request at once",
                timeout.as_millis()
            ),
            route: None,
        });
    };
    read.map_err(|error| {
        let over_limit = std::error::Error::source(&error)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            invalid(Invalid::TooLarge { limit })
        } else {
            AppError::bad_request(
                "unreadable_body",
                "the body could not be read (the connection broke or the framing was wrong); send it again",
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn client_errors_carry_no_internal_detail() {
        let secret = "nats://app:s3cret@127.0.0.1:4999 /var/lib/x.db SELECT";
        for error in [
            PublishError::NotConnected {
                route: crate::Route::Nats,
                why: secret.into(),
            },
            PublishError::Refused {
                route: crate::Route::Nats,
                why: secret.into(),
            },
            PublishError::Invalid {
                route: crate::Route::Grpc,
                why: secret.into(),
            },
        ] {
            let answer = client_error(&error);
            assert!(!answer.message.contains("s3cret"), "{}", answer.message);
            assert!(!answer.message.contains("x.db"), "{}", answer.message);
        }
        assert_eq!(
            client_error(&PublishError::Conflict {
                route: crate::Route::Grpc
            })
            .status,
            StatusCode::CONFLICT
        );
    }
}
