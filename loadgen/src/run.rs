//! One load test from checked settings to written reports: load the records, check the
//! host answers, hand Goose a configuration built here (never argv), judge, write. This is
//! the only module that writes files: everything it writes is rendered elsewhere as text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use goose::GooseError;
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::metrics::GooseMetrics;
use goose::prelude::GooseAttack;
use rand::Rng;

use crate::arrival::Schedule;
use crate::cli::OpenSettings;
use crate::cli::Settings;
use crate::connections::{self, Connections};
use crate::error::LoadgenError;
use crate::judge::gate::{self, Baseline, Calibration};
use crate::judge::history::{self, HistoryEntry};
use crate::judge::live_gate;
use crate::ledger::delivery::{self, Receivers};
use crate::ledger::sent::SentLedger;
use crate::model::{
    EndedBy, GateRecord, LoadgenReport, OpenModel, SCHEMA_VERSION, SettingsRecord, WorkerRecord,
};
use crate::record::hlog::{self, Log};
use crate::record::intervals::Recorder;
use crate::record::progress::{Live, Sampler};
use crate::record::summary::Measurements;
use crate::render::{html, junit, terminal};
use crate::replay::{Mode, Replay};
use crate::throttle::Throttle;
use crate::traffic::Traffic;

/// What a finished run decided, and where its reports are.
#[derive(Debug)]
pub struct Outcome {
    pub passed: bool,
    pub report_dir: PathBuf,
    pub report: LoadgenReport,
}

