//! The gate as CI sees it: exit 0 when every rule passes, 1 when any fails (with the
//! table and gate.xml saying which), and --baseline failing a run that regressed.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Args, Target, loadgen, run_dir};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn passing_rules_exit_0_and_a_failing_rule_exits_1() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let pass = Args::fast(&target.url())
        .users(2)
        .rules(&["error-rate<1%", "p95<30s for POST /"])
        .run(reports.path(), DEADLINE);
    assert_eq!(pass.code, 0, "{}{}", pass.stdout, pass.stderr);
    assert!(
        pass.stdout.contains("all 2 rules passed"),
        "{}",
        pass.stdout
    );

    let reports = tempfile::tempdir().unwrap();
    let fail = Args::fast(&target.url())
        .users(2)
        .rules(&["error-rate<1%", "rps>=1000000"])
        .run(reports.path(), DEADLINE);
    assert_eq!(fail.code, 1, "{}{}", fail.stdout, fail.stderr);
    assert!(
        fail.stdout.contains("1 of 2 rules FAILED"),
        "{}",
        fail.stdout
    );
    let junit = std::fs::read_to_string(run_dir(reports.path()).join("gate.xml")).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    assert!(junit.contains("name=\"rps&gt;=1000000\""), "{junit}");
}

#[test]
fn server_errors_fail_an_error_rate_rule_from_the_gate_file() {
    let target = Target::start_with(StatusCode::SERVICE_UNAVAILABLE);
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate.toml");
    std::fs::write(&gate, "thresholds = [\"error-rate<1% for POST /\"]\n").unwrap();
    let run = Args::fast(&target.url())
        .users(1)
        .with(&["--gate", gate.to_str().unwrap()])
        .run(dir.path(), DEADLINE);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = common::read_json(&run_dir(dir.path()).join("loadgen.json"));
    let verdict = &report["gate"]["rules"][0];
    assert_eq!(verdict["source"], "gate-file");
    assert_eq!(verdict["observed"], 100.0);
    assert_eq!(verdict["passed"], false);
}

/// A 5 s loop run of 4 users against `target`, in half-second intervals; extra flags last.
fn timed_run(target: &Target, reports: &std::path::Path, extra: &[&str]) -> common::Finished {
    Args::against(&target.url())
        .users(4)
        .hatch(1000)
        .loop_for("5s")
        .wait("5ms..5ms")
        .with(&["--interval", "500ms", "--post-only", "--no-reconcile"])
        .with(extra)
        .run(reports, DEADLINE)
}

