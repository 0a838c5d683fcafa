//! loadgen: replays a traffic file against an HTTP target with Goose users, writes
//! `reports/<run-id>/`, and judges the run against gate rules for CI.
//!
//! Data flow: `cli` (flags) -> `traffic` (records) -> `replay` (Goose scenario) ->
//! `run` (Goose attack, `progress` timeline) -> `delivery` (reconciliation with the
//! receivers) -> `summary` (percentiles) -> `gate` (verdicts) -> `report`, `junit`, `html`
//! and `svg` (files). With `--abort-on-fail`, Goose judges its own rules while the run goes
//! on and `live_gate` the delivery and stage rules.

pub mod cli;
pub mod delivery;
pub mod duration;
pub mod error;
pub mod gate;
pub mod html;
pub mod junit;
pub mod live_gate;
pub mod progress;
pub mod replay;
pub mod report;
pub mod rule;
pub mod run;
pub mod sent;
pub mod summary;
pub mod svg;
pub mod traffic;

pub use cli::{Cli, Settings};
pub use error::LoadgenError;
pub use run::{Outcome, run};
