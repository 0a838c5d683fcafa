//! The run's third phase: Goose runs the users, with the live gate, the progress line and
//! the run-time clock beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use goose::prelude::GooseAttack;
use tokio::task::JoinHandle;

use crate::attack;
use crate::error::LoadgenError;
use crate::judge::live_gate;
use crate::model::{EndedBy, TimelinePoint, Verdict};
use crate::record::intervals::Recorded;
use crate::record::progress::{Sampler, Target};

use super::runtime_threads;
use super::start::Started;

/// What the users did, timed.
pub(super) struct Executed {
    pub(super) started_at: chrono::DateTime<chrono::Utc>,
    pub(super) started_wall: SystemTime,
    pub(super) duration: f64,
    pub(super) ended_by: EndedBy,
    pub(super) timeline: Vec<TimelinePoint>,
    pub(super) live_failure: Option<Verdict>,
    pub(super) recorded: Recorded,
}

/// Runs the users, with the live gate, the progress line and the run-time clock beside
/// them, until they finish, the clock stops them, or Ctrl-C does.
pub(super) async fn execute(
    started: &Started,
    swarm: GooseAttack,
) -> Result<Executed, LoadgenError> {
    let settings = &started.prepared.settings;
    let started_at = chrono::Utc::now();
    let started_wall = SystemTime::now();
    let clock = Instant::now();
    let live_gate = spawn_live_gate(started, clock);
    let sampler = Sampler::start(
        Arc::clone(&started.live),
        started.schedule.clone(),
        settings
            .process_plan()
            .map_or(Target::Users(settings.users), Target::Plan),
        settings.progress_every,
        runtime_threads(),
        settings.max_connections,
    );
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = settings.run_time.map(|run_time| {
        let end = attack::RunEnd {
            run_time,
            graceful_stop: settings.graceful_stop,
            request_timeout: settings.request_timeout,
        };
        let (live, interrupt) = (Arc::clone(&started.live), started.replay.interrupt.clone());
        attack::spawn_run_timer(end, Arc::clone(&timed_out), live, interrupt)
    });
    let result = swarm.execute().await;
    if let Some(timer) = timer {
        timer.abort();
    }
    let live_failure = live_verdict(live_gate).await;
    let timeline = sampler.finish().await;
    let duration = clock.elapsed().as_secs_f64();
    let ended_by = attack::ended(result, timed_out.load(Ordering::SeqCst))?;
    let recorded = started.replay.recorder.finish();
    Ok(Executed {
        started_at,
        started_wall,
        duration,
        ended_by,
        timeline,
        live_failure,
        recorded,
    })
}

/// The live gate of `--abort-on-fail`, when a rule can be judged while the run goes.
fn spawn_live_gate(started: &Started, clock: Instant) -> Option<JoinHandle<Option<Verdict>>> {
    let settings = &started.prepared.settings;
    (settings.abort_on_fail && live_gate::has_live_rules(&settings.rules)).then(|| {
        live_gate::spawn(
            settings.rules.clone(),
            started.receivers.clone(),
            started.start_stats.clone(),
            Arc::clone(&started.replay),
            settings.process_users(),
            move || clock.elapsed().as_secs_f64(),
        )
    })
}

/// The rule that stopped the run, if the live gate stopped it; a gate still watching is
/// stopped.
async fn live_verdict(live_gate: Option<JoinHandle<Option<Verdict>>>) -> Option<Verdict> {
    match live_gate {
        None => None,
        Some(task) if task.is_finished() => task.await.ok().flatten(),
        Some(task) => {
            task.abort();
            None
        }
    }
}
