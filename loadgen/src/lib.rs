//! loadgen: replays a traffic file against an HTTP target with Goose users, writes
//! `reports/<run-id>/`, and judges the run against gate rules for CI.
//!
//! Layers, each importing only those below it:
//! - the model: `model` (the serde types of `loadgen.json`);
//! - computations: `intervals` (per-interval HdrHistograms), `hlog` (the interval log),
//!   `summary` (percentiles), `compare` (the bootstrap), `gate` (verdicts), `delivery`
//!   (reconciliation), `history` (trends and change points), `rule`, `replay`, `sent`;
//! - pure renderers, model in, text out: `html` and `svg` (maud), `junit` (quick-junit),
//!   `terminal`;
//! - `run`, which drives Goose and is the only module that writes files.
//!
//! With `--abort-on-fail`, Goose judges its own rules while the run goes on and `live_gate`
//! the delivery and stage rules.

pub mod cli;
pub mod compare;
pub mod delivery;
pub mod duration;
pub mod error;
pub mod gate;
pub mod history;
pub mod hlog;
pub mod html;
pub mod intervals;
pub mod junit;
pub mod live_gate;
pub mod model;
pub mod progress;
pub mod replay;
pub mod rule;
pub mod run;
pub mod sent;
pub mod summary;
pub mod svg;
pub mod terminal;
pub mod traffic;

pub use cli::{Cli, Settings};
pub use error::LoadgenError;
pub use run::{Outcome, run};
