//! One contract, two stores: every test here runs against SQLite (a real file in a temp dir)
//! and against PostgreSQL (a database of its own on the project's cluster, from
//! `scripts/postgres`). Stored once by id, duplicates and conflicts told apart by the body,
//! counts per route, pages of a run's ids, and two stores on one database.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use receivers::Route;
use receivers::record::Record;
use receivers::store::{self, InsertOutcome, Store, StoreError, StoreLocation};
use testkit::TestDatabase;

/// Where a test's store lives; `open` may be called again (reopen, a second process).
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        Backend::Postgres(TestDatabase::create())
    }

    async fn open(&self) -> Arc<dyn Store> {
        let location = match self {
            Backend::Sqlite(dir) => StoreLocation::Sqlite(dir.path().join("store.db")),
            Backend::Postgres(db) => StoreLocation::Postgres(db.url.clone()),
        };
        store::open(&location).await.expect("the store opens")
    }
}

fn record(id: &str, body: &'static str) -> Record {
    Record {
        id: id.into(),
        payload: Bytes::from_static(body.as_bytes()),
        accepted_at_us: 1,
    }
}

async fn close(store: Arc<dyn Store>) {
    tokio::task::spawn_blocking(move || store.close())
        .await
        .unwrap();
}

async fn an_id_is_stored_once_and_a_second_body_is_a_conflict(backend: Backend) {
    let store = backend.open().await;
    let outcomes = [
        store
            .insert(Route::Nats, record("r1-u0-0", "{\"a\":1}"))
            .await,
        store
            .insert(Route::Grpc, record("r1-u0-0", "{\"a\":1}"))
            .await,
        store
            .insert(Route::Grpc, record("r1-u0-0", "{\"a\":2}"))
            .await,
    ]
    .map(|r| r.unwrap().outcome);
    assert_eq!(
        outcomes,
        [
            InsertOutcome::New,
            InsertOutcome::Duplicate,
            InsertOutcome::Conflict
        ]
    );
    let latest = store.latest(10).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        latest[0].payload,
        serde_json::json!({"a": 1}),
        "the first body stays"
    );
    assert_eq!(latest[0].route, "nats");
    let rows = store.with_prefix("r1-".into(), None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].route, rows[0].duplicates), (Route::Nats, 1));
    assert!(!store.writes_failing());
    close(store).await;
}

async fn counts_per_route_survive_a_reopen(backend: Backend) {
    let store = backend.open().await;
    for (route, id) in [
        (Route::Grpc, "c-1"),
        (Route::Grpc, "c-2"),
        (Route::Nats, "c-3"),
        (Route::Nats, "c-3"),
    ] {
        store.insert(route, record(id, "{}")).await.unwrap();
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([(Route::Grpc, 2), (Route::Rabbitmq, 0), (Route::Nats, 1)])
    );
    close(store).await;
    let reopened = backend.open().await;
    reopened
        .insert(Route::Rabbitmq, record("c-4", "{}"))
        .await
        .unwrap();
    let counts = reopened.counts().await.unwrap();
    assert_eq!((counts[&Route::Grpc], counts[&Route::Rabbitmq]), (2, 1));
    close(reopened).await;
}

async fn a_runs_ids_come_back_in_pages_in_id_order(backend: Backend) {
    let store = backend.open().await;
    let mut inserts = Vec::new();
    for n in 0..25 {
        inserts.push(store.insert(Route::Rabbitmq, record(&format!("run-a-u0-{n:03}"), "{}")));
    }
    for n in 0..5 {
        inserts.push(store.insert(Route::Rabbitmq, record(&format!("run-b-u0-{n:03}"), "{}")));
    }
    for outcome in futures::future::join_all(inserts).await {
        outcome.unwrap();
    }
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .with_prefix("run-a-".into(), after.clone(), 10)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id.clone());
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let ids: Vec<String> = pages.into_iter().flatten().map(|r| r.id).collect();
    let expected: Vec<String> = (0..25).map(|n| format!("run-a-u0-{n:03}")).collect();
    assert_eq!(
        ids, expected,
        "every id of the run, once, in order, no other run's"
    );
    close(store).await;
}

async fn concurrent_inserts_of_one_id_store_it_once(backend: Backend) {
    let store = backend.open().await;
    // Two stores on one database: two receivers processes sharing it.
    let other = backend.open().await;
    let mut inserts = Vec::new();
    for n in 0..100 {
        for s in [&store, &other] {
            let (s, id) = (Arc::clone(s), format!("k-{n}"));
            inserts.push(tokio::spawn(async move {
                s.insert(Route::Grpc, record(&id, "{\"same\":true}")).await
            }));
        }
    }
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for insert in inserts {
        let outcome = insert.await.unwrap().unwrap().outcome;
        *tally.entry(format!("{outcome:?}")).or_default() += 1;
    }
    assert_eq!(
        tally,
        BTreeMap::from([("Duplicate".to_string(), 100), ("New".to_string(), 100)])
    );
    assert_eq!(store.counts().await.unwrap()[&Route::Grpc], 100);
    close(store).await;
    close(other).await;
}

async fn a_closed_store_refuses_inserts(backend: Backend) {
    let store = backend.open().await;
    store
        .insert(Route::Nats, record("x-1", "{}"))
        .await
        .unwrap();
    let closing = Arc::clone(&store);
    close(closing).await;
    assert!(matches!(
        store.insert(Route::Nats, record("x-2", "{}")).await,
        Err(StoreError::Closed)
    ));
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::postgres()).await;
                }
            )*
        }
    };
}

contract!(
    an_id_is_stored_once_and_a_second_body_is_a_conflict,
    counts_per_route_survive_a_reopen,
    a_runs_ids_come_back_in_pages_in_id_order,
    concurrent_inserts_of_one_id_store_it_once,
    a_closed_store_refuses_inserts,
);

#[tokio::test]
async fn an_unreachable_postgres_fails_at_start_up_naming_it_without_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://rig:s3cret@127.0.0.1:{port}/rig");
    let error = store::open(&url.parse().unwrap())
        .await
        .err()
        .expect("nothing listens there")
        .to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("scripts/postgres up"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
}
