//! `loadgen merge DIR...`: the folders of one run's workers joined into one run, exactly.
//! Interval histograms are added (aligned on wall-clock time), counters summed, timelines
//! aligned on wall-clock seconds, and the workers' ledgers of sends joined; then the merged
//! ledger is reconciled with the receivers and every gate rule is judged on the merged run,
//! as if one process had run every user. Bad input (a folder of another run, mismatched
//! settings, a missing or duplicate worker, a corrupt histogram) is refused with the folder
//! named, before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use contract::StatsSnapshot;
use hdrhistogram::Histogram;

use crate::cli::{MergeArgs, parse_rules};
use crate::error::LoadgenError;
use crate::judge::gate::{self, SourcedRule};
use crate::ledger::delivery::{self, Receivers};
use crate::ledger::sent::SentSnapshot;
use crate::model::{
    Delivery, EndedBy, LoadgenReport, OpenModel, RequestStats, SettingsRecord, TimelinePoint,
    WorkerRecord, WorkerShare,
};
use crate::output::{self, Parts, RECEIVERS_START, SENDS};
use crate::record::hlog::{self, Log};
use crate::record::intervals::{
    EncodedInterval, Recorded, SeriesKey, SeriesTotal, count_error, interval_latency, new_histogram,
};
use crate::record::progress;
use crate::record::summary::Measurements;
use crate::run::Outcome;

/// One worker's folder, read and checked.
struct WorkerRun {
    dir: PathBuf,
    report: LoadgenReport,
    worker: WorkerRecord,
    log: Log,
    sends: SentSnapshot,
    receivers_start: Option<StatsSnapshot>,
    /// Seconds since the epoch at which its users started.
    started: f64,
}

fn bad(dir: &Path, why: impl Into<String>) -> LoadgenError {
    LoadgenError::Merge {
        path: dir.to_path_buf(),
        why: why.into(),
    }
}

fn read_worker(dir: &Path) -> Result<WorkerRun, LoadgenError> {
    let (report, log) = output::read_run(dir).map_err(|why| bad(dir, why))?;
    let Some(worker) = report.settings.worker.clone() else {
        return Err(bad(
            dir,
            format!(
                "run {} is not a worker's: it ran without --worker I/N, so there is nothing to merge it with",
                report.run_id
            ),
        ));
    };
    let sends_text = output::read_worker_file(dir, SENDS).map_err(|e| {
        bad(
            dir,
            format!("cannot read its ledger of sends {SENDS} ({e})"),
        )
    })?;
    let sends: SentSnapshot = serde_json::from_str(&sends_text)
        .map_err(|e| bad(dir, format!("{SENDS} is not a ledger of sends ({e})")))?;
    let receivers_start = output::read_worker_file(dir, RECEIVERS_START)
        .ok()
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| {
            bad(
                dir,
                format!("{RECEIVERS_START} is not the receivers' /stats ({e})"),
            )
        })?;
    let started = match log.start_time {
        Some(t) => t,
        None => {
            chrono::DateTime::parse_from_rfc3339(&report.started_at)
                .map_err(|e| bad(dir, format!("started_at {:?}: {e}", report.started_at)))?
                .timestamp_millis() as f64
                / 1000.0
        }
    };
    Ok(WorkerRun {
        dir: dir.to_path_buf(),
        report,
        worker,
        log,
        sends,
        receivers_start,
        started,
    })
}

/// The settings every worker of a run must share, by name, as text to compare and show.
fn shared_settings(run: &WorkerRun) -> Vec<(&'static str, String)> {
    let s = &run.report.settings;
    vec![
        ("workers (N of --worker I/N)", run.worker.count.to_string()),
        ("--users", s.users.to_string()),
        ("--hatch-rate", s.hatch_rate.to_string()),
        ("--host", s.host.clone()),
        ("--run-time", format!("{:?}", s.run_time_secs)),
        ("--wait", format!("{}..{} ms", s.wait_min_ms, s.wait_max_ms)),
        ("--mode", s.mode.name().to_string()),
        ("records in the traffic file", s.records.to_string()),
        ("--seed", format!("{:?}", s.seed)),
        ("--interval", s.interval_secs.to_string()),
        (
            "arrival plan",
            run.report
                .open
                .as_ref()
                .map_or("none (closed model)".into(), |o| o.plan.clone()),
        ),
    ]
}

