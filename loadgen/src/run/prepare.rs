//! The run's first phase: every input read and checked (the traffic file, the baseline,
//! the calibrations), one connect to the host, the run named; nothing is sent yet.

use std::time::Duration;

use rand::Rng;

use crate::cli::Settings;
use crate::connections;
use crate::error::LoadgenError;
use crate::judge::gate::{Baseline, Calibration};
use crate::output;
use crate::record::summary::Measurements;
use crate::replay::Mode;
use crate::traffic::Traffic;

use super::runtime_threads;

/// Every input, read and checked; the target answered one connect; nothing sent yet.
pub(super) struct Prepared {
    pub(super) settings: Settings,
    pub(super) traffic: Traffic,
    pub(super) baseline: Option<Baseline>,
    pub(super) calibrations: Vec<Calibration>,
    pub(super) run_id: String,
    pub(super) dir: std::path::PathBuf,
}

/// Reads the traffic file, the baseline and the calibrations, checks the host answers,
/// names the run and fits the connection cap to the open-files limit.
pub(super) async fn prepare(mut settings: Settings) -> Result<Prepared, LoadgenError> {
    // A flow that sends no record needs no traffic file: it may test any API.
    let traffic = if settings.scenarios.sends_records() {
        Traffic::load(&settings.traffic)?
    } else {
        Traffic {
            path: settings.traffic.clone(),
            records: Vec::new(),
        }
    };
    let baseline = output::read_baseline(&settings.baseline, settings.max_regression)?;
    let calibrations = read_calibrations(&settings)?;
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
    let dir = output::run_dir(&settings.reports, &run_id, settings.worker.map(|w| w.index));
    eprintln!("{}", banner(&settings, &traffic, &run_id));
    fit_connections(&mut settings);
    Ok(Prepared {
        settings,
        traffic,
        baseline,
        calibrations,
        run_id,
        dir,
    })
}

fn read_calibrations(settings: &Settings) -> Result<Vec<Calibration>, LoadgenError> {
    settings
        .calibration
        .iter()
        .map(|path| {
            output::read_run(path)
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
        .collect()
}

/// The first line a run prints: what it runs, against what, on how many threads.
fn banner(settings: &Settings, traffic: &Traffic, run_id: &str) -> String {
    let load = match &settings.open {
        Some(open) => format!(
            "open model, {} ({} arrivals) from a pool of {} users",
            match settings.worker {
                Some(w) => format!(
                    "{} (worker {} of {}'s share of {})",
                    open.share(w),
                    w.index,
                    w.count,
                    open.plan_text
                ),
                None => open.plan_text.clone(),
            },
            format!("{:?}", open.arrivals).to_lowercase(),
            settings.process_users()
        ),
        None => match &settings.users_plan {
            Some(plan) => format!("users over time {}", plan.text()),
            None => format!("{} users at {}/s", settings.users, settings.hatch_rate),
        },
    };
    let scenario = match &settings.scenarios.source {
        Some(file) => format!(
            ", {} (requests {})",
            file.display(),
            settings.scenarios.names().collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    };
    let records = if settings.scenarios.sends_records() {
        format!(
            "replaying {} records from {} ({} mode)",
            traffic.records.len(),
            traffic.path.display(),
            settings.mode.name()
        )
    } else {
        "sending no records (no delivery ledger)".into()
    };
    let threads = runtime_threads();
    format!(
        "loadgen: run {run_id}: {load} against {}{scenario}, {records}, on {threads} thread{}",
        settings.host,
        if threads == 1 { "" } else { "s" }
    )
}

/// Raises the soft open-files limit, and lowers `--max-connections` to what it allows.
fn fit_connections(settings: &mut Settings) {
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

/// Sortable and unique: UTC time to the second plus 16 random bits.
fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::rng().random::<u16>()
    )
}
