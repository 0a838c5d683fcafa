//! The report folder: the one module that reads and writes it. A run and a merge each build
//! their report through `build`, write it through `write`, and print it through `announce`;
//! earlier runs (a baseline, a calibration, a worker's folder, the history) are read here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::error::LoadgenError;
use crate::judge::gate::Baseline;
use crate::judge::history::{self, HistoryEntry};
use crate::model::{
    Delivery, EndedBy, GateRecord, IntervalLatency, LoadgenReport, OpenModel, SCHEMA_VERSION,
    SettingsRecord, TimelinePoint, Verdict, WorkerShare,
};
use crate::record::hlog::{self, Log};
use crate::record::summary::Measurements;
use crate::render::{html, junit, terminal};

/// The interval log's name in the run folder.
pub const LATENCY_LOG: &str = "latency.hlog";
/// A worker's ledger of sends, for `loadgen merge`.
pub const SENDS: &str = "sends.json";
/// A worker's copy of the receivers' `/stats` before it started.
pub const RECEIVERS_START: &str = "receivers-start.json";

/// What a run or a merge knows of itself when its report is built, besides what was
/// measured and judged.
#[derive(Debug)]
pub struct Parts {
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_secs: f64,
    pub ended_by: EndedBy,
    pub settings: SettingsRecord,
    pub interrupted: u64,
    pub timeline: Vec<TimelinePoint>,
    pub latency_timeline: Vec<IntervalLatency>,
    pub delivery: Option<Delivery>,
    pub workers: Vec<WorkerShare>,
    pub open: Option<OpenModel>,
}

/// A run's report: its parts, the rows read off the measurements, the verdicts, and the
/// index of the files the folder will hold (`files` are those beside the fixed four).
pub fn build(
    parts: Parts,
    measured: &Measurements,
    verdicts: Vec<Verdict>,
    files: &[(String, String)],
) -> LoadgenReport {
    LoadgenReport {
        schema_version: SCHEMA_VERSION,
        run_id: parts.run_id,
        started_at: parts.started_at,
        finished_at: parts.finished_at,
        duration_secs: parts.duration_secs,
        ended_by: parts.ended_by,
        settings: parts.settings,
        requests: measured.requests.iter().map(|m| m.stats.clone()).collect(),
        routes: measured.routes.iter().map(|m| m.stats.clone()).collect(),
        aggregate: measured.aggregate.stats.clone(),
        interrupted: parts.interrupted,
        timeline: parts.timeline,
        saturated_secs: measured.saturated_secs,
        latency_timeline: parts.latency_timeline,
        delivery: parts.delivery,
        gate: GateRecord {
            passed: verdicts.iter().all(|v| v.passed),
            rules: verdicts,
        },
        files: files_index(files),
        workers: parts.workers,
        open: parts.open,
    }
}

