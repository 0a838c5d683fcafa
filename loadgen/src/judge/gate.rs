//! The verdict: each gate rule judged once against the finished run's measurements, the
//! statistical comparison with a baseline, and limits relative to a calibration run.

use crate::judge::compare::{self, Side, Statistic};
use crate::judge::rule::{LedgerField, Metric, Rule, Unit};
use crate::model::{Change, Delivery, LoadgenReport, SeriesKind};
pub use crate::model::{RuleSource, Verdict};
use crate::record::hlog::{Log, LoggedInterval};
use crate::record::summary::{Measured, Measurements};

/// A rule with where it came from.
#[derive(Debug, Clone)]
pub struct SourcedRule {
    pub rule: Rule,
    pub source: RuleSource,
}

/// The baseline comparison asked for with --baseline: one or more earlier runs, their
/// interval histograms pooled, so a baseline of several runs carries the spread between
/// runs as well as within one.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The pooled runs, in the order given.
    pub runs: Vec<PooledRun>,
    /// The runs' interval, which they share.
    pub interval_secs: f64,
    pub intervals: Vec<LoggedInterval>,
    /// Percent by which a percentile may rise or requests/s fall before the gate fails.
    pub max_regression: f64,
}

/// A run in a pooled baseline: its id, and the seconds in which loadgen was CPU-bound.
#[derive(Debug, Clone)]
pub struct PooledRun {
    pub run_id: String,
    pub saturated_secs: u64,
    pub duration_secs: f64,
}

impl Baseline {
    /// Pools runs read from `paths` (each a report and its latency log). Runs with another
    /// interval than the first are refused: their seconds would weigh differently in the
    /// bootstrap.
    pub fn pool(
        runs: Vec<(String, LoadgenReport, Log)>,
        max_regression: f64,
    ) -> Result<Baseline, (String, String)> {
        let interval_secs = runs
            .first()
            .map_or(1.0, |(_, r, _)| r.settings.interval_secs);
        let mut baseline = Baseline {
            runs: Vec::new(),
            interval_secs,
            intervals: Vec::new(),
            max_regression,
        };
        for (path, report, log) in runs {
            if report.settings.interval_secs != interval_secs {
                return Err((
                    path,
                    format!(
                        "its interval is {} s and the first run's is {interval_secs} s; pool runs recorded with the same --interval",
                        report.settings.interval_secs
                    ),
                ));
            }
            baseline.runs.push(PooledRun {
                run_id: report.run_id,
                saturated_secs: report.saturated_secs,
                duration_secs: report.duration_secs,
            });
            baseline.intervals.extend(log.intervals);
        }
        Ok(baseline)
    }

