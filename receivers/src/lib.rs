//! receivers: the front-door balancer, the three middleware paths (gRPC, RabbitMQ, NATS
//! JetStream), the store they all end in, and the latency histograms that compare them.
//!
//! Data flow: `http::balancer` -> `http::entry` (one per path) -> `paths::{grpc,
//! rabbitmq, nats}` -> `store`; every stage reports to `stats`, served by `http::read`
//! and written by `stats::reports`. `record` holds the checks every hop applies; `serve`
//! the accept loop and limits every listener has (the HTTP edge's and the gRPC path's);
//! `redact` keeps secrets out of logs; `app` only wires the parts together.

pub mod app;
pub mod config;
pub mod http;
pub mod paths;
pub mod record;
pub mod redact;
pub mod serve;
pub mod stats;
pub mod store;

pub use app::{Addrs, Running, run, start};
pub use config::Config;
pub use contract::Route;
