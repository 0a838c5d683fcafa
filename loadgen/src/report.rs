//! `loadgen.json`: the run's machine-readable record (schema in `schema/loadgen.schema.json`),
//! and the writers that put it, `gate.xml` and the `latest` link into `reports/<run-id>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::gate::Verdict;
use crate::junit;
use crate::progress::TimelinePoint;
use crate::replay::Mode;

/// Bumped whenever a field changes meaning or goes away; additions keep the number.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadgenReport {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_secs: f64,
    pub ended_by: EndedBy,
    pub settings: SettingsRecord,
    /// One row per request name (`POST /`, `GET /`).
    pub requests: Vec<RequestStats>,
    /// All requests together.
    pub aggregate: RequestStats,
    pub timeline: Vec<TimelinePoint>,
    /// The reconciliation with the receivers; `null` when it was off or impossible.
    pub delivery: Option<Delivery>,
    pub gate: GateRecord,
    /// Files in the run folder, relative to it.
    pub files: BTreeMap<String, String>,
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// Every user sent its records.
    Completed,
    /// --run-time passed.
    RunTime,
    /// Ctrl-C, or a gate rule with --abort-on-fail.
    Interrupted,
}

impl EndedBy {
    /// Why the run stopped, for people.
    pub fn describe(self) -> &'static str {
        match self {
            EndedBy::Completed => "every user sent its records",
            EndedBy::RunTime => "--run-time reached",
            EndedBy::Interrupted => "interrupted",
        }
    }
}

/// The settings the run was made with, so a report explains itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub host: String,
    pub users: usize,
    pub hatch_rate: f64,
    pub run_time_secs: Option<f64>,
    pub wait_min_ms: f64,
    pub wait_max_ms: f64,
    pub mode: Mode,
    pub traffic_file: String,
    pub records: usize,
    pub seed: Option<u64>,
    /// The commit of the checkout loadgen ran from, when it is one.
    #[serde(default)]
    pub git_commit: Option<String>,
}

/// Counts and latency of one request name, or of all of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestStats {
    pub name: String,
    pub count: u64,
    pub failures: u64,
    /// Failures as a percentage of count.
    pub error_rate: f64,
    /// Requests per second over the whole run.
    pub rps: f64,
    pub latency_ms: Latency,
    /// Responses per HTTP status code; 0 counts requests that got no response.
    pub status_codes: BTreeMap<String, u64>,
}

/// Milliseconds. All zero when there were no requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub avg: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRecord {
    pub passed: bool,
    pub rules: Vec<Verdict>,
}

impl LoadgenReport {
    /// Writes `loadgen.json` and `gate.xml` into `dir` and points `<reports>/latest` at it.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("loadgen.json"), json)?;
        std::fs::write(
            dir.join("gate.xml"),
            junit::render(&self.run_id, &self.gate.rules),
        )?;
        std::fs::write(dir.join("index.html"), crate::html::render(self))?;
        if let Some(reports) = dir.parent() {
            point_latest(reports, dir)?;
            crate::html::write_run_list(reports)?;
        }
        Ok(())
    }

    /// Reads an earlier `loadgen.json`, for --baseline.
    pub fn read(path: &Path) -> Result<LoadgenReport, String> {
        let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
        serde_json::from_str(&text).map_err(|error| {
            format!(
                "not a loadgen.json report ({error} at line {}, column {})",
                error.line(),
                error.column()
            )
        })
    }
}

/// `reports/latest` is a relative symlink, so the folder can be moved or archived whole.
fn point_latest(reports: &Path, dir: &Path) -> std::io::Result<()> {
    let link = reports.join("latest");
    let target: PathBuf = dir.file_name().map(PathBuf::from).unwrap_or_default();
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(&link)?,
        Ok(_) => return Ok(()), // a real file or folder named latest is the user's; leave it
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
}
