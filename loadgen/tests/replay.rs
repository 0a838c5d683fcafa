//! Replay semantics against a real HTTP target: the exact multiset of POST bodies per
//! mode, unique Idempotency-Keys, and runs that stop by themselves when the data runs out.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Args, Target, loadgen, loadgen_under_ulimit, read_json, run_dir, traffic_file};

const DEADLINE: Duration = Duration::from_secs(120);

/// How many times each distinct JSON value arrived.
fn multiset(bodies: impl IntoIterator<Item = serde_json::Value>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in bodies {
        *counts.entry(body.to_string()).or_default() += 1;
    }
    counts
}

fn parsed_bodies(target: &Target) -> Vec<serde_json::Value> {
    target
        .posts()
        .iter()
        .map(|p| serde_json::from_slice(&p.body).expect("every POST body is JSON"))
        .collect()
}

fn file_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn per_user_sends_each_record_once_per_user_then_stops() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let users = 4;
    let run = Args::fast(&target.url())
        .users(4)
        .run(reports.path(), DEADLINE);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );

    let records = file_records(&common::workspace_root().join("data/traffic.json"));
    let expected = multiset(
        records
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.clone(), users)),
    );
    assert_eq!(multiset(parsed_bodies(&target)), expected);
    // One GET per POST: the two tasks have equal weight.
    assert_eq!(target.gets(), users * records.len());
    assert!(
        run.stdout.contains("every user sent its records"),
        "{}",
        run.stdout
    );

    let posts = target.posts();
    let keys: HashSet<_> = posts
        .iter()
        .map(|p| p.key.clone().expect("every POST has a key"))
        .collect();
    assert_eq!(keys.len(), posts.len(), "Idempotency-Keys repeat");
    assert!(
        posts
            .iter()
            .all(|p| p.content_type.as_deref() == Some("application/json"))
    );
}

