//! The read endpoints every listener serves: `GET /` (latest stored records and counts, as
//! the original GET / read back what was saved), `/stats`, `/records`, `/metrics`,
//! `/health`, `/ready`. Every error, a bad query string included, is the JSON `AppError`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use contract::RecordsPage;

use crate::http::error::AppError;
use crate::paths::Publisher;
use crate::redact::redact;
use crate::stats::Stats;
use crate::stats::prometheus;
use crate::store::{Store, StoreError};

/// What the read endpoints look at.
pub struct ReadState {
    pub store: Arc<dyn Store>,
    pub stats: Arc<Stats>,
    /// The paths whose entries run in this process, for `/ready`.
    pub publishers: Vec<Arc<dyn Publisher>>,
}

/// Most records `GET /?limit=` returns, whatever is asked.
pub const MAX_LATEST: usize = 1000;

/// The routes every listener serves besides its `POST`, and a JSON 404 for anything else.
pub fn read_routes(state: Arc<ReadState>) -> Router {
    Router::new()
        .route("/", get(latest))
        .route("/stats", get(stats))
        .route("/records", get(records))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    AppError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such endpoint; POST / takes a record, GET / /stats /records /metrics /health /ready read".into(),
        route: None,
    }
    .into_response()
}

/// A query string that does not parse, as JSON like every other error.
fn bad_query(rejection: QueryRejection, example: &str) -> AppError {
    AppError::bad_request(
        "bad_query",
        format!("{}; for example {example}", rejection.body_text()),
    )
}

/// The store's error for the log (redacted); the client learns only that the store failed.
fn store_unavailable(error: StoreError) -> Response {
    tracing::warn!(
        "a read from the store failed: {}",
        redact(&error.to_string())
    );
    AppError::unavailable(
        "store_unavailable",
        "the store could not be read now; try again after Retry-After",
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct Latest {
    limit: Option<usize>,
}

pub async fn latest(
    State(state): State<Arc<ReadState>>,
    query: Result<Query<Latest>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_query(rejection, "GET /?limit=20").into_response(),
    };
    let limit = query.limit.unwrap_or(20).min(MAX_LATEST);
    let counts = match state.store.counts().await {
        Ok(counts) => counts,
        Err(e) => return store_unavailable(e),
    };
    match state.store.latest(limit).await {
        Ok(rows) => {
            Json(json!({ "counts": counts, "limit": limit, "latest": rows })).into_response()
        }
        Err(e) => store_unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct Prefix {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Ids a page of `GET /records` holds at most: the answer's memory is bounded, whatever
/// the run's size.
pub const MAX_RECORDS_PAGE: usize = 10_000;

/// `GET /records?prefix=RUN_ID[&after=ID][&limit=N]`: a page of the stored ids of one
/// loadgen run, in id order, with route and duplicate count, so loadgen can reconcile what
/// it sent with what was stored; `next` is the `after` of the following page.
pub async fn records(
    State(state): State<Arc<ReadState>>,
    query: Result<Query<Prefix>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return bad_query(rejection, "GET /records?prefix=20261126-204426-6c02-")
                .into_response();
        }
    };
    let prefix = query.prefix.unwrap_or_default();
    if prefix.len() < 8 {
        return AppError::bad_request(
            "prefix_required",
            "give ?prefix= with at least 8 characters, such as a loadgen run id (20261126-204426-6c02)",
        )
        .into_response();
    }
    let limit = query
        .limit
        .unwrap_or(MAX_RECORDS_PAGE)
        .clamp(1, MAX_RECORDS_PAGE);
    match state
        .store
        .with_prefix(prefix.clone(), query.after, limit)
        .await
    {
        Ok(records) => {
            let next = (records.len() == limit)
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            Json(RecordsPage {
                prefix,
                count: records.len(),
                records,
                next,
            })
            .into_response()
        }
        Err(e) => store_unavailable(e),
    }
}

pub async fn stats(State(state): State<Arc<ReadState>>) -> Response {
    Json(state.stats.snapshot().await).into_response()
}

pub async fn metrics(State(state): State<Arc<ReadState>>) -> Response {
    let body = prometheus::render(&state.stats.snapshot().await);
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response()
}

pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// 200 when every local path can take a record and the store reads and writes.
pub async fn ready(State(state): State<Arc<ReadState>>) -> Response {
    let paths = futures::future::join_all(
        state
            .publishers
            .iter()
            .map(|p| async move { (p.route().name().to_string(), p.ready().await) }),
    )
    .await;
    let mut checks: BTreeMap<String, bool> = paths.into_iter().collect();
    checks.insert("store".into(), state.store.counts().await.is_ok());
    checks.insert("store_writes".into(), !state.store.writes_failing());
    let all = checks.values().all(|ok| *ok);
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": all, "checks": checks }))).into_response()
}
