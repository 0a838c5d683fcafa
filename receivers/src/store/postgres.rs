//! The shared store: PostgreSQL, so several receivers processes (one per path, as the
//! original deployment ran) keep one exactly-once promise. The same semantics as SQLite:
//! the id is the primary key (`INSERT … ON CONFLICT (id) DO NOTHING`); duplicates,
//! conflicts and per-route counts are decided in the insert's transaction; inserts are
//! batched (one `UNNEST` statement per batch) by one writer with a runtime and connection
//! pool of its own; reads go through a pool on the caller's runtime. Both pools reconnect
//! after a server restart; until then, inserts fail (and the consumers back off).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use super::writer::{Health, Writer, take_queued};
use super::{
    InsertOutcome, Inserted, LedgerRow, MAX_BATCH, Pending, Store, StoreError, StoredRow,
    route_counts,
};
use crate::record::{digest, now_us};
use crate::redact::redact;
use contract::Route;

/// Created once per database; the advisory lock keeps two processes starting together from
/// racing on `CREATE TABLE`.
const SCHEMA: &str = "
    SELECT pg_advisory_xact_lock(7253901);
    CREATE TABLE IF NOT EXISTS records (
        id TEXT COLLATE \"C\" PRIMARY KEY,
        route TEXT NOT NULL,
        payload TEXT NOT NULL,
        accepted_at BIGINT NOT NULL,
        stored_at BIGINT NOT NULL,
        duplicates BIGINT NOT NULL DEFAULT 0,
        digest BYTEA NOT NULL
    );
    CREATE INDEX IF NOT EXISTS records_stored_at ON records (stored_at);
    CREATE TABLE IF NOT EXISTS route_counts (route TEXT PRIMARY KEY, n BIGINT NOT NULL);
";

/// Reads at once; the writer has a pool of its own.
const READERS: usize = 4;

pub struct PostgresStore {
    /// The URL with its password redacted, for every message.
    shown: String,
    readers: Pool,
    writer: Writer,
}

/// A pool on the current runtime; connections are made on demand and checked on reuse, so
/// one broken by a server restart is replaced.
fn pool(url: &str, size: usize) -> Result<Pool, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(5)))
        .wait_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| e.to_string())
}

impl PostgresStore {
    /// Connects, creates the tables if missing, and starts the writer. An unreachable server
    /// fails here, naming it (password redacted) and what to do.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let fail = |what: &str, e: String| {
            StoreError::Postgres(format!(
                "{shown}: {what}: {}; start it (scripts/postgres up) or fix --store",
                redact(&e)
            ))
        };
        let readers = pool(url, READERS).map_err(|e| fail("bad URL", e))?;
        let mut client = readers
            .get()
            .await
            .map_err(|e| fail("cannot connect", e.to_string()))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| fail("cannot create the tables", e.to_string()))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(|e| fail("cannot create the tables", e.to_string()))?;
        tx.commit()
            .await
            .map_err(|e| fail("cannot create the tables", e.to_string()))?;
        drop(client);
        let thread_url = url.to_string();
        let writer = Writer::start(shown.clone(), move |queue, health| {
            // A runtime of its own: the writer's connections live and die with it, so
            // `close` can wait for the last commit from any thread.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds")
                .block_on(write_loop(thread_url, queue, &health));
        });
        Ok(PostgresStore {
            shown,
            readers,
            writer,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres(format!("{}: {}", self.shown, redact(&e.to_string())))
    }
}