#[test]
fn a_baseline_passes_an_identical_run_and_fails_a_slower_one() {
    let fast = Target::start_slow(Duration::from_millis(4));
    let slow = Target::start_slow(Duration::from_millis(12));
    let dir = tempfile::tempdir().unwrap();
    let first = timed_run(&fast, &dir.path().join("a"), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let baseline = run_dir(&dir.path().join("a"));
    assert!(baseline.join("latency.hlog").is_file());
    let flags = [
        "--baseline",
        baseline.to_str().unwrap(),
        "--max-regression",
        "50",
    ];

    let same = timed_run(&fast, &dir.path().join("b"), &flags);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(
        same.stdout.contains("p99 regression<=50% for POST /"),
        "{}",
        same.stdout
    );

    let slower = timed_run(&slow, &dir.path().join("c"), &flags);
    assert_eq!(slower.code, 1, "{}{}", slower.stdout, slower.stderr);
    let report = common::read_json(&run_dir(&dir.path().join("c")).join("loadgen.json"));
    let p50 = report["gate"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == "p50 regression<=50% for POST /")
        .expect("a p50 comparison for POST /")
        .clone();
    assert_eq!(p50["passed"], false, "{p50}");
    let change = &p50["change"];
    assert!(change["low"].as_f64().unwrap() > 50.0, "{change}");
    assert!(
        change["percent"].as_f64().unwrap() > 100.0,
        "4 ms to 12 ms: {change}"
    );
    let xml = std::fs::read_to_string(run_dir(&dir.path().join("c")).join("gate.xml")).unwrap();
    assert!(xml.contains("interval_low_percent"), "{xml}");

    // A baseline without a latency log (written before loadgen kept one) is bad input.
    let old = dir.path().join("old.json");
    std::fs::copy(baseline.join("loadgen.json"), &old).unwrap();
    let refused = timed_run(
        &fast,
        &dir.path().join("d"),
        &["--baseline", old.to_str().unwrap()],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("latency log"), "{}", refused.stderr);
}

#[test]
fn a_calibration_run_sets_the_scale_of_relative_limits() {
    let ceiling = Target::start();
    let slow = Target::start_slow(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let calibration = timed_run(&ceiling, &dir.path().join("cal"), &[]);
    assert_eq!(calibration.code, 0, "{}", calibration.stderr);
    let cal = run_dir(&dir.path().join("cal"));
    // Against the trivial target itself the run is about 1x the calibration (and
    // --abort-on-fail leaves the multiple to the end: Goose cannot judge it)...
    let same = timed_run(
        &ceiling,
        &dir.path().join("same"),
        &[
            "--calibration",
            cal.to_str().unwrap(),
            "--threshold",
            "p50<=10x for POST /",
            "--abort-on-fail",
        ],
    );
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    // ...and a 20 ms service time is far beyond 10x a loopback round trip.
    let slower = timed_run(
        &slow,
        &dir.path().join("slow"),
        &[
            "--calibration",
            cal.to_str().unwrap(),
            "--threshold",
            "p50<=10x for POST /",
        ],
    );
    assert_eq!(slower.code, 1, "{}{}", slower.stdout, slower.stderr);
    assert!(
        slower.stdout.contains("10x the calibration's"),
        "{}",
        slower.stdout
    );
    // A relative rule without a calibration is refused before anything is sent.
    let refused = timed_run(
        &ceiling,
        &dir.path().join("none"),
        &["--threshold", "p50<=10x"],
    );
    common::assert_refused(&refused, "--calibration");
}

#[test]
fn abort_on_fail_stops_a_long_run_at_the_first_failing_rule() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    // Loop mode for up to 60 s; no HTTP request answers in under a microsecond.
    let run = Args::against(&target.url())
        .users(2)
        .hatch(100)
        .loop_for("60s")
        .wait("10ms..20ms")
        .rule("p50<1us")
        .with(&["--abort-on-fail"])
        .run(reports.path(), DEADLINE);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = common::read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(report["ended_by"], "interrupted");
    assert!(
        report["duration_secs"].as_f64().unwrap() < 30.0,
        "{}",
        report["duration_secs"]
    );
}

#[test]
fn history_trends_gated_runs_and_refuses_a_missing_or_corrupt_one() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let missing = loadgen(&["history"], &reports, DEADLINE);
    common::assert_refused(&missing, "history.jsonl");

    for _ in 0..2 {
        let run = timed_run(&target, &reports, &["--threshold", "error-rate<1%"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let ungated = timed_run(&target, &reports, &[]);
    assert_eq!(ungated.code, 0, "{}", ungated.stderr);
    let history = loadgen(&["history"], &reports, DEADLINE);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(
        history.stdout.contains("4 users at 1000/s"),
        "{}",
        history.stdout
    );
    assert!(
        history.stdout.contains(": 2 runs"),
        "only gated runs: {}",
        history.stdout
    );
    for metric in ["p50 POST /", "p99 POST /", "rps POST /"] {
        assert!(
            history.stdout.contains(metric),
            "{metric}: {}",
            history.stdout
        );
    }
    let p99 = loadgen(&["history", "--metric", "p99"], &reports, DEADLINE);
    assert!(p99.stdout.contains("p99 POST /"), "{}", p99.stdout);
    assert!(
        !p99.stdout.contains("p50 POST /"),
        "--metric filters: {}",
        p99.stdout
    );

    let file = reports.join("history.jsonl");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&file, text).unwrap();
    let corrupt = loadgen(&["history"], &reports, DEADLINE);
    assert_eq!(corrupt.code, 2, "{}", corrupt.stderr);
    assert!(corrupt.stderr.contains("line 3"), "{}", corrupt.stderr);
}
