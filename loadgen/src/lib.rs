//! loadgen: replays a traffic file against an HTTP target with Goose users, writes
//! `reports/<run-id>/`, and judges the run against gate rules for CI.
//!
//! Data flow: `cli` (flags) -> `traffic` (records) -> `replay` (Goose scenario) ->
//! `run` (Goose attack, `progress` timeline) -> `summary` (percentiles) -> `gate`
//! (verdicts) -> `report` + `junit` (files).

pub mod cli;
pub mod duration;
pub mod error;
pub mod gate;
pub mod junit;
pub mod progress;
pub mod replay;
pub mod report;
pub mod rule;
pub mod run;
pub mod summary;
pub mod traffic;

pub use cli::{Cli, Settings};
pub use error::LoadgenError;
pub use run::{Outcome, run};
