//! Fault test: while a bounded stream of records is posted, restart RabbitMQ, then NATS, then
//! kill the consumers (a real SIGKILL of their process) and start them again. After each
//! fault, a record sent straight to that path's entry (not through the front door, which
//! would route around a path that never recovers) gets 201 within a deadline and is stored
//! by that path: so each path's publisher and consumer reconnect. Afterwards every record
//! that got a 2xx is stored exactly once, and every one that did not is resent until it is,
//! and then stored too.
//!
//! The scenario runs twice: on SQLite, then on the shared PostgreSQL store, where the
//! PostgreSQL server is also restarted mid-run (after which each path must store again).
//!
//! It is the only test in this file: cargo runs test binaries one at a time, so restarting the
//! shared brokers here cannot disturb another test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Names, eventually, require_brokers, stored_rows, test_config};
use receivers::store::StoreLocation;
use testkit::TestDatabase;

/// At most this many records in the first pass, at about 100 a second.
const MAX_RECORDS: usize = 3000;
const SENDERS: usize = 4;

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A child process that is killed if the test ends early, so no consumer outlives it.
struct Consumers(Child);

impl Drop for Consumers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the scenario stores: an SQLite file, or a database on the project's PostgreSQL.
enum Backing {
    Sqlite(std::path::PathBuf),
    Postgres(TestDatabase),
}

impl Backing {
    fn flag(&self) -> String {
        match self {
            Backing::Sqlite(path) => path.display().to_string(),
            Backing::Postgres(db) => db.url.clone(),
        }
    }

    fn location(&self) -> StoreLocation {
        self.flag().parse().expect("a store location")
    }

    /// (id, route, payload) of every stored record.
    fn rows(&self) -> Vec<(String, String, String)> {
        match self {
            Backing::Sqlite(path) => stored_rows(path),
            Backing::Postgres(db) => db.rows(),
        }
    }
}

/// The store side (consumers and gRPC server) as its own process, so it can be killed.
fn start_consumers(
    names: &Names,
    dir: &std::path::Path,
    store: &Backing,
    grpc_port: u16,
    generation: u32,
) -> Consumers {
    let log = std::fs::File::create(dir.join(format!("consumers-{generation}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_receivers"))
        .args([
            "--no-entries",
            "--grpc-addr",
            &format!("127.0.0.1:{grpc_port}"),
        ])
        .args([
            "--queue",
            &names.queue,
            "--stream",
            &names.stream,
            "--subject",
            &names.subject,
        ])
        .args(["--consumer", &names.consumer, "--nats-ack-wait-secs", "2"])
        .arg("--store")
        .arg(store.flag())
        .arg("--reports")
        .arg(dir.join("reports"))
        .env("AMQP_URL", testkit::AMQP_URL)
        .env("NATS_URL", testkit::NATS_URL)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map(Consumers)
        .expect("the receivers binary starts")
}

/// `scripts/<script> <command>`, which must succeed (`brokers restart-nats`, `postgres restart`).
fn script(script: &str, command: &str) {
    let status = Command::new(workspace_root().join("scripts").join(script))
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("scripts/{script} runs: {e}"));
    assert!(status.success(), "scripts/{script} {command} failed");
}

