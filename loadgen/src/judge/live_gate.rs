//! `--abort-on-fail`: rules judged every second while the run goes on, stopping the run
//! (Goose's killswitch) at the first failure. The rest waits for the end.
//!
//! - Request rules (`p95<300ms`, `avg`, `max`, `error-rate`, `rps`) are judged on loadgen's
//!   own histograms of the run so far, once every user has started and the request has
//!   `MIN_SAMPLES` samples. Only upper bounds (`<`, `<=`): the rate so far rises once the
//!   ramp is over, so `rps>=500` waits for the end, as do multiples of a calibration run
//!   (`13x`) and `==`. (Goose used to judge these on its own metrics, which loadgen no longer
//!   has Goose keep: they duplicated these histograms at 6% of loadgen's CPU.)
//! - Counts that only grow during a run (`accepted`, `rejected`, `conflicts`,
//!   `dead_lettered`) fail live once an upper bound (`<`, `<=`, `==`) is passed.
//! - Stage percentiles (`e2e-p99<50ms`) are judged on the run so far once a route has
//!   `MIN_SAMPLES` samples.
//! - `lost`, `stored` and `duplicates` need the drain after the run: judged only at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use contract::StatsSnapshot;

use crate::judge::gate::{self, SourcedRule, Verdict, judge_delivery};
use crate::judge::rule::{LedgerField, Metric, Op, Rule};
use crate::ledger::delivery::{self, Delivery, Receivers};
use crate::record::summary::Measurements;
use crate::replay::Replay;

/// Samples a request or a stage needs before a rule on it may stop a run.
pub const MIN_SAMPLES: u64 = 100;

