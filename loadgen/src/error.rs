//! The ways a run can fail to happen, each mapped to the exit code a CI job reads.

use std::path::PathBuf;

use thiserror::Error;

use crate::traffic::TrafficError;

/// Everything here means the run could not be made (exit code 2); a run that happens
/// but fails its gate is not an error, it is an `Outcome` with `passed == false`.
#[derive(Debug, Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    #[error("baseline {path}: {why}; pass the folder (or loadgen.json) of an earlier run")]
    Baseline { path: PathBuf, why: String },
    #[error(
        "calibration {path}: {why}; pass the folder of a run of the same load against a trivial handler (see scripts/demo)"
    )]
    Calibration { path: PathBuf, why: String },
    #[error(
        "host {host} is unreachable ({why}); start the target (for the receivers: cargo run -p receivers) or fix --host"
    )]
    Unreachable { host: String, why: String },
    #[error("cannot write reports to {path}: {source}; check --reports and free disk space")]
    Reports {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("merge: {path}: {why}")]
    Merge { path: PathBuf, why: String },
    #[error("the load test failed to run: {0}")]
    Goose(String),
}

impl LoadgenError {
    pub const EXIT_CODE: u8 = 2;
}