#[test]
fn shared_sends_every_record_exactly_once_across_users() {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let run = Args::fast(&target.url())
        .users(7)
        .with(&["--mode", "shared"])
        .run(reports.path(), DEADLINE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = file_records(&common::workspace_root().join("data/traffic.json"));
    assert_eq!(multiset(parsed_bodies(&target)), multiset(records));
}

#[test]
fn unicode_nested_and_64k_records_replay_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(64 * 1024 - 20);
    let text = format!(
        "[{{\"name\":\"Ñandú 🦤\",\"msg\":\"日本語\"}},\n {{\"deep\":{{\"a\":[1,{{\"b\":null}},2.5e3]}},\"ok\":true}},\n {{\"big\":\"{big}\"}}]"
    );
    let path = traffic_file(dir.path(), "odd.json", &text);
    let target = Target::start();
    let run = Args::fast(&target.url())
        .users(2)
        .with(&["--traffic", path.to_str().unwrap()])
        .run(dir.path(), DEADLINE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected_bytes: HashSet<Vec<u8>> = [
        "{\"name\":\"Ñandú 🦤\",\"msg\":\"日本語\"}".to_string(),
        "{\"deep\":{\"a\":[1,{\"b\":null},2.5e3]},\"ok\":true}".to_string(),
        format!("{{\"big\":\"{big}\"}}"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let posts = target.posts();
    assert_eq!(posts.len(), 6);
    for post in &posts {
        assert!(
            expected_bytes.contains(post.body.as_ref()),
            "body changed in transit: {}",
            String::from_utf8_lossy(&post.body[..post.body.len().min(80)])
        );
    }
    assert!(posts.iter().any(|p| p.body.len() > 64 * 1024 - 20));
}

#[test]
fn post_only_skips_get_and_max_rps_caps_the_offered_rate() {
    let target = Target::start();
    // 20 users with no wait would send thousands per second; the cap holds them to 20/s.
    let (run, report) = busy_users(&target, "20", "3s", &["--max-rps", "20"], None);
    assert_eq!(target.gets(), 0, "--post-only sent GET /\n{}", run.stderr);
    let posts = target.posts().len();
    assert!(
        (20..=100).contains(&posts),
        "{posts} POSTs in 3 s at --max-rps 20"
    );
    // 20 users at 20/s wait about a second each for a turn; the target answers at once.
    // That wait is not the target's latency (it was, when Goose's throttle held the request
    // after loadgen's clock had started: p50 near 1,000 ms).
    let p50 = post_p50(&report);
    assert!(
        p50 < 250.0,
        "POST / p50 {p50} ms includes the wait for a turn"
    );
}

/// Runs `users` with no wait, POST only, for `secs` against `target`, with `extra` flags,
/// under the shell's `ulimit <limits>` when given; the run must pass.
fn busy_users(
    target: &Target,
    users: &str,
    secs: &str,
    extra: &[&str],
    limits: Option<&str>,
) -> (common::Finished, serde_json::Value) {
    let reports = tempfile::tempdir().unwrap();
    let url = target.url();
    let args = [
        &[
            "-u",
            users,
            "-r",
            "1000",
            "--mode",
            "loop",
            "-t",
            secs,
            "--wait",
            "0ms..0ms",
            "--post-only",
            "-H",
            &url,
        ][..],
        extra,
    ]
    .concat();
    let run = match limits {
        None => loadgen(&args, reports.path(), DEADLINE),
        Some(limits) => loadgen_under_ulimit(limits, &args, reports.path(), DEADLINE),
    };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = read_json(&run_dir(reports.path()).join("loadgen.json"));
    (run, report)
}

fn post_p50(report: &serde_json::Value) -> f64 {
    common::post_row(report)["latency_ms"]["p50"]
        .as_f64()
        .unwrap()
}

#[test]
fn max_connections_caps_the_requests_in_flight_and_the_connections() {
    // A 50 ms target: 20 users with no wait keep 20 POSTs in flight over 20 connections.
    let uncapped = Target::start_slow(Duration::from_millis(50));
    let (run, _) = busy_users(&uncapped, "20", "2s", &[], None);
    assert!(
        uncapped.max_in_flight() >= 15 && uncapped.connections() >= 15,
        "the default cap held 20 users to {} in flight over {} connections",
        uncapped.max_in_flight(),
        uncapped.connections()
    );
    assert!(!run.stderr.contains("waited for one of"), "{}", run.stderr);

    // With 4, the other 16 users wait for one of 4 connections, and their wait is latency:
    // each POST waits about 4 others' 50 ms.
    let capped = Target::start_slow(Duration::from_millis(50));
    let (run, report) = busy_users(&capped, "20", "2s", &["--max-connections", "4"], None);
    assert!(
        (1..=4).contains(&capped.max_in_flight()),
        "{} POSTs in flight at --max-connections 4",
        capped.max_in_flight()
    );
    assert!(
        (1..=4).contains(&capped.connections()),
        "{} connections at --max-connections 4",
        capped.connections()
    );
    assert!(capped.posts().len() >= 20, "{} POSTs", capped.posts().len());
    assert!(
        run.stderr
            .contains("waited for one of the 4 connections of --max-connections"),
        "{}",
        run.stderr
    );
    let p50 = post_p50(&report);
    assert!(
        p50 >= 150.0,
        "POST / p50 {p50} ms leaves out the wait for a connection"
    );
}

#[test]
fn a_low_soft_open_files_limit_is_raised_before_the_users_connect() {
    // 100 users with no wait against a 50 ms target hold about 100 connections: more than a
    // soft limit of 64 files. loadgen raises it to the hard limit, so none fails (the old
    // code did not finish its 2 s run within the deadline).
    let target = Target::start_slow(Duration::from_millis(50));
    let (run, report) = busy_users(&target, "100", "2s", &[], Some("-Sn 64"));
    assert!(
        target.connections() > 64,
        "{} connections: the soft limit was never in the way",
        target.connections()
    );
    assert_eq!(
        common::post_row(&report)["failures"].as_u64(),
        Some(0),
        "{}",
        run.stderr
    );
}

#[test]
fn a_cap_above_the_hard_open_files_limit_is_lowered_to_one_that_fits() {
    // 300 users with no wait against a 50 ms target want 300 connections, more than a hard
    // limit of 256 files holds. The old code only warned: requests failed with "Too many
    // open files", and the run either failed to write its reports or never ended (a user
    // whose requests fail at once never gave the thread back). Capped, users wait instead.
    let target = Target::start_slow(Duration::from_millis(50));
    let (run, report) = busy_users(&target, "300", "2s", &[], Some("-n 256"));
    assert!(
        run.stderr.contains("above this process's limit of 256")
            && run.stderr.contains("running with --max-connections 96"),
        "{}",
        run.stderr
    );
    assert_eq!(
        common::post_row(&report)["failures"].as_u64(),
        Some(0),
        "{}",
        run.stderr
    );
    assert!(
        (50..=96).contains(&target.max_in_flight()),
        "{} POSTs in flight under a cap of 96",
        target.max_in_flight()
    );
    // hyper's pool may keep as many idle connections as are in use.
    assert!(
        target.connections() <= 2 * 96,
        "{} connections under a cap of 96",
        target.connections()
    );
}
