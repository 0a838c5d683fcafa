//! The embedded store: SQLite in WAL mode with `synchronous=FULL`; one writer thread groups
//! concurrent inserts into one commit, a few reader connections serve the queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use super::writer::{Health, Writer, take_queued};
use super::{
    InsertOutcome, Inserted, LedgerRow, MAX_BATCH, Pending, Store, StoreError, StoredRow,
    route_counts,
};
use crate::record::{Record, digest, now_us};
use contract::Route;

/// SQLite behind the `Store` trait: a writer thread for inserts, a few readers for queries.
pub struct SqliteStore {
    path: PathBuf,
    /// Read connections, used in turn: WAL lets them all read while the writer commits.
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    writer: Writer,
}

/// Read connections: enough that `GET /` under load does not queue behind one.
const READERS: usize = 4;

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let writer = Connection::open(path).map_err(sqlite)?;
        // WAL lets readers run beside the writer; FULL makes each commit survive power loss,
        // which a 2xx promises; batching pays for the fsync.
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS records (
                     id TEXT PRIMARY KEY,
                     route TEXT NOT NULL,
                     payload TEXT NOT NULL,
                     accepted_at INTEGER NOT NULL,
                     stored_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS records_stored_at ON records (stored_at);",
            )
            .map_err(sqlite)?;
        // Added separately so a store from before the column existed is upgraded in place:
        // per-record duplicate inserts (resends, redeliveries), for reconciliation by id; and
        // the SHA-256 of the first body, to tell a resend from a reused key with another body
        // (rows from before it have NULL and are compared by their payload).
        add_column(&writer, "duplicates", "INTEGER NOT NULL DEFAULT 0").map_err(sqlite)?;
        add_column(&writer, "digest", "BLOB").map_err(sqlite)?;
        // Stored counts per route, kept in the insert transactions so `GET /` reads three
        // rows instead of scanning every record; seeded once for a store that predates it.
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS route_counts (route TEXT PRIMARY KEY, n INTEGER NOT NULL);
                 INSERT INTO route_counts (route, n)
                     SELECT route, COUNT(*) FROM records
                     WHERE NOT EXISTS (SELECT 1 FROM route_counts) GROUP BY route;",
            )
            .map_err(sqlite)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path).map_err(sqlite)?;
            reader
                .busy_timeout(std::time::Duration::from_secs(5))
                .map_err(sqlite)?;
            readers.push(Arc::new(Mutex::new(reader)));
        }
        let thread_path = path.to_path_buf();
        let writer = Writer::start(path.display().to_string(), move |queue, health| {
            write_loop(writer, queue, thread_path, &health)
        });
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers,
            next_reader: AtomicUsize::new(0),
            writer,
        })
    }

    /// Runs a read on the blocking pool; the lock is held there, never across an `.await`.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let reader = Arc::clone(&self.readers[turn]);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let connection = reader.lock().unwrap_or_else(|p| p.into_inner());
            query(&connection).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// Adds `column` to `records` unless the table has it already.
fn add_column(connection: &Connection, column: &str, definition: &str) -> rusqlite::Result<()> {
    let exists = connection
        .prepare("SELECT 1 FROM pragma_table_info('records') WHERE name = ?1")?
        .exists([column])?;
    if !exists {
        connection.execute_batch(&format!(
            "ALTER TABLE records ADD COLUMN {column} {definition}"
        ))?;
    }
    Ok(())
}

fn write_loop(
    mut connection: Connection,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    path: PathBuf,
    health: &Health,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        take_queued(&mut queue, &mut batch);
        let outcome = commit(&mut connection, &batch);
        let error = outcome.first().and_then(|r| r.as_ref().err());
        health.commit(error.map(ToString::to_string).as_deref());
        for ((_, _, reply), result) in batch.drain(..).zip(outcome) {
            let _ = reply.send(result.map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            }));
        }
    }
}

