//! The read endpoints every listener serves: `GET /` (latest stored records and counts, as
//! the original GET / read back what was saved), `/stats`, `/metrics`, `/health`, `/ready`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::AppError;
use crate::paths::Publisher;
use crate::prometheus;
use crate::stats::Stats;
use crate::store::Store;

/// What the read endpoints look at.
pub struct ReadState {
    pub store: Arc<dyn Store>,
    pub stats: Arc<Stats>,
    /// The paths whose entries run in this process, for `/ready`.
    pub publishers: Vec<Arc<dyn Publisher>>,
}

#[derive(Debug, Deserialize)]
pub struct Latest {
    limit: Option<usize>,
}

pub async fn latest(State(state): State<Arc<ReadState>>, Query(query): Query<Latest>) -> Response {
    let limit = query.limit.unwrap_or(20).min(1000);
    let store_error = |e: crate::store::StoreError| {
        AppError::unavailable(
            "store_unavailable",
            format!("the store could not be read: {e}"),
        )
        .into_response()
    };
    let counts = match state.store.counts().await {
        Ok(counts) => counts,
        Err(e) => return store_error(e),
    };
    match state.store.latest(limit).await {
        Ok(rows) => Json(json!({ "counts": counts, "latest": rows })).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct Prefix {
    prefix: Option<String>,
}

/// `GET /records?prefix=RUN_ID`: the stored ids of one loadgen run, with route and
/// duplicate count, so loadgen can reconcile what it sent with what was stored.
pub async fn records(State(state): State<Arc<ReadState>>, Query(query): Query<Prefix>) -> Response {
    let prefix = query.prefix.unwrap_or_default();
    if prefix.len() < 8 {
        return AppError::bad_request(
            "prefix_required",
            "give ?prefix= with at least 8 characters, such as a loadgen run id (20261126-204426-6c02)",
        )
        .into_response();
    }
    match state.store.with_prefix(prefix.clone()).await {
        Ok(rows) => {
            Json(json!({ "prefix": prefix, "count": rows.len(), "records": rows })).into_response()
        }
        Err(e) => AppError::unavailable(
            "store_unavailable",
            format!("the store could not be read: {e}"),
        )
        .into_response(),
    }
}

pub async fn stats(State(state): State<Arc<ReadState>>) -> Response {
    Json(state.stats.snapshot().await).into_response()
}

pub async fn metrics(State(state): State<Arc<ReadState>>) -> Response {
    let body = prometheus::render(&state.stats.snapshot().await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// 200 when every local path is connected to its middleware and the store answers.
pub async fn ready(State(state): State<Arc<ReadState>>) -> Response {
    let mut checks: BTreeMap<String, bool> = state
        .publishers
        .iter()
        .map(|p| (p.route().name().to_string(), p.ready()))
        .collect();
    checks.insert("store".into(), state.store.counts().await.is_ok());
    let all = checks.values().all(|ok| *ok);
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": all, "checks": checks }))).into_response()
}