/// The run folder's files by role (`latency_hlog`), for loadgen.json: the fixed ones, then
/// each other written file named after itself.
fn files_index(written: &[(String, String)]) -> BTreeMap<String, String> {
    [
        ("index_html", "index.html"),
        ("loadgen_json", "loadgen.json"),
        ("gate_junit", "gate.xml"),
        ("latency_hlog", LATENCY_LOG),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(
        written
            .iter()
            .filter(|(f, _)| f != LATENCY_LOG)
            .map(|(f, _)| {
                let role = f
                    .trim_end_matches(".hgrm")
                    .trim_end_matches(".hlog")
                    .trim_end_matches(".json");
                (role.replace('-', "_"), f.clone())
            }),
    )
    .collect()
}

/// The run's folder under `reports`: a worker's names it, so the workers of a run can
/// share one reports folder.
pub fn run_dir(reports: &Path, run_id: &str, worker: Option<usize>) -> PathBuf {
    reports.join(match worker {
        Some(index) => format!("{run_id}-w{index}"),
        None => run_id.to_string(),
    })
}

/// Makes the run's folder before the run, so a folder that cannot be made fails it early.
pub fn create(dir: &Path) -> Result<(), LoadgenError> {
    std::fs::create_dir_all(dir).map_err(|source| LoadgenError::Reports {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes the run folder: loadgen.json, gate.xml, index.html, the latency log and the
/// receivers' figures; then points `<reports>/latest` at it, rewrites the run list and,
/// for a gated run, appends to the history.
pub fn write(
    reports: &Path,
    dir: &Path,
    report: &LoadgenReport,
    files: &[(String, String)],
) -> Result<(), LoadgenError> {
    write_folder(reports, dir, report, files).map_err(|source| LoadgenError::Reports {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_folder(
    reports: &Path,
    dir: &Path,
    report: &LoadgenReport,
    files: &[(String, String)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("loadgen.json"), json)?;
    std::fs::write(
        dir.join("gate.xml"),
        junit::render(&report.run_id, &report.gate.rules),
    )?;
    std::fs::write(dir.join("index.html"), html::render(report))?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    point_latest(reports, dir)?;
    let runs: Vec<LoadgenReport> = std::fs::read_dir(reports)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| std::fs::read_to_string(e.path().join("loadgen.json")).ok())
        .filter_map(|text| LoadgenReport::parse(&text).ok())
        .collect();
    std::fs::write(reports.join("index.html"), html::run_list(&runs))?;
    if !report.gate.rules.is_empty() {
        append_history(reports, report)?;
    }
    Ok(())
}

fn append_history(reports: &Path, report: &LoadgenReport) -> std::io::Result<()> {
    use std::io::Write;
    let line =
        serde_json::to_string(&HistoryEntry::from_report(report)).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(reports.join(history::FILE))?;
    writeln!(file, "{line}")
}

/// `reports/latest` is a relative symlink, so the folder can be moved or archived whole.
/// It is made under a name of its own and renamed over `latest`, which is atomic: workers
/// of one run finishing together in one reports folder cannot trip over each other.
fn point_latest(reports: &Path, dir: &Path) -> std::io::Result<()> {
    let link = reports.join("latest");
    let target: PathBuf = dir.file_name().map(PathBuf::from).unwrap_or_default();
    if let Ok(meta) = std::fs::symlink_metadata(&link)
        && !meta.file_type().is_symlink()
    {
        return Ok(()); // a real file or folder named latest is the user's; leave it
    }
    let temporary = reports.join(format!(
        ".latest-{}-{:08x}",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    std::os::unix::fs::symlink(target, &temporary)?;
    std::fs::rename(&temporary, &link).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// The closing tables on stdout (the workers', the requests', the ledger's, the gate's),
/// then `last`, the line that names the report.
pub fn announce(report: &LoadgenReport, last: &str) {
    print!("{}", terminal::workers(&report.workers));
    print!("{}", terminal::requests(report));
    if let Some(delivery) = &report.delivery {
        print!("{}", terminal::delivery(delivery));
    }
    if let Some(why) = &report.settings.ledger_off {
        println!("\nNo delivery ledger: {why}.");
    }
    print!("{}", terminal::gate(&report.gate.rules));
    println!("{last}");
}

/// The `--baseline` runs, read, checked and pooled, for a run, a merge or a comparison;
/// `None` when there are none.
pub fn read_baseline(
    paths: &[PathBuf],
    max_regression: f64,
) -> Result<Option<Baseline>, LoadgenError> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut runs = Vec::new();
    for path in paths {
        let (report, log) = read_run(path).map_err(|why| LoadgenError::Baseline {
            path: path.to_path_buf(),
            why,
        })?;
        runs.push((path.display().to_string(), report, log));
    }
    Baseline::pool(runs, max_regression)
        .map(Some)
        .map_err(|(path, why)| LoadgenError::Baseline {
            path: path.into(),
            why,
        })
}

/// An earlier run's report and latency log, from its folder or its loadgen.json.
pub fn read_run(path: &Path) -> Result<(LoadgenReport, Log), String> {
    let json = if path.is_dir() {
        path.join("loadgen.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("cannot read {}: {e}", json.display()))?;
    let report = LoadgenReport::parse(&text)?;
    let folder = json.parent().unwrap_or(Path::new("."));
    let log_path = folder.join(
        report
            .files
            .get("latency_hlog")
            .map(String::as_str)
            .unwrap_or(LATENCY_LOG),
    );
    let log_text = std::fs::read_to_string(&log_path).map_err(|e| {
        format!(
            "cannot read its latency log {} ({e}); runs before loadgen kept its own histograms have none, so record the baseline again",
            log_path.display()
        )
    })?;
    let log = hlog::parse(&log_text).map_err(|why| format!("{}: {why}", log_path.display()))?;
    Ok((report, log))
}

/// A file a worker left in its folder for the merge (its sends, the receivers' counters).
pub fn read_worker_file(dir: &Path, name: &str) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join(name))
}

/// The reports folder's history of gated runs, for `loadgen history`.
pub fn read_history(reports: &Path) -> Result<Vec<HistoryEntry>, String> {
    let path = reports.join(history::FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}); a run with gate rules (--threshold or --gate) writes it; pass --reports DIR if they are elsewhere",
            path.display()
        )
    })?;
    let entries = history::parse(&text).map_err(|why| format!("{}: {why}", path.display()))?;
    if entries.is_empty() {
        return Err(format!("{} holds no runs yet", path.display()));
    }
    Ok(entries)
}
