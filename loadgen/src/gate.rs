//! The verdict: each gate rule (and the baseline comparison) judged once against the
//! finished run's measurements, printed as a table and decided into the exit code.

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::report::LoadgenReport;
use crate::rule::{LedgerField, Metric, Op, Rule, Unit};
use crate::summary::Measurements;

/// Where a rule came from, so a failing CI run points at the file or flag to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleSource {
    Cli,
    GateFile,
    Baseline,
}

/// One rule's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub rule: String,
    pub source: RuleSource,
    /// What the run measured, in `unit`; `null` when there was nothing to measure.
    pub observed: Option<f64>,
    pub limit: f64,
    pub unit: Unit,
    pub passed: bool,
    /// Why it failed, or how it was measured.
    pub detail: String,
}

/// A rule with where it came from.
#[derive(Debug, Clone)]
pub struct SourcedRule {
    pub rule: Rule,
    pub source: RuleSource,
}

/// The baseline comparison asked for with --baseline.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub path: String,
    pub report: LoadgenReport,
    /// Percent by which p95 may rise or requests/s fall before the gate fails.
    pub max_regression: f64,
}

/// Judges every rule; a rule without samples fails, as a gate that checks nothing must not pass.
pub fn judge(
    rules: &[SourcedRule],
    measured: &Measurements,
    delivery: Option<&Delivery>,
) -> Vec<Verdict> {
    rules
        .iter()
        .map(|r| {
            if r.rule.metric.is_per_route() {
                judge_delivery(r, delivery)
            } else {
                judge_one(r, measured)
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

fn judge_one(sourced: &SourcedRule, measured: &Measurements) -> Verdict {
    let rule = &sourced.rule;
    let unit = rule.metric.unit();
    let verdict = |observed: Option<f64>, passed: bool, detail: String| Verdict {
        rule: rule.text.clone(),
        source: sourced.source,
        observed,
        limit: rule.limit,
        unit,
        passed,
        detail,
    };
    let Some(row) = measured.find(rule.target.as_deref()) else {
        return verdict(
            None,
            false,
            format!(
                "no request named '{}' was made; names in this run: {}",
                rule.target.as_deref().unwrap_or_default(),
                measured.names().join(", ")
            ),
        );
    };
    let stats = &row.stats;
    let observed = match rule.metric {
        Metric::Percentile(p) => row.percentile_ms(p),
        Metric::Avg => (stats.count > 0).then_some(stats.latency_ms.avg),
        Metric::Max => (stats.count > 0).then_some(stats.latency_ms.max),
        Metric::ErrorRate => (stats.count > 0).then_some(stats.error_rate),
        Metric::Rps => Some(stats.rps),
        Metric::Ledger(_) | Metric::Stage(..) => unreachable!("judged by judge_delivery"),
    };
    match observed {
        None => verdict(None, false, "no samples".to_string()),
        Some(value) => {
            let passed = rule.op.holds(value, rule.limit);
            let detail = format!("{} requests measured", stats.count);
            verdict(Some(value), passed, detail)
        }
    }
}

/// p95 may not rise, and requests/s may not fall, by more than the allowed percentage.
pub fn judge_baseline(baseline: &Baseline, measured: &Measurements) -> Vec<Verdict> {
    let before = &baseline.report.aggregate;
    let now = &measured.aggregate.stats;
    let allowed = baseline.max_regression;
    let p95_limit = before.latency_ms.p95 * (1.0 + allowed / 100.0);
    let rps_limit = before.rps * (1.0 - allowed / 100.0);
    let change = |now: f64, before: f64| {
        if before == 0.0 {
            "baseline was 0".to_string()
        } else {
            format!(
                "{:+.1}% against {} (run {})",
                (now - before) * 100.0 / before,
                baseline.path,
                baseline.report.run_id
            )
        }
    };
    vec![
        Verdict {
            rule: format!("p95 regression<={allowed}%"),
            source: RuleSource::Baseline,
            observed: Some(now.latency_ms.p95),
            limit: p95_limit,
            unit: Unit::Ms,
            passed: now.count > 0 && Op::Le.holds(now.latency_ms.p95, p95_limit),
            detail: change(now.latency_ms.p95, before.latency_ms.p95),
        },
        Verdict {
            rule: format!("rps regression<={allowed}%"),
            source: RuleSource::Baseline,
            observed: Some(now.rps),
            limit: rps_limit,
            unit: Unit::PerSecond,
            passed: Op::Ge.holds(now.rps, rps_limit),
            detail: change(now.rps, before.rps),
        },
    ]
}

/// The terminal table: rule, observed, limit, verdict.
pub fn table(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return "Gate: no rules (pass --threshold RULE or --gate FILE to judge the run)\n".into();
    }
    let rows: Vec<[String; 5]> = verdicts
        .iter()
        .map(|v| {
            [
                v.rule.clone(),
                v.observed.map_or("-".into(), |o| v.unit.format(o)),
                v.unit.format(v.limit),
                if v.passed { "PASS" } else { "FAIL" }.into(),
                v.detail.clone(),
            ]
        })
        .collect();
    let header = ["rule", "observed", "limit", "result", "detail"];
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            out.push_str(&format!("{:<width$}  ", cell, width = widths[c]));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = String::from("Gate:\n");
    out.push_str(&line(header));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    out.push_str(&if failed == 0 {
        format!("all {} rules passed\n", verdicts.len())
    } else {
        format!("{failed} of {} rules FAILED\n", verdicts.len())
    });
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hdrhistogram::Histogram;

    use super::*;
    use crate::report::{Latency, RequestStats};
    use crate::summary::Measured;

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
            },
            histogram,
        }
    }

    fn run() -> Measurements {
        let post: Vec<u64> = (1..=100).map(|i| i * 1000).collect(); // 1..100 ms
        Measurements {
            requests: vec![measured("POST /", &post, 2, 50.0)],
            aggregate: measured("Aggregated", &post, 2, 50.0),
        }
    }

    fn judge_all(rules: &[SourcedRule], measured: &Measurements) -> Vec<Verdict> {
        judge(rules, measured, None)
    }

    #[test]
    fn delivery_rules_judge_the_ledger_and_fail_without_one() {
        use crate::delivery::{RouteLedger, StageLatency};
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
        let verdicts = judge(&rules, &run(), Some(&delivery));
        let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
        assert_eq!(passed, vec![false, true, true, false]);
        assert!(
            verdicts[0].detail.contains("r-u0-3"),
            "{}",
            verdicts[0].detail
        );
        let without = judge(&rules[..1], &run(), None);
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
            aggregate: measured("Aggregated", &[], 0, 0.0),
        };
        let verdict = &judge_all(&[cli("p95<1s")], &empty)[0];
        assert!(!verdict.passed);
        assert_eq!(verdict.detail, "no samples");
    }

    #[test]
    fn baseline_fails_on_regression_beyond_the_allowance() {
        let now = run();
        let mut earlier = now.aggregate.stats.clone();
        let report = |aggregate: RequestStats| LoadgenReport {
            schema_version: 1,
            run_id: "before".into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_secs: 1.0,
            ended_by: crate::report::EndedBy::Completed,
            settings: serde_json::from_value(serde_json::json!({
                "host": "http://127.0.0.1:1", "users": 1, "hatch_rate": 1.0, "run_time_secs": null,
                "wait_min_ms": 0.0, "wait_max_ms": 0.0, "mode": "per-user",
                "traffic_file": "t.json", "records": 1, "seed": null, "git_commit": null
            }))
            .unwrap(),
            requests: vec![],
            aggregate,
            timeline: vec![],
            delivery: None,
            gate: crate::report::GateRecord {
                passed: true,
                rules: vec![],
            },
            files: BTreeMap::new(),
        };
        let same = Baseline {
            path: "b.json".into(),
            report: report(earlier.clone()),
            max_regression: 10.0,
        };
        assert!(judge_baseline(&same, &now).iter().all(|v| v.passed));
        earlier.latency_ms.p95 /= 2.0; // the run is now twice as slow as the baseline
        earlier.rps *= 2.0; // and half the rate
        let slower = Baseline {
            report: report(earlier),
            ..same
        };
        let verdicts = judge_baseline(&slower, &now);
        assert!(verdicts.iter().all(|v| !v.passed), "{verdicts:?}");
    }

    #[test]
    fn the_table_shows_each_rule_and_the_outcome() {
        let text = table(&judge_all(&[cli("p95<200ms"), cli("p95<50ms")], &run()));
        assert!(text.contains("p95<200ms") && text.contains("PASS"));
        assert!(text.contains("p95<50ms") && text.contains("FAIL"));
        assert!(text.contains("1 of 2 rules FAILED"));
    }
}
