//! The three middleware paths behind one trait: each takes a record to durable acceptance
//! (`publish`) and runs whatever carries it on to the store. Adding a path is one file here.

pub mod grpc;
pub mod nats;
pub mod rabbitmq;

use futures::future::BoxFuture;
use thiserror::Error;

use crate::record::Record;
use crate::route::Route;

/// Durable acceptance, as far as the path can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The middleware saw this id before (gRPC: already stored; NATS: within the stream's
    /// duplicate window). RabbitMQ cannot tell, and always says false.
    pub duplicate: bool,
    /// The broker dropped this send as a duplicate, so no consumer will ever see it: the
    /// entry counts it as settled itself (NATS deduplication). False when the store side
    /// counts the duplicate (gRPC) or cannot know (RabbitMQ).
    pub dropped_by_broker: bool,
}

/// Why a record was not durably accepted. Every variant is answered with 503: the record
/// may be resent with the same id.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{route} is not connected ({why})")]
    NotConnected { route: Route, why: String },
    #[error("{route} did not confirm within {timeout_ms} ms")]
    Timeout { route: Route, timeout_ms: u64 },
    #[error("{route} refused the record: {why}")]
    Refused { route: Route, why: String },
}

/// One middleware path's entry side.
pub trait Publisher: Send + Sync + 'static {
    fn route(&self) -> Route;
    /// Resolves once the middleware has durably accepted `record`, or says why not.
    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>>;
    /// Whether the path is connected now (for `/ready`).
    fn ready(&self) -> bool;
}