async fn write_loop(url: String, mut queue: mpsc::UnboundedReceiver<Pending>, health: &Health) {
    let shown = redact(&url);
    let pool = match pool(&url, 2) {
        Ok(pool) => pool,
        Err(e) => {
            // The URL parsed in `open`, so this does not happen; fail every insert if it does.
            tracing::error!(store = %shown, "the writer cannot make a pool: {e}");
            while let Some((_, _, reply)) = queue.recv().await {
                let _ = reply.send(Err(StoreError::Postgres(format!("{shown}: {e}"))));
            }
            return;
        }
    };
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        take_queued(&mut queue, &mut batch);
        let outcome = commit(&pool, &batch).await;
        health.commit(outcome.as_ref().err().map(|e| redact(e)).as_deref());
        let stored_at_us = now_us();
        match outcome {
            Ok(outcomes) => {
                for ((_, _, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(Inserted {
                        outcome,
                        stored_at_us,
                    }));
                }
            }
            Err(error) => {
                let message = format!("{shown}: {}", redact(&error));
                for (_, _, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Postgres(message.clone())));
                }
            }
        }
    }
}

/// One transaction for the whole batch: insert the first occurrence of each id (one
/// statement), then judge every insert that found its id stored (duplicate or conflict, by
/// the body's digest), count the duplicates, and add the new records to the route counts.
async fn commit(pool: &Pool, batch: &[Pending]) -> Result<Vec<InsertOutcome>, String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let digests: Vec<Vec<u8>> = batch
        .iter()
        .map(|(_, r, _)| digest(&r.payload).to_vec())
        .collect();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, (_, record, _)) in batch.iter().enumerate() {
        first.entry(record.id.as_str()).or_insert(i);
    }
    let new_ids = insert_firsts(&tx, batch, &first, &digests).await?;
    let is_new = |i: usize| first[batch[i].1.id.as_str()] == i && new_ids.contains(&batch[i].1.id);
    let outcomes = judge_the_rest(&tx, batch, &digests, is_new).await?;
    count_duplicates(&tx, batch, &outcomes).await?;
    count_routes(&tx, batch, &outcomes).await?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(outcomes)
}