/// Runs the load test `settings` describe. Bad input fails before any request is sent.
pub async fn run(mut settings: Settings) -> Result<Outcome, LoadgenError> {
    let traffic = Traffic::load(&settings.traffic)?;
    let baseline = read_baseline(settings.baseline.as_deref(), settings.max_regression)?;
    let calibrations = settings
        .calibration
        .iter()
        .map(|path| {
            read_run(path)
                .map(|(report, log)| Calibration {
                    path: path.display().to_string(),
                    run_id: report.run_id.clone(),
                    measured: Measurements::from_log(&log, report.duration_secs),
                })
                .map_err(|why| LoadgenError::Calibration {
                    path: path.clone(),
                    why,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if settings.mode == Mode::Shared && settings.users > traffic.records.len() {
        eprintln!(
            "loadgen: --mode shared sends each of the {} records once, so {} users are {} too many; running {}",
            traffic.records.len(),
            settings.users,
            settings.users - traffic.records.len(),
            traffic.records.len()
        );
        settings.users = traffic.records.len();
    }
    check_reachable(&settings.host).await?;

    let run_id = settings.run_id.clone().unwrap_or_else(new_run_id);
    // A worker's folder names it, so the workers of a run can share one reports folder.
    let dir = settings.reports.join(match settings.worker {
        Some(w) => format!("{run_id}-w{}", w.index),
        None => run_id.clone(),
    });
    let load = match &settings.open {
        Some(open) => format!(
            "open model, {} ({} arrivals) from a pool of {} users",
            open.plan_text,
            format!("{:?}", open.arrivals).to_lowercase(),
            open.max_users
        ),
        None => format!("{} users at {}/s", settings.users, settings.hatch_rate),
    };
    // The runtime's own count, not the flag's: what the users really run on.
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "loadgen: run {run_id}: {load} against {}, replaying {} records from {} ({} mode), on {threads} thread{}",
        settings.host,
        traffic.records.len(),
        traffic.path.display(),
        settings.mode.name(),
        if threads == 1 { "" } else { "s" }
    );
    match connections::raise_open_files() {
        Ok(limit) => {
            let (fits, note) = connections::fit_to_open_files(
                settings.max_connections,
                settings.process_users(),
                limit,
            );
            if let Some(note) = note {
                eprintln!("{note}");
            }
            settings.max_connections = fits;
        }
        Err(why) => eprintln!(
            "loadgen: could not raise the open-files limit ({why}); a run with more connections than `ulimit -n` allows will fail requests with \"Too many open files\""
        ),
    }

    // The receivers' counters before the run, so this run's latency can be told apart.
    let receivers = (!settings.receivers.is_empty())
        .then(|| Arc::new(Receivers::new(settings.receivers.clone())));
    let start_stats = match &receivers {
        None => None,
        Some(r) => match r.stats().await {
            Ok(stats) => Some(stats),
            Err(why) => {
                eprintln!(
                    "loadgen: no delivery ledger for this run: {why}; pass --receivers URL, or --no-reconcile for a target that is not the receivers"
                );
                None
            }
        },
    };

    let start_skew_secs = wait_for_start(&settings).await;
    let live = Arc::new(Live::default());
    let schedule = settings.open.as_ref().map(|open| {
        // A worker sends its share of the arrivals: the rate divided by the workers.
        let plan = match settings.worker {
            Some(w) => open.plan.scaled(1.0 / w.count as f64),
            None => open.plan.clone(),
        };
        Arc::new(Schedule::new(
            plan,
            open.arrivals,
            open.drop_late,
            settings.seed,
            settings.process_users(),
        ))
    });
    let replay = Arc::new(Replay {
        records: traffic.records.clone(),
        mode: settings.mode,
        users: settings.users,
        seed: settings.seed,
        run_id: run_id.clone(),
        live: Arc::clone(&live),
        sent: SentLedger::for_workers(settings.worker.map(|w| w.count)),
        recorder: Recorder::new(Instant::now(), settings.interval),
        worker: settings.worker,
        schedule: schedule.clone(),
        // A worker sends its share of the cap.
        throttle: settings
            .max_rps
            .map(|rps| Throttle::new(rps as f64 / settings.worker.map_or(1, |w| w.count) as f64)),
        connections: Connections::new(settings.max_connections, settings.request_timeout)
            .map_err(|e| LoadgenError::Goose(format!("cannot build the HTTP client: {e}")))?,
    });
    // In the open model users wait for tickets, not a think time.
    let wait = if settings.open.is_some() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        settings.wait
    };
    let config = goose_configuration(&settings, replay.iterations());
    // One shared client without cookies, or Goose builds one per user before the run. The
    // users swap it for `replay.connections`' capped one in their first transaction.
    let attack = GooseAttack::initialize_with_config(config)
        .and_then(|a| {
            a.set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
        })
        .and_then(|a| Ok(a.register_scenario(replay.scenario(wait, settings.post_only)?)))
        .map_err(|e| LoadgenError::Goose(goose_error_text(&e)))?;
    // Only now, once Goose has taken its configuration: a refused one leaves no folder.
    std::fs::create_dir_all(&dir).map_err(|source| LoadgenError::Reports {
        path: dir.clone(),
        source,
    })?;

    let started_at = chrono::Utc::now();
    let started_wall = std::time::SystemTime::now();
    let started = Instant::now();
    let live_gate =
        (settings.abort_on_fail && live_gate::has_live_rules(&settings.rules)).then(|| {
            live_gate::spawn(
                settings.rules.clone(),
                receivers.clone(),
                start_stats.clone(),
                Arc::clone(&replay),
                settings.process_users(),
                move || started.elapsed().as_secs_f64(),
            )
        });
    let sampler = Sampler::start(
        Arc::clone(&live),
        schedule.clone(),
        settings.users,
        settings.progress_every,
        threads,
        settings.max_connections,
    );
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = settings.run_time.map(|limit| {
        spawn_run_timer(
            limit,
            Arc::clone(&timed_out),
            Arc::clone(&live),
            settings.request_timeout,
        )
    });
    let result = attack.execute().await;
    if let Some(timer) = timer {
        timer.abort();
    }
    let live_failure = match live_gate {
        None => None,
        Some(task) if task.is_finished() => task.await.ok().flatten(),
        Some(task) => {
            task.abort();
            None
        }
    };
    let timeline = sampler.finish().await;
    let duration = started.elapsed().as_secs_f64();
    let ended_by = if timed_out.load(Ordering::SeqCst) {
        EndedBy::RunTime
    } else if goose::is_killswitch_triggered() {
        EndedBy::Interrupted
    } else {
        EndedBy::Completed
    };
    // The killswitch is process-wide; clear it so a later run in this process starts clean.
    goose::reset_killswitch();
    goose_outcome(result)?;
    let recorded = replay.recorder.finish();
    let waited = live.waited_for_connection.load(Ordering::Relaxed);
    if waited > 0 {
        eprintln!(
            "loadgen: {waited} of {} requests waited for one of the {} connections of --max-connections; their wait is in their latency. If the target was slow rather than loadgen stalled, run again with a higher --max-connections",
            live.requests.load(Ordering::Relaxed),
            settings.max_connections
        );
    }

    let sent = replay.sent.snapshot();
    let mut receiver_files = Vec::new();
    if settings.worker.is_some() {
        // A worker leaves the reconciliation to `loadgen merge`: it keeps its sends and
        // the receivers' counters before it started, for the merge to read.
        receiver_files.push((
            SENDS.to_string(),
            serde_json::to_string(&sent).expect("the ledger serializes"),
        ));
        if let Some(start) = &start_stats {
            receiver_files.push((
                RECEIVERS_START.to_string(),
                serde_json::to_string_pretty(start).expect("stats serialize"),
            ));
        }
    }
    let delivery = match (&receivers, &start_stats) {
        (Some(receivers), Some(start)) if settings.worker.is_none() => {
            let reconciled = delivery::reconcile(
                receivers,
                &run_id,
                &sent,
                Some(start),
                settings.drain_timeout,
                duration,
            )
            .await;
            match reconciled {
                Ok((delivery, files)) => {
                    receiver_files = files;
                    Some(delivery)
                }
                Err(why) => {
                    eprintln!("loadgen: reconciliation failed: {why}");
                    None
                }
            }
        }
        _ => None,
    };

    let mut measured = Measurements::from_recorded(&recorded, duration);
    if let Some(schedule) = &schedule {
        measured.late = schedule.late.load(Ordering::Relaxed);
        measured.dropped = schedule.dropped.load(Ordering::Relaxed);
    }
    let latency_log = hlog::render(started_wall, &recorded.intervals)
        .map_err(|why| LoadgenError::Goose(format!("cannot encode the latency log: {why}")))?;
    let mut verdicts = gate::judge(&settings.rules, &measured, delivery.as_ref(), &calibrations);
    if let Some(baseline) = &baseline {
        // Judged on the log as written, so the verdict is what anyone re-reading it gets.
        let now = hlog::parse(&latency_log).map_err(|why| {
            LoadgenError::Goose(format!("the latency log does not read back: {why}"))
        })?;
        verdicts.extend(gate::judge_baseline(baseline, &now.intervals));
    }
    // A rule that stopped the run stays failed, whatever the drain changed afterwards.
    verdicts.extend(live_failure);
    let passed = verdicts.iter().all(|v| v.passed);
    let report = LoadgenReport {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_secs: duration,
        ended_by,
        settings: SettingsRecord {
            host: settings.host.to_string(),
            users: settings.users,
            hatch_rate: settings.hatch_rate,
            run_time_secs: settings.run_time.map(|t| t.as_secs_f64()),
            wait_min_ms: settings.wait.0.as_secs_f64() * 1000.0,
            wait_max_ms: settings.wait.1.as_secs_f64() * 1000.0,
            mode: settings.mode,
            traffic_file: traffic.path.display().to_string(),
            records: traffic.records.len(),
            seed: settings.seed,
            git_commit: git_commit(),
            interval_secs: settings.interval.as_secs_f64(),
            request_timeout_secs: Some(settings.request_timeout.as_secs_f64()),
            worker: settings.worker.map(|w| WorkerRecord {
                index: w.index,
                count: w.count,
                users: w.share(settings.users),
                start_at: settings.start_at.map(|t| t.to_rfc3339()),
                start_skew_secs,
            }),
        },
        requests: measured.requests.iter().map(|m| m.stats.clone()).collect(),
        routes: measured.routes.iter().map(|m| m.stats.clone()).collect(),
        aggregate: measured.aggregate.stats.clone(),
        timeline,
        latency_timeline: recorded.latency_timeline,
        delivery,
        gate: GateRecord {
            passed,
            rules: verdicts,
        },
        files: files_index(
            &[
                ("index_html", "index.html"),
                ("loadgen_json", "loadgen.json"),
                ("gate_junit", "gate.xml"),
                ("latency_hlog", LATENCY_LOG),
            ],
            &receiver_files,
        ),
        workers: Vec::new(),
        open: match (&settings.open, &schedule) {
            (Some(open), Some(schedule)) => Some(open_model(open, schedule, &measured)),
            _ => None,
        },
    };
    let mut files = receiver_files;
    files.push((LATENCY_LOG.to_string(), latency_log));
    write_reports(&settings.reports, &dir, &report, &files).map_err(|source| {
        LoadgenError::Reports {
            path: dir.clone(),
            source,
        }
    })?;
    print!("{}", terminal::requests(&report));
    if let Some(delivery) = &report.delivery {
        print!("{}", terminal::delivery(delivery));
    }
    print!("{}", terminal::gate(&report.gate.rules));
    println!(
        "Run {run_id} ended ({}) after {duration:.1}s. Report: {}",
        ended_by.describe(),
        dir.join("index.html").display()
    );
    Ok(Outcome {
        passed,
        report_dir: dir,
        report,
    })
}

/// The open model's part of the report.
fn open_model(open: &OpenSettings, schedule: &Schedule, measured: &Measurements) -> OpenModel {
    OpenModel {
        plan: open.plan_text.clone(),
        arrivals: open.arrivals,
        max_users: open.max_users,
        drop_late_ms: open.drop_late.map(|d| d.as_secs_f64() * 1000.0),
        scheduled: schedule.issued.load(Ordering::Relaxed),
        late: measured.late,
        dropped: measured.dropped,
        service: measured.service_rows(),
        lag_ms: measured.lag_ms(),
    }
}

/// The run folder's files by role (`latency_hlog`), for loadgen.json: the fixed ones, then
/// each written file named after itself.
pub(crate) fn files_index(
    fixed: &[(&str, &str)],
    written: &[(String, String)],
) -> BTreeMap<String, String> {
    fixed
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(written.iter().map(|(f, _)| {
            let role = f
                .trim_end_matches(".hgrm")
                .trim_end_matches(".hlog")
                .trim_end_matches(".json");
            (role.replace('-', "_"), f.clone())
        }))
        .collect()
}

/// The interval log's name in the run folder.
pub const LATENCY_LOG: &str = "latency.hlog";
/// A worker's ledger of sends, for `loadgen merge`.
pub const SENDS: &str = "sends.json";
/// A worker's copy of the receivers' `/stats` before it started.
pub const RECEIVERS_START: &str = "receivers-start.json";

/// Waits for `--start-at`; returns how late this process is against it, in seconds.
async fn wait_for_start(settings: &Settings) -> f64 {
    let Some(at) = settings.start_at else {
        return 0.0;
    };
    let now = chrono::Utc::now();
    match (at - now).to_std() {
        Ok(wait) => {
            eprintln!(
                "loadgen: waiting {:.1}s for --start-at {}",
                wait.as_secs_f64(),
                at.to_rfc3339()
            );
            tokio::time::sleep(wait).await;
            (chrono::Utc::now() - at).as_seconds_f64().max(0.0)
        }
        Err(_) => {
            let late = (now - at).as_seconds_f64();
            let who = settings.worker.map_or("this run".to_string(), |w| {
                format!("worker {} of {}", w.index, w.count)
            });
            eprintln!(
                "loadgen: {who} started {late:.1}s after --start-at {}: its users begin that much later than the others'; start the workers earlier, or give a later --start-at",
                at.to_rfc3339()
            );
            late
        }
    }
}

/// Writes the run folder: loadgen.json, gate.xml, index.html, the latency log and the
/// receivers' figures; then points `<reports>/latest` at it, rewrites the run list and,
/// for a gated run, appends to the history.
pub(crate) fn write_reports(
    reports: &Path,
    dir: &Path,
    report: &LoadgenReport,
    files: &[(String, String)],
) -> std::io::Result<()> {
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
        use std::io::Write;
        let line = serde_json::to_string(&HistoryEntry::from_report(report))
            .map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(reports.join(history::FILE))?;
        writeln!(file, "{line}")?;
    }
    Ok(())
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

/// The `--baseline` run, read and checked, for a run or a merge.
pub fn read_baseline(
    path: Option<&Path>,
    max_regression: f64,
) -> Result<Option<Baseline>, LoadgenError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let (report, log) = read_run(path).map_err(|why| LoadgenError::Baseline {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(Some(Baseline {
        path: path.display().to_string(),
        report,
        log,
        max_regression,
    }))
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

/// The configuration Goose runs with: it runs the users; loadgen measures and judges.
fn goose_configuration(settings: &Settings, iterations: Option<usize>) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    config.host = Some(settings.host.to_string());
    // A worker runs its share of the users at its share of the hatch rate.
    let users = settings.process_users();
    let hatch_rate = settings.worker.map_or(settings.hatch_rate, |w| {
        settings.hatch_rate / w.count as f64
    });
    // The open model's pool starts at once: its rate is the schedule's, not the ramp's.
    let hatch_rate = if settings.open.is_some() {
        (users as f64).max(1000.0)
    } else {
        hatch_rate
    };
    config.users = Some(users);
    config.increase_rate = Some(hatch_rate.to_string());
    config.iterations = iterations;
    config.no_print_metrics = true;
    config.no_telnet = true;
    config.quiet = 1;
    // loadgen's own histograms are the run's figures, and its live gate judges the rules
    // (`--abort-on-fail`); Goose's metrics would only duplicate them, at 6% of the CPU.
    config.no_metrics = true;
    config.no_threshold_abort = true;
    config
}

/// A run Goose could not carry out is an error; its metrics are off, so nothing else is read.
fn goose_outcome(result: Result<GooseMetrics, GooseError>) -> Result<(), LoadgenError> {
    result
        .map(drop)
        .map_err(|error| LoadgenError::Goose(goose_error_text(&error)))
}

/// Locust's --run-time counts from the first user's start, ramp-up included; Goose's
/// counts after it, so loadgen keeps the clock and stops Goose through its killswitch.
fn spawn_run_timer(
    limit: Duration,
    fired: Arc<AtomicBool>,
    live: Arc<Live>,
    request_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        fired.store(true, Ordering::SeqCst);
        goose::trigger_killswitch("--run-time reached");
        // Users stop between requests, so the run outlasts its run time by the slowest
        // request in flight: say so, or a target that stopped answering looks like a hang.
        let in_flight = live
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(live.requests.load(Ordering::Relaxed));
        if in_flight > 0 {
            eprintln!(
                "loadgen: --run-time reached; waiting for the {in_flight} request{} in flight to be answered or to time out (at most --request-timeout {})",
                if in_flight == 1 { "" } else { "s" },
                crate::duration::format_ms(request_timeout.as_secs_f64() * 1000.0)
            );
        }
    })
}

/// One TCP connect before any user starts: a wrong port fails in seconds with one
/// message, instead of every user logging connection errors.
async fn check_reachable(host: &url::Url) -> Result<(), LoadgenError> {
    let unreachable = |why: String| LoadgenError::Unreachable {
        host: host.to_string(),
        why,
    };
    let name = host.host_str().unwrap_or_default();
    let port = host.port_or_known_default().unwrap_or(80);
    let address = (name.trim_start_matches('[').trim_end_matches(']'), port);
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable("no answer within 5s".into())),
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

/// Sortable and unique: UTC time to the second plus 16 random bits.
fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::rng().random::<u16>()
    )
}

/// Goose's `Display` names only the kind of error; its option and detail say what to fix.
fn goose_error_text(error: &GooseError) -> String {
    match error {
        GooseError::InvalidOption {
            option,
            value,
            detail,
        } => format!("Goose refused {option} = {value}: {detail}"),
        other => format!("{other} ({other:?})"),
    }
}
