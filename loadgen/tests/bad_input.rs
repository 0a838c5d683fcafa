//! Bad input: each case exits 2 with a message naming the file or flag and what is wrong,
//! and the target receives nothing.

mod common;

use std::time::Duration;

use common::{Target, loadgen, traffic_file};

/// Runs loadgen with `args` against a live target and checks: exit 2, every `needles`
/// in stderr, no request at the target, no run folder written.
fn refused(args: &[&str], needles: &[&str]) {
    let target = Target::start();
    let reports = tempfile::tempdir().unwrap();
    let run = loadgen(
        &[&["-H", &target.url()][..], args].concat(),
        reports.path(),
        Duration::from_secs(30),
    );
    assert_eq!(
        run.code, 2,
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    assert_eq!(
        target.posts().len() + target.gets(),
        0,
        "{args:?} sent requests"
    );
    assert_eq!(
        std::fs::read_dir(reports.path()).unwrap().count(),
        0,
        "{args:?} wrote reports"
    );
}

#[test]
fn bad_traffic_files_are_refused_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| traffic_file(dir.path(), name, text).display().to_string();
    let missing = dir.path().join("nope.json").display().to_string();
    refused(&["--traffic", &missing], &[&missing, "cannot read"]);
    let broken = path("broken.json", "[\n  {\"a\": 1},\n  {\"b\" 2}\n]");
    refused(&["--traffic", &broken], &[&broken, "line 3, column 8"]);
    let object = path("object.json", "{\"a\": 1}");
    refused(&["--traffic", &object], &[&object, "must be an array"]);
    let empty = path("empty.json", "[]");
    refused(&["--traffic", &empty], &[&empty, "empty"]);
    let mixed = path("mixed.json", "[{\"a\":1}, \"text\"]");
    refused(&["--traffic", &mixed], &[&mixed, "element 1", "a string"]);
    refused(&["--baseline", &missing], &["baseline", &missing]);
    refused(&["--baseline", &mixed], &["baseline", "not a loadgen.json"]);
    refused(&["--gate", &missing], &["gate file", &missing]);
}

#[test]
fn bad_flags_are_refused_before_anything_is_sent() {
    refused(&["--users", "0"], &["--users 0"]);
    refused(&["--run-time", "5 junk"], &["--run-time", "5 junk"]);
    refused(&["--wait", "1s"], &["--wait", "MIN..MAX"]);
    refused(&["--threshold", "p95<fast"], &["p95<fast"]);
    // clap's own refusals exit 2 as well, naming the flag.
    refused(&["--users", "many"], &["--users"]);
    refused(&["--mode", "sideways"], &["--mode"]);
    refused(&["--threads", "0"], &["--threads", "0"]);
    refused(&["--max-connections", "0"], &["--max-connections", "0"]);
    refused(
        &["--request-timeout", "0s"],
        &["--request-timeout 0s", "at least 1ms"],
    );
    refused(
        &["--request-timeout", "soon"],
        &["--request-timeout", "soon"],
    );
}

#[test]
fn a_host_that_is_not_a_url_is_refused() {
    let reports = tempfile::tempdir().unwrap();
    let run = loadgen(
        &["-H", "127.0.0.1:8080"],
        reports.path(),
        Duration::from_secs(30),
    );
    common::assert_refused(&run, "--host 127.0.0.1:8080");
}

#[test]
fn an_unreachable_host_fails_fast_with_one_clear_message() {
    // A port that was free a moment ago: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reports = tempfile::tempdir().unwrap();
    let host = format!("http://127.0.0.1:{port}");
    let run = loadgen(
        &["-H", &host, "-u", "50"],
        reports.path(),
        Duration::from_secs(30),
    );
    common::assert_refused(&run, "unreachable");
    common::assert_refused(&run, &port.to_string());
    assert!(
        run.stderr.lines().count() <= 3,
        "a wall of errors:\n{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}