/// Reads every folder and refuses a set that is not one whole run.
fn read_workers(dirs: &[PathBuf]) -> Result<Vec<WorkerRun>, LoadgenError> {
    let runs: Vec<WorkerRun> = dirs
        .iter()
        .map(|d| read_worker(d))
        .collect::<Result<_, _>>()?;
    let first = &runs[0];
    let expected = shared_settings(first);
    for run in &runs[1..] {
        if run.report.run_id != first.report.run_id {
            return Err(bad(
                &run.dir,
                format!(
                    "it is run {}, but {} is run {}; give the folders of one run (workers share --run-id)",
                    run.report.run_id,
                    first.dir.display(),
                    first.report.run_id
                ),
            ));
        }
        for ((name, mine), (_, theirs)) in shared_settings(run).iter().zip(&expected) {
            if mine != theirs {
                return Err(bad(
                    &run.dir,
                    format!(
                        "its {name} is {mine}, but {}'s is {theirs}; every worker of a run needs the same settings",
                        first.dir.display()
                    ),
                ));
            }
        }
    }
    let count = first.worker.count;
    let mut seen: BTreeMap<usize, &Path> = BTreeMap::new();
    for run in &runs {
        if let Some(other) = seen.insert(run.worker.index, &run.dir) {
            return Err(bad(
                &run.dir,
                format!(
                    "it and {} are both worker {} of {count}; give each worker's folder once",
                    other.display(),
                    run.worker.index
                ),
            ));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(LoadgenError::Usage(format!(
            "merge: run {} had {count} workers, and worker {} of {count} is missing (given: {}); a merge without every worker would judge part of the run",
            first.report.run_id,
            missing.join(", "),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    Ok(runs)
}

/// The workers' interval histograms added per series and wall-clock interval.
fn merge_intervals(runs: &[WorkerRun], t0: f64, interval: f64) -> Recorded {
    let mut cells: BTreeMap<(u64, SeriesKey), (Histogram<u64>, f64)> = BTreeMap::new();
    for run in runs {
        for i in &run.log.intervals {
            // The interval a worker's histogram falls in is the one holding its middle:
            // workers started together are a few milliseconds apart, never half a second.
            let middle = run.started + i.start_secs + i.duration_secs / 2.0 - t0;
            let index = (middle / interval).floor().max(0.0) as u64;
            let cell = cells
                .entry((index, i.series.clone()))
                .or_insert_with(|| (new_histogram(), 0.0));
            cell.0
                .add(&i.histogram)
                .expect("auto-resizing histograms add");
            cell.1 = cell.1.max(i.duration_secs);
        }
    }
    let mut recorded = Recorded {
        interval_secs: interval,
        ..Recorded::default()
    };
    for ((index, key), (histogram, duration)) in cells {
        let start = index as f64 * interval;
        recorded.intervals.push(EncodedInterval {
            start_secs: start,
            duration_secs: duration,
            series: key.clone(),
            encoded: hdr::encode(&histogram),
        });
        recorded
            .latency_timeline
            .push(interval_latency(&key, &histogram, start + duration));
        recorded
            .totals
            .entry(key)
            .or_default()
            .histogram
            .add(&histogram)
            .expect("auto-resizing histograms add");
    }
    // Failures, status codes and exact sums are counters: the workers' rows add up.
    for run in runs {
        let rows = run
            .report
            .requests
            .iter()
            .map(|r| (SeriesKey::request(&r.name), r))
            .chain(
                run.report
                    .routes
                    .iter()
                    .map(|r| (SeriesKey::route(&r.name), r)),
            );
        for (key, row) in rows {
            let total: &mut SeriesTotal = recorded.totals.entry(key).or_default();
            add_counters(total, row);
        }
    }
    recorded
}

fn add_counters(total: &mut SeriesTotal, row: &RequestStats) {
    total.failures += row.failures;
    total.sum_us += (row.latency_ms.avg * 1000.0 * row.count as f64).round() as u64;
    for (code, n) in &row.status_codes {
        if let Ok(code) = code.parse::<u16>() {
            *total.status_codes.entry(code).or_default() += n;
        }
    }
    for (cause, n) in &row.errors {
        count_error(&mut total.errors, cause, *n);
    }
}

/// The workers' timelines summed on wall-clock seconds since the earliest start.
fn merge_timelines(runs: &[WorkerRun], t0: f64) -> Vec<TimelinePoint> {
    let mut seconds: BTreeMap<u64, TimelinePoint> = BTreeMap::new();
    for run in runs {
        let offset = (run.started - t0).round() as u64;
        for p in &run.report.timeline {
            let second = p.second + offset;
            let point = seconds.entry(second).or_insert(TimelinePoint {
                second,
                ..TimelinePoint::default()
            });
            point.requests += p.requests;
            point.failures += p.failures;
            point.users += p.users;
            // The open model's columns: the run's requested rate is the workers' sum.
            let add = |a: Option<u64>, b: Option<u64>| b.map(|b| a.unwrap_or(0) + b).or(a);
            point.sent = add(point.sent, p.sent);
            point.late = add(point.late, p.late);
            point.dropped = add(point.dropped, p.dropped);
            point.requested = p
                .requested
                .map(|r| point.requested.unwrap_or(0.0) + r)
                .or(point.requested);
            // Each worker has its own CPU: the merged second shows the busiest, and is
            // saturated when any worker was.
            point.cpu_share = p
                .cpu_share
                .map(|c| point.cpu_share.unwrap_or(0.0).max(c))
                .or(point.cpu_share);
            point.saturated |= p.saturated;
        }
    }
    seconds.into_values().collect()
}

/// Merges, reconciles, judges and writes the merged run.
pub async fn merge(args: MergeArgs) -> Result<Outcome, LoadgenError> {
    let (rules, max_regression) = merge_rules(&args)?;
    let baseline = output::read_baseline(&args.gate.baseline, max_regression)?;
    let runs = read_workers(&args.dirs)?;
    let span = Span::of(&runs);
    let first = &runs[0];
    let run_id = first.report.run_id.clone();
    eprintln!(
        "loadgen: merging run {run_id}: {} workers, {} users in all",
        runs.len(),
        first.report.settings.users
    );
    let recorded = merge_intervals(&runs, span.t0, first.report.settings.interval_secs);
    let mut measured = Measurements::from_recorded(&recorded, span.duration());
    let opens: Vec<&OpenModel> = runs.iter().filter_map(|r| r.report.open.as_ref()).collect();
    measured.late = opens.iter().map(|o| o.late).sum();
    measured.dropped = opens.iter().map(|o| o.dropped).sum();
    let timeline = merge_timelines(&runs, span.t0);
    measured.saturated_secs = progress::saturated_secs(&timeline);
    let started_wall = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(span.t0);
    let latency_log = hlog::render(started_wall, &recorded.intervals).map_err(|why| {
        LoadgenError::Usage(format!("merge: cannot encode the merged log: {why}"))
    })?;
    let (delivery, mut files) = reconcile(&args, &runs, span.duration()).await?;
    let mut verdicts = gate::judge(&rules, &measured, delivery.as_ref(), &[]);
    if let Some(baseline) = &baseline {
        let now = hlog::parse(&latency_log).map_err(|why| {
            LoadgenError::Usage(format!("merge: the merged log does not read back: {why}"))
        })?;
        verdicts.extend(gate::judge_baseline(baseline, &now.intervals));
    }
    files.insert(0, (output::LATENCY_LOG.to_string(), latency_log));
    let parts = Parts {
        run_id: run_id.clone(),
        started_at: at(span.t0),
        finished_at: at(span.t_end),
        duration_secs: span.duration(),
        ended_by: ended_by(&runs),
        interrupted: runs.iter().map(|r| r.report.interrupted).sum(),
        settings: SettingsRecord {
            worker: None,
            ..first.report.settings.clone()
        },
        timeline,
        latency_timeline: recorded.latency_timeline.clone(),
        delivery,
        workers: worker_shares(&runs, span.t0),
        open: merged_open(&opens, &measured),
    };
    let report = output::build(parts, &measured, verdicts, &files);
    let dir = args.reports.join(&run_id);
    output::write(&args.reports, &dir, &report, &files)?;
    output::announce(
        &report,
        &format!(
            "Run {run_id} merged from {} workers ({:.1}s). Report: {}",
            report.workers.len(),
            report.duration_secs,
            dir.join("index.html").display()
        ),
    );
    Ok(Outcome {
        passed: report.gate.passed,
        report_dir: dir,
        report,
    })
}

/// The merge's rules; a multiple of a calibration run is refused, as a merge takes none.
fn merge_rules(args: &MergeArgs) -> Result<(Vec<SourcedRule>, f64), LoadgenError> {
    let (rules, max_regression) = parse_rules(
        &args.gate.thresholds,
        args.gate.gate.as_deref(),
        args.gate.max_regression,
    )?;
    if let Some(rule) = rules.iter().find(|r| r.rule.relative) {
        return Err(LoadgenError::Usage(format!(
            "merge: the rule {} is a multiple of a calibration run, which a merge does not take; give the worker runs that limit, or an absolute one",
            rule.rule.text
        )));
    }
    Ok((rules, max_regression))
}

/// The merged run's time span: from the earliest worker's start to the latest one's end,
/// in seconds since the epoch.
struct Span {
    t0: f64,
    t_end: f64,
}

impl Span {
    fn of(runs: &[WorkerRun]) -> Span {
        Span {
            t0: runs.iter().map(|r| r.started).fold(f64::MAX, f64::min),
            t_end: runs
                .iter()
                .map(|r| r.started + r.report.duration_secs)
                .fold(f64::MIN, f64::max),
        }
    }

    fn duration(&self) -> f64 {
        self.t_end - self.t0
    }
}

/// The workers' ledgers joined and reconciled with the receivers, against the counters
/// that the earliest worker read before the run.
async fn reconcile(
    args: &MergeArgs,
    runs: &[WorkerRun],
    duration: f64,
) -> Result<(Option<Delivery>, Vec<(String, String)>), LoadgenError> {
    let first = &runs[0];
    let mut sent = SentSnapshot {
        workers: Some(first.worker.count),
        ..SentSnapshot::default()
    };
    for run in runs {
        sent.join(run.sends.clone())
            .map_err(|why| bad(&run.dir, why))?;
    }
    let host = url::Url::parse(&first.report.settings.host).ok();
    let (receivers, drain_timeout) = args.reconcile.parse(host.as_ref())?;
    if receivers.is_empty() {
        return Ok((None, Vec::new()));
    }
    let start = runs
        .iter()
        .filter(|r| r.receivers_start.is_some())
        .min_by(|a, b| a.started.total_cmp(&b.started))
        .and_then(|r| r.receivers_start.clone());
    let receivers = Arc::new(Receivers::new(receivers));
    let reconciled = delivery::reconcile(
        &receivers,
        &first.report.run_id,
        &sent,
        start.as_ref(),
        drain_timeout,
        duration,
    )
    .await;
    Ok(match reconciled {
        Ok((delivery, files)) => (Some(delivery), files),
        Err(why) => {
            eprintln!("loadgen: reconciliation failed: {why}");
            (None, Vec::new())
        }
    })
}

/// The merged run ended the way its most abrupt worker did.
fn ended_by(runs: &[WorkerRun]) -> EndedBy {
    runs.iter()
        .map(|r| r.report.ended_by)
        .max_by_key(|e| match e {
            EndedBy::Completed => 0,
            EndedBy::RunTime => 1,
            EndedBy::Interrupted => 2,
        })
        .unwrap_or(EndedBy::Completed)
}

/// Seconds since the epoch in RFC 3339.
fn at(secs: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
        .to_rfc3339()
}

/// Each worker's share of the merged run, in worker order.
fn worker_shares(runs: &[WorkerRun], t0: f64) -> Vec<WorkerShare> {
    let mut workers: Vec<WorkerShare> = runs
        .iter()
        .map(|r| WorkerShare {
            index: r.worker.index,
            folder: r.dir.display().to_string(),
            users: r.worker.users,
            requests: r.report.aggregate.count,
            started_at: r.report.started_at.clone(),
            start_skew_secs: r.started - t0,
        })
        .collect();
    workers.sort_by_key(|w| w.index);
    workers
}

/// The open model's counts add up; service time and lag come from the merged histograms
/// like everything else.
fn merged_open(opens: &[&OpenModel], measured: &Measurements) -> Option<OpenModel> {
    opens.first().map(|first| OpenModel {
        plan: first.plan.clone(),
        share: None,
        arrivals: first.arrivals,
        max_users: opens.iter().map(|o| o.max_users).sum(),
        drop_late_ms: first.drop_late_ms,
        scheduled: opens.iter().map(|o| o.scheduled).sum(),
        late: measured.late,
        late_after_ms: first.late_after_ms,
        dropped: measured.dropped,
        service: measured.service_rows(),
        lag_ms: measured.lag_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hlog::LoggedInterval;

    fn logged(start: f64, values: &[u64]) -> LoggedInterval {
        let mut histogram = new_histogram();
        for v in values {
            histogram.record(*v).unwrap();
        }
        LoggedInterval {
            start_secs: start,
            duration_secs: 1.0,
            series: SeriesKey::request("POST /"),
            histogram,
        }
    }

    /// Worker 0 of 2, started at `started`, whose report is the recorded one as `adjust`
    /// leaves it, with no log, sends or receivers' counters.
    fn worker_run(started: f64, adjust: impl Fn(LoadgenReport) -> LoadgenReport) -> WorkerRun {
        let report: LoadgenReport =
            serde_json::from_str(include_str!("../tests/data/loadgen-recorded.json")).unwrap();
        WorkerRun {
            dir: PathBuf::from("w"),
            report: adjust(report),
            worker: WorkerRecord {
                index: 0,
                count: 2,
                users: 1,
                start_at: None,
                start_skew_secs: 0.0,
            },
            log: Log::default(),
            sends: SentSnapshot::default(),
            receivers_start: None,
            started,
        }
    }

    #[test]
    fn intervals_add_exactly_on_wall_clock_time() {
        let worker = |started: f64, intervals: Vec<LoggedInterval>| {
            let mut run = worker_run(started, |report| LoadgenReport {
                requests: vec![],
                routes: vec![],
                ..report
            });
            run.log = Log {
                start_time: Some(started),
                intervals,
            };
            run
        };
        // The second worker started 20 ms later: its intervals still line up.
        let runs = [
            worker(100.0, vec![logged(0.0, &[100, 200]), logged(1.0, &[300])]),
            worker(
                100.02,
                vec![logged(0.0, &[400]), logged(1.0, &[500, 600, 700])],
            ),
        ];
        let recorded = merge_intervals(&runs, 100.0, 1.0);
        let counts: Vec<(f64, u64)> = recorded
            .intervals
            .iter()
            .map(|i| (i.start_secs, i.histogram().unwrap().len()))
            .collect();
        assert_eq!(counts, vec![(0.0, 3), (1.0, 4)]);
        let total = &recorded.totals[&SeriesKey::request("POST /")].histogram;
        assert_eq!(
            total.len(),
            7,
            "the merged count is the sum of the workers'"
        );
        assert_eq!(total.max(), 700);
    }

    /// A merged second is saturated when any worker was, and shows the busiest worker's CPU.
    #[test]
    fn a_second_is_saturated_when_any_worker_was() {
        let worker = |shares: [f64; 2]| {
            worker_run(100.0, |report| LoadgenReport {
                timeline: shares
                    .iter()
                    .enumerate()
                    .map(|(i, share)| TimelinePoint {
                        second: i as u64 + 1,
                        cpu_share: Some(*share),
                        saturated: *share >= 0.9,
                        ..TimelinePoint::default()
                    })
                    .collect(),
                ..report
            })
        };
        let merged = merge_timelines(&[worker([0.2, 0.95]), worker([0.5, 0.3])], 100.0);
        let seen: Vec<(Option<f64>, bool)> =
            merged.iter().map(|p| (p.cpu_share, p.saturated)).collect();
        assert_eq!(seen, vec![(Some(0.5), false), (Some(0.95), true)]);
        assert_eq!(progress::saturated_secs(&merged), 1);
    }

    #[test]
    fn the_workers_causes_of_no_answer_add_up() {
        let row = |causes: &[(&str, u64)]| RequestStats {
            name: "POST /".into(),
            count: 10,
            failures: causes.iter().map(|c| c.1).sum(),
            error_rate: 0.0,
            rps: 0.0,
            latency_ms: crate::model::Latency::default(),
            status_codes: BTreeMap::from([("0".into(), causes.iter().map(|c| c.1).sum())]),
            errors: causes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        };
        let mut total = SeriesTotal::default();
        add_counters(
            &mut total,
            &row(&[("Connection refused (os error 111)", 3)]),
        );
        add_counters(
            &mut total,
            &row(&[
                ("Connection refused (os error 111)", 2),
                ("connection closed before message completed", 1),
            ]),
        );
        assert_eq!(
            total.errors,
            BTreeMap::from([
                ("Connection refused (os error 111)".to_string(), 5),
                ("connection closed before message completed".to_string(), 1),
            ])
        );
        assert_eq!((total.failures, total.status_codes[&0]), (6, 6));
    }
}