    /// "run ID", or "3 runs (ID, ID, ID)".
    pub fn named(&self) -> String {
        match self.runs.as_slice() {
            [one] => format!("run {}", one.run_id),
            many => format!(
                "{} runs ({})",
                many.len(),
                many.iter()
                    .map(|r| r.run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The calibration run that `8x` limits multiply: the same load against a trivial handler,
/// measured in the same job, so the limit follows the machine.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub path: String,
    pub run_id: String,
    pub measured: Measurements,
}

/// The confidence of every baseline comparison's interval.
pub const CONFIDENCE: f64 = 0.95;

/// Judges every rule; a rule without samples fails, as a gate that checks nothing must not pass.
pub fn judge(
    rules: &[SourcedRule],
    measured: &Measurements,
    delivery: Option<&Delivery>,
    calibrations: &[Calibration],
) -> Vec<Verdict> {
    rules
        .iter()
        .map(|r| {
            if r.rule.metric.is_per_route() {
                judge_delivery(r, delivery)
            } else {
                judge_one(r, measured, calibrations)
            }
        })
        .collect()
}

/// Delivery and stage rules, judged on the reconciliation with the receivers.
pub fn judge_delivery(sourced: &SourcedRule, delivery: Option<&Delivery>) -> Verdict {
    let rule = &sourced.rule;
    let verdict = |observed: Option<f64>, passed: bool, detail: String| Verdict {
        rule: rule.text.clone(),
        source: sourced.source,
        observed,
        limit: rule.limit,
        unit: rule.metric.unit(),
        passed,
        detail,
        change: None,
    };
    let Some(delivery) = delivery else {
        return verdict(
            None,
            false,
            "no delivery ledger: reconciliation was off or the receivers did not answer (see --receivers)".into(),
        );
    };
    let route = rule.target.as_deref().unwrap_or("all");
    let Some(row) = delivery.routes.get(route) else {
        return verdict(None, false, format!("no route '{route}' in the ledger"));
    };
    let observed = match rule.metric {
        Metric::Ledger(field) => Some(match field {
            LedgerField::Accepted => row.accepted,
            LedgerField::Stored => row.stored,
            LedgerField::Lost => row.lost,
            LedgerField::Duplicates => row.duplicates,
            LedgerField::Conflicts => row.conflicts,
            LedgerField::DeadLettered => row.dead_lettered,
            LedgerField::Rejected => row.rejected,
        } as f64),
        Metric::Stage(stage, percent) => {
            row.latency
                .get(stage.name())
                .filter(|l| l.count > 0)
                .map(|l| {
                    // The fixed percentiles are exact; others are read off the distribution.
                    let exact = [
                        (50.0, l.p50),
                        (90.0, l.p90),
                        (99.0, l.p99),
                        (99.9, l.p99_9),
                        (100.0, l.max),
                    ];
                    match exact.iter().find(|(p, _)| *p == percent) {
                        Some((_, value)) => *value,
                        None => l
                            .distribution
                            .iter()
                            .find(|point| point[0] >= percent)
                            .map_or(l.max, |point| point[1]),
                    }
                })
        }
        _ => unreachable!("only per-route metrics come here"),
    };
    match observed {
        None => verdict(None, false, format!("no {route} samples")),
        Some(value) => {
            let mut detail = format!("{route}: {} accepted, {} stored", row.accepted, row.stored);
            if !delivery.drained {
                detail.push_str(" (not drained before --drain-timeout)");
            }
            if rule.metric == Metric::Ledger(LedgerField::Lost) && !row.lost_ids.is_empty() {
                let shown: Vec<&str> = row.lost_ids.iter().take(5).map(String::as_str).collect();
                detail.push_str(&format!("; lost: {}", shown.join(", ")));
            }
            verdict(Some(value), rule.op.holds(value, rule.limit), detail)
        }
    }
}

/// A request rule: a count of the open model's schedule, or a figure of one request name
/// or route, against an absolute limit or a multiple of the calibration's.
fn judge_one(
    sourced: &SourcedRule,
    measured: &Measurements,
    calibrations: &[Calibration],
) -> Verdict {
    match sourced.rule.metric {
        Metric::Late | Metric::Dropped => judge_schedule(sourced, measured),
        Metric::Saturated => judge_saturated(sourced, measured),
        _ if sourced.rule.relative => judge_calibrated(sourced, measured, calibrations),
        _ => judge_request(sourced, measured),
    }
}

/// A verdict on `sourced`, with the limit it was judged against.
fn verdict(
    sourced: &SourcedRule,
    observed: Option<f64>,
    limit: f64,
    passed: bool,
    detail: String,
) -> Verdict {
    Verdict {
        rule: sourced.rule.text.clone(),
        source: sourced.source,
        observed,
        limit,
        unit: sourced.rule.metric.unit(),
        passed,
        detail,
        change: None,
    }
}

/// `late` and `dropped`: the open model's counts are the run's, not a request's.
fn judge_schedule(sourced: &SourcedRule, measured: &Measurements) -> Verdict {
    let rule = &sourced.rule;
    let count = if rule.metric == Metric::Late {
        measured.late
    } else {
        measured.dropped
    } as f64;
    let detail = if measured.service_aggregate.is_some() {
        format!("{} requests measured", measured.aggregate.stats.count)
    } else {
        "a closed-model run: nothing is scheduled, so nothing is late or dropped".into()
    };
    let passed = rule.op.holds(count, rule.limit);
    verdict(sourced, Some(count), rule.limit, passed, detail)
}

/// `saturated`: the seconds in which loadgen itself was CPU-bound.
fn judge_saturated(sourced: &SourcedRule, measured: &Measurements) -> Verdict {
    let rule = &sourced.rule;
    let seconds = measured.saturated_secs as f64;
    let detail = match measured.saturated_secs {
        0 => "loadgen had CPU to spare in every second".to_string(),
        n => format!(
            "loadgen was CPU-bound for {n} s of the run: its latencies then include its own queueing; pass --threads or add workers"
        ),
    };
    let passed = rule.op.holds(seconds, rule.limit);
    verdict(sourced, Some(seconds), rule.limit, passed, detail)
}

/// The row a request rule reads: its request name or route (or all), service time for
/// `service-pNN`.
fn rule_row<'a>(sourced: &SourcedRule, measured: &'a Measurements) -> Option<&'a Measured> {
    let rule = &sourced.rule;
    match rule.metric {
        Metric::Service(_) => measured.find_service(rule.target.as_deref()),
        _ => measured.find(rule.target.as_deref()),
    }
}

/// The failing verdict on a rule whose request or route was never measured.
fn unmeasured(sourced: &SourcedRule, measured: &Measurements) -> Verdict {
    let detail = format!(
        "no request or route named '{}' was measured; names in this run: {}",
        sourced.rule.target.as_deref().unwrap_or_default(),
        measured.names().join(", ")
    );
    verdict(sourced, None, sourced.rule.limit, false, detail)
}

/// A latency, error-rate or rate rule with an absolute limit.
fn judge_request(sourced: &SourcedRule, measured: &Measurements) -> Verdict {
    let rule = &sourced.rule;
    let Some(row) = rule_row(sourced, measured) else {
        return unmeasured(sourced, measured);
    };
    judged(
        sourced,
        request_metric(rule.metric, row),
        rule.limit,
        String::new(),
        row,
    )
}

/// A latency or rate rule whose limit multiplies the calibration run's same figure.
fn judge_calibrated(
    sourced: &SourcedRule,
    measured: &Measurements,
    calibrations: &[Calibration],
) -> Verdict {
    let rule = &sourced.rule;
    let Some(row) = rule_row(sourced, measured) else {
        return unmeasured(sourced, measured);
    };
    let observed = request_metric(rule.metric, row);
    match calibrated_limit(rule, calibrations) {
        Ok((limit, detail)) => judged(sourced, observed, limit, detail, row),
        Err(why) => verdict(sourced, observed, rule.limit, false, why),
    }
}

/// The verdict on an observed figure, with how many requests it was measured over.
fn judged(
    sourced: &SourcedRule,
    observed: Option<f64>,
    limit: f64,
    mut detail: String,
    row: &Measured,
) -> Verdict {
    match observed {
        None => verdict(sourced, None, limit, false, detail + "no samples"),
        Some(value) => {
            let passed = sourced.rule.op.holds(value, limit);
            detail.push_str(&format!("{} requests measured", row.stats.count));
            verdict(sourced, Some(value), limit, passed, detail)
        }
    }
}

/// The limit a multiple stands for, and the detail that says what it multiplied. With
/// several calibration runs the slowest sets the scale: a calibration that happened to be
/// fast must not make an unchanged build fail.
fn calibrated_limit(rule: &Rule, calibrations: &[Calibration]) -> Result<(f64, String), String> {
    if calibrations.is_empty() {
        return Err(format!(
            "a limit of {}x needs a calibration run to multiply; pass --calibration DIR (see .ci/gate.toml)",
            rule.limit
        ));
    }
    let mut bases = Vec::new();
    for calibration in calibrations {
        let base = calibration
            .measured
            .find(rule.target.as_deref())
            .and_then(|row| request_metric(rule.metric, row))
            .filter(|b| *b > 0.0)
            .ok_or_else(|| {
                format!(
                    "the calibration run {} ({}) has no {} to multiply",
                    calibration.run_id,
                    calibration.path,
                    rule.target.as_deref().unwrap_or("requests")
                )
            })?;
        bases.push((base, calibration.run_id.as_str()));
    }
    let unit = rule.metric.unit();
    let (base, run) = bases
        .iter()
        .copied()
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    let others: Vec<String> = bases
        .iter()
        .filter(|(_, r)| *r != run)
        .map(|(b, r)| format!("{} in {r}", unit.format(*b)))
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; the slowest of {} calibrations, also {}",
            bases.len(),
            others.join(", ")
        )
    };
    Ok((
        rule.limit * base,
        format!(
            "{}x the calibration's {} (run {run}{also}); ",
            rule.limit,
            unit.format(base)
        ),
    ))
}

