//! loadgen against the real receivers (real RabbitMQ and NATS on loopback): the delivery
//! ledger reconciles every send with the store, its rules gate the run, and records that
//! were accepted but never stored are reported lost, by id.

mod common;

use std::time::Duration;

use common::receivers::Receivers;
use common::{Args, read_json, run_dir, schema_errors, traffic_file};

#[test]
fn a_run_through_the_receivers_reconciles_every_record_by_route() {
    let receivers = Receivers::start(|_| {});
    let reports = tempfile::tempdir().unwrap();
    let rules = [
        "lost==0",
        "duplicates==0",
        "accepted==300",
        "e2e-p99<10s for nats",
        "error-rate<1%",
    ];
    let run = Args::fast(&receivers.url())
        .users(3)
        .rules(&rules)
        .run(reports.path(), Duration::from_secs(180));
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("Delivery (receivers at"),
        "{}",
        run.stdout
    );

    let dir = run_dir(reports.path());
    let report = read_json(&dir.join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    let delivery = &report["delivery"];
    assert_eq!(delivery["drained"], true);
    for route in ["grpc", "rabbitmq", "nats"] {
        let r = &delivery["routes"][route];
        // The front door takes turns, so 300 POSTs are exactly 100 per path.
        assert_eq!(
            (
                r["accepted"].as_u64(),
                r["stored"].as_u64(),
                r["lost"].as_u64()
            ),
            (Some(100), Some(100), Some(0)),
            "{route}: {r}"
        );
        assert_eq!(
            r["latency"]["e2e"]["count"], 100,
            "{route}: this run's samples only"
        );
        assert!(dir.join(format!("receivers-{route}-e2e.hgrm")).exists());
    }
    assert_eq!(delivery["routes"]["all"]["stored"], 300);
    assert!(
        report["gate"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["passed"] == true)
    );

    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for section in [
        "id=\"settings\"",
        "id=\"gate\"",
        "id=\"timeline\"",
        "id=\"requests\"",
        "id=\"delivery\"",
        "id=\"latency\"",
        "id=\"files\"",
    ] {
        assert!(page.contains(section), "index.html lacks {section}");
    }
    let list = std::fs::read_to_string(reports.path().join("index.html")).unwrap();
    assert!(list.contains(report["run_id"].as_str().unwrap()));
}

#[test]
fn records_accepted_but_never_stored_are_reported_lost_and_fail_the_gate() {
    // RabbitMQ accepts (confirms) every record, but no consumer runs: nothing is stored.
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let run = one_user_without_consumers(&[receivers::Route::Rabbitmq], 5, &["lost==0"], &reports);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let report = read_json(&run_dir(&reports).join("loadgen.json"));
    let rabbit = &report["delivery"]["routes"]["rabbitmq"];
    assert_eq!(
        (
            rabbit["accepted"].as_u64(),
            rabbit["stored"].as_u64(),
            rabbit["lost"].as_u64()
        ),
        (Some(5), Some(0), Some(5))
    );
    let run_id = report["run_id"].as_str().unwrap();
    let lost: Vec<&str> = rabbit["lost_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(lost.len(), 5);
    assert!(lost.iter().all(|id| id.starts_with(run_id)));
    assert_eq!(report["delivery"]["drained"], false);
    let verdict = &report["gate"]["rules"][0];
    assert_eq!(
        (verdict["observed"].as_f64(), verdict["passed"].as_bool()),
        (Some(5.0), Some(false))
    );
    assert!(
        run.stdout.contains(lost[0]),
        "the gate table names a lost id:\n{}",
        run.stdout
    );
}

#[test]
fn lost_ids_are_listed_under_the_route_that_accepted_each() {
    // RabbitMQ and NATS both accept (confirm, ack) and neither has a consumer: two routes
    // lose records. The front door alternates them, so one user's keys alternate too.
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let paths = [receivers::Route::Rabbitmq, receivers::Route::Nats];
    let run = one_user_without_consumers(&paths, 6, &[], &reports);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let report = read_json(&run_dir(&reports).join("loadgen.json"));
    let run_id = report["run_id"].as_str().unwrap();
    let routes = &report["delivery"]["routes"];
    let numbers = |route: &str| -> Vec<u64> {
        let row = &routes[route];
        let ids = row["lost_ids"].as_array().unwrap();
        assert_eq!(
            row["lost"].as_u64(),
            Some(ids.len() as u64),
            "{route}: {row}"
        );
        assert_eq!(row["accepted"], row["lost"], "{route}: {row}");
        ids.iter()
            .map(|id| {
                let rest = id.as_str().unwrap().strip_prefix(run_id).unwrap();
                rest.strip_prefix("-u0-").unwrap().parse().unwrap()
            })
            .collect()
    };
    let (rabbit, nats) = (numbers("rabbitmq"), numbers("nats"));
    assert_eq!((rabbit.len(), nats.len()), (3, 3), "{routes}");
    // Each route's ids are every other send: the one it took of each pair.
    for ids in [&rabbit, &nats] {
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 2), "{routes}");
    }
    let mut both: Vec<u64> = rabbit.iter().chain(&nats).copied().collect();
    both.sort_unstable();
    assert_eq!(both, [0, 1, 2, 3, 4, 5]);
    assert_eq!(routes["all"]["lost"], 6);
}

