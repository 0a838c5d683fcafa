//! The run folder: every file is written, `loadgen.json` matches its checked-in schema and
//! tells the truth about the run, and --run-time stops runs Locust's way.

mod common;

use std::time::Duration;

use common::{Args, FAST, Target, loadgen, read_json, run_dir, schema_errors, workspace_root};

#[test]
fn a_run_writes_every_report_file_and_the_json_matches_its_schema() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let run = Args::fast(&target.url())
        .users(3)
        .rule("p99<10s")
        .with(&["--seed", "42"])
        .run(reports.path(), Duration::from_secs(120));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = run_dir(reports.path());
    for file in ["loadgen.json", "gate.xml", "latency.hlog"] {
        let path = dir.join(file);
        assert!(
            path.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "{path:?} missing or empty"
        );
    }
    assert_eq!(
        std::fs::read_link(reports.path().join("latest")).unwrap(),
        dir.file_name().unwrap()
    );
    assert!(
        run.stdout.contains(&dir.display().to_string()),
        "the run says where its reports are"
    );

    let report = read_json(&dir.join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(report["ended_by"], "completed");
    assert_eq!(report["settings"]["users"], 3);
    assert_eq!(report["settings"]["seed"], 42);
    assert_eq!(report["settings"]["records"], 100);
    let post = common::post_row(&report);
    assert_eq!(post["count"], 300);
    assert_eq!(post["status_codes"]["201"], 300);
    assert_eq!(report["aggregate"]["count"], 600);
    let timeline_total: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(
        timeline_total, 600,
        "the timeline accounts for every request"
    );
    let interval_total = common::interval_total(&report);
    assert_eq!(
        interval_total, 600,
        "the intervals account for every request"
    );
    let history = std::fs::read_to_string(reports.path().join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "a gated run joins the history");
    // The run id is the prefix of every key the target saw.
    let run_id = report["run_id"].as_str().unwrap();
    assert!(
        target
            .posts()
            .iter()
            .all(|p| p.key.as_deref().unwrap().starts_with(run_id))
    );
}

#[test]
fn the_schema_rejects_a_report_with_a_missing_or_mistyped_field() {
    let mut report = serde_json::json!({"schema_version": 1});
    assert!(!schema_errors(&report).is_empty());
    report = read_json(&workspace_root().join("loadgen/tests/data/loadgen-recorded.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    report["aggregate"]["count"] = serde_json::json!("many");
    assert!(!schema_errors(&report).is_empty());
}

/// A TCP server on loopback that is not HTTP: each connection goes to `on_connection`. It
/// stops when the returned runtime is dropped.
fn raw_server<F, Fut>(on_connection: F) -> (tokio::runtime::Runtime, String)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(on_connection(stream));
        }
    });
    (runtime, url)
}

#[test]
fn requests_with_no_answer_are_counted_by_cause_not_logged_one_by_one() {
    // A server that reads each request and hangs up without an answer.
    let (_server, url) = raw_server(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
    });
    let reports = tempfile::tempdir().unwrap();
    let run = Args::against(&url)
        .users(2)
        .hatch(100)
        .loop_for("2s")
        .wait("5ms..5ms")
        .with(&["--post-only", "--no-reconcile", "--progress-every", "1"])
        .run(reports.path(), Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    let post = common::post_row(&report);
    let failures = post["failures"].as_u64().unwrap();
    assert!(failures >= 10, "{failures} failures");
    let errors = post["errors"].as_object().expect("an errors object");
    // Every failure got no answer, and each is counted under its cause, not reqwest's
    // "error sending request for url (...)", which says nothing of it.
    assert_eq!(
        errors.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        failures,
        "{errors:?}"
    );
    assert!(
        errors
            .keys()
            .all(|cause| !cause.is_empty() && !cause.contains("error sending request")),
        "{errors:?}"
    );
    let top = errors
        .iter()
        .max_by_key(|(_, n)| n.as_u64())
        .map(|(cause, _)| cause.clone())
        .unwrap();
    assert!(
        run.stdout.contains("No HTTP answer") && run.stdout.contains(&top),
        "{}",
        run.stdout
    );
    // The progress line says why while the run goes on; Goose's warning per failed request
    // is not on stderr: a run against a target that went away wrote thousands a second.
    assert!(
        run.stderr.contains("with no HTTP answer, the last: ")
            && !run.stderr.contains("error sending request"),
        "{}",
        run.stderr
    );
}

/// Two users for 1 s, with `extra`, against a server that holds each connection open and
/// never answers; the reports folder and how the run ended.
fn run_against_a_silent_target(extra: &[&str]) -> (tempfile::TempDir, common::Finished) {
    let (_server, url) = raw_server(|stream| async move {
        std::future::pending::<()>().await;
        drop(stream);
    });
    let reports = tempfile::tempdir().unwrap();
    let run = Args::against(&url)
        .users(2)
        .hatch(100)
        .loop_for("1s")
        .with(&["--no-reconcile"])
        .with(extra)
        .run(reports.path(), Duration::from_secs(60));
    (reports, run)
}