/// A request metric's value in its unit, or `None` when there is nothing to measure.
fn request_metric(metric: Metric, row: &Measured) -> Option<f64> {
    let stats = &row.stats;
    match metric {
        Metric::Percentile(p) => row.percentile_ms(p),
        Metric::Avg => (stats.count > 0).then_some(stats.latency_ms.avg),
        Metric::Max => (stats.count > 0).then_some(stats.latency_ms.max),
        Metric::ErrorRate => (stats.count > 0).then_some(stats.error_rate),
        Metric::Rps => Some(stats.rps),
        Metric::Service(p) => row.percentile_ms(p),
        Metric::Late | Metric::Dropped | Metric::Saturated => unreachable!("judged as counts"),
        Metric::Ledger(_) | Metric::Stage(..) => unreachable!("judged by judge_delivery"),
    }
}

/// One comparison with the baseline: what was compared (a request name, `route grpc`, ...),
/// the statistic (`p50`, `p95`, `p99`, `rps`) and the verdict.
#[derive(Debug, Clone)]
pub struct Compared {
    pub target: String,
    pub statistic: &'static str,
    pub verdict: Verdict,
}

/// Per request name and per route of the baseline: p50, p95 and p99 may not rise, and
/// requests/s may not fall, by more than the allowance with 95% confidence.
pub fn judge_baseline(baseline: &Baseline, now: &[LoggedInterval]) -> Vec<Verdict> {
    compare_with(baseline, now)
        .into_iter()
        .map(|c| c.verdict)
        .collect()
}

