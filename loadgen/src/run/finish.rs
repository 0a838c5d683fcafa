//! The run's last phase: its report built, its folder written by `output`, and the
//! closing tables printed.

use std::sync::atomic::Ordering;

use crate::arrival::Schedule;
use crate::cli::{OpenSettings, Settings};
use crate::error::LoadgenError;
use crate::model::{OpenModel, SettingsRecord, WorkerRecord};
use crate::output::{self, Parts};
use crate::record::summary::Measurements;
use crate::users_plan::UsersPlan;

use super::Outcome;
use super::collect::Collected;
use super::execute::Executed;
use super::prepare::Prepared;
use super::start::Started;

/// Builds the report, writes the run's folder and prints the closing tables.
pub(super) fn finish(
    started: Started,
    executed: Executed,
    collected: Collected,
) -> Result<Outcome, LoadgenError> {
    let prepared = &started.prepared;
    let parts = Parts {
        run_id: prepared.run_id.clone(),
        started_at: executed.started_at.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_secs: executed.duration,
        ended_by: executed.ended_by,
        settings: settings_record(prepared, started.start_skew_secs),
        interrupted: started.live.interrupted.load(Ordering::Relaxed),
        timeline: executed.timeline,
        latency_timeline: executed.recorded.latency_timeline,
        delivery: collected.delivery,
        workers: Vec::new(),
        open: match (&prepared.settings.open, &started.schedule) {
            (Some(open), Some(schedule)) => Some(open_model(
                &prepared.settings,
                open,
                schedule,
                &collected.measured,
            )),
            _ => None,
        },
    };
    let report = output::build(
        parts,
        &collected.measured,
        collected.verdicts,
        &collected.files,
    );
    let dir = &prepared.dir;
    output::write(&prepared.settings.reports, dir, &report, &collected.files)?;
    output::announce(
        &report,
        &format!(
            "Run {} ended ({}) after {:.1}s. Report: {}",
            report.run_id,
            report.ended_by.describe(),
            report.duration_secs,
            dir.join("index.html").display()
        ),
    );
    Ok(Outcome {
        passed: report.gate.passed,
        report_dir: dir.clone(),
        report,
    })
}

/// The settings as loadgen.json records them.
fn settings_record(prepared: &Prepared, start_skew_secs: f64) -> SettingsRecord {
    let settings = &prepared.settings;
    SettingsRecord {
        host: settings.host.to_string(),
        users: settings.users,
        hatch_rate: settings.hatch_rate,
        run_time_secs: settings.run_time.map(|t| t.as_secs_f64()),
        wait_min_ms: settings.wait.0.as_secs_f64() * 1000.0,
        wait_max_ms: settings.wait.1.as_secs_f64() * 1000.0,
        mode: settings.mode,
        traffic_file: prepared.traffic.path.display().to_string(),
        records: prepared.traffic.records.len(),
        seed: settings.seed,
        git_commit: git_commit(),
        interval_secs: settings.interval.as_secs_f64(),
        request_timeout_secs: Some(settings.request_timeout.as_secs_f64()),
        graceful_stop_secs: Some(settings.graceful_stop.as_secs_f64()),
        worker: settings.worker.map(|w| WorkerRecord {
            index: w.index,
            count: w.count,
            users: w.share(settings.users),
            start_at: settings.start_at.map(|t| t.to_rfc3339()),
            start_skew_secs,
        }),
        scenario: settings
            .scenarios
            .source
            .as_ref()
            .map(|p| p.display().to_string()),
        users_plan: settings.users_plan.as_ref().map(UsersPlan::text),
        ledger_off: settings.ledger_off.clone(),
    }
}

/// The open model's part of the report.
fn open_model(
    settings: &Settings,
    open: &OpenSettings,
    schedule: &Schedule,
    measured: &Measurements,
) -> OpenModel {
    OpenModel {
        plan: open.plan_text.clone(),
        share: settings.worker.map(|w| open.share(w)),
        arrivals: open.arrivals,
        max_users: settings.process_users(),
        drop_late_ms: open.drop_late.map(|d| d.as_secs_f64() * 1000.0),
        scheduled: schedule.issued.load(Ordering::Relaxed),
        late: measured.late,
        late_after_ms: open.late_after.as_secs_f64() * 1000.0,
        dropped: measured.dropped,
        service: measured.service_rows(),
        lag_ms: measured.lag_ms(),
    }
}

/// `git rev-parse --short HEAD` of the working directory, if it is a checkout.
fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
