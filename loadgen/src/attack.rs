//! Goose's side of a run: the configuration it runs with (built here, never from argv), the
//! attack with one Goose scenario per flow registered, the users plan as Goose's test plan, the run-time clock that stops it through
//! its killswitch, and how its run ended. Goose runs the users; loadgen measures and judges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use goose::GooseError;
use goose::client::GooseClientBuilder;
use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::metrics::GooseMetrics;
use goose::prelude::GooseAttack;

use tokio_util::sync::CancellationToken;

use crate::cli::Settings;
use crate::error::LoadgenError;
use crate::model::EndedBy;
use crate::record::progress::Live;
use crate::replay::Replay;

/// The attack, configured and with the replay's flows registered, ready to execute.
pub fn attack(settings: &Settings, replay: &Arc<Replay>) -> Result<GooseAttack, LoadgenError> {
    let config = configuration(settings, replay.iterations());
    // One shared client without cookies, or Goose builds one per user before the run. The
    // users swap it for `replay.connections`' capped one in their first transaction.
    let attack = GooseAttack::initialize_with_config(config)
        .and_then(|a| {
            a.set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
        })
        .and_then(|a| {
            let flows = replay.goose_scenarios(settings.wait)?;
            Ok(flows.into_iter().fold(a, GooseAttack::register_scenario))
        });
    let attack = match settings.process_plan() {
        Some(plan) => attack.and_then(|a| {
            a.set_default(GooseDefault::TestPlan, plan.goose_text().as_str())
                .map(|a| *a)
        }),
        None => attack,
    };
    attack.map_err(|e| LoadgenError::Goose(error_text(&e)))
}

/// The configuration Goose runs with: it runs the users; loadgen measures and judges.
fn configuration(settings: &Settings, iterations: Option<usize>) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    // loadgen's own histograms are the run's figures, and its live gate judges the rules
    // (`--abort-on-fail`); Goose's metrics would only duplicate them, at 6% of the CPU.
    config.host = Some(settings.host.to_string());
    config.no_metrics = true;
    config.no_telnet = true;
    config.no_print_metrics = true;
    config.no_threshold_abort = true;
    config.quiet = 1;
    // A users plan is Goose's test plan, which takes no users, rate or iterations.
    if settings.users_plan.is_some() {
        return config;
    }
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
    config
}

/// Why Goose's run ended; clears the process-wide killswitch, so a later run in this
/// process starts clean. A run Goose could not carry out is an error.
pub fn ended(
    result: Result<GooseMetrics, GooseError>,
    timed_out: bool,
) -> Result<EndedBy, LoadgenError> {
    let ended_by = if timed_out {
        EndedBy::RunTime
    } else if goose::is_killswitch_triggered() {
        EndedBy::Interrupted
    } else {
        EndedBy::Completed
    };
    goose::reset_killswitch();
    // Goose's metrics are off, so nothing else of its result is read.
    result
        .map(|_| ended_by)
        .map_err(|error| LoadgenError::Goose(error_text(&error)))
}

/// When the run time ends: its length, how long requests in flight may still take
/// (`--graceful-stop`) and may take at all (`--request-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    pub run_time: Duration,
    pub graceful_stop: Duration,
    pub request_timeout: Duration,
}

/// Locust's --run-time counts from the first user's start, ramp-up included; Goose's
/// counts after it, so loadgen keeps the clock and stops Goose through its killswitch.
/// Users stop between requests; those still in flight get `--graceful-stop`, as k6's
/// gracefulStop, and are then interrupted through `interrupt`.
pub fn spawn_run_timer(
    end: RunEnd,
    fired: Arc<AtomicBool>,
    live: Arc<Live>,
    interrupt: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(end.run_time).await;
        fired.store(true, Ordering::SeqCst);
        goose::trigger_killswitch("--run-time reached");
        // The run outlasts its run time by the slowest request in flight: say so, or a
        // target that stopped answering looks like a hang.
        let in_flight = live
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(live.requests.load(Ordering::Relaxed));
        if in_flight > 0 {
            let plural = if in_flight == 1 { "" } else { "s" };
            let ms = |d: Duration| crate::duration::format_ms(d.as_secs_f64() * 1000.0);
            if end.request_timeout <= end.graceful_stop {
                eprintln!(
                    "loadgen: --run-time reached; waiting for the {in_flight} request{plural} in flight to be answered or to time out (at most --request-timeout {})",
                    ms(end.request_timeout)
                );
            } else {
                eprintln!(
                    "loadgen: --run-time reached; waiting for the {in_flight} request{plural} in flight to be answered (at most --graceful-stop {}; then they are interrupted)",
                    ms(end.graceful_stop)
                );
            }
        }
        tokio::time::sleep(end.graceful_stop).await;
        interrupt.cancel();
    })
}

/// Goose's `Display` names only the kind of error; its option and detail say what to fix.
fn error_text(error: &GooseError) -> String {
    match error {
        GooseError::InvalidOption {
            option,
            value,
            detail,
        } => format!("Goose refused {option} = {value}: {detail}"),
        other => format!("{other} ({other:?})"),
    }
}