/// [`judge_baseline`]'s comparisons, each with its series and statistic. Intervals shorter
/// than half the usual (a run's last, partial one) are left out.
pub fn compare_with(baseline: &Baseline, now: &[LoggedInterval]) -> Vec<Compared> {
    let interval = baseline.interval_secs;
    let mut series: Vec<_> = baseline
        .intervals
        .iter()
        .map(|i| i.series.clone())
        .collect();
    series.sort();
    series.dedup();
    let mut verdicts = Vec::new();
    for key in series {
        let side = |intervals: &[LoggedInterval]| {
            Side::new(
                intervals
                    .iter()
                    .filter(|i| i.duration_secs >= interval * 0.5)
                    .filter(|i| i.series == key)
                    .map(|i| (&i.histogram, i.duration_secs)),
            )
        };
        let target = match key.kind {
            SeriesKind::Request => key.name.clone(),
            SeriesKind::Route => format!("route {}", key.name),
            SeriesKind::ServiceRequest => format!("service {}", key.name),
            SeriesKind::ServiceRoute => format!("service route {}", key.name),
            // The lag is how the schedule was kept, not how fast the target is.
            SeriesKind::Lag => continue,
        };
        let (before, after) = (side(&baseline.intervals), side(now));
        for (name, statistic) in [
            ("p50", Statistic::Percentile(50.0)),
            ("p95", Statistic::Percentile(95.0)),
            ("p99", Statistic::Percentile(99.0)),
            ("rps", Statistic::Rate),
        ] {
            let rule = format!(
                "{name} regression<={}% for {target}",
                baseline.max_regression
            );
            verdicts.push(Compared {
                target: target.clone(),
                statistic: name,
                verdict: compare_sides(baseline, rule, &target, statistic, &before, &after),
            });
        }
    }
    verdicts
}

