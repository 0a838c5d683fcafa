//! loadgen: replays a traffic file against an HTTP target with Goose users, writes
//! `reports/<run-id>/`, and judges the run against gate rules for CI.
//!
//! The folders follow the flow, each layer importing only those below it:
//! - input: `cli/` (flags as parsed, checked settings, the gate file), `traffic`,
//!   `scenario/` (the flows users follow), `users_plan`, `duration` (flags and data,
//!   checked before anything is sent);
//! - the model: `model`, the serde types of `loadgen.json` (a leaf);
//! - `replay`: the Goose scenarios, which record into `record`; `arrival`: the open
//!   model's schedule of tickets, waited for on `timer`'s thread; `connections`,
//!   `throttle`: the client's cap and rate; `attack`: Goose's configuration, the run-time
//!   clock and how Goose's run ended;
//! - `record/`: per-interval HdrHistograms, the `.hlog`, live counters, percentiles;
//! - `ledger/`: the sends and their reconciliation with the receivers;
//! - `judge/`: rules, the gate, the baseline's bootstrap, live checks, the history;
//! - `render/`: pure renderers, model in, text out (maud, quick-junit, terminal tables);
//! - `output`: the report folder, the only module that reads or writes it: one `build`
//!   of a report for a run and a merge, one `write`;
//! - `run`: a run's phases; `merge`: joins the folders of a run's workers into one run;
//!   `versus`: `loadgen compare`, the A/B gate's verdict on pooled runs of two builds.

pub mod arrival;
pub mod attack;
pub mod cli;
pub mod connections;
pub mod duration;
pub mod error;
pub mod judge;
pub mod ledger;
pub mod merge;
pub mod model;
pub mod output;
pub mod record;
pub mod render;
pub mod replay;
pub mod run;
pub mod scenario;
pub mod throttle;
pub mod timer;
pub mod traffic;
pub mod users_plan;
pub mod versus;

pub use cli::{Cli, Settings};
pub use error::LoadgenError;
pub use run::{Outcome, run};
