//! The three middleware paths behind one trait: each takes a record to durable acceptance
//! (`publish`) and runs whatever carries it on to the store. Each path's file holds its
//! flags, its set-up check and its `start`; `start` here starts any of them. What the
//! paths share lives here once: the retry-with-backoff loop, and `Sink::receive`, which
//! checks, stores and books one received record.

pub mod group;
pub mod grpc;
pub mod nats;
pub mod rabbitmq;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::record::{self, Invalid, Record, now_us};
use crate::redact::redact;
use crate::serve::{Limits, Stopped};
use crate::stats::{Stats, StoreOutcome};
use crate::store::{Inserted, Store, StoreError};
use contract::Route;

/// Every path's own flags, each path's in its file.
#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    #[command(flatten)]
    pub grpc: grpc::GrpcArgs,
    #[command(flatten)]
    pub rabbitmq: rabbitmq::RabbitArgs,
    #[command(flatten)]
    pub nats: nats::NatsArgs,
}

/// What every path's start needs besides its own flags.
#[derive(Clone)]
pub struct PathContext {
    pub sink: Sink,
    /// The store side's stop: cancelled once every HTTP request has been answered.
    pub shutdown: CancellationToken,
    /// The store side's tasks (consumers, publishers' connections), awaited at shutdown.
    pub tracker: TaskTracker,
    /// Whether this process runs the store side (consumers, the gRPC server).
    pub consumers: bool,
    /// Whether this process runs the entries.
    pub entries: bool,
    pub publish_timeout: Duration,
    /// How long a client has to send its whole body (also a gRPC call's bound, with the
    /// publish timeout).
    pub body_read_timeout: Duration,
    /// How often an idle broker connection is checked (RabbitMQ's heartbeat, NATS's ping).
    pub broker_heartbeat: Duration,
    /// The limits of every listener, the gRPC server's too.
    pub limits: Limits,
}

/// A started path: its entry side (unless `--no-entries`) and its store side's server,
/// when it has one (the gRPC path's), with the address that server bound.
pub struct StartedPath {
    pub route: Route,
    pub entry: Option<EntrySide>,
    pub server: Option<(SocketAddr, JoinHandle<Stopped>)>,
}

/// What a path's HTTP entry needs from the path: its publisher, and where to listen.
pub struct EntrySide {
    pub publisher: Arc<dyn Publisher>,
    pub addr: SocketAddr,
    /// The flag that sets `addr`, for the message when it cannot be bound.
    pub flag: &'static str,
}

/// Starts `route`'s path: its set-up checked, its store side (unless `--no-consumers`)
/// and its entry's publisher (unless `--no-entries`).
pub async fn start(
    route: Route,
    args: &PathArgs,
    context: &PathContext,
) -> anyhow::Result<StartedPath> {
    match route {
        Route::Grpc => grpc::start(&args.grpc, context).await,
        Route::Rabbitmq => rabbitmq::start(&args.rabbitmq, context).await,
        Route::Nats => nats::start(&args.nats, context).await,
    }
}

/// Durable acceptance, as far as the path can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The middleware saw this id before (gRPC: already stored; NATS: a record published
    /// alone, within the stream's duplicate window). RabbitMQ cannot tell, and always says
    /// false; nor can NATS for a record that went in a batch.
    pub duplicate: bool,
    /// The broker dropped this send as a duplicate, so no consumer will ever see it: the
    /// entry counts it as settled itself (NATS deduplication). False when the store side
    /// counts the duplicate (gRPC) or cannot know (RabbitMQ).
    pub dropped_by_broker: bool,
}

/// Why a record was not durably accepted. `NotConnected`, `Timeout` and `Refused` are
/// answered with 503 (resend with the same id); `Conflict` with 409; `Invalid` with 400.
/// The `why` texts are for the log (redacted), never for the client.
#[derive(Debug, Clone, Error)]
pub enum PublishError {
    #[error("{route} is not connected ({why})")]
    NotConnected { route: Route, why: String },
    #[error("{route} did not confirm within {timeout_ms} ms")]
    Timeout { route: Route, timeout_ms: u64 },
    #[error("{route} refused the record: {why}")]
    Refused { route: Route, why: String },
    #[error("{route}: the id is stored already with another body")]
    Conflict { route: Route },
    #[error("{route}: the store side refused the record as invalid: {why}")]
    Invalid { route: Route, why: String },
}

