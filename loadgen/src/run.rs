//! One load test from checked settings to written reports: load the records, check the
//! host answers, hand Goose a configuration built here (never argv), judge, write.

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

use crate::cli::Settings;
use crate::delivery::{self, Receivers};
use crate::error::LoadgenError;
use crate::gate::{self, Baseline};
use crate::live_gate;
use crate::progress::{Live, Sampler};
use crate::replay::{Mode, Replay};
use crate::report::{EndedBy, GateRecord, LoadgenReport, SCHEMA_VERSION, SettingsRecord};
use crate::rule::Op;
use crate::summary::Measurements;
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
    let baseline = match &settings.baseline {
        None => None,
        Some(path) => Some(Baseline {
            path: path.display().to_string(),
            report: LoadgenReport::read(path).map_err(|why| LoadgenError::Baseline {
                path: path.clone(),
                why,
            })?,
            max_regression: settings.max_regression,
        }),
    };
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

    let run_id = new_run_id();
    let dir = settings.reports.join(&run_id);
    eprintln!(
        "loadgen: run {run_id}: {} users at {}/s against {}, replaying {} records from {} ({} mode)",
        settings.users,
        settings.hatch_rate,
        settings.host,
        traffic.records.len(),
        traffic.path.display(),
        settings.mode.name()
    );

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

    let live = Arc::new(Live::default());
    let replay = Arc::new(Replay {
        records: traffic.records.clone(),
        mode: settings.mode,
        users: settings.users,
        seed: settings.seed,
        run_id: run_id.clone(),
        live: Arc::clone(&live),
        sent: Default::default(),
    });
    let config = goose_configuration(&settings, replay.iterations(), &dir);
    let attack = GooseAttack::initialize_with_config(config)
        .and_then(|a| {
            a.set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
        })
        .and_then(|a| Ok(a.register_scenario(replay.scenario(settings.wait, settings.post_only)?)))
        .map_err(|e| LoadgenError::Goose(goose_error_text(&e)))?;
    // Only now, once Goose has taken its configuration: a refused one leaves no folder.
    std::fs::create_dir_all(&dir).map_err(|source| LoadgenError::Reports {
        path: dir.clone(),
        source,
    })?;

    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let live_gate =
        (settings.abort_on_fail && live_gate::has_live_rules(&settings.rules)).then(|| {
            live_gate::spawn(
                settings.rules.clone(),
                receivers.clone(),
                start_stats.clone(),
                Arc::clone(&replay),
                move || started.elapsed().as_secs_f64(),
            )
        });
    let sampler = Sampler::start(Arc::clone(&live), settings.users, settings.progress_every);
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = settings
        .run_time
        .map(|limit| spawn_run_timer(limit, Arc::clone(&timed_out)));
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
    let metrics = goose_metrics(result)?;

    let sent = replay.sent.snapshot();
    let mut receiver_files = Vec::new();
    let delivery = match (&receivers, &start_stats) {
        (Some(receivers), Some(start)) => {
            let reconciled = delivery::reconcile(
                receivers,
                &run_id,
                &sent,
                Some(start),
                settings.drain_timeout,
                duration,
                &dir,
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

    let measured = Measurements::from_goose(&metrics, duration);
    let mut verdicts = gate::judge(&settings.rules, &measured, delivery.as_ref());
    if let Some(baseline) = &baseline {
        verdicts.extend(gate::judge_baseline(baseline, &measured));
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
        },
        requests: measured.requests.iter().map(|m| m.stats.clone()).collect(),
        aggregate: measured.aggregate.stats.clone(),
        timeline,
        delivery,
        gate: GateRecord {
            passed,
            rules: verdicts,
        },
        files: [
            ("index_html", "index.html"),
            ("loadgen_json", "loadgen.json"),
            ("gate_junit", "gate.xml"),
            ("goose_html", "goose.html"),
            ("goose_json", "goose.json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(receiver_files.into_iter().map(|f| {
            (
                f.trim_end_matches(".hgrm")
                    .trim_end_matches(".json")
                    .replace('-', "_"),
                f,
            )
        }))
        .collect(),
    };
    report.write(&dir).map_err(|source| LoadgenError::Reports {
        path: dir.clone(),
        source,
    })?;
    print!("{}", summary_table(&report));
    if let Some(delivery) = &report.delivery {
        print!("{}", delivery::table(delivery));
    }
    print!("{}", gate::table(&report.gate.rules));
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

/// The configuration Goose runs with. Metrics are never reset after ramp-up, so every
/// request sent is counted, as reconciliation needs.
fn goose_configuration(
    settings: &Settings,
    iterations: Option<usize>,
    dir: &Path,
) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    config.host = Some(settings.host.to_string());
    config.users = Some(settings.users);
    config.increase_rate = Some(settings.hatch_rate.to_string());
    config.iterations = iterations;
    // Goose never resets metrics in an --iterations run, and refuses to be told so.
    config.no_reset_metrics = iterations.is_none();
    config.no_print_metrics = true;
    config.no_telnet = true;
    config.quiet = 1;
    config.throttle_requests = settings.max_rps;
    config.report_file = ["goose.html", "goose.json"]
        .iter()
        .map(|name| dir.join(name).display().to_string())
        .collect();
    if settings.abort_on_fail {
        // Goose checks the request rules every second and stops the run at the first
        // failure; delivery and stage rules, and `==`, are loadgen's own (`live_gate`).
        config.threshold = settings
            .rules
            .iter()
            .filter(|r| !r.rule.metric.is_per_route() && r.rule.op != Op::Eq)
            .map(|r| r.rule.text.clone())
            .collect();
        if config.threshold.is_empty() {
            config.no_threshold_abort = true;
        }
    } else {
        config.no_threshold_abort = true;
    }
    config
}

/// Metrics from a run that ended, whether or not Goose's own rules passed.
fn goose_metrics(result: Result<GooseMetrics, GooseError>) -> Result<GooseMetrics, LoadgenError> {
    match result {
        Ok(metrics) => Ok(metrics),
        Err(GooseError::ThresholdsFailed { metrics, .. }) => Ok(*metrics.0),
        Err(error) => Err(LoadgenError::Goose(goose_error_text(&error))),
    }
}

/// Locust's --run-time counts from the first user's start, ramp-up included; Goose's
/// counts after it, so loadgen keeps the clock and stops Goose through its killswitch.
fn spawn_run_timer(limit: Duration, fired: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        fired.store(true, Ordering::SeqCst);
        goose::trigger_killswitch("--run-time reached");
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

/// Per-request counts and percentiles, as the run's closing summary.
fn summary_table(report: &LoadgenReport) -> String {
    let mut out = format!(
        "\n{:<12} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "request", "count", "fails", "req/s", "p50", "p95", "p99", "max"
    );
    for row in report.requests.iter().chain([&report.aggregate]) {
        let l = &row.latency_ms;
        let ms = crate::duration::format_ms;
        out.push_str(&format!(
            "{:<12} {:>9} {:>7} {:>9.1} {:>9} {:>9} {:>9} {:>9}\n",
            row.name,
            row.count,
            row.failures,
            row.rps,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max)
        ));
    }
    out.push('\n');
    out
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
