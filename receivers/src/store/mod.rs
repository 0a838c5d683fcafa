//! Where every path ends: the store of records, keyed by id so each is stored exactly once.
//! One trait, two implementations: SQLite (`sqlite.rs`, the embedded default, one process)
//! and PostgreSQL (`postgres.rs`, shared by many receivers processes). `--store` picks one;
//! `tests/store_contract.rs` holds both to the same contract.

pub mod postgres;
pub mod sqlite;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::oneshot;

pub use contract::LedgerRow;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::record::Record;
use crate::redact::redact;
use contract::Route;

/// What an insert did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The id was new: the record is stored.
    New,
    /// The id was stored already with the same body (a resend or a redelivery): nothing changed.
    Duplicate,
    /// The id was stored already with another body: the first body stays, this one is refused.
    Conflict,
}

/// The outcome of an insert once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub outcome: InsertOutcome,
    /// When the commit finished, microseconds since the epoch.
    pub stored_at_us: i64,
}

impl Inserted {
    pub fn is_new(&self) -> bool {
        self.outcome == InsertOutcome::New
    }
}

/// One stored record, as `GET /` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredRow {
    pub id: String,
    pub route: String,
    pub payload: serde_json::Value,
    pub accepted_at_us: i64,
    pub stored_at_us: i64,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The message names the server by its redacted URL.
    #[error("store {0}")]
    Postgres(String),
    #[error("the store is shut down")]
    Closed,
}

/// What the paths need from a store. Small on purpose: both implementations keep it.
pub trait Store: Send + Sync + 'static {
    /// Stores `record` under `route` unless its id is stored already; resolves after commit.
    fn insert(&self, route: Route, record: Record) -> BoxFuture<'_, Result<Inserted, StoreError>>;
    /// The most recently stored records, newest first.
    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredRow>, StoreError>>;
    /// Stored records per route.
    fn counts(&self) -> BoxFuture<'_, Result<BTreeMap<Route, u64>, StoreError>>;
    /// Stored records whose id starts with `prefix` (a loadgen run id), in id order, from
    /// the first id above `after` (all when `None`), at most `limit`: a page of the ledger.
    fn with_prefix(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerRow>, StoreError>>;
    /// Whether the last commit failed (disk full, read-only file, server gone): `/ready`
    /// reports it, and the consumers back off instead of redelivering in a hot loop.
    fn writes_failing(&self) -> bool;
    /// Stops taking inserts and blocks until every accepted one is committed. Call it from
    /// a thread that may block (`spawn_blocking`), not from async code.
    fn close(&self);
}

/// An insert waiting for its batch's commit.
pub(crate) type Pending = (Route, Record, oneshot::Sender<Result<Inserted, StoreError>>);

/// Inserts grouped into one transaction at most: bounds the latency one commit adds.
pub(crate) const MAX_BATCH: usize = 512;

/// Stored counts per route from `route_counts` rows; a route with no row has stored none,
/// and a row naming no known route is ignored.
pub(crate) fn route_counts(rows: impl IntoIterator<Item = (String, i64)>) -> BTreeMap<Route, u64> {
    let mut counts: BTreeMap<Route, u64> = Route::ALL.iter().map(|r| (*r, 0)).collect();
    for (route, n) in rows {
        if let Some(route) = Route::from_name(&route) {
            counts.insert(route, n as u64);
        }
    }
    counts
}

/// `--store`: an SQLite file, or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreLocation, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<tokio_postgres::Config>().map_err(|e| {
                format!(
                    "'{}' is not a PostgreSQL URL ({e}); write postgres://USER:PASSWORD@HOST:PORT/DB",
                    redact(text)
                )
            })?;
            Ok(StoreLocation::Postgres(text.to_string()))
        } else if text.is_empty() {
            Err("give an SQLite file, such as receivers.db, or a postgres:// URL".into())
        } else {
            Ok(StoreLocation::Sqlite(PathBuf::from(text)))
        }
    }
}

/// Shown with the password replaced, in logs and in `--help`'s debug output alike.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Opens the store `location` names. A PostgreSQL server that cannot be reached fails here,
/// with its URL (password redacted) and what to do.
pub async fn open(location: &StoreLocation) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(url) => Arc::new(PostgresStore::open(url).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations_parse_and_never_show_a_password() {
        assert_eq!(
            "receivers.db".parse::<StoreLocation>(),
            Ok(StoreLocation::Sqlite("receivers.db".into()))
        );
        let pg: StoreLocation = "postgres://rig:s3cret@127.0.0.1:15432/rig".parse().unwrap();
        assert!(matches!(pg, StoreLocation::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://***@127.0.0.1:15432/rig");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let bad = "postgres://rig:s3cret@127.0.0.1:notaport/rig"
            .parse::<StoreLocation>()
            .unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!("".parse::<StoreLocation>().is_err());
    }
}
