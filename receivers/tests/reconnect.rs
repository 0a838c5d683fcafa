//! The RabbitMQ path against a broker it loses: a loopback TCP relay between the receivers
//! and the real broker either cuts every connection it carries (both ends see their peer
//! close, as in a broker crash) or freezes them (nothing more goes through either way, as in
//! a network partition or a hung broker).
//!
//! - After each of several cuts with publishes in flight, the entry accepts and the
//!   consumer stores a new record within a deadline.
//! - When the connections a path has go silent (they stay open, nothing passes) but new
//!   ones would work, as after a partition or with a half-open socket, each path notices
//!   within a few of its `--broker-heartbeat` intervals and connects again. The brokers'
//!   own defaults (RabbitMQ's 60 s heartbeat, async-nats's 60 s ping) held the path at 503
//!   for 2 minutes or more.
//! - With the broker frozen, a graceful shutdown still finishes well within
//!   `--shutdown-timeout`: abandoning a connection never waits for the broker's Close-Ok.
//!   lapin's `Connection::close` waits for it with no limit, and also for ever when the
//!   close reaches lapin's internal task after that task has stopped with the connection;
//!   the same unbounded close once held up a publisher's reconnect past 60 s in CI.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Harness, stored_ids};
use receivers::Route;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How many times the connections are cut.
const CUTS: usize = 5;
/// How long, after a cut, the path has to accept and then store a new record.
const RECOVERY: Duration = Duration::from_secs(30);
/// Posters kept busy while the connections are cut, so publishes are in flight at the cut.
const POSTERS: usize = 16;

