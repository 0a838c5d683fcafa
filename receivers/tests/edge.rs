//! The HTTP edge in-process, without brokers: the entry's and the front door's routers
//! (`entry_app`, `balancer_app`) served on port 0 with a publisher fake (pure logic stands
//! in for a path here; the paths themselves are tested against the real brokers) and a real
//! SQLite store. Every refusal is JSON, nothing refused is published, and the front door
//! names a keyless record before its first attempt.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use common::serve_on_port_0;
use futures::future::BoxFuture;
use receivers::http::balancer::{Balancer, Hop, balancer_app};
use receivers::http::entry::{Entry, entry_app};
use receivers::http::read::ReadState;
use receivers::paths::{Accepted, PublishError, Publisher};
use receivers::record::Record;
use receivers::stats::Stats;
use receivers::store::SqliteStore;
use receivers::{Route, paths};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A path as the edge sees it. Up (`default`), it accepts every record, except ids starting
/// with `conflict`, which it answers as the gRPC server answers a reused id with another body.
/// Down, its middleware is unreachable and every publish fails. Either way it keeps the ids
/// it was handed: `published` those it accepted, `tried` every one.
#[derive(Default)]
struct FakePublisher {
    down: bool,
    published: Mutex<Vec<String>>,
    tried: Mutex<Vec<String>>,
}

impl FakePublisher {
    fn down() -> FakePublisher {
        FakePublisher {
            down: true,
            ..FakePublisher::default()
        }
    }
}

impl Publisher for FakePublisher {
    fn route(&self) -> Route {
        if self.down {
            Route::Rabbitmq
        } else {
            Route::Grpc
        }
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async move {
            self.tried.lock().unwrap().push(record.id.clone());
            if self.down {
                return Err(PublishError::NotConnected {
                    route: self.route(),
                    why: "the fake broker is down".into(),
                });
            }
            if record.id.starts_with("conflict") {
                return Err(PublishError::Conflict { route: Route::Grpc });
            }
            self.published.lock().unwrap().push(record.id.clone());
            Ok(Accepted {
                duplicate: false,
                dropped_by_broker: false,
            })
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        let up = !self.down;
        Box::pin(async move { up })
    }
}

/// An entry over `publisher`, with small limits.
fn entry_over(publisher: Arc<dyn Publisher>, stats: &Arc<Stats>) -> Arc<Entry> {
    Arc::new(Entry {
        publisher,
        stats: Arc::clone(stats),
        permits: Arc::new(Semaphore::new(16)),
        max_in_flight: 16,
        body_limit: 1024,
        body_read_timeout: Duration::from_millis(300),
        publish_timeout: Duration::from_secs(1),
        slowdown: 1.0,
    })
}

struct Edge {
    url: String,
    publisher: Arc<FakePublisher>,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_entry() -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let stats = Arc::new(Stats::start("edge".into(), vec![Route::Grpc]));
    let publisher = Arc::new(FakePublisher::default());
    let read = Arc::new(ReadState {
        store,
        stats: Arc::clone(&stats),
        publishers: vec![publisher.clone() as Arc<dyn paths::Publisher>],
    });
    let entry = entry_over(publisher.clone(), &stats);
    let stop = CancellationToken::new();
    let url = serve_on_port_0(entry_app(entry, read), &stop).await;
    Edge {
        url,
        publisher,
        _dir: dir,
        stop,
    }
}

async fn post(
    url: &str,
    content_type: Option<&str>,
    key: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Name, Content-Type, Idempotency-Key, body, expected status and error code.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
);

#[tokio::test]
async fn the_entry_refuses_bad_input_with_json_and_publishes_nothing_of_it() {
    let edge = start_entry().await;
    let json = Some("application/json");
    let big = format!("{{\"big\":\"{}\"}}", "x".repeat(2000));
    let cases: [Case; 8] = [
        (
            "malformed",
            json,
            Some("k1"),
            "{\"a\":",
            400,
            "malformed_json",
        ),
        ("array", json, Some("k2"), "[1,2]", 400, "not_an_object"),
        ("empty", json, Some("k3"), "", 400, "empty_body"),
        ("oversize", json, Some("k4"), &big, 413, "payload_too_large"),
        (
            "text",
            Some("text/plain"),
            Some("k5"),
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "no type",
            None,
            Some("k6"),
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "bad key",
            json,
            Some("has space"),
            "{}",
            400,
            "bad_idempotency_key",
        ),
        (
            "reused key",
            json,
            Some("conflict-1"),
            "{\"b\":2}",
            409,
            "conflict",
        ),
    ];
    for (name, content_type, key, body, status, code) in cases {
        let (got, answer) = post(&edge.url, content_type, key, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(answer["error"], code, "{name}: {answer}");
        assert_eq!(answer["route"], "grpc", "{name}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| m.len() > 20),
            "{name}: {answer}"
        );
    }
    let (status, answer) = post(&edge.url, json, Some("good-1"), "{\"ok\":true}").await;
    assert_eq!((status, answer["id"].as_str()), (201, Some("good-1")));
    assert_eq!(*edge.publisher.published.lock().unwrap(), vec!["good-1"]);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_within_the_body_timeout() {
    let edge = start_entry().await;
    let address = edge.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer within the body timeout, not a hang")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(edge.publisher.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reads_cap_their_limit_and_answer_errors_in_json() {
    let edge = start_entry().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", edge.url)).send();
    let response = get("/?limit=abc").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "bad_query", "{answer}");
    let answer: Value = get("/?limit=1000000").await.unwrap().json().await.unwrap();
    assert_eq!(answer["limit"], 1000, "{answer}");
    let response = get("/records?prefix=x&prefix=").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].is_string(), "{answer}");
    let response = get("/no-such-thing").await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "not_found");
}

