//! loadgen: replays a traffic file against an HTTP target with Goose users, writes
//! `reports/<run-id>/`, and judges the run against gate rules for CI.
//!
//! The folders follow the flow, each layer importing only those below it:
//! - input: `cli`, `traffic`, `duration` (flags and data, checked before anything is sent);
//! - the model: `model`, the serde types of `loadgen.json` (a leaf);
//! - `replay`: the Goose scenario, which records into `record`; `arrival`: the open
//!   model's schedule of tickets;
//! - `record/`: per-interval HdrHistograms, the `.hlog`, live counters, percentiles;
//! - `ledger/`: the sends and their reconciliation with the receivers;
//! - `judge/`: rules, the gate, the baseline's bootstrap, live checks, the history;
//! - `render/`: pure renderers, model in, text out (maud, quick-junit, terminal tables);
//! - `run`: orchestration, and the only module that writes files; `merge` joins the
//!   folders of a run's workers and has `run` write the merged one.

pub mod arrival;
pub mod cli;
pub mod connections;
pub mod duration;
pub mod error;
pub mod judge;
pub mod ledger;
pub mod merge;
pub mod model;
pub mod record;
pub mod render;
pub mod replay;
pub mod run;
pub mod throttle;
pub mod traffic;

pub use cli::{Cli, Settings};
pub use error::LoadgenError;
pub use run::{Outcome, run};