/// One statistic of one series against the baseline's, as the verdict on `rule`.
fn compare_sides(
    baseline: &Baseline,
    rule: String,
    target: &str,
    statistic: Statistic,
    before: &Side,
    after: &Side,
) -> Verdict {
    let allowed = baseline.max_regression;
    let unit = match statistic {
        Statistic::Rate => Unit::PerSecond,
        Statistic::Percentile(_) => Unit::Ms,
    };
    let scale = |v: f64| match statistic {
        Statistic::Rate => v,
        Statistic::Percentile(_) => v / 1000.0,
    };
    let Some(change) = compare::change(before, after, statistic, CONFIDENCE) else {
        return Verdict {
            rule,
            source: RuleSource::Baseline,
            observed: None,
            limit: 0.0,
            unit,
            passed: false,
            detail: format!(
                "no {target} intervals to compare ({} in the baseline, {} now)",
                before.len(),
                after.len()
            ),
            change: None,
        };
    };
    let regressed = compare::regressed(&change, statistic, allowed);
    let limit = match statistic {
        Statistic::Rate => change.baseline * (1.0 - allowed / 100.0),
        Statistic::Percentile(_) => change.baseline * (1.0 + allowed / 100.0),
    };
    Verdict {
        rule,
        source: RuleSource::Baseline,
        observed: Some(scale(change.now)),
        limit: scale(limit),
        unit,
        passed: !regressed,
        detail: explain(&change, statistic, allowed, regressed, baseline),
        change: Some(Change {
            baseline: scale(change.baseline),
            now: scale(change.now),
            ..change
        }),
    }
}

