//! `loadgen compare`: the A/B gate's verdict. The head's runs (B) are judged against the
//! base's runs (A), each side's intervals pooled, with the baseline's bootstrap, per request
//! name and per route. A side on which loadgen itself was CPU-bound fails the comparison:
//! its latencies are loadgen's own queueing, not the code's.

use std::path::PathBuf;

use crate::cli::CompareArgs;
use crate::cli::parse_rules;
use crate::error::LoadgenError;
use crate::judge::gate::{self, Baseline, Compared};
use crate::model::{RuleSource, Unit, Verdict};
use crate::output;
use crate::render::{junit, terminal};

/// The comparison's outcome: the table's rows, and whether every verdict passed.
#[derive(Debug)]
pub struct Comparison {
    pub compared: Vec<Compared>,
    pub saturation: Vec<Verdict>,
    pub passed: bool,
}

/// Reads both sides, judges, prints the verdict table and writes the JUnit file if asked.
pub fn compare(args: CompareArgs) -> Result<Comparison, LoadgenError> {
    let (_, max_regression) = parse_rules(&[], None, args.max_regression)?;
    let base = read_side(&args.baseline, max_regression)?;
    let head = read_side(&args.runs, max_regression)?;
    if head.interval_secs != base.interval_secs {
        return Err(LoadgenError::Usage(format!(
            "compare: the runs' interval is {} s and the baseline's is {} s; compare runs recorded with the same --interval",
            head.interval_secs, base.interval_secs
        )));
    }
    let compared = gate::compare_with(&base, &head.intervals);
    let saturation = vec![saturated("base", &base), saturated("head", &head)];
    println!(
        "A/B: the head's {} against the base's {}; a regression is beyond {max_regression}% with 95% confidence",
        head.named(),
        base.named(),
    );
    print!("{}", terminal::comparison(&compared, &saturation));
    let verdicts: Vec<Verdict> = compared
        .iter()
        .map(|c| c.verdict.clone())
        .chain(saturation.iter().cloned())
        .collect();
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render("A/B", &verdicts)).map_err(|e| {
            LoadgenError::Usage(format!(
                "compare: cannot write --junit {} ({e}); check that its folder exists and is writable",
                path.display()
            ))
        })?;
    }
    let passed = verdicts.iter().all(|v| v.passed);
    Ok(Comparison {
        compared,
        saturation,
        passed,
    })
}

/// One side's runs, pooled.
fn read_side(paths: &[PathBuf], max_regression: f64) -> Result<Baseline, LoadgenError> {
    output::read_baseline(paths, max_regression)?
        .ok_or_else(|| LoadgenError::Usage("compare: give at least one run on each side".into()))
}

/// Whether loadgen was CPU-bound in any second of one side's runs: a failed verdict naming
/// the runs and their seconds when it was.
fn saturated(side: &str, pooled: &Baseline) -> Verdict {
    let bound: Vec<String> = pooled
        .runs
        .iter()
        .filter(|r| r.saturated_secs > 0)
        .map(|r| {
            format!(
                "{} {} of {:.0} s",
                r.run_id, r.saturated_secs, r.duration_secs
            )
        })
        .collect();
    let total: u64 = pooled.runs.iter().map(|r| r.saturated_secs).sum();
    let detail = if bound.is_empty() {
        format!(
            "loadgen had CPU to spare in every second of the {side}'s {} runs",
            pooled.runs.len()
        )
    } else {
        format!(
            "loadgen was CPU-bound in the {side}'s runs ({}): latencies there include its own queueing, so the comparison cannot be trusted; give loadgen more --threads or less load, and run again",
            bound.join(", ")
        )
    };
    Verdict {
        rule: format!("saturated==0 for the {side}"),
        source: RuleSource::Baseline,
        observed: Some(total as f64),
        limit: 0.0,
        unit: Unit::Count,
        passed: bound.is_empty(),
        detail,
        change: None,
    }
}
