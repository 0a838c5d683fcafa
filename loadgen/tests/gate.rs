//! The gate as CI sees it: exit 0 when every rule passes, 1 when any fails (with the
//! table and gate.xml saying which), and --baseline failing a run that regressed.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{FAST, Target, loadgen, run_dir};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn passing_rules_exit_0_and_a_failing_rule_exits_1() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let pass = loadgen(
        &[
            &[
                "-u",
                "2",
                "-H",
                &target.url(),
                "--threshold",
                "error-rate<1%",
                "--threshold",
                "p95<30s for POST /",
            ][..],
            &FAST,
        ]
        .concat(),
        reports.path(),
        DEADLINE,
    );
    assert_eq!(pass.code, 0, "{}{}", pass.stdout, pass.stderr);
    assert!(
        pass.stdout.contains("all 2 rules passed"),
        "{}",
        pass.stdout
    );

    let reports = tempfile::tempdir().unwrap();
    let fail = loadgen(
        &[
            &[
                "-u",
                "2",
                "-H",
                &target.url(),
                "--threshold",
                "error-rate<1%",
                "--threshold",
                "rps>=1000000",
            ][..],
            &FAST,
        ]
        .concat(),
        reports.path(),
        DEADLINE,
    );
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
    let run = loadgen(
        &[
            &[
                "-u",
                "1",
                "-H",
                &target.url(),
                "--gate",
                gate.to_str().unwrap(),
            ][..],
            &FAST,
        ]
        .concat(),
        dir.path(),
        DEADLINE,
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = common::read_json(&run_dir(dir.path()).join("loadgen.json"));
    let verdict = &report["gate"]["rules"][0];
    assert_eq!(verdict["source"], "gate-file");
    assert_eq!(verdict["observed"], 100.0);
    assert_eq!(verdict["passed"], false);
}

#[test]
fn a_baseline_fails_the_gate_when_the_run_regressed() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    // A baseline that claims far more requests/s and a far lower p95 than any run here.
    let mut baseline = common::read_json(
        &common::workspace_root().join("loadgen/tests/data/loadgen-recorded.json"),
    );
    baseline["aggregate"]["rps"] = serde_json::json!(1.0e9);
    baseline["aggregate"]["latency_ms"]["p95"] = serde_json::json!(0.000_001);
    let path = dir.path().join("baseline.json");
    std::fs::write(&path, baseline.to_string()).unwrap();
    let reports = dir.path().join("reports");
    let run = loadgen(
        &[
            &[
                "-u",
                "1",
                "-H",
                &target.url(),
                "--baseline",
                path.to_str().unwrap(),
                "--max-regression",
                "5",
            ][..],
            &FAST,
        ]
        .concat(),
        &reports,
        DEADLINE,
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("p95 regression<=5%"), "{}", run.stdout);
    assert!(run.stdout.contains("rps regression<=5%"), "{}", run.stdout);

    // Its own report as the baseline for an identical setting passes with a wide allowance.
    let own = run_dir(&reports).join("loadgen.json");
    let again = loadgen(
        &[
            &[
                "-u",
                "1",
                "-H",
                &target.url(),
                "--baseline",
                own.to_str().unwrap(),
                "--max-regression",
                "1000",
            ][..],
            &FAST,
        ]
        .concat(),
        &dir.path().join("again"),
        DEADLINE,
    );
    assert!(
        again.stdout.contains("all 2 rules passed"),
        "{}",
        again.stdout
    );
    assert_eq!(again.code, 0);
}

#[test]
fn abort_on_fail_stops_a_long_run_at_the_first_failing_rule() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    // Loop mode for up to 60 s; no HTTP request answers in under a microsecond.
    let run = loadgen(
        &[
            "-u",
            "2",
            "-r",
            "100",
            "--mode",
            "loop",
            "-t",
            "60s",
            "--wait",
            "10ms..20ms",
            "-H",
            &target.url(),
            "--threshold",
            "p50<1us",
            "--abort-on-fail",
        ],
        reports.path(),
        DEADLINE,
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = common::read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(report["ended_by"], "interrupted");
    assert!(
        report["duration_secs"].as_f64().unwrap() < 30.0,
        "{}",
        report["duration_secs"]
    );
}
