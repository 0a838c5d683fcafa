//! One load test from checked settings to written reports, in five phases: prepare (read
//! and check every input, nothing sent), start (the receivers' counters, the users' shared
//! state, Goose's attack), execute (the users run under the run-time clock), collect
//! (reconcile, measure, judge) and finish (the report, written by `output`).

mod collect;
mod execute;
mod finish;
mod prepare;
mod start;

use crate::cli::Settings;
use crate::error::LoadgenError;
use crate::model::LoadgenReport;

/// What a finished run decided, and where its reports are.
#[derive(Debug)]
pub struct Outcome {
    pub passed: bool,
    pub report_dir: std::path::PathBuf,
    pub report: LoadgenReport,
}

/// Runs the load test `settings` describe. Bad input fails before any request is sent.
pub async fn run(settings: Settings) -> Result<Outcome, LoadgenError> {
    let prepared = prepare::prepare(settings).await?;
    let (started, swarm) = start::start(prepared).await?;
    let executed = execute::execute(&started, swarm).await?;
    let collected = collect::collect(&started, &executed).await?;
    finish::finish(started, executed, collected)
}

/// The runtime's own count, not the flag's: what the users really run on.
fn runtime_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}
