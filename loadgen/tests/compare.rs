//! `loadgen compare`, the A/B gate's verdict, on real runs against targets with a fixed
//! service time: the head's runs pooled against the base's, per request, with JUnit, and a
//! side on which loadgen was CPU-bound refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Args, Finished, Target, run_dir, run_to_deadline};

const DEADLINE: Duration = Duration::from_secs(120);

/// One 4-second run of 20 users against `target`; its folder.
fn run(target: &Target, reports: &Path) -> PathBuf {
    let done = Args::against(&target.url())
        .users(20)
        .hatch(1000)
        .wait("5ms..5ms")
        .loop_for("4s")
        .with(&["--no-reconcile"])
        .run(reports, DEADLINE);
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    run_dir(reports)
}

fn compare(args: &[&str]) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.arg("compare").args(args);
    run_to_deadline(command, &format!("loadgen compare {args:?}"), DEADLINE)
}

/// The table's rows that say REGRESSED, as (series, statistic).
fn regressed(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| l.trim_end().ends_with("REGRESSED"))
        .map(|l| {
            let cells: Vec<&str> = l.split("  ").filter(|c| !c.trim().is_empty()).collect();
            (cells[0].trim().to_string(), cells[1].trim().to_string())
        })
        .collect()
}

#[test]
fn the_head_is_judged_against_the_pooled_base_with_junit_and_saturation_refused() {
    let fast = Target::start_slow(Duration::from_millis(2));
    let slow = Target::start_slow(Duration::from_millis(6));
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let a1 = run(&fast, dirs[0].path());
    let a2 = run(&fast, dirs[1].path());
    let b_same = run(&fast, dirs[2].path());
    let b_slow1 = run(&slow, dirs[3].path());
    let b_slow2 = run(&slow, dirs[4].path());
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let base = [
        "--baseline".to_string(),
        path(&a1),
        "--baseline".into(),
        path(&a2),
    ];
    let out = tempfile::tempdir().unwrap();
    let junit = out.path().join("ab.xml");

    // The same target: every row passes. A generous allowance, as two short runs of a
    // sleeping target are all this test has.
    let mut args: Vec<String> = base.to_vec();
    args.extend([path(&b_same), "--max-regression".into(), "50".into()]);
    let same = compare(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(same.code, 0, "{}\n{}", same.stdout, same.stderr);
    assert!(
        same.stdout.contains("against the base's 2 runs ("),
        "{}",
        same.stdout
    );
    for row in ["POST /  ", "GET /  ", "95% interval", "all 10 rules passed"] {
        assert!(same.stdout.contains(row), "{row:?} in\n{}", same.stdout);
    }
    assert_eq!(regressed(&same.stdout), Vec::<(String, String)>::new());

    // Three times the service time: POST / regressed at every percentile, GET / did not.
    let mut args: Vec<String> = base.to_vec();
    args.extend([
        path(&b_slow1),
        path(&b_slow2),
        "--max-regression".into(),
        "50".into(),
        "--junit".into(),
        path(&junit),
    ]);
    let worse = compare(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(worse.code, 1, "{}\n{}", worse.stdout, worse.stderr);
    let rows = regressed(&worse.stdout);
    for p in ["p50", "p95", "p99"] {
        assert!(
            rows.contains(&("POST /".to_string(), p.to_string())),
            "{rows:?}\n{}",
            worse.stdout
        );
    }
    assert!(
        rows.iter().all(|(series, _)| series == "POST /"),
        "{rows:?}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("failures=\"{}\"", rows.len())),
        "{xml}"
    );
    assert!(
        xml.contains("name=\"p50 regression&lt;=50% for POST /\""),
        "{xml}"
    );

    // A head run in which loadgen was CPU-bound: the comparison cannot be trusted.
    let report = b_same.join("loadgen.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    json["saturated_secs"] = 2.into();
    std::fs::write(&report, json.to_string()).unwrap();
    let mut args: Vec<String> = base.to_vec();
    args.extend([path(&b_same), "--max-regression".into(), "50".into()]);
    let bound = compare(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(bound.code, 1, "{}\n{}", bound.stdout, bound.stderr);
    let run_id = json["run_id"].as_str().unwrap();
    assert!(
        bound.stdout.contains(&format!(
            "saturated==0 for the head: FAIL: loadgen was CPU-bound in the head's runs ({run_id} 2 of"
        )),
        "{}",
        bound.stdout
    );
    assert!(
        bound.stdout.contains("saturated==0 for the base: pass"),
        "{}",
        bound.stdout
    );

    // A run that is not there: usage, naming it.
    let missing = compare(&["--baseline", "no/such/run", &path(&b_slow1)]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("no/such/run"), "{}", missing.stderr);
}