/// Inserts the first occurrence of each id in one statement; returns the ids it stored.
async fn insert_firsts(
    tx: &Transaction<'_>,
    batch: &[Pending],
    first: &HashMap<&str, usize>,
    digests: &[Vec<u8>],
) -> Result<HashSet<String>, String> {
    let mut firsts: Vec<usize> = first.values().copied().collect();
    firsts.sort_unstable();
    let column = |f: &dyn Fn(usize) -> String| firsts.iter().map(|i| f(*i)).collect::<Vec<_>>();
    let ids = column(&|i| batch[i].1.id.clone());
    let routes = column(&|i| batch[i].0.name().to_string());
    let payloads = column(&|i| String::from_utf8_lossy(&batch[i].1.payload).into_owned());
    let accepted: Vec<i64> = firsts.iter().map(|i| batch[*i].1.accepted_at_us).collect();
    let first_digests: Vec<&Vec<u8>> = firsts.iter().map(|i| &digests[*i]).collect();
    let inserted = tx
        .query(
            "INSERT INTO records (id, route, payload, accepted_at, digest, stored_at)
             SELECT u.id, u.route, u.payload, u.accepted_at, u.digest, $6
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[])
                  AS u(id, route, payload, accepted_at, digest)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
            &[
                &ids,
                &routes,
                &payloads,
                &accepted,
                &first_digests,
                &now_us(),
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(inserted.iter().map(|row| row.get::<_, String>(0)).collect())
}

/// Each insert's outcome: new, or, for one that met a stored body, a duplicate when the
/// digests agree and a conflict when they do not.
async fn judge_the_rest(
    tx: &Transaction<'_>,
    batch: &[Pending],
    digests: &[Vec<u8>],
    is_new: impl Fn(usize) -> bool,
) -> Result<Vec<InsertOutcome>, String> {
    let mut met: Vec<String> = (0..batch.len())
        .filter(|i| !is_new(*i))
        .map(|i| batch[i].1.id.clone())
        .collect();
    met.sort_unstable();
    met.dedup();
    let stored: HashMap<String, Vec<u8>> = if met.is_empty() {
        HashMap::new()
    } else {
        tx.query("SELECT id, digest FROM records WHERE id = ANY($1)", &[&met])
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    Ok(batch
        .iter()
        .enumerate()
        .map(|(i, (_, record, _))| {
            if is_new(i) {
                InsertOutcome::New
            } else if stored.get(&record.id) == Some(&digests[i]) {
                InsertOutcome::Duplicate
            } else {
                InsertOutcome::Conflict
            }
        })
        .collect())
}

/// Adds each id's duplicates to its row.
async fn count_duplicates(
    tx: &Transaction<'_>,
    batch: &[Pending],
    outcomes: &[InsertOutcome],
) -> Result<(), String> {
    let mut duplicates: BTreeMap<&str, i64> = BTreeMap::new();
    for ((_, record, _), outcome) in batch.iter().zip(outcomes) {
        if *outcome == InsertOutcome::Duplicate {
            *duplicates.entry(record.id.as_str()).or_default() += 1;
        }
    }
    if duplicates.is_empty() {
        return Ok(());
    }
    // In id order, so two processes counting the same ids lock them in the same order.
    let (ids, counts): (Vec<&str>, Vec<i64>) = duplicates.into_iter().unzip();
    tx.execute(
        "UPDATE records SET duplicates = records.duplicates + d.n
         FROM UNNEST($1::text[], $2::int8[]) AS d(id, n) WHERE records.id = d.id",
        &[&ids, &counts],
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Adds the new records to their routes' counts.
async fn count_routes(
    tx: &Transaction<'_>,
    batch: &[Pending],
    outcomes: &[InsertOutcome],
) -> Result<(), String> {
    for route in Route::ALL {
        let n = (0..batch.len())
            .filter(|i| batch[*i].0 == route && outcomes[*i] == InsertOutcome::New)
            .count() as i64;
        if n > 0 {
            tx.execute(
                "INSERT INTO route_counts (route, n) VALUES ($1, $2)
                 ON CONFLICT (route) DO UPDATE SET n = route_counts.n + excluded.n",
                &[&route.name(), &n],
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

impl Store for PostgresStore {
    fn insert(
        &self,
        route: Route,
        record: crate::record::Record,
    ) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        Box::pin(self.writer.insert(route, record))
    }

    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredRow>, StoreError>> {
        Box::pin(async move {
            let client = self.readers.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query(
                    "SELECT id, route, payload, accepted_at, stored_at FROM records
                     ORDER BY stored_at DESC, id DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(|e| self.error(e))?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let payload: String = row.get(2);
                    StoredRow {
                        id: row.get(0),
                        route: row.get(1),
                        payload: serde_json::from_str(&payload)
                            .unwrap_or(serde_json::Value::String(payload)),
                        accepted_at_us: row.get(3),
                        stored_at_us: row.get(4),
                    }
                })
                .collect())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<BTreeMap<Route, u64>, StoreError>> {
        Box::pin(async move {
            let client = self.readers.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query("SELECT route, n FROM route_counts", &[])
                .await
                .map_err(|e| self.error(e))?;
            Ok(route_counts(
                rows.iter().map(|row| (row.get(0), row.get(1))),
            ))
        })
    }

    fn with_prefix(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerRow>, StoreError>> {
        Box::pin(async move {
            let client = self.readers.get().await.map_err(|e| self.error(e))?;
            // A range on the primary key (collation "C": byte order, as SQLite's).
            let upper = format!("{prefix}\u{10FFFF}");
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    "SELECT id, route, duplicates FROM records
                     WHERE id >= $1 AND id < $2 AND ($3::text IS NULL OR id > $3)
                     ORDER BY id LIMIT $4",
                    &[&prefix, &upper, &after, &limit],
                )
                .await
                .map_err(|e| self.error(e))?;
            rows.into_iter()
                .map(|row| {
                    let route: String = row.get(1);
                    Ok(LedgerRow {
                        id: row.get(0),
                        route: Route::from_name(&route).ok_or_else(|| {
                            self.error(format!("a record has the unknown route '{route}'"))
                        })?,
                        duplicates: row.get::<_, i64>(2) as u64,
                    })
                })
                .collect()
        })
    }

    fn writes_failing(&self) -> bool {
        self.writer.failing()
    }

    fn close(&self) {
        self.writer.close();
    }
}