/// A relay on 127.0.0.1 to a broker's port that can cut or freeze every connection.
struct Relay {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Cancelled to freeze the links that hold it: each link takes the one current when it
    /// is accepted.
    frozen: Arc<Mutex<CancellationToken>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: &'static str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let frozen = Arc::new(Mutex::new(CancellationToken::new()));
        let (kept, freeze) = (Arc::clone(&links), Arc::clone(&frozen));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let freeze = freeze.lock().unwrap().clone();
                let link = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Both sockets stay open, and nothing more passes: a partition.
                        _ = freeze.cancelled() => std::future::pending::<()>().await,
                    }
                });
                kept.lock().unwrap().push(link);
            }
        });
        Relay {
            addr,
            links,
            frozen,
            accept,
        }
    }

    fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Drops every connection carried so far; returns how many were still open.
    fn cut(&self) -> usize {
        let links: Vec<_> = self.links.lock().unwrap().drain(..).collect();
        let live = links.iter().filter(|l| !l.is_finished()).count();
        for link in links {
            link.abort();
        }
        live
    }

    /// From now on nothing passes either way, on the connections open and on new ones.
    fn freeze(&self) {
        self.frozen.lock().unwrap().cancel();
    }

    /// Nothing more passes on the connections open now; new ones work.
    fn silence(&self) {
        let open = std::mem::take(&mut *self.frozen.lock().unwrap());
        open.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn post(http: &reqwest::Client, url: &str, id: &str) -> bool {
    common::post_accepted(http, url, id, format!("{{\"id\":\"{id}\"}}")).await
}

/// Waits until `id` is in the store, or fails with `what` at `deadline`.
async fn stored_by(h: &Harness, id: &str, deadline: Instant, what: &str) {
    while !stored_ids(&h.store_path()).iter().any(|s| s == id) {
        assert!(Instant::now() < deadline, "{id} was not stored: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rabbitmq_path_comes_back_after_every_cut_with_publishes_in_flight() {
    common::require_brokers();
    let relay = Relay::start("127.0.0.1:5672").await;
    let h = Harness::start_with(|c| {
        c.paths = vec![Route::Rabbitmq];
        c.per_path.rabbitmq.url = relay.amqp_url();
    })
    .await;
    let entry = h.entry(Route::Rabbitmq);
    let http = reqwest::Client::new();

    // Posters keep publishes in flight until the cuts are over; what they get is not
    // checked here (a cut fails some of them, as it should): only that the path comes back.
    let stop = CancellationToken::new();
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let (http, entry, stop) = (http.clone(), entry.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.is_cancelled() {
                    post(&http, &entry, &format!("busy-{p}-{n}")).await;
                    n += 1;
                }
            })
        })
        .collect();

    for cut in 0..CUTS {
        let live = relay.cut();
        assert!(
            live >= 2,
            "cut {cut}: {live} connections were open, not the publisher's and the consumer's"
        );
        let id = format!("after-cut-{cut}");
        let deadline = Instant::now() + RECOVERY;
        while !post(&http, &entry, &id).await {
            assert!(
                Instant::now() < deadline,
                "cut {cut}: the RabbitMQ entry accepted nothing within {RECOVERY:?}: its publisher never reconnected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let what = format!("within {RECOVERY:?} of cut {cut}: the consumer never reconnected");
        stored_by(&h, &id, deadline, &what).await;
    }
    stop.cancel();
    for poster in posters {
        poster.await.unwrap();
    }
}

/// The broker heartbeat these tests run with: RabbitMQ's connection is dropped after 2 of
/// them without a word from the broker, NATS's after 3 unanswered pings.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a path whose connections went silent has to accept and store a new record:
/// well under the 2 minutes the brokers' default heartbeats take.
const SILENT_RECOVERY: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_whose_connections_go_silent_connects_again() {
    for route in [Route::Rabbitmq, Route::Nats] {
        connects_again_after_going_silent(route).await;
    }
}

/// The address of the broker that a relay for `route` forwards to.
fn broker_addr(route: Route) -> &'static str {
    match route {
        Route::Nats => "127.0.0.1:4222",
        _ => "127.0.0.1:5672",
    }
}

/// Runs `route` alone, reaching its broker through `relay`.
fn point_at(c: &mut receivers::Config, route: Route, relay: &Relay) {
    c.paths = vec![route];
    match route {
        Route::Nats => c.per_path.nats.url = format!("nats://{}", relay.addr),
        _ => c.per_path.rabbitmq.url = relay.amqp_url(),
    }
}

async fn connects_again_after_going_silent(route: Route) {
    common::require_brokers();
    let relay = Relay::start(broker_addr(route)).await;
    let h = Harness::start_with(|c| {
        point_at(c, route, &relay);
        c.broker_heartbeat = HEARTBEAT;
    })
    .await;
    let http = reqwest::Client::new();
    let entry = h.entry(route);
    assert!(
        post(&http, &entry, "before-silence").await,
        "{route}: not accepted through the relay"
    );
    let what = format!("{route}: the path does not work through the relay");
    stored_by(&h, "before-silence", Instant::now() + RECOVERY, &what).await;

    relay.silence();
    let started = Instant::now();
    let deadline = started + SILENT_RECOVERY;
    // Each attempt before the path connects again ends in a 503 after --publish-timeout.
    while !post(&http, &entry, "after-silence").await {
        assert!(
            Instant::now() < deadline,
            "{route}: nothing accepted within {SILENT_RECOVERY:?} of its connections going silent: the path never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let what = format!(
        "{route}: within {SILENT_RECOVERY:?} of going silent: the consumer never connected again"
    );
    stored_by(&h, "after-silence", deadline, &what).await;
    eprintln!(
        "{route}: stored again {:?} after its connections went silent",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_does_not_hold_up_a_graceful_shutdown() {
    for route in [Route::Rabbitmq, Route::Nats] {
        shutdown_with_the_broker_frozen(route).await;
    }
}

/// Starts `route` alone through a relay, freezes the relay once a record went through, and
/// checks that a graceful shutdown does not wait on the broker.
async fn shutdown_with_the_broker_frozen(route: Route) {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    common::require_brokers();
    let relay = Relay::start(broker_addr(route)).await;
    let mut h = Harness::start_with(|c| {
        point_at(c, route, &relay);
        c.shutdown_timeout = SHUTDOWN_TIMEOUT;
    })
    .await;
    // Both ends connected and working: a record goes all the way to the store.
    let http = reqwest::Client::new();
    assert!(
        post(&http, &h.entry(route), "before-freeze").await,
        "{route}: not accepted through the relay"
    );
    let deadline = Instant::now() + RECOVERY;
    let what = format!("{route}: the path does not work through the relay");
    stored_by(&h, "before-freeze", deadline, &what).await;

    relay.freeze();
    let started = Instant::now();
    let stopping = tokio::time::timeout(SHUTDOWN_TIMEOUT * 2, h.stop()).await;
    let took = started.elapsed();
    assert!(
        stopping.is_ok(),
        "{route}: the receivers did not stop within twice --shutdown-timeout"
    );
    // Waiting out the whole --shutdown-timeout is the defect: only the closes were left.
    assert!(
        took < SHUTDOWN_TIMEOUT / 3,
        "{route}: a graceful shutdown with the broker frozen took {took:?} of its {SHUTDOWN_TIMEOUT:?}: something waited on the broker"
    );
    eprintln!("{route}: stopped in {took:?} with the broker frozen");
}