/// Whether `rule` can fail before the run ends, and on what.
fn live_kind(rule: &Rule) -> Option<LiveKind> {
    match rule.metric {
        Metric::Ledger(
            LedgerField::Accepted
            | LedgerField::Rejected
            | LedgerField::Conflicts
            | LedgerField::DeadLettered,
        ) if matches!(rule.op, Op::Lt | Op::Le | Op::Eq) => Some(LiveKind::GrowingCount),
        Metric::Stage(..) => Some(LiveKind::Percentile),
        Metric::Percentile(_) | Metric::Avg | Metric::Max | Metric::ErrorRate | Metric::Rps
            if !rule.relative && matches!(rule.op, Op::Lt | Op::Le) =>
        {
            Some(LiveKind::Request)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveKind {
    GrowingCount,
    Percentile,
    Request,
}

/// A count that only grows has failed for good once it is past an upper bound; below it,
/// (`==` not yet reached) it has not failed yet.
fn failed_for_good(rule: &Rule, observed: f64) -> bool {
    match rule.op {
        Op::Lt => observed >= rule.limit,
        Op::Le | Op::Eq => observed > rule.limit,
        Op::Gt | Op::Ge => false,
    }
}

/// Judges the live rules of `rules` against the run so far: `delivery`, and `measured` once
/// every user has started (`None` before); the first that failed, if any.
pub fn first_failure(
    rules: &[SourcedRule],
    delivery: &Delivery,
    measured: Option<&Measurements>,
) -> Option<Verdict> {
    rules.iter().find_map(|sourced| {
        let kind = live_kind(&sourced.rule)?;
        let verdict = match kind {
            LiveKind::Request => {
                gate::judge(std::slice::from_ref(sourced), measured?, None, &[]).pop()?
            }
            _ => judge_delivery(sourced, Some(delivery)),
        };
        let observed = verdict.observed?;
        let failed = match kind {
            LiveKind::GrowingCount => failed_for_good(&sourced.rule, observed),
            LiveKind::Percentile => {
                let route = sourced.rule.target.as_deref().unwrap_or("all");
                let Metric::Stage(stage, _) = sourced.rule.metric else {
                    return None;
                };
                let samples = delivery.routes.get(route)?.latency.get(stage.name())?.count;
                samples >= MIN_SAMPLES && !verdict.passed
            }
            LiveKind::Request => {
                let row = measured?.find(sourced.rule.target.as_deref())?;
                row.stats.count >= MIN_SAMPLES && !verdict.passed
            }
        };
        failed.then(|| Verdict {
            rule: format!("{} (live, --abort-on-fail)", verdict.rule),
            passed: false,
            detail: format!("the run was stopped early: {}", verdict.detail),
            ..verdict
        })
    })
}

/// Whether any of `rules` can fail before the run ends.
pub fn has_live_rules(rules: &[SourcedRule]) -> bool {
    rules.iter().any(|r| live_kind(&r.rule).is_some())
}

/// Every second: the ledger so far (sends, and the receivers' `/stats` against `start`) and,
/// once this process's `users` have all started, the requests so far; at the first live
/// failure, stops the run and returns the verdict.
pub fn spawn(
    rules: Vec<SourcedRule>,
    receivers: Option<Arc<Receivers>>,
    start: Option<StatsSnapshot>,
    replay: Arc<Replay>,
    users: usize,
    duration_so_far: impl Fn() -> f64 + Send + 'static,
) -> tokio::task::JoinHandle<Option<Verdict>> {
    let judges_requests = rules
        .iter()
        .any(|r| live_kind(&r.rule) == Some(LiveKind::Request));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = match &receivers {
                Some(r) => r.stats().await.ok(),
                None => None,
            };
            let so_far = delivery::provisional(
                receivers.as_ref().map(|r| r.url()).unwrap_or_default(),
                &replay.run_id,
                &replay.sent.counts(),
                start.as_ref(),
                now.as_ref(),
                duration_so_far(),
            );
            let all_started = replay.live.users_started.load(Ordering::Relaxed) >= users as u64;
            let measured = (judges_requests && all_started)
                .then(|| Measurements::from_recorded(&replay.recorder.so_far(), duration_so_far()));
            if let Some(verdict) = first_failure(&rules, &so_far, measured.as_ref()) {
                eprintln!(
                    "loadgen: --abort-on-fail: {} failed ({}); stopping the run",
                    verdict.rule, verdict.detail
                );
                goose::trigger_killswitch("--abort-on-fail: a rule failed");
                return Some(verdict);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::gate::RuleSource;
    use crate::ledger::delivery::{RouteLedger, StageLatency};

    fn sourced(text: &str) -> SourcedRule {
        SourcedRule {
            rule: text.parse().unwrap(),
            source: RuleSource::Cli,
        }
    }

    fn delivery(rejected: u64, e2e_p99: f64, samples: u64) -> Delivery {
        let mut row = RouteLedger {
            rejected,
            accepted: 10,
            ..Default::default()
        };
        row.latency.insert(
            "e2e".into(),
            StageLatency {
                count: samples,
                p99: e2e_p99,
                ..Default::default()
            },
        );
        Delivery {
            receivers: "http://127.0.0.1:1/".into(),
            drained: false,
            drain_secs: 0.0,
            routes: [("nats".to_string(), row.clone()), ("all".to_string(), row)]
                .into_iter()
                .collect(),
            unrouted_rejected: 0,
            receivers_restarted: false,
        }
    }

    #[test]
    fn growing_counts_fail_live_only_past_an_upper_bound() {
        let rules = vec![sourced("rejected<=2"), sourced("accepted>=1000")];
        assert!(first_failure(&rules, &delivery(2, 1.0, 0), None).is_none());
        let failed = first_failure(&rules, &delivery(3, 1.0, 0), None).unwrap();
        assert!(failed.rule.starts_with("rejected<=2"), "{}", failed.rule);
        assert!(!failed.passed);
        // `accepted>=1000` cannot fail before the end: more may come.
        assert!(first_failure(&[sourced("accepted>=1000")], &delivery(0, 1.0, 0), None).is_none());
        // `lost` needs the drain: never judged live.
        assert!(first_failure(&[sourced("lost==0")], &delivery(0, 1.0, 0), None).is_none());
    }

    #[test]
    fn stage_percentiles_fail_live_once_there_are_enough_samples() {
        let rule = [sourced("e2e-p99<5ms for nats")];
        assert!(first_failure(&rule, &delivery(0, 9.0, MIN_SAMPLES - 1), None).is_none());
        assert!(first_failure(&rule, &delivery(0, 4.0, MIN_SAMPLES), None).is_none());
        assert!(first_failure(&rule, &delivery(0, 9.0, MIN_SAMPLES), None).is_some());
        assert!(has_live_rules(&rule) && !has_live_rules(&[sourced("lost==0")]));
    }

    /// The run so far as loadgen measured it: `count` POSTs of 5 ms each.
    fn requests(count: u64) -> Measurements {
        let recorder = crate::record::intervals::Recorder::new(
            std::time::Instant::now(),
            Duration::from_secs(1),
        );
        for _ in 0..count {
            recorder.record(crate::record::intervals::Sample::closed(
                "POST /",
                None,
                201,
                true,
                Duration::from_millis(5),
            ));
        }
        Measurements::from_recorded(&recorder.so_far(), 1.0)
    }

    #[test]
    fn request_rules_fail_live_on_the_run_so_far_once_there_are_enough_samples() {
        let rule = [sourced("p99<1ms for POST /")];
        assert!(
            first_failure(&rule, &delivery(0, 1.0, 0), None).is_none(),
            "not before every user started"
        );
        let few = requests(MIN_SAMPLES - 1);
        assert!(first_failure(&rule, &delivery(0, 1.0, 0), Some(&few)).is_none());
        let enough = requests(MIN_SAMPLES);
        let failed = first_failure(&rule, &delivery(0, 1.0, 0), Some(&enough)).unwrap();
        assert!(failed.rule.contains("--abort-on-fail"), "{}", failed.rule);
        assert!(
            first_failure(&[sourced("p99<50ms")], &delivery(0, 1.0, 0), Some(&enough)).is_none()
        );
        // A multiple of a calibration run, and `==`, wait for the end.
        for end_only in ["p99<=2x for POST /", "p99==1ms"] {
            assert!(!has_live_rules(&[sourced(end_only)]), "{end_only}");
            assert!(
                first_failure(&[sourced(end_only)], &delivery(0, 1.0, 0), Some(&enough)).is_none()
            );
        }
        // A lower bound can still be met: the rate so far rises once the ramp is over.
        assert!(!has_live_rules(&[sourced("rps>=1000000")]));
        assert!(has_live_rules(&[sourced("rps<=1")]));
    }
}