#[test]
fn a_target_that_never_answers_holds_the_end_of_the_run_only_for_the_request_timeout() {
    let (reports, run) = run_against_a_silent_target(&["--post-only", "--request-timeout", "3s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("waiting for the 2 requests in flight to be answered or to time out (at most --request-timeout 3s)"),
        "{}",
        run.stderr
    );
    let report = read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(report["ended_by"], "run-time");
    assert_eq!(
        report["settings"]["request_timeout_secs"].as_f64(),
        Some(3.0)
    );
    // A request timeout of 60 s would have held it 60 s, its 1 s run time notwithstanding.
    let duration = report["duration_secs"].as_f64().unwrap();
    assert!((3.0..30.0).contains(&duration), "ran {duration}s");
    let post = common::post_row(&report);
    assert_eq!(post["failures"].as_u64(), Some(2));
    assert_eq!(post["errors"]["operation timed out"].as_u64(), Some(2));
}

#[test]
fn requests_in_flight_past_the_graceful_stop_are_interrupted_not_failed() {
    // The request timeout (60 s by default) would hold the run; the graceful stop does not.
    let (reports, run) = run_against_a_silent_target(&["--graceful-stop", "1s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "waiting for the 2 requests in flight to be answered (at most --graceful-stop 1s; then they are interrupted)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("2 requests were still in flight when --graceful-stop ran out"),
        "{}",
        run.stdout
    );
    let dir = run_dir(reports.path());
    let report = read_json(&dir.join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(report["interrupted"], 2);
    assert_eq!(report["settings"]["graceful_stop_secs"].as_f64(), Some(1.0));
    let duration = report["duration_secs"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&duration), "ran {duration}s");
    // Neither failures of the target nor latencies: nothing was answered, nothing timed out.
    assert_eq!(report["aggregate"]["failures"], 0);
    assert_eq!(report["aggregate"]["count"], 0);
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains("2 requests were still in flight when --graceful-stop ran out"));
}

#[test]
fn run_time_counts_from_the_first_user_and_stops_the_run() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    // A slow ramp (1 user/s for 50 users) would take 50 s; --run-time 3s must cut it.
    let run = Args::against(&target.url())
        .users(50)
        .hatch(1)
        .with(&["-t", "3s"])
        .run(reports.path(), Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = read_json(&run_dir(reports.path()).join("loadgen.json"));
    assert_eq!(report["ended_by"], "run-time");
    let duration = report["duration_secs"].as_f64().unwrap();
    assert!((3.0..15.0).contains(&duration), "ran {duration}s");
    let users = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["users"].as_u64().unwrap())
        .max();
    assert!(
        users.unwrap() <= 5,
        "the ramp went on past --run-time: {users:?}"
    );
}

#[test]
fn loop_mode_cycles_through_the_records_until_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let traffic = common::traffic_file(dir.path(), "two.json", "[{\"a\":1},{\"b\":2}]");
    let target = Target::start();
    let run = loadgen(
        &[
            &[
                "-u",
                "2",
                "--mode",
                "loop",
                "-t",
                "2s",
                "--traffic",
                traffic.to_str().unwrap(),
                "-H",
                &target.url(),
            ][..],
            &["--wait", "10ms..10ms", "-r", "100"],
        ]
        .concat(),
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let posts = target.posts();
    assert!(
        posts.len() > 8,
        "loop mode sent only {} records",
        posts.len()
    );
    let keys: std::collections::HashSet<_> = posts.iter().map(|p| p.key.clone()).collect();
    assert_eq!(keys.len(), posts.len(), "a key was reused across passes");
}

#[test]
fn threads_sets_the_runtime_that_runs_the_users() {
    let target = Target::start();
    for (args, line) in [
        (&[][..], "on 1 thread"),
        (&["--threads", "3"][..], "on 3 threads"),
    ] {
        let reports = tempfile::tempdir().unwrap();
        let run = loadgen(
            &[&["-u", "2", "-H", &target.url()][..], &FAST, args].concat(),
            reports.path(),
            Duration::from_secs(60),
        );
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(line),
            "{args:?}: the start line lacks {line:?}:\n{}",
            run.stderr
        );
    }
    assert!(!target.posts().is_empty(), "the runs sent nothing");
}

/// The interval log is HdrHistogram's format, not just ours: the HdrHistogram organisation's
/// Python port (scripts/hdrh-py, installed by scripts/test) reads it with the same counts.
#[test]
fn another_hdrhistogram_implementation_reads_the_latency_log_back() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let run = Args::fast(&target.url())
        .users(4)
        .with(&["--interval", "200ms"])
        .run(reports.path(), Duration::from_secs(120));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = run_dir(reports.path());
    let out = std::process::Command::new(workspace_root().join("scripts/hdrh-py"))
        .arg("totals")
        .arg(dir.join("latency.hlog"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/hdrh-py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = read_json(&dir.join("loadgen.json"));
    for row in report["requests"].as_array().unwrap() {
        let tag = format!(
            "request:{}",
            row["name"].as_str().unwrap().replace(' ', "%20")
        );
        assert_eq!(totals[&tag], row["count"], "{tag}: {totals}");
    }
    assert_eq!(totals["request:POST%20/"], 400, "{totals}");
}
