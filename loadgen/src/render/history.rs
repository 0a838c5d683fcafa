//! `loadgen history`'s text: per settings, each gated metric's trend as a sparkline, with
//! the run and commit where each change point began.

use std::collections::BTreeMap;

use crate::judge::history::{HistoryEntry, change_points, median};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn sparkline(values: &[f64]) -> String {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    values
        .iter()
        .map(|v| {
            if hi - lo <= f64::EPSILON {
                BARS[3]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// The report `loadgen history` prints: per settings, per metric, the trend and its
/// change points with the run and commit where each began.
pub fn render(entries: &[HistoryEntry], metric: Option<&str>, last: usize) -> String {
    let mut by_settings: BTreeMap<&str, Vec<&HistoryEntry>> = BTreeMap::new();
    for entry in entries {
        by_settings.entry(&entry.settings).or_default().push(entry);
    }
    let mut out = String::new();
    for (settings, mut runs) in by_settings {
        runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        let runs = &runs[runs.len().saturating_sub(last)..];
        out.push_str(&format!(
            "\n{settings}: {} runs, {} .. {}\n",
            runs.len(),
            runs[0].run_id,
            runs[runs.len() - 1].run_id
        ));
        let mut names: Vec<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if metric.is_some_and(|m| !name.contains(m)) {
                continue;
            }
            let points: Vec<(&HistoryEntry, f64)> = runs
                .iter()
                .filter_map(|r| r.metrics.get(name).map(|v| (*r, *v)))
                .collect();
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            let changes = change_points(&values);
            out.push_str(&format!(
                "  {name:<28} {} latest {:.3}, median {:.3}{}\n",
                sparkline(&values),
                values[values.len() - 1],
                median(&values),
                if changes.is_empty() {
                    String::new()
                } else {
                    format!(", {} change point(s)", changes.len())
                }
            ));
            for change in changes {
                let (run, _) = points[change.at];
                out.push_str(&format!(
                    "      change at run {} (commit {}): {:.3} -> {:.3} ({:+.1}%)\n",
                    run.run_id,
                    run.git_commit.as_deref().unwrap_or("unknown"),
                    change.before,
                    change.after,
                    (change.after / change.before - 1.0) * 100.0
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::history;

    #[test]
    fn the_report_names_the_run_and_commit_of_a_change() {
        let entries: Vec<HistoryEntry> = (0..8)
            .map(|i| HistoryEntry {
                run_id: format!("run-{i}"),
                started_at: format!("2026-01-0{}T00:00:00Z", i + 1),
                git_commit: Some(format!("c{i}")),
                settings: "s".into(),
                passed: true,
                metrics: [("p99 POST /".to_string(), if i < 4 { 2.0 } else { 4.0 })]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let text = render(&entries, None, 50);
        assert!(
            text.contains("change at run run-4 (commit c4): 2.000 -> 4.000 (+100.0%)"),
            "{text}"
        );
        let line = serde_json::to_string(&entries[0]).unwrap();
        assert_eq!(
            history::parse(&format!("{line}\n\n{line}\n"))
                .unwrap()
                .len(),
            2
        );
        assert!(history::parse("{nope").unwrap_err().contains("line 1"));
    }
}