/// An upstream entry that answers 503 to its first `fail_first` requests, then 201, and
/// keeps every Idempotency-Key it was sent.
async fn recording_entry(
    fail_first: usize,
    stop: &CancellationToken,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&keys);
    let app = Router::new().route(
        "/",
        routing::post(move |headers: HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let key = headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let mut keys = seen.lock().unwrap();
                keys.push(key.clone());
                if keys.len() <= fail_first {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"error\":\"middleware_timeout\"}".to_string(),
                    )
                } else {
                    (
                        StatusCode::CREATED,
                        format!("{{\"id\":\"{key}\",\"route\":\"nats\"}}"),
                    )
                }
            }
        }),
    );
    (serve_on_port_0(app, stop).await, keys)
}

#[tokio::test]
async fn the_front_door_names_a_keyless_record_before_its_first_attempt() {
    let stop = CancellationToken::new();
    let (failing, failing_keys) = recording_entry(1, &stop).await;
    let (healthy, healthy_keys) = recording_entry(0, &stop).await;
    let balancer = Balancer::new(
        vec![
            (Route::Grpc, Hop::Remote(failing), 1),
            (Route::Nats, Hop::Remote(healthy), 1),
        ],
        Duration::from_secs(5),
        2048,
        Duration::from_secs(1),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let read = Arc::new(ReadState {
        store: Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap()),
        stats: Arc::new(Stats::start("edge".into(), vec![])),
        publishers: vec![],
    });
    let url = serve_on_port_0(balancer_app(Arc::new(balancer), read), &stop).await;
    let (status, answer) = post(&url, Some("application/json"), None, "{\"a\":1}").await;
    assert_eq!(status, 201, "{answer}");
    let first = failing_keys.lock().unwrap().clone();
    let second = healthy_keys.lock().unwrap().clone();
    assert_eq!(first.len(), 1, "the first path was tried once: {first:?}");
    assert_eq!(
        second.len(),
        1,
        "the retry went to the second path: {second:?}"
    );
    assert!(
        first[0].starts_with("gen-"),
        "named by the front door: {first:?}"
    );
    assert_eq!(first, second, "the retry carries the same id");
    assert_eq!(answer["id"], second[0]);
    stop.cancel();
}

