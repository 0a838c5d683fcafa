//! The run's second phase: the receivers' counters before it, `--start-at`, the state the
//! users share (records, ledger, recorder, client, schedule) and Goose's attack.

use std::sync::Arc;
use std::time::Instant;

use contract::StatsSnapshot;
use goose::prelude::GooseAttack;

use crate::arrival::Schedule;
use crate::attack;
use crate::cli::{OpenSettings, Settings};
use crate::connections::Connections;
use crate::error::LoadgenError;
use crate::ledger::delivery::Receivers;
use crate::ledger::sent::SentLedger;
use crate::output;
use crate::record::intervals::Recorder;
use crate::record::progress::Live;
use crate::replay::Replay;
use crate::scenario;
use crate::throttle::Throttle;

use super::prepare::Prepared;

/// The run about to execute: its inputs, the receivers' counters before it, and the state
/// the users share.
pub(super) struct Started {
    pub(super) prepared: Prepared,
    pub(super) receivers: Option<Arc<Receivers>>,
    pub(super) start_stats: Option<StatsSnapshot>,
    pub(super) start_skew_secs: f64,
    pub(super) live: Arc<Live>,
    pub(super) schedule: Option<Arc<Schedule>>,
    pub(super) replay: Arc<Replay>,
}

/// Reads the receivers' counters, waits for `--start-at`, builds the users' shared state
/// and Goose's attack, and makes the run's folder.
pub(super) async fn start(prepared: Prepared) -> Result<(Started, GooseAttack), LoadgenError> {
    let settings = &prepared.settings;
    // The receivers' counters before the run, so this run's latency can be told apart.
    let receivers = (!settings.receivers.is_empty())
        .then(|| Arc::new(Receivers::new(settings.receivers.clone())));
    let start_stats = match &receivers {
        None => None,
        Some(r) => r
            .stats()
            .await
            .inspect_err(|why| eprintln!(
                "loadgen: no delivery ledger for this run: {why}; pass --receivers URL, or --no-reconcile for a target that is not the receivers"
            ))
            .ok(),
    };
    let start_skew_secs = wait_for_start(settings).await;
    let live = Arc::new(Live::default());
    let schedule = match &settings.open {
        Some(open) => Some(schedule(settings, open)?),
        None => None,
    };
    let replay = Arc::new(replay(&prepared, &live, schedule.clone())?);
    let swarm = attack::attack(settings, &replay)?;
    // Only now, once Goose has taken its configuration: a refused one leaves no folder.
    output::create(&prepared.dir)?;
    let started = Started {
        prepared,
        receivers,
        start_stats,
        start_skew_secs,
        live,
        schedule,
        replay,
    };
    Ok((started, swarm))
}

/// The open model's schedule: a worker sends its share, the rate divided by the workers.
fn schedule(settings: &Settings, open: &OpenSettings) -> Result<Arc<Schedule>, LoadgenError> {
    let plan = match settings.worker {
        Some(w) => open.plan.scaled(1.0 / w.count as f64),
        None => open.plan.clone(),
    };
    let schedule = Schedule::new(
        plan,
        open.arrivals,
        (open.drop_late, open.late_after),
        settings.seed,
        settings.process_users(),
    )
    .map_err(|e| {
        LoadgenError::Usage(format!(
            "cannot start the open model's timer thread ({e}); check the process's thread limit (ulimit -u)"
        ))
    })?;
    Ok(Arc::new(schedule))
}

/// What every user shares: the records, the run's identity, the recorder and the client.
fn replay(
    prepared: &Prepared,
    live: &Arc<Live>,
    schedule: Option<Arc<Schedule>>,
) -> Result<Replay, LoadgenError> {
    let settings = &prepared.settings;
    Ok(Replay {
        records: prepared.traffic.records.clone(),
        mode: settings.mode,
        users: settings.users,
        seed: settings.seed,
        run_id: prepared.run_id.clone(),
        live: Arc::clone(live),
        sent: SentLedger::for_workers(settings.worker.map(|w| w.count)),
        recorder: Recorder::new(Instant::now(), settings.interval),
        worker: settings.worker,
        schedule,
        // A worker sends its share of the cap.
        throttle: settings
            .max_rps
            .map(|rps| Throttle::new(rps as f64 / settings.worker.map_or(1, |w| w.count) as f64)),
        connections: Connections::new(settings.max_connections, settings.request_timeout)
            .map_err(|e| LoadgenError::Goose(format!("cannot build the HTTP client: {e}")))?,
        interrupt: tokio_util::sync::CancellationToken::new(),
        scenarios: settings.scenarios.clone(),
        urls: urls(settings)?,
    })
}

/// Each request's URL, joined under `--host` once, before anything is sent.
fn urls(settings: &Settings) -> Result<Vec<Vec<url::Url>>, LoadgenError> {
    let flows = &settings.scenarios.flows;
    flows
        .iter()
        .map(|flow| {
            flow.steps
                .iter()
                .map(|step| {
                    scenario::join_under(&settings.host, &step.path).map_err(|e| {
                        LoadgenError::Usage(format!(
                            "request {:?}: path {:?} does not join under --host {} ({e}); give a path such as records/1",
                            step.name, step.path, settings.host
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

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
