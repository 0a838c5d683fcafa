//! The history of gated runs (`reports/history.jsonl`, one line per run that had gate rules):
//! its entries, and the change points in each metric's trend (`render/history.rs` shows them).
//!
//! Change points are found by binary segmentation: the split with the least total absolute
//! deviation from each side's median is accepted when the medians of the runs next to it
//! are far apart in pooled MADs (and the shift is worth reporting), then both sides are
//! searched again. E-divisive (MongoDB) and Otava use energy statistics with a
//! permutation test; that needs dozens of runs per segment to be meaningful and is random.
//! A CI history is short and has the odd wild run, so medians and MADs, which ignore a
//! single outlier, and a fixed threshold, which is deterministic, fit it better.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{LoadgenReport, ROUTES};

/// The history file's name inside the reports folder.
pub const FILE: &str = "history.jsonl";

/// One gated run, as the history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub run_id: String,
    pub started_at: String,
    pub git_commit: Option<String>,
    /// The settings that make runs comparable; runs are only trended against their own kind.
    pub settings: String,
    pub passed: bool,
    /// `p95 POST /`, `rps route nats`, `e2e-p99 nats`, ...
    pub metrics: BTreeMap<String, f64>,
}

impl HistoryEntry {
    pub fn from_report(report: &LoadgenReport) -> HistoryEntry {
        let s = &report.settings;
        let settings = format!(
            "{} users at {}/s, wait {}..{} ms, {}, run time {}, {} records, host {}",
            s.users,
            s.hatch_rate,
            s.wait_min_ms,
            s.wait_max_ms,
            s.mode.name(),
            s.run_time_secs
                .map_or("unbounded".into(), |t| format!("{t} s")),
            s.records,
            s.host
        );
        let mut metrics = BTreeMap::new();
        let rows = report.requests.iter().map(|r| (r.name.clone(), r)).chain(
            report
                .routes
                .iter()
                .map(|r| (format!("route {}", r.name), r)),
        );
        for (name, row) in rows {
            if row.count == 0 {
                continue;
            }
            let l = &row.latency_ms;
            for (metric, value) in [
                ("p50", l.p50),
                ("p95", l.p95),
                ("p99", l.p99),
                ("rps", row.rps),
                ("error-rate", row.error_rate),
            ] {
                metrics.insert(format!("{metric} {name}"), value);
            }
        }
        if let Some(delivery) = &report.delivery {
            for route in ROUTES {
                if let Some(e2e) = delivery
                    .routes
                    .get(route)
                    .and_then(|r| r.latency.get("e2e"))
                {
                    metrics.insert(format!("e2e-p99 {route}"), e2e.p99);
                }
            }
            if let Some(all) = delivery.routes.get("all") {
                metrics.insert("lost".into(), all.lost as f64);
            }
        }
        HistoryEntry {
            run_id: report.run_id.clone(),
            started_at: report.started_at.clone(),
            git_commit: s.git_commit.clone(),
            settings,
            passed: report.gate.passed,
            metrics,
        }
    }
}

/// Parses the history file; a bad line is named by its number.
pub fn parse(text: &str) -> Result<Vec<HistoryEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("line {}: not a history entry ({e})", n + 1))
        })
        .collect()
}

/// A shift in a metric's level: runs from `at` on differ from those before.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePoint {
    pub at: usize,
    pub before: f64,
    pub after: f64,
}

/// Runs each side of a split needs before it is believed.
const MIN_SEGMENT: usize = 3;
/// Runs each side of a split that judge whether it is real.
const WINDOW: usize = 5;
/// How many pooled MADs apart the medians must be.
const THRESHOLD: f64 = 4.0;
/// Shifts smaller than this fraction of the level are not reported, however clean.
const MIN_SHIFT: f64 = 0.05;

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The change points of `values` (in run order), earliest first.
pub fn change_points(values: &[f64]) -> Vec<ChangePoint> {
    let mut found = Vec::new();
    segment(values, 0, &mut found);
    found.sort_by_key(|c| c.at);
    found
}

fn segment(values: &[f64], offset: usize, found: &mut Vec<ChangePoint>) {
    if values.len() < 2 * MIN_SEGMENT {
        return;
    }
    // Where: the split with the least total absolute deviation from each side's median
    // (an L1 segmentation, so one wild run cannot drag it).
    let cost = |side: &[f64]| {
        let m = median(side);
        side.iter().map(|v| (v - m).abs()).sum::<f64>()
    };
    let Some(k) = (MIN_SEGMENT..=values.len() - MIN_SEGMENT).min_by(|a, b| {
        let (ca, cb) = (
            cost(&values[..*a]) + cost(&values[*a..]),
            cost(&values[..*b]) + cost(&values[*b..]),
        );
        ca.total_cmp(&cb)
    }) else {
        return;
    };
    // Whether: the medians of the runs next to the split, their distance in pooled MADs.
    // Next to it, because a segment may still hold another step that would swell its MAD.
    // 1.4826 MAD estimates a normal standard deviation; the floor keeps a perfectly flat
    // history (MAD 0) from making any wobble infinitely significant.
    let (left, right) = (
        &values[k.saturating_sub(WINDOW)..k],
        &values[k..(k + WINDOW).min(values.len())],
    );
    let (before, after) = (median(left), median(right));
    let deviations: Vec<f64> = left
        .iter()
        .map(|v| (v - before).abs())
        .chain(right.iter().map(|v| (v - after).abs()))
        .collect();
    let scale = (1.4826 * median(&deviations)).max(before.abs().max(after.abs()) * 0.01);
    let score = (after - before).abs() / scale;
    let shift = (after - before).abs() / before.abs().max(f64::EPSILON);
    if score < THRESHOLD || shift < MIN_SHIFT {
        return;
    }
    found.push(ChangePoint {
        at: offset + k,
        before,
        after,
    });
    segment(&values[..k], offset, found);
    segment(&values[k..], offset + k, found);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_found_where_it_happened_and_noise_is_not() {
        let mut values = vec![
            2.0, 2.1, 1.9, 2.05, 2.0, 1.95, 2.1, 2.0, 3.0, 3.1, 2.9, 3.05, 3.0,
        ];
        let found = change_points(&values);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].at, 8);
        assert!((found[0].after - 3.0).abs() < 0.06, "{found:?}");
        // One wild run is an outlier, not a change.
        values.truncate(8);
        values[4] = 6.0;
        assert_eq!(change_points(&values), vec![]);
        // Flat, and shorter than two segments.
        assert_eq!(change_points(&[1.0; 10]), vec![]);
        assert_eq!(change_points(&[1.0, 5.0, 1.0]), vec![]);
    }

    #[test]
    fn two_steps_are_both_found() {
        let values: Vec<f64> = (0..18)
            .map(|i| match i {
                0..6 => 10.0,
                6..12 => 14.0,
                _ => 9.0,
            } + (i % 3) as f64 * 0.1)
            .collect();
        let at: Vec<usize> = change_points(&values).iter().map(|c| c.at).collect();
        assert_eq!(at, vec![6, 12]);
    }
}