/// The verdict's why, in words: the change, its interval, and which side of the allowance.
fn explain(
    change: &Change,
    statistic: Statistic,
    allowed: f64,
    regressed: bool,
    baseline: &Baseline,
) -> String {
    let worse = match statistic {
        Statistic::Rate => -allowed,
        Statistic::Percentile(_) => allowed,
    };
    let range = format!(
        "{:+.1}% [{:+.1}%, {:+.1}%] at {:.0}% over {}/{} intervals against {}",
        change.percent,
        change.low,
        change.high,
        change.confidence * 100.0,
        change.intervals[0],
        change.intervals[1],
        baseline.named()
    );
    let few = if change.intervals.iter().any(|n| *n < compare::MIN_INTERVALS) {
        format!(
            " (fewer than {} intervals: the interval is wide; run longer)",
            compare::MIN_INTERVALS
        )
    } else {
        String::new()
    };
    let why = if regressed {
        format!("a regression beyond {worse:+}%, and significant")
    } else if (statistic == Statistic::Rate && change.percent < worse)
        || (statistic != Statistic::Rate && change.percent > worse)
    {
        format!("beyond {worse:+}% but not significantly: within this machine's noise")
    } else {
        format!("within {worse:+}%")
    };
    format!("{range}: {why}{few}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hdrhistogram::Histogram;

    use super::*;
    use crate::model::{Latency, RequestStats};
    use crate::record::summary::Measured;

    fn measured(name: &str, times_us: &[u64], failures: u64, rps: f64) -> Measured {
        let mut histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for t in times_us {
            histogram.record(*t).unwrap();
        }
        let count = times_us.len() as u64;
        Measured {
            stats: RequestStats {
                name: name.into(),
                count,
                failures,
                error_rate: failures as f64 * 100.0 / count.max(1) as f64,
                rps,
                latency_ms: Latency {
                    avg: times_us.iter().sum::<u64>() as f64 / count.max(1) as f64 / 1000.0,
                    max: times_us.iter().max().copied().unwrap_or(0) as f64 / 1000.0,
                    p95: histogram.value_at_quantile(0.95) as f64 / 1000.0,
                    ..Latency::default()
                },
                status_codes: BTreeMap::new(),
                errors: BTreeMap::new(),
            },
            histogram,
        }
    }

    fn run() -> Measurements {
        let post: Vec<u64> = (1..=100).map(|i| i * 1000).collect(); // 1..100 ms
        Measurements {
            requests: vec![measured("POST /", &post, 2, 50.0)],
            routes: vec![],
            aggregate: measured("Aggregated", &post, 2, 50.0),
            ..Measurements::default()
        }
    }

    fn judge_all(rules: &[SourcedRule], measured: &Measurements) -> Vec<Verdict> {
        judge(rules, measured, None, &[])
    }

    #[test]
    fn delivery_rules_judge_the_ledger_and_fail_without_one() {
        use crate::ledger::delivery::{RouteLedger, StageLatency};
        let mut nats = RouteLedger {
            accepted: 10,
            stored: 9,
            lost: 1,
            lost_ids: vec!["r-u0-3".into()],
            ..Default::default()
        };
        nats.latency.insert(
            "e2e".into(),
            StageLatency {
                count: 9,
                p99: 40.0,
                p50: 5.0,
                max: 45.0,
                ..Default::default()
            },
        );
        let delivery = Delivery {
            receivers: "http://127.0.0.1:8080/".into(),
            drained: true,
            drain_secs: 0.1,
            routes: [
                ("nats".to_string(), nats.clone()),
                ("all".to_string(), nats),
            ]
            .into_iter()
            .collect(),
            unrouted_rejected: 0,
            receivers_restarted: false,
        };
        let rules = [
            cli("lost==0"),
            cli("duplicates==0"),
            cli("e2e-p99<50ms for nats"),
            cli("e2e-p99<10ms"),
        ];
        let verdicts = judge(&rules, &run(), Some(&delivery), &[]);
        let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
        assert_eq!(passed, vec![false, true, true, false]);
        assert!(
            verdicts[0].detail.contains("r-u0-3"),
            "{}",
            verdicts[0].detail
        );
        let without = judge(&rules[..1], &run(), None, &[]);
        assert!(!without[0].passed && without[0].detail.contains("no delivery ledger"));
    }

    fn cli(text: &str) -> SourcedRule {
        SourcedRule {
            rule: text.parse().unwrap(),
            source: RuleSource::Cli,
        }
    }

    #[test]
    fn rules_pass_and_fail_on_the_measured_values() {
        let verdicts = judge_all(
            &[
                cli("p95<200ms"),
                cli("p95<50ms"),
                cli("error-rate<5%"),
                cli("error-rate<1%"),
                cli("rps>=40"),
                cli("max<=100ms for POST /"),
            ],
            &run(),
        );
        let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
        assert_eq!(passed, vec![true, false, true, false, true, true]);
        let p95 = verdicts[0].observed.unwrap();
        assert!((94.0..=96.0).contains(&p95), "p95 was {p95}");
    }

    #[test]
    fn an_unknown_request_fails_and_names_the_known_ones() {
        let verdict = &judge_all(&[cli("p95<1s for GET /nope")], &run())[0];
        assert!(!verdict.passed);
        assert!(verdict.detail.contains("POST /"), "{}", verdict.detail);
    }

    #[test]
    fn a_rule_with_no_samples_fails() {
        let empty = Measurements {
            requests: vec![],
            routes: vec![],
            aggregate: measured("Aggregated", &[], 0, 0.0),
            ..Measurements::default()
        };
        let verdict = &judge_all(&[cli("p95<1s")], &empty)[0];
        assert!(!verdict.passed);
        assert_eq!(verdict.detail, "no samples");
    }

    /// `seconds` one-second intervals of POST / around `service_us`, as a log.
    fn log(seed: u64, seconds: usize, service_us: u64) -> Vec<LoggedInterval> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..seconds)
            .map(|i| {
                let mut histogram = crate::record::intervals::new_histogram();
                for _ in 0..200 {
                    let jitter = rng.random_range(0..service_us / 5);
                    histogram.record(service_us + jitter).unwrap();
                }
                LoggedInterval {
                    start_secs: i as f64,
                    duration_secs: 1.0,
                    series: crate::record::intervals::SeriesKey::request("POST /"),
                    histogram,
                }
            })
            .collect()
    }

    fn recorded() -> LoadgenReport {
        serde_json::from_str(include_str!("../../tests/data/loadgen-recorded.json"))
            .expect("the recorded report reads")
    }

    fn baseline(intervals: Vec<LoggedInterval>) -> Baseline {
        let log = Log {
            start_time: None,
            intervals,
        };
        Baseline::pool(vec![("b".into(), recorded(), log)], 10.0).unwrap()
    }

    #[test]
    fn a_baseline_of_several_runs_pools_their_intervals_and_names_them() {
        let runs = (0..3)
            .map(|i| {
                let mut report = recorded();
                report.run_id = format!("a{i}");
                let log = Log {
                    start_time: None,
                    intervals: log(10 + i, 10, 2000),
                };
                (format!("run{i}"), report, log)
            })
            .collect();
        let pooled = Baseline::pool(runs, 10.0).unwrap();
        assert_eq!(pooled.intervals.len(), 30);
        let verdicts = judge_baseline(&pooled, &log(20, 10, 2000));
        assert_eq!(verdicts[0].change.as_ref().unwrap().intervals, [30, 10]);
        assert!(
            verdicts[0].detail.contains("against 3 runs (a0, a1, a2)"),
            "{}",
            verdicts[0].detail
        );
        // A run recorded with another interval is refused, and named.
        let mut other = recorded();
        other.settings.interval_secs *= 2.0;
        let empty = || Log {
            start_time: None,
            intervals: Vec::new(),
        };
        let refused = Baseline::pool(
            vec![
                ("first".into(), recorded(), empty()),
                ("second".into(), other, empty()),
            ],
            10.0,
        )
        .unwrap_err();
        assert_eq!(refused.0, "second");
        assert!(refused.1.contains("same --interval"), "{}", refused.1);
    }

    #[test]
    fn baseline_fails_only_on_a_significant_regression_beyond_the_allowance() {
        let base = baseline(log(1, 20, 2000));
        let same = judge_baseline(&base, &log(2, 20, 2000));
        assert_eq!(same.len(), 4, "p50, p95, p99 and rps for POST /");
        assert!(same.iter().all(|v| v.passed), "{same:#?}");
        let slower = judge_baseline(&base, &log(3, 20, 3000));
        let failed: Vec<&str> = slower
            .iter()
            .filter(|v| !v.passed)
            .map(|v| v.rule.as_str())
            .collect();
        assert_eq!(
            failed,
            vec![
                "p50 regression<=10% for POST /",
                "p95 regression<=10% for POST /",
                "p99 regression<=10% for POST /"
            ]
        );
        let p50 = slower[0].change.as_ref().unwrap();
        assert!(
            p50.low > 10.0 && p50.percent > p50.low && p50.high > p50.percent,
            "{p50:?}"
        );
        assert!(
            slower[0].detail.contains("significant"),
            "{}",
            slower[0].detail
        );
        // The last interval of a run is partial and left out.
        let mut partial = log(4, 21, 2000);
        partial[20].duration_secs = 0.2;
        let verdicts = judge_baseline(&base, &partial);
        assert_eq!(verdicts[0].change.as_ref().unwrap().intervals, [20, 20]);
        // A series the baseline had and this run lacks fails.
        let other = judge_baseline(&baseline(log(1, 5, 2000)), &[]);
        assert!(
            other
                .iter()
                .all(|v| !v.passed && v.detail.contains("no POST / intervals"))
        );
    }

    #[test]
    fn relative_limits_multiply_the_calibration_run() {
        let calibration = Calibration {
            path: "cal".into(),
            run_id: "cal-1".into(),
            measured: {
                let fast: Vec<u64> = (1..=100).map(|i| i * 100).collect(); // 0.1..10 ms
                Measurements {
                    requests: vec![measured("POST /", &fast, 0, 50.0)],
                    routes: vec![],
                    aggregate: measured("Aggregated", &fast, 0, 50.0),
                    ..Measurements::default()
                }
            },
        };
        // The run's p50 is 50 ms; the calibration's 5 ms.
        let verdicts = judge(
            &[cli("p50<=12x for POST /"), cli("p50<=8x for POST /")],
            &run(),
            None,
            std::slice::from_ref(&calibration),
        );
        assert!(verdicts[0].passed && !verdicts[1].passed, "{verdicts:#?}");
        assert!(
            (verdicts[1].limit - 40.0).abs() < 0.1,
            "{}",
            verdicts[1].limit
        );
        assert!(
            verdicts[1].detail.contains("cal-1"),
            "{}",
            verdicts[1].detail
        );
        // Of two calibrations the slower one sets the scale: 10 ms here, so 8x passes.
        let slower = Calibration {
            run_id: "cal-2".into(),
            measured: run(),
            ..calibration.clone()
        };
        let both = judge(
            &[cli("p50<=8x for POST /")],
            &run(),
            None,
            &[calibration, slower],
        );
        assert!(both[0].passed, "{both:#?}");
        assert!(both[0].detail.contains("cal-2") && both[0].detail.contains("cal-1"));
        let without = judge(&[cli("p50<=8x")], &run(), None, &[]);
        assert!(!without[0].passed && without[0].detail.contains("--calibration"));
    }
}