/// One user sends `records` records through receivers with `paths` and no consumers (the
/// brokers accept, nothing is stored), with `rules`, waiting 1 s for a drain that never comes.
fn one_user_without_consumers(
    paths: &[receivers::Route],
    records: usize,
    rules: &[&str],
    reports: &std::path::Path,
) -> common::Finished {
    let receivers = Receivers::start(|c| {
        c.paths = paths.to_vec();
        c.no_consumers = true;
    });
    let text: Vec<String> = (1..=records).map(|a| format!("{{\"a\":{a}}}")).collect();
    let dir = reports.parent().expect("reports sit in a folder");
    let traffic = traffic_file(dir, "records.json", &format!("[{}]", text.join(",")));
    Args::fast(&receivers.url())
        .users(1)
        .with(&["--traffic", traffic.to_str().unwrap()])
        .with(&["--drain-timeout", "1s"])
        .rules(rules)
        .run(reports, Duration::from_secs(120))
}

#[test]
fn the_ci_gate_file_runs_with_abort_on_fail() {
    let receivers = Receivers::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let url = receivers.url();
    let gate = common::workspace_root().join(".ci/gate.toml");
    let traffic = traffic_file(dir.path(), "three.json", "[{\"a\":1},{\"a\":2},{\"a\":3}]");
    let load = Args::fast(&url)
        .users(2)
        .with(&["--traffic", traffic.to_str().unwrap()]);
    // The file's latency limits are multiples of a calibration run; here the same load
    // against the same receivers stands in for the ceiling handler, so they hold.
    let calibration_reports = dir.path().join("calibration");
    let calibration = load
        .clone()
        .with(&["--no-reconcile"])
        .run(&calibration_reports, Duration::from_secs(120));
    assert_eq!(calibration.code, 0, "{}", calibration.stderr);
    let calibration = run_dir(&calibration_reports);
    let reports = dir.path().join("reports");
    let run = load
        .with(&["--gate", gate.to_str().unwrap(), "--abort-on-fail"])
        .with(&["--calibration", calibration.to_str().unwrap()])
        .run(&reports, Duration::from_secs(120));
    let output = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("refused"), "{output}");
    // Six records cannot meet `accepted>=2000`: judged at the end, as it must be.
    assert_eq!(run.code, 1, "{output}");
    let report = read_json(&run_dir(&reports).join("loadgen.json"));
    let verdicts = report["gate"]["rules"].as_array().unwrap();
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v["passed"] == false)
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["accepted>=2000"], "{output}");
    assert!(
        verdicts
            .iter()
            .any(|v| v["rule"] == "lost==0" && v["passed"] == true)
    );
    assert!(verdicts.iter().any(|v| v["rule"] == "dead_lettered==0"));
}

#[test]
fn abort_on_fail_stops_a_run_when_a_delivery_rule_fails_live() {
    // Only the RabbitMQ path, and its broker behind a closed port: every send is refused.
    let receivers = Receivers::start_unready(|c| {
        c.paths = vec![receivers::Route::Rabbitmq];
        c.per_path.rabbitmq.url = "amqp://guest:guest@127.0.0.1:9/%2f".into();
        c.publish_timeout_ms = 500;
    });
    let dir = tempfile::tempdir().unwrap();
    // Straight to the entry: its 503s name the route (the front door's own, once every path
    // is down, cannot).
    let entry = receivers
        .running
        .as_ref()
        .unwrap()
        .addrs
        .entry(receivers::Route::Rabbitmq)
        .unwrap();
    let url = format!("http://{entry}");
    let traffic = traffic_file(dir.path(), "one.json", "[{\"a\":1}]");
    let reports = dir.path().join("reports");
    let run = Args::against(&url)
        .users(2)
        .hatch(10)
        .loop_for("60s")
        .wait("10ms..20ms")
        .with(&[
            "--traffic",
            traffic.to_str().unwrap(),
            "--drain-timeout",
            "1s",
        ])
        .rule("rejected<=5")
        .with(&["--abort-on-fail"])
        .run(&reports, Duration::from_secs(120));
    let output = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{output}");
    let report = read_json(&run_dir(&reports).join("loadgen.json"));
    assert!(
        report["duration_secs"].as_f64().unwrap() < 30.0,
        "stopped early, not at --run-time: {output}"
    );
    assert_eq!(report["ended_by"], "interrupted", "{output}");
    let live = report["gate"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"] == "rejected<=5 (live, --abort-on-fail)")
        .unwrap_or_else(|| panic!("the live verdict is in the report: {output}"));
    assert_eq!(live["passed"], false);
    assert!(live["observed"].as_f64().unwrap() > 5.0);
}

/// `examples/scenarios/rest-api.toml` against the receivers, as the README runs it: every
/// check passes, each request name has its row, and the records its create request sent
/// are reconciled: all on the gRPC path, none lost.
#[test]
fn the_rest_api_example_runs_against_the_receivers_with_its_checks_passing() {
    let receivers = Receivers::start(|_| {});
    let reports = tempfile::tempdir().unwrap();
    let run = Args::against(&receivers.url())
        .users(8)
        .hatch(100)
        .with(&["--scenario", "examples/scenarios/rest-api.toml", "-t", "3s"])
        .rules(&[
            "error-rate==0%",
            "lost==0",
            "duplicates==0",
            "p99<5s for create",
        ])
        .run(reports.path(), Duration::from_secs(120));
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );

    let report = read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    let count = |name: &str| {
        let row = report["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}"));
        assert_eq!(row["failures"], 0, "{name}: {row}");
        row["count"].as_u64().unwrap()
    };
    let created = count("create");
    assert!(created > 0 && count("read") > 0 && count("list") > 0 && count("health") > 0);
    let grpc = &report["delivery"]["routes"]["grpc"];
    assert_eq!(grpc["accepted"].as_u64(), Some(created), "{grpc}");
    assert_eq!(grpc["stored"].as_u64(), Some(created), "{grpc}");
    for route in ["rabbitmq", "nats"] {
        assert_eq!(
            report["delivery"]["routes"][route]["accepted"], 0,
            "{route}"
        );
    }
}
