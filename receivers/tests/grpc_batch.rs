//! Group commit on the gRPC path, over real tonic on loopback into a real SQLite store: the
//! records that queue while the entry's call is in flight go in one `StoreBatch` call, and
//! each still gets the answer a call of its own would have had (stored, duplicate, conflict,
//! invalid), from the server's checks and the store, through the entry's own client.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use common::serve_on_port_0;
use futures::future::join_all;
use receivers::Route;
use receivers::paths::grpc::{GrpcPublisher, router};
use receivers::paths::{PublishError, Publisher, Sink};
use receivers::record::Record;
use receivers::stats::Stats;
use receivers::store::{SqliteStore, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The receivers' gRPC server on port 0 over a SQLite file, counting the calls it gets by
/// method; each call first takes a permit from `gate`, so a test can hold calls back.
struct Server {
    url: String,
    store: Arc<SqliteStore>,
    store_calls: Arc<AtomicUsize>,
    batch_calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_server(open_gate: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let sink = Sink {
        store: store.clone(),
        stats: Arc::new(Stats::start("grpc-batch".into(), vec![Route::Grpc])),
        body_limit: 65536,
    };
    let stop = CancellationToken::new();
    let (store_calls, batch_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gate = Arc::new(Semaphore::new(if open_gate {
        Semaphore::MAX_PERMITS
    } else {
        0
    }));
    let counted = (store_calls.clone(), batch_calls.clone(), gate.clone());
    let app = router(sink, Duration::from_secs(10), stop.clone())
        .await
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let (store_calls, batch_calls, gate) = counted.clone();
            async move {
                match request.uri().path() {
                    "/ingest.v1.Ingest/Store" => store_calls.fetch_add(1, Ordering::SeqCst),
                    "/ingest.v1.Ingest/StoreBatch" => batch_calls.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
                gate.acquire().await.unwrap().forget();
                next.run(request).await
            }
        }));
    let url = serve_on_port_0(app, &stop).await;
    Server {
        url,
        store,
        store_calls,
        batch_calls,
        gate,
        stop,
        _dir: dir,
    }
}

fn record(id: &str, payload: &str) -> Record {
    Record {
        id: id.into(),
        payload: payload.as_bytes().to_vec().into(),
        accepted_at_us: receivers::record::now_us(),
    }
}

async fn stored_ids(server: &Server) -> Vec<String> {
    let rows = server.store.latest(10_000).await.unwrap();
    let mut ids: Vec<String> = rows.into_iter().map(|row| row.id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_queued_behind_a_call_share_one_batch_and_each_gets_its_own_answer() {
    let server = start_server(false).await;
    let publisher = Arc::new(GrpcPublisher::new(&server.url, Duration::from_secs(10)).unwrap());

    // The first record goes alone and is held at the server; what queues meanwhile must go
    // together in the next call.
    let first = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.publish(&record("first", "{\"n\":0}")).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.store_calls.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first record never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Behind it: a new record, a resend of `first` (the same body), a reuse of its id with
    // another body, a body that is not JSON, and another new record.
    let queued = [
        record("second", "{\"n\":2}"),
        record("first", "{\"n\":0}"),
        record("first", "{\"n\":1}"),
        record("broken", "not json"),
        record("third", "{\"n\":3}"),
    ];
    // One poll runs each publish up to its wait for an answer: all five are queued.
    let mut answers = Box::pin(join_all(queued.iter().map(|r| publisher.publish(r))));
    assert!(
        futures::poll!(answers.as_mut()).is_pending(),
        "answered while the server is held"
    );
    server.gate.add_permits(Semaphore::MAX_PERMITS / 2);

    let first = first.await.unwrap().expect("the first record is stored");
    assert!(!first.duplicate);
    let answers = answers.await;
    assert_eq!(
        (
            server.store_calls.load(Ordering::SeqCst),
            server.batch_calls.load(Ordering::SeqCst)
        ),
        (1, 1),
        "the five queued records went in one StoreBatch call: {answers:?}"
    );
    assert!(
        matches!(&answers[0], Ok(a) if !a.duplicate),
        "second: {:?}",
        answers[0]
    );
    assert!(
        matches!(&answers[1], Ok(a) if a.duplicate),
        "the resend: {:?}",
        answers[1]
    );
    assert!(
        matches!(
            &answers[2],
            Err(PublishError::Conflict { route: Route::Grpc })
        ),
        "another body under a stored id: {:?}",
        answers[2]
    );
    assert!(
        matches!(&answers[3], Err(PublishError::Invalid { why, .. }) if why.contains("malformed_json")),
        "not JSON: {:?}",
        answers[3]
    );
    assert!(
        matches!(&answers[4], Ok(a) if !a.duplicate),
        "third: {:?}",
        answers[4]
    );
    assert_eq!(stored_ids(&server).await, ["first", "second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_records_at_once_go_in_fewer_calls_and_each_is_stored_once() {
    const RECORDS: usize = 300;
    let server = start_server(true).await;
    let publisher = Arc::new(GrpcPublisher::new(&server.url, Duration::from_secs(10)).unwrap());
    let records: Vec<Record> = (0..RECORDS)
        .map(|n| record(&format!("r-{n:04}"), &format!("{{\"n\":{n}}}")))
        .collect();
    let answers = join_all(records.iter().map(|r| publisher.publish(r))).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a, Ok(a) if !a.duplicate))
        .collect();
    assert!(refused.is_empty(), "each record stored as new: {refused:?}");
    let calls =
        server.store_calls.load(Ordering::SeqCst) + server.batch_calls.load(Ordering::SeqCst);
    assert!(
        server.batch_calls.load(Ordering::SeqCst) >= 1 && calls < RECORDS,
        "{RECORDS} records at once went in {calls} calls"
    );
    let mut expected: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(stored_ids(&server).await, expected);
}