/// The front door over entries in its own process calls them without HTTP, with the same
/// promise: a path that answers 503 is skipped, the next gets the record under the same id
/// (named by the front door when the client sent none), and its answer is the client's.
#[tokio::test]
async fn the_front_door_fails_over_between_entries_in_its_own_process() {
    let stop = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::start(
        "edge".into(),
        vec![Route::Rabbitmq, Route::Grpc],
    ));
    let down = Arc::new(FakePublisher::down());
    let up = Arc::new(FakePublisher::default());
    let balancer = Balancer::new(
        vec![
            (
                Route::Rabbitmq,
                Hop::Local(entry_over(down.clone(), &stats)),
                1,
            ),
            (Route::Grpc, Hop::Local(entry_over(up.clone(), &stats)), 1),
        ],
        Duration::from_secs(5),
        2048,
        Duration::from_secs(1),
    )
    .unwrap();
    let read = Arc::new(ReadState {
        store: Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap()),
        stats: Arc::clone(&stats),
        publishers: vec![],
    });
    let url = serve_on_port_0(balancer_app(Arc::new(balancer), read), &stop).await;

    let (status, answer) = post(&url, Some("application/json"), None, "{\"a\":1}").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["route"], "grpc", "{answer}");
    let tried = down.tried.lock().unwrap().clone();
    let published = up.published.lock().unwrap().clone();
    assert_eq!(tried.len(), 1, "the down path was tried once: {tried:?}");
    assert!(
        tried[0].starts_with("gen-"),
        "named by the front door: {tried:?}"
    );
    assert_eq!(published, tried, "the retry carries the same id");
    assert_eq!(answer["id"], published[0]);

    // Cooling off, the down path is skipped; the client's own key goes through unchanged.
    let (status, answer) = post(&url, Some("application/json"), Some("mine-1"), "{}").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["id"], "mine-1");
    assert_eq!(down.tried.lock().unwrap().len(), 1, "skipped while down");

    // The entry's checks still apply: a body that is not JSON is its 415, with its route.
    let (status, answer) = post(&url, Some("text/plain"), Some("mine-2"), "{}").await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["route"], "grpc", "{answer}");
    stop.cancel();
}

/// A path whose publish waits until the test lets it through: it says when a publish has
/// begun, and when a publish future was dropped before it ended.
#[derive(Default)]
struct GatedPublisher {
    begun: tokio::sync::Notify,
    release: tokio::sync::Notify,
    dropped: std::sync::atomic::AtomicBool,
}

/// Sets `dropped` unless disarmed: a publish future dropped mid-way.
struct DropFlag<'a>(&'a std::sync::atomic::AtomicBool, bool);

impl Drop for DropFlag<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Publisher for GatedPublisher {
    fn route(&self) -> Route {
        Route::Nats
    }

    fn publish<'a>(&'a self, _record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async move {
            let mut flag = DropFlag(&self.dropped, true);
            self.begun.notify_one();
            self.release.notified().await;
            flag.1 = false;
            Ok(Accepted {
                duplicate: false,
                dropped_by_broker: false,
            })
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

#[tokio::test]
async fn a_publish_that_completes_after_the_client_left_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let stats = Arc::new(Stats::start("edge".into(), vec![Route::Nats]));
    let publisher = Arc::new(GatedPublisher::default());
    let read = Arc::new(ReadState {
        store,
        stats: Arc::clone(&stats),
        publishers: vec![publisher.clone() as Arc<dyn paths::Publisher>],
    });
    let stop = CancellationToken::new();
    let url = serve_on_port_0(
        entry_app(entry_over(publisher.clone(), &stats), read),
        &stop,
    )
    .await;

    // A client sends a whole record, then leaves once the publish has begun: it half-closes
    // and reads until the server closes the connection, which drops its request's handler.
    let addr = url.trim_start_matches("http://");
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = "{\"a\":1}";
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nidempotency-key: left-1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), publisher.begun.notified())
        .await
        .expect("the publish began within 5 s");
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection within 5 s")
        .unwrap();
    assert!(answer.is_empty(), "no answer reached a client that left");

    // The middleware accepts the record after all: the entry must count it.
    publisher.release.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let nats = &stats.snapshot().await.routes[&Route::Nats];
        if nats.accepted == 1 {
            assert_eq!(nats.rejected, 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a publish that went through was never counted as accepted (dropped mid-way: {})",
            publisher.dropped.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !publisher.dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the publish ran to its end"
    );
    stop.cancel();
}