/// One transaction for the whole batch; every insert gets the commit's outcome.
fn commit(connection: &mut Connection, batch: &[Pending]) -> Vec<rusqlite::Result<Inserted>> {
    let mut attempt = || -> rusqlite::Result<Vec<InsertOutcome>> {
        let tx = connection.transaction()?;
        let stored_at = now_us();
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO records (id, route, payload, accepted_at, stored_at, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut first_body =
                tx.prepare_cached("SELECT digest, payload FROM records WHERE id = ?1")?;
            let mut count_duplicate =
                tx.prepare_cached("UPDATE records SET duplicates = duplicates + 1 WHERE id = ?1")?;
            for (route, record, _) in batch {
                let payload = String::from_utf8_lossy(&record.payload);
                let digest = digest(&record.payload);
                let changed = insert.execute(params![
                    record.id,
                    route.name(),
                    payload,
                    record.accepted_at_us,
                    stored_at,
                    &digest[..]
                ])?;
                if changed == 1 {
                    outcomes.push(InsertOutcome::New);
                    continue;
                }
                let (stored_digest, stored_payload): (Option<Vec<u8>>, String) =
                    first_body.query_row([&record.id], |row| Ok((row.get(0)?, row.get(1)?)))?;
                let same = match stored_digest {
                    Some(stored) => stored == digest,
                    None => stored_payload == payload,
                };
                if same {
                    count_duplicate.execute([&record.id])?;
                    outcomes.push(InsertOutcome::Duplicate);
                } else {
                    outcomes.push(InsertOutcome::Conflict);
                }
            }
            let mut count_stored = tx.prepare_cached(
                "INSERT INTO route_counts (route, n) VALUES (?1, ?2)
                 ON CONFLICT (route) DO UPDATE SET n = n + excluded.n",
            )?;
            for route in Route::ALL {
                let stored = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|((r, _, _), outcome)| *r == route && **outcome == InsertOutcome::New)
                    .count();
                if stored > 0 {
                    count_stored.execute(params![route.name(), stored as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    };
    match attempt() {
        Ok(outcomes) => {
            let stored_at_us = now_us();
            outcomes
                .into_iter()
                .map(|outcome| {
                    Ok(Inserted {
                        outcome,
                        stored_at_us,
                    })
                })
                .collect()
        }
        Err(error) => batch.iter().map(|_| Err(clone_error(&error))).collect(),
    }
}

/// rusqlite errors are not `Clone`; every insert of a failed batch gets the same message.
fn clone_error(error: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(error.to_string().into())
}

impl Store for SqliteStore {
    fn close(&self) {
        self.writer.close();
    }

    fn writes_failing(&self) -> bool {
        self.writer.failing()
    }

    fn insert(&self, route: Route, record: Record) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        Box::pin(self.writer.insert(route, record))
    }

    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredRow>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, route, payload, accepted_at, stored_at FROM records
                 ORDER BY stored_at DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit as i64], |row| {
                let payload: String = row.get(2)?;
                Ok(StoredRow {
                    id: row.get(0)?,
                    route: row.get(1)?,
                    payload: serde_json::from_str(&payload)
                        .unwrap_or(serde_json::Value::String(payload)),
                    accepted_at_us: row.get(3)?,
                    stored_at_us: row.get(4)?,
                })
            })?;
            rows.collect()
        }))
    }

    fn counts(&self) -> BoxFuture<'_, Result<BTreeMap<Route, u64>, StoreError>> {
        Box::pin(self.read(|c| {
            let mut statement = c.prepare_cached("SELECT route, n FROM route_counts")?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
            Ok(route_counts(rows))
        }))
    }

    fn with_prefix(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerRow>, StoreError>> {
        Box::pin(self.read(move |c| {
            // A range on the primary key: ids are visible ASCII, so every id with the prefix
            // sorts below prefix + U+10FFFF; a page starts past the last id of the one before.
            let upper = format!("{prefix}\u{10FFFF}");
            let mut statement = c.prepare_cached(
                "SELECT id, route, duplicates FROM records
                 WHERE id >= ?1 AND id < ?2 AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![prefix, upper, after, limit], |row| {
                let route: String = row.get(1)?;
                // Only the paths write rows, so an unknown route is a store edited by hand.
                let route = Route::from_name(&route).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("unknown route '{route}'").into(),
                    )
                })?;
                Ok(LedgerRow {
                    id: row.get(0)?,
                    route,
                    duplicates: row.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            payload: bytes::Bytes::from_static(b"{\"a\":1}"),
            accepted_at_us: 1,
        }
    }

    #[tokio::test]
    async fn an_id_is_stored_once_and_its_duplicates_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let first = store
            .insert(Route::Nats, record("run1-u0-0"))
            .await
            .unwrap();
        let again = store
            .insert(Route::Grpc, record("run1-u0-0"))
            .await
            .unwrap();
        store
            .insert(Route::Grpc, record("run1-u0-1"))
            .await
            .unwrap();
        store
            .insert(Route::Grpc, record("run2-u0-0"))
            .await
            .unwrap();
        assert!(first.is_new() && again.outcome == InsertOutcome::Duplicate);
        let rows = store.with_prefix("run1-".into(), None, 100).await.unwrap();
        assert_eq!(
            rows,
            vec![
                LedgerRow {
                    id: "run1-u0-0".into(),
                    route: Route::Nats,
                    duplicates: 1
                },
                LedgerRow {
                    id: "run1-u0-1".into(),
                    route: Route::Grpc,
                    duplicates: 0
                },
            ]
        );
        let counts = store.counts().await.unwrap();
        assert_eq!(
            (
                counts[&Route::Nats],
                counts[&Route::Grpc],
                counts[&Route::Rabbitmq]
            ),
            (1, 2, 0)
        );
        store.close();
        // The counts survive a reopen, and keep counting from there.
        let reopened = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        reopened
            .insert(Route::Nats, record("run3-u0-0"))
            .await
            .unwrap();
        let counts = reopened.counts().await.unwrap();
        assert_eq!((counts[&Route::Nats], counts[&Route::Grpc]), (2, 2));
        reopened.close();
        assert!(matches!(
            store.insert(Route::Grpc, record("late")).await,
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_store_from_before_the_counts_table_is_upgraded_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE records (id TEXT PRIMARY KEY, route TEXT NOT NULL, payload TEXT NOT NULL,
                                   accepted_at INTEGER NOT NULL, stored_at INTEGER NOT NULL);
             INSERT INTO records VALUES ('a', 'nats', '{}', 1, 2), ('b', 'nats', '{}', 1, 2),
                                        ('c', 'grpc', '{}', 1, 2);",
        )
        .unwrap();
        drop(old);
        let store = SqliteStore::open(&path).unwrap();
        let counts = store.counts().await.unwrap();
        assert_eq!((counts[&Route::Nats], counts[&Route::Grpc]), (2, 1));
        let again = store
            .insert(
                Route::Nats,
                Record {
                    payload: bytes::Bytes::from_static(b"{}"),
                    ..record("a")
                },
            )
            .await
            .unwrap();
        assert_eq!(
            again.outcome,
            InsertOutcome::Duplicate,
            "old rows still key duplicates, compared by their payload"
        );
        let other = store.insert(Route::Nats, record("b")).await.unwrap();
        assert_eq!(other.outcome, InsertOutcome::Conflict);
        assert_eq!(
            store.with_prefix("a".into(), None, 100).await.unwrap()[0].duplicates,
            1
        );
        store.close();
    }

    #[tokio::test]
    async fn a_reused_id_with_another_body_is_a_conflict_and_the_first_body_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let first = store.insert(Route::Grpc, record("k")).await.unwrap();
        let other = Record {
            payload: bytes::Bytes::from_static(b"{\"a\":2}"),
            ..record("k")
        };
        let conflict = store.insert(Route::Grpc, other).await.unwrap();
        let same = store.insert(Route::Grpc, record("k")).await.unwrap();
        assert_eq!(
            (first.outcome, conflict.outcome, same.outcome),
            (
                InsertOutcome::New,
                InsertOutcome::Conflict,
                InsertOutcome::Duplicate
            )
        );
        let rows = store.latest(10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].payload, serde_json::json!({"a": 1}));
        assert_eq!(
            store.with_prefix("k".into(), None, 100).await.unwrap()[0].duplicates,
            1,
            "a conflict is not a duplicate"
        );
        assert_eq!(store.counts().await.unwrap()[&Route::Grpc], 1);
        assert!(!store.writes_failing());
        store.close();
    }
}
