//! receivers: the front-door balancer, the three middleware paths (gRPC, RabbitMQ, NATS
//! JetStream), the store they all end in, and the latency histograms that compare them.
//!
//! Data flow: `balancer` -> `entry` (one per path) -> `paths::{grpc, rabbitmq, nats}` ->
//! `store`; every stage reports to `stats`, served by `read` and written by `reports`.
//! `record` holds the checks every hop applies; `serve` the limits every listener has;
//! `redact` keeps secrets out of logs.

pub mod app;
pub mod balancer;
pub mod config;
pub mod entry;
pub mod error;
pub mod paths;
pub mod prometheus;
pub mod read;
pub mod record;
pub mod redact;
pub mod reports;
pub mod route;
pub mod serve;
pub mod stats;
pub mod store;

pub use app::{Addrs, Running, run, start};
pub use config::Config;
pub use route::Route;
