//! The run's fourth phase: the sends reconciled with the receivers, the measurements read
//! off the histograms, and every rule judged.

use std::sync::atomic::Ordering;

use crate::error::LoadgenError;
use crate::judge::gate;
use crate::ledger::delivery;
use crate::ledger::sent::SentSnapshot;
use crate::model::{Delivery, Verdict};
use crate::output::{self, RECEIVERS_START, SENDS};
use crate::record::hlog;
use crate::record::progress::{self, Live};
use crate::record::summary::Measurements;

use super::execute::Executed;
use super::start::Started;

/// What the run measured and decided, and the files it leaves beside the report.
pub(super) struct Collected {
    pub(super) delivery: Option<Delivery>,
    pub(super) files: Vec<(String, String)>,
    pub(super) measured: Measurements,
    pub(super) verdicts: Vec<Verdict>,
}

/// Reconciles the sends with the receivers, reads the measurements off the histograms,
/// and judges every rule.
pub(super) async fn collect(
    started: &Started,
    executed: &Executed,
) -> Result<Collected, LoadgenError> {
    let prepared = &started.prepared;
    let settings = &prepared.settings;
    note_waits(&started.live, settings.max_connections);
    let sent = started.replay.sent.snapshot();
    let (delivery, mut files) = deliver(started, &sent, executed.duration).await;
    let mut measured = Measurements::from_recorded(&executed.recorded, executed.duration);
    measured.saturated_secs = progress::saturated_secs(&executed.timeline);
    if let Some(schedule) = &started.schedule {
        measured.late = schedule.late.load(Ordering::Relaxed);
        measured.dropped = schedule.dropped.load(Ordering::Relaxed);
    }
    let latency_log = hlog::render(executed.started_wall, &executed.recorded.intervals)
        .map_err(|why| LoadgenError::Goose(format!("cannot encode the latency log: {why}")))?;
    let mut verdicts = gate::judge(
        &settings.rules,
        &measured,
        delivery.as_ref(),
        &prepared.calibrations,
    );
    if let Some(baseline) = &prepared.baseline {
        // Judged on the log as written, so the verdict is what anyone re-reading it gets.
        let now = hlog::parse(&latency_log).map_err(|why| {
            LoadgenError::Goose(format!("the latency log does not read back: {why}"))
        })?;
        verdicts.extend(gate::judge_baseline(baseline, &now.intervals));
    }
    // A rule that stopped the run stays failed, whatever the drain changed afterwards.
    verdicts.extend(executed.live_failure.clone());
    files.push((output::LATENCY_LOG.to_string(), latency_log));
    Ok(Collected {
        delivery,
        files,
        measured,
        verdicts,
    })
}

/// Says how many requests waited for a connection of the cap, when any did.
fn note_waits(live: &Live, max_connections: usize) {
    let waited = live.waited_for_connection.load(Ordering::Relaxed);
    if waited > 0 {
        eprintln!(
            "loadgen: {waited} of {} requests waited for one of the {max_connections} connections of --max-connections; their wait is in their latency. If the target was slow rather than loadgen stalled, run again with a higher --max-connections",
            live.requests.load(Ordering::Relaxed),
        );
    }
}

/// The delivery ledger and the receivers' files. A worker leaves the reconciliation to
/// `loadgen merge`: it keeps its sends and the receivers' counters before it started.
async fn deliver(
    started: &Started,
    sent: &SentSnapshot,
    duration: f64,
) -> (Option<Delivery>, Vec<(String, String)>) {
    let settings = &started.prepared.settings;
    if settings.worker.is_some() {
        let mut files = vec![(
            SENDS.to_string(),
            serde_json::to_string(sent).expect("the ledger serializes"),
        )];
        if let Some(start) = &started.start_stats {
            files.push((
                RECEIVERS_START.to_string(),
                serde_json::to_string_pretty(start).expect("stats serialize"),
            ));
        }
        return (None, files);
    }
    let (Some(receivers), Some(start)) = (&started.receivers, &started.start_stats) else {
        return (None, Vec::new());
    };
    let reconciled = delivery::reconcile(
        receivers,
        &started.prepared.run_id,
        sent,
        Some(start),
        settings.drain_timeout,
        duration,
    )
    .await;
    match reconciled {
        Ok((delivery, files)) => (Some(delivery), files),
        Err(why) => {
            eprintln!("loadgen: reconciliation failed: {why}");
            (None, Vec::new())
        }
    }
}