async fn wait_for_port(port: u16) {
    eventually(
        Duration::from_secs(30),
        &format!("the consumers' gRPC server on port {port}"),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
    .await;
}

/// The last lines of every consumers log in `dir`, for a failure message: what the store
/// side said about its reconnects is the first thing to read when a path never recovers.
fn consumer_logs(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for generation in 1..=2 {
        let path = dir.join(format!("consumers-{generation}.log"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        out.push_str(&format!(
            "\n--- last lines of {}:\n{}",
            path.display(),
            tail.join("\n")
        ));
    }
    out
}

/// After a fault: a record sent straight to `route`'s entry is accepted within 60 s, and
/// that path's consumer stores it within 60 s more. Returns its id.
async fn path_recovers(
    http: &reqwest::Client,
    running: &receivers::Running,
    route: receivers::Route,
    n: usize,
    store: &Backing,
    dir: &std::path::Path,
) -> String {
    let id = format!("fault-{n}");
    let entry = format!("http://{}/", running.addrs.entry(route).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !post(http, &entry, &id).await {
        assert!(
            Instant::now() < deadline,
            "the {route} entry did not accept a record within 60 s of the fault: its publisher never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = || {
        store
            .rows()
            .iter()
            .any(|(stored, by, _)| *stored == id && by == route.name())
    };
    while !stored() {
        assert!(
            Instant::now() < deadline,
            "{id} was not stored by the {route} path within 60 s: its consumer never reconnected{}",
            consumer_logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

#[derive(Default)]
struct Outcomes {
    accepted: BTreeSet<String>,
    failed: BTreeSet<String>,
}

async fn post(http: &reqwest::Client, url: &str, id: &str) -> bool {
    let n = id.trim_start_matches("fault-");
    common::post_accepted(http, url, id, format!("{{\"n\":{n}}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_store_and_consumer_restarts_lose_nothing_and_store_each_record_once() {
    require_brokers();
    let dir = tempfile::tempdir().unwrap();
    scenario(Backing::Sqlite(dir.path().join("store.db")), dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    scenario(Backing::Postgres(TestDatabase::create()), dir.path()).await;
}

async fn scenario(store: Backing, dir: &std::path::Path) {
    let names = Names::unique();
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut consumers = start_consumers(&names, dir, &store, grpc_port, 1);
    wait_for_port(grpc_port).await;

    let mut config = test_config(&names, dir);
    config.store = store.location();
    config.no_consumers = true;
    config.per_path.grpc.url = Some(format!("http://127.0.0.1:{grpc_port}"));
    config.publish_timeout_ms = 2000;
    let running = receivers::start(config).await.expect("entries start");
    let front = format!("http://{}/", running.addrs.balancer.unwrap());
    // The entries directly as well as the front door: the front door retries a refused path
    // elsewhere, which would hide the faults from the senders.
    let targets: Arc<Vec<String>> = Arc::new(
        receivers::Route::ALL
            .iter()
            .map(|r| format!("http://{}/", running.addrs.entry(*r).unwrap()))
            .chain([front.clone()])
            .collect(),
    );
    let http = reqwest::Client::new();

    // A bounded stream over the entries and the front door, until the faults are over.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (http, targets, stop, next, count) = (
            http.clone(),
            targets.clone(),
            stop.clone(),
            next.clone(),
            accepted_so_far.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut outcomes = Outcomes::default();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= MAX_RECORDS {
                    break;
                }
                let id = format!("fault-{n}");
                if post(&http, &targets[n % targets.len()], &id).await {
                    outcomes.accepted.insert(id);
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    outcomes.failed.insert(id);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            outcomes
        }));
    }
    let progress = |at_least: usize| {
        let count = accepted_so_far.clone();
        async move {
            eventually(
                Duration::from_secs(60),
                &format!("{at_least} records accepted"),
                || count.load(Ordering::Relaxed) >= at_least,
            )
            .await
        }
    };

    // Ids for the recovery probes, past the stream's bound so they never collide with it.
    let mut probe = MAX_RECORDS;
    let mut probes = BTreeSet::new();
    let mut recovers = async |route| {
        probe += 1;
        path_recovers(&http, &running, route, probe, &store, dir).await
    };
    progress(100).await;
    tokio::task::spawn_blocking(|| script("brokers", "restart-rabbitmq"))
        .await
        .unwrap();
    probes.insert(recovers(receivers::Route::Rabbitmq).await);
    let after_rabbit = accepted_so_far.load(Ordering::Relaxed);
    progress(after_rabbit + 100).await;
    tokio::task::spawn_blocking(|| script("brokers", "restart-nats"))
        .await
        .unwrap();
    probes.insert(recovers(receivers::Route::Nats).await);
    let after_nats = accepted_so_far.load(Ordering::Relaxed);
    progress(after_nats + 100).await;
    consumers.0.kill().expect("SIGKILL the consumers");
    consumers.0.wait().unwrap();
    let after_kill = accepted_so_far.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await; // posts meanwhile pile up in the brokers
    let consumers = start_consumers(&names, dir, &store, grpc_port, 2);
    wait_for_port(grpc_port).await;
    for route in receivers::Route::ALL {
        probes.insert(recovers(route).await);
    }
    progress(after_kill + 100).await;
    if let Backing::Postgres(_) = store {
        tokio::task::spawn_blocking(|| script("postgres", "restart"))
            .await
            .unwrap();
        for route in receivers::Route::ALL {
            probes.insert(recovers(route).await);
        }
        let after_restart = accepted_so_far.load(Ordering::Relaxed);
        progress(after_restart + 100).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = Outcomes::default();
    for sender in senders {
        let part = sender.await.unwrap();
        outcomes.accepted.extend(part.accepted);
        outcomes.failed.extend(part.failed);
    }
    let sent = outcomes.accepted.len() + outcomes.failed.len();
    assert!(
        sent < MAX_RECORDS,
        "the stream ran to its bound before the faults ended"
    );

    // Every record that was not accepted can be resent, with its key, until it is.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resent = BTreeSet::new();
    while let Some(id) = outcomes.failed.iter().next().cloned() {
        assert!(
            Instant::now() < deadline,
            "{} records still refused after 60 s",
            outcomes.failed.len()
        );
        if post(&http, &front, &id).await {
            outcomes.failed.remove(&id);
            resent.insert(id);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Everything accepted ends up in the store, each id once, nothing else.
    let mut expected: BTreeSet<String> = outcomes.accepted.union(&resent).cloned().collect();
    expected.extend(probes);
    eventually(
        Duration::from_secs(60),
        "every accepted record stored",
        || store.rows().len() >= expected.len(),
    )
    .await;
    let rows = store.rows();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _, payload) in &rows {
        *per_id.entry(id.as_str()).or_default() += 1;
        let n: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(format!("fault-{}", n["n"]), *id, "payload and id disagree");
    }
    let stored: BTreeSet<String> = per_id.keys().map(|s| s.to_string()).collect();
    let missing: Vec<_> = expected.difference(&stored).take(10).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
    assert_eq!(
        stored, expected,
        "the store holds exactly the accepted records"
    );
    assert!(per_id.values().all(|c| *c == 1));
    assert!(
        !resent.is_empty(),
        "no record was refused: the faults never reached the traffic"
    );
    eprintln!(
        "fault test ({}): {sent} sent, {} accepted first time, {} refused and resent, {} stored",
        match store {
            Backing::Sqlite(_) => "SQLite",
            Backing::Postgres(_) => "PostgreSQL, restarted mid-run",
        },
        outcomes.accepted.len(),
        resent.len(),
        rows.len()
    );

    running.shutdown();
    running.wait().await.expect("entries stop cleanly");
    drop(consumers);
    names.remove_from_brokers();
}
