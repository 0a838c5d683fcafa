//! `in_flight` counts the entry's own accepted records not yet settled: records that reach
//! the store side without passing an entry (a foreign publisher on the broker, a direct
//! gRPC client) are stored, but must not hide the entry's records still on their way
//! (`bench-receivers` and the reconciliation wait on it). A real SQLite store, no broker.

use std::sync::Arc;

use bytes::Bytes;
use receivers::Route;
use receivers::paths::{Received, Sink};
use receivers::stats::{Stage, Stats};
use receivers::store::SqliteStore;

#[tokio::test]
async fn foreign_records_settle_none_of_the_entrys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let stats = Arc::new(Stats::start("in-flight".into(), vec![Route::Nats]));
    let sink = Sink {
        store,
        stats: Arc::clone(&stats),
        body_limit: 1024,
    };
    // The entry accepted two records, still on their way to the store.
    stats.accepted(Route::Nats);
    stats.accepted(Route::Nats);
    // A foreign publisher's five valid records reach the consumer: no entry's header.
    for n in 0..5 {
        let received = Received {
            id: Some(format!("foreign-{n}")),
            payload: Bytes::from_static(b"{\"from\":\"elsewhere\"}"),
            accepted_at_us: None,
            redelivered: false,
        };
        sink.receive(Route::Nats, received, false).await;
    }
    // One of the entry's arrives.
    let ours = Received {
        id: Some("ours-1".into()),
        payload: Bytes::from_static(b"{\"from\":\"the entry\"}"),
        accepted_at_us: Some(receivers::record::now_us() - 1_000),
        redelivered: false,
    };
    sink.receive(Route::Nats, ours, false).await;
    let nats = &stats.snapshot().await.routes[&Route::Nats];
    assert_eq!(nats.stored, 6, "every valid record is stored");
    assert_eq!(
        nats.in_flight, 1,
        "one of the entry's two accepted records is still in flight"
    );
    assert_eq!(
        nats.latency[&Stage::E2e].count,
        1,
        "only the entry's record has an end-to-end latency"
    );
}