/// One middleware path's entry side.
pub trait Publisher: Send + Sync + 'static {
    fn route(&self) -> Route;
    /// Resolves once the middleware has durably accepted `record`, or says why not.
    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>>;
    /// Whether the path can take a record now (for `/ready`); answers within about a second.
    fn ready(&self) -> BoxFuture<'_, bool>;
}

/// A doubling delay between attempts, reset by a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay to wait now; the one after it is twice as long, up to the maximum.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// Waits the next delay unless `shutdown` comes first; false on shutdown.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.step();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Runs `attempt` again and again until `shutdown`: the reconnect loop of every consumer and
/// publisher. An attempt that ends cleanly (the broker closed, shutdown) restarts at once
/// with the delay reset; one that fails restarts after a doubling delay, 200 ms to 5 s.
pub async fn keep_running<F, Fut>(what: &str, shutdown: &CancellationToken, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        match attempt().await {
            Ok(()) => backoff.reset(),
            Err(error) => tracing::warn!("{what}: {}; retrying", redact(&error)),
        }
        if shutdown.is_cancelled() || !backoff.wait(shutdown).await {
            break;
        }
    }
}

/// One record as the store side received it from a broker or a gRPC call, unchecked.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: Option<String>,
    pub payload: Bytes,
    /// From the entry's header; `None` from a publisher that is not the entry.
    pub accepted_at_us: Option<i64>,
    /// The broker delivered it before (its duplicate then settles no accepted send).
    pub redelivered: bool,
}

/// What became of a received record.
#[derive(Debug)]
pub enum Disposition {
    /// Committed: new, a duplicate or a conflict (booked in the stats already).
    Settled(Inserted),
    /// It failed the checks: the caller dead-letters it, then books it with `dead_lettered`.
    Invalid(Invalid),
    /// The store did not commit: the caller backs off and has it redelivered.
    StoreFailed(StoreError),
}

/// Where every path's store side ends: the store, the stats, and the body limit the checks use.
#[derive(Clone)]
pub struct Sink {
    pub store: Arc<dyn Store>,
    pub stats: Arc<Stats>,
    pub body_limit: usize,
}

impl Sink {
    /// Checks `received` with the entry's rules, stores it and books the outcome.
    /// `answered`: a conflict is told to the client (gRPC), so it settles no accepted send.
    pub async fn receive(&self, route: Route, received: Received, answered: bool) -> Disposition {
        let Received {
            id,
            payload,
            accepted_at_us,
            redelivered,
        } = received;
        if let Err(invalid) = record::check(id.as_deref(), &payload, self.body_limit) {
            tracing::warn!(%route, id = id.as_deref().unwrap_or("(none)"), "refusing a record: {invalid}");
            return Disposition::Invalid(invalid);
        }
        let record = Record {
            id: id.unwrap_or_default(),
            payload,
            accepted_at_us: accepted_at_us.unwrap_or_else(now_us),
        };
        match self.store.insert(route, record).await {
            Ok(inserted) => {
                // Booked at the commit, so /stats never lags the store.
                self.stats
                    .stored(route, inserted, accepted_at_us, redelivered, answered);
                Disposition::Settled(inserted)
            }
            Err(error) => {
                self.stats.store_failed(route);
                tracing::error!(%route, "the store did not commit a record: {}", redact(&error.to_string()));
                Disposition::StoreFailed(error)
            }
        }
    }

    /// Books a record that was dead-lettered (or refused to its caller).
    pub fn dead_lettered(&self, route: Route) {
        self.stats.store_outcome(route, StoreOutcome::DeadLettered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let steps: Vec<u128> = (0..4).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }
}
