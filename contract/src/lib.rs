//! The contract between the receivers and loadgen: every document that crosses the HTTP
//! boundary, as one set of types both crates use, so a renamed field is a compile error
//! rather than "lost" records at run time.
//!
//! `route` names the paths and stages; `stats` is `GET /stats`; `records` is
//! `GET /records`; `answers` are the bodies of `POST /` (201 and errors).

pub mod answers;
pub mod records;
pub mod route;
pub mod stats;

pub use answers::{Created, ErrorBody};
pub use records::{LedgerRow, RecordsPage};
pub use route::{Route, Stage};
pub use stats::{RouteStats, SCHEMA_VERSION, StageStats, StatsSnapshot};
