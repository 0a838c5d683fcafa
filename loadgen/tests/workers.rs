//! Workers and their merge: `--worker I/N` runs a share of the users, `loadgen merge` joins
//! the folders exactly and judges the merged run as one, against the real receivers; and
//! every kind of bad input to the merge is refused with exit 2 and the folder named.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::receivers::Receivers;
use common::{Args, FAST, Finished, loadgen, read_json, schema_errors};

const DEADLINE: Duration = Duration::from_secs(180);

/// Runs workers `0..count` of one run at once, with a shared start a second from now.
fn run_workers(
    url: &str,
    reports: &Path,
    run_id: &str,
    count: usize,
    users: &str,
    extra: &[&str],
) -> Vec<Finished> {
    let start = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let worker = format!("{i}/{count}");
                let start = start.clone();
                scope.spawn(move || {
                    Args::fast(url)
                        .with(&["-u", users, "--run-id", run_id])
                        .with(&["--worker", &worker, "--start-at", &start])
                        .with(extra)
                        .run(reports, DEADLINE)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn folder(reports: &Path, run_id: &str, worker: usize) -> PathBuf {
    reports.join(format!("{run_id}-w{worker}"))
}

fn merge(folders: &[&Path], reports: &Path, extra: &[&str]) -> Finished {
    let mut args = vec!["merge"];
    let folders: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    args.extend(folders.iter().map(String::as_str));
    args.extend(extra);
    loadgen(&args, reports, DEADLINE)
}

fn ledger(report: &serde_json::Value) -> Vec<(String, u64, u64, u64)> {
    ["grpc", "rabbitmq", "nats", "all"]
        .iter()
        .map(|route| {
            let r = &report["delivery"]["routes"][route];
            let n = |k: &str| r[k].as_u64().unwrap();
            (route.to_string(), n("accepted"), n("stored"), n("lost"))
        })
        .collect()
}

fn post_count(report: &serde_json::Value) -> u64 {
    common::post_row(report)["count"].as_u64().unwrap()
}

#[test]
fn two_workers_merged_match_one_process_with_the_same_users() {
    let receivers = Receivers::start(|_| {});
    let url = receivers.url();
    let dir = tempfile::tempdir().unwrap();

    let one = Args::fast(&url)
        .users(6)
        .run(&dir.path().join("one"), DEADLINE);
    assert_eq!(one.code, 0, "{}{}", one.stdout, one.stderr);
    let single = read_json(&common::run_dir(&dir.path().join("one")).join("loadgen.json"));

    let reports = dir.path().join("workers");
    for worker in run_workers(&url, &reports, "merge-test-1", 2, "6", &[]) {
        assert_eq!(worker.code, 0, "{}{}", worker.stdout, worker.stderr);
    }
    let w0 = folder(&reports, "merge-test-1", 0);
    let w1 = folder(&reports, "merge-test-1", 1);
    let merged_run = merge(&[&w0, &w1], &reports, &["--threshold", "lost==0"]);
    assert_eq!(
        merged_run.code, 0,
        "{}{}",
        merged_run.stdout, merged_run.stderr
    );
    let merged = read_json(&reports.join("merge-test-1").join("loadgen.json"));
    assert_eq!(schema_errors(&merged), Vec::<String>::new());
    // A merged run indexes its files as one run does: the log under `latency_hlog`, where
    // a --baseline reads it.
    assert_eq!(merged["files"]["latency_hlog"], "latency.hlog");
    assert!(
        merged["files"].get("latency").is_none(),
        "{}",
        merged["files"]
    );

    // The same sends, and the same ledger per route, as one process with 6 users: 600
    // POSTs, which the front door's turns spread 200 to each path.
    assert_eq!(post_count(&merged), 600);
    assert_eq!(post_count(&merged), post_count(&single));
    assert_eq!(ledger(&merged), ledger(&single));
    assert_eq!(ledger(&merged)[3], ("all".into(), 600, 600, 0));

    // Exact: the merged histogram holds every worker's requests, no more, no fewer.
    let workers: Vec<serde_json::Value> = [&w0, &w1]
        .iter()
        .map(|w| read_json(&w.join("loadgen.json")))
        .collect();
    let worker_counts: u64 = workers
        .iter()
        .map(|w| w["aggregate"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        merged["aggregate"]["count"].as_u64().unwrap(),
        worker_counts
    );
    assert_eq!(workers[0]["settings"]["worker"]["users"], 3);
    let interval_total = common::interval_total(&merged);
    assert_eq!(interval_total, worker_counts);
    assert_eq!(merged["workers"].as_array().unwrap().len(), 2);
    assert!(
        merged_run.stdout.contains("Workers: 2"),
        "{}",
        merged_run.stdout
    );
    let page = std::fs::read_to_string(reports.join("merge-test-1").join("index.html")).unwrap();
    assert!(page.contains("<section id=\"workers\">"));

    // Keys carry the worker: every key the store holds for the run is w0's or w1's.
    let keys = receivers.keys("merge-test-1-");
    assert_eq!(keys.len(), 600);
    assert!(
        keys.iter()
            .all(|k| k.starts_with("merge-test-1-w0-u") || k.starts_with("merge-test-1-w1-u"))
    );
}

#[test]
fn a_rule_that_passes_on_every_worker_can_fail_on_the_merged_run() {
    let target = common::Target::start();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("r");
    let url = target.url();
    for worker in run_workers(&url, &reports, "combined-1", 2, "4", &[]) {
        assert_eq!(worker.code, 0, "{}", worker.stderr);
    }
    let folders = [
        folder(&reports, "combined-1", 0),
        folder(&reports, "combined-1", 1),
    ];
    let rates: Vec<f64> = folders
        .iter()
        .map(|f| {
            read_json(&f.join("loadgen.json"))["aggregate"]["rps"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // A limit above each worker's rate and below their sum: every worker alone passes it,
    // the run as a whole does not. (A percentile limit met by every worker is also met by
    // the merge, whose distribution is a mixture of theirs; rates and counts add up.)
    let limit = rates.iter().cloned().fold(0.0, f64::max) * 1.3;
    let rule = format!("rps<={limit:.0}");
    for f in &folders {
        let rps = read_json(&f.join("loadgen.json"))["aggregate"]["rps"]
            .as_f64()
            .unwrap();
        assert!(rps <= limit.round(), "worker at {rps}/s should pass {rule}");
    }
    let merged = merge(
        &[&folders[0], &folders[1]],
        &reports,
        &["--threshold", &rule, "--no-reconcile"],
    );
    assert_eq!(merged.code, 1, "{}{}", merged.stdout, merged.stderr);
    assert!(merged.stdout.contains(&rule), "{}", merged.stdout);
}

#[test]
fn max_rps_caps_the_whole_run_not_each_worker() {
    let target = common::Target::start();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("r");
    let capped = [
        "--max-rps",
        "20",
        "--mode",
        "loop",
        "-t",
        "3s",
        "--post-only",
        "--no-reconcile",
    ];
    for worker in run_workers(&target.url(), &reports, "capped-1", 2, "10", &capped) {
        assert_eq!(worker.code, 0, "{}", worker.stderr);
    }
    // 10 users with no wait would send thousands a second; 20/s for 3 s is about 60 in
    // all, where each worker taking the whole cap sent about 120.
    let posts = target.posts().len();
    assert!(
        (20..=90).contains(&posts),
        "{posts} POSTs from two workers in 3 s at --max-rps 20"
    );
}

#[test]
fn a_merge_refuses_folders_that_are_not_one_whole_run() {
    let target = common::Target::start();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("r");
    let url = target.url();
    for run_id in ["badinput-a", "badinput-b"] {
        for worker in run_workers(&url, &reports, run_id, 2, "2", &[]) {
            assert_eq!(worker.code, 0, "{}", worker.stderr);
        }
    }
    let a0 = folder(&reports, "badinput-a", 0);
    let a1 = folder(&reports, "badinput-a", 1);
    let b1 = folder(&reports, "badinput-b", 1);
    let refused = |folders: &[&Path], expect: &[&str]| {
        let run = merge(folders, &dir.path().join("out"), &["--no-reconcile"]);
        assert_eq!(run.code, 2, "{folders:?}: {}{}", run.stdout, run.stderr);
        for text in expect {
            assert!(
                run.stderr.contains(text),
                "{folders:?}: wanted {text:?} in {}",
                run.stderr
            );
        }
        assert!(
            !dir.path().join("out").exists(),
            "nothing is written for bad input"
        );
    };
    // A folder of another run.
    refused(
        &[&a0, &b1],
        &[&b1.display().to_string(), "run badinput-b", "badinput-a"],
    );
    // A missing worker, and a duplicate one.
    refused(&[&a0], &["worker 1 of 2 is missing"]);
    refused(&[&a0, &a0], &["both worker 0 of 2"]);
    // Mismatched settings: a copy of worker 1 that claims another user count.
    let edited = dir.path().join("edited");
    copy_dir(&a1, &edited);
    let json = edited.join("loadgen.json");
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replace("\"users\": 2,", "\"users\": 4,");
    std::fs::write(&json, text).unwrap();
    refused(
        &[&a0, &edited],
        &[&edited.display().to_string(), "--users is 4", "is 2"],
    );
    // A corrupt histogram.
    let corrupt = dir.path().join("corrupt");
    copy_dir(&a1, &corrupt);
    let hlog = corrupt.join("latency.hlog");
    let text = std::fs::read_to_string(&hlog)
        .unwrap()
        .replacen("HISTFAAA", "HISTFAAA!corrupt!", 1);
    std::fs::write(&hlog, text).unwrap();
    refused(
        &[&a0, &corrupt],
        &[&corrupt.display().to_string(), "latency.hlog"],
    );
    // A folder of a run without --worker.
    let single = dir.path().join("single");
    let run = Args::fast(&url).users(1).run(&single, DEADLINE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    refused(&[&a0, &common::run_dir(&single)], &["not a worker's"]);
    // And the good pair merges.
    let good = merge(&[&a0, &a1], &dir.path().join("out"), &["--no-reconcile"]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
}

#[test]
fn worker_flags_are_checked_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (
            vec!["-u", "4", "--worker", "2/2", "--run-id", "run-abc1"],
            "--worker 2/2",
        ),
        (
            vec!["-u", "1", "--worker", "1/2", "--run-id", "run-abc1"],
            "leave worker 1 none",
        ),
        (
            vec![
                "--arrival-rate",
                "10",
                "--max-users",
                "1",
                "--worker",
                "1/2",
                "--run-id",
                "run-abc1",
            ],
            "--max-users",
        ),
        (vec!["-u", "4", "--worker", "0/2"], "--run-id"),
        (vec!["-u", "4", "--run-id", "x"], "7 to 64"),
        (vec!["-u", "4", "--start-at", "tomorrow"], "RFC 3339"),
    ] {
        let run = loadgen(&args, dir.path(), DEADLINE);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expect),
            "{args:?}: wanted {expect:?} in {}",
            run.stderr
        );
    }
}

#[test]
fn a_late_worker_says_so() {
    let target = common::Target::start();
    let dir = tempfile::tempdir().unwrap();
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let url = target.url();
    let args = [
        &["-u", "2", "-H", &url, "--run-id", "late-run1"][..],
        &["--worker", "0/2", "--start-at", &past, "--no-reconcile"],
        &FAST,
    ]
    .concat();
    let run = loadgen(&args, dir.path(), DEADLINE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("worker 0 of 2 started"),
        "{}",
        run.stderr
    );
    let report = read_json(&folder(dir.path(), "late-run1", 0).join("loadgen.json"));
    assert!(
        report["settings"]["worker"]["start_skew_secs"]
            .as_f64()
            .unwrap()
            >= 5.0
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The POST / histogram of all of a log's intervals, added.
fn post_histogram(dir: &Path) -> hdrhistogram::Histogram<u64> {
    let post = loadgen::record::intervals::SeriesKey::request(loadgen::replay::POST_NAME);
    common::logged_total(dir, |series| *series == post)
}

#[test]
fn open_model_workers_split_the_rate_and_merge_into_the_whole_schedule() {
    let target = common::Target::start_slow(Duration::from_millis(2));
    let url = target.url();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("workers");
    let start = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    // No --users: in the open model the pool (--max-users, 100) is what the workers split.
    let runs: Vec<Finished> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (url, reports, start) = (&url, &reports, &start);
                scope.spawn(move || {
                    Args::against(url)
                        .with(&["--arrival-rate", "400", "-t", "3s", "--post-only"])
                        .with(&["--run-id", "open-merge-1", "--worker", &format!("{i}/2")])
                        .with(&["--start-at", start, "--no-reconcile"])
                        .run(reports, DEADLINE)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        for said in [
            "Open model: 200/s (this worker's share of 400/s)",
            "pool of 50 users",
        ] {
            assert!(
                run.stdout.contains(said),
                "each worker says what it scheduled: {said:?} in {}",
                run.stdout
            );
        }
    }
    let w0 = folder(&reports, "open-merge-1", 0);
    let w1 = folder(&reports, "open-merge-1", 1);
    let merged_run = merge(&[&w0, &w1], &reports, &["--no-reconcile"]);
    assert_eq!(
        merged_run.code, 0,
        "{}{}",
        merged_run.stdout, merged_run.stderr
    );
    let merged = read_json(&reports.join("open-merge-1").join("loadgen.json"));
    assert_eq!(schema_errors(&merged), Vec::<String>::new());
    let workers = [w0.as_path(), w1.as_path()].map(|w| read_json(&w.join("loadgen.json")));
    assert_eq!(schema_errors(&workers[1]), Vec::<String>::new());
    assert_eq!(workers[1]["open"]["share"], "200/s");
    let scheduled: Vec<u64> = workers
        .iter()
        .map(|w| w["open"]["scheduled"].as_u64().unwrap())
        .collect();
    assert_eq!(
        merged["open"]["scheduled"].as_u64().unwrap(),
        scheduled.iter().sum::<u64>(),
        "the merged schedule is the workers' together"
    );
    assert!(
        scheduled.iter().all(|s| (500..=700).contains(s)),
        "each worker scheduled about 200/s for 3 s: {scheduled:?}"
    );
    assert_eq!(merged["open"]["max_users"], 100, "the pool, added back up");
    assert_eq!(merged["open"]["plan"], "400/s");
    assert!(merged["open"].get("share").is_none());
    // The merged response times are those of every request in one histogram, as one
    // process would have recorded them: not an average of the workers' percentiles.
    let mut all = post_histogram(&w0);
    all.add(post_histogram(&w1)).unwrap();
    let post = common::post_row(&merged);
    assert_eq!(post["count"].as_u64().unwrap(), all.len());
    for (key, quantile) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let expected = all.value_at_quantile(quantile) as f64 / 1000.0;
        let got = post["latency_ms"][key].as_f64().unwrap();
        assert!(
            (got - expected).abs() <= expected * 0.001 + 0.001,
            "{key}: merged {got} ms, every request's histogram {expected} ms"
        );
    }
}
