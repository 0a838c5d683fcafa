//! Scenario files against real HTTP targets on loopback: each request as the file says it
//! (method, path under a prefixed host, headers, body), the order of a flow for every user,
//! the weights of flows, checks, the default scenario spelled out, and users over time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::recording::{RecordingTarget, Seen};
use common::{Args, read_json, run_dir, traffic_file};

const DEADLINE: Duration = Duration::from_secs(120);

fn scenario_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_ran(run: &common::Finished) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// The report row of request `name`.
fn row<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {}", report["requests"]))
}

#[test]
fn each_request_goes_as_the_file_says_under_a_prefixed_host() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("patch.json"), br#"{"from":"file"}"#).unwrap();
    let file = scenario_file(
        dir.path(),
        r#"
[[scenario]]
name = "crud"

[[scenario.request]]
name = "create"
method = "POST"
path = "items"
record = true
headers = { x-team = "blue" }

[[scenario.request]]
name = "replace"
method = "put"
path = "/items/1"
json = { a = 1, tags = ["x"] }

[[scenario.request]]
name = "note"
method = "PATCH"
path = "items/1/note"
text = "hello"
headers = { content-type = "text/x-note" }

[[scenario.request]]
name = "patch from file"
method = "PATCH"
path = "items/2"
file = "patch.json"

[[scenario.request]]
name = "remove"
method = "DELETE"
path = "items/1?hard=true"

[[scenario.request]]
path = "/"
"#,
    );
    let traffic = traffic_file(dir.path(), "t.json", r#"[{"n":1},{"n":2},{"n":3}]"#);
    let host = format!("{}/api/", target.url());
    let run = Args::fast(&host)
        .users(2)
        .with(&["--scenario", file.to_str().unwrap()])
        .with(&["--traffic", traffic.to_str().unwrap(), "--no-reconcile"])
        .run(&dir.path().join("reports"), DEADLINE);
    assert_ran(&run);

    let seen = target.seen();
    let of = |target: &str| -> Vec<&Seen> { seen.iter().filter(|s| s.target == target).collect() };
    // Per-user mode: 3 records, one record request a pass, so 3 passes for each of 2 users.
    let creates = of("/api/items");
    assert_eq!(creates.len(), 6, "{seen:#?}");
    let mut bodies: Vec<&[u8]> = creates.iter().map(|s| &s.body[..]).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            &b"{\"n\":1}"[..],
            b"{\"n\":1}",
            b"{\"n\":2}",
            b"{\"n\":2}",
            b"{\"n\":3}",
            b"{\"n\":3}"
        ]
    );
    for create in &creates {
        assert_eq!(create.method, "POST");
        assert_eq!(create.header("x-team"), Some("blue"));
        assert_eq!(create.header("content-type"), Some("application/json"));
        assert!(create.user_and_send().is_some(), "{create:?}");
    }
    let keys: BTreeSet<&str> = creates
        .iter()
        .map(|s| s.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(keys.len(), 6, "each record send has its own key");

    let expect = |target: &str, method: &str, content_type: Option<&str>, body: &[u8]| {
        let requests = of(target);
        assert_eq!(requests.len(), 6, "{target}: {seen:#?}");
        for s in requests {
            assert_eq!(s.method, method, "{target}");
            assert_eq!(s.header("content-type"), content_type, "{target}");
            assert_eq!(&s.body[..], body, "{target}");
            assert_eq!(
                s.header("idempotency-key"),
                None,
                "{target}: only records carry keys"
            );
            assert_eq!(
                s.header("x-team"),
                None,
                "{target}: headers are per request"
            );
        }
    };
    expect(
        "/api/items/1",
        "PUT",
        Some("application/json"),
        br#"{"a":1,"tags":["x"]}"#,
    );
    expect("/api/items/1/note", "PATCH", Some("text/x-note"), b"hello");
    expect("/api/items/1?hard=true", "DELETE", None, b"");
    expect("/api/", "GET", None, b"");
    expect(
        "/api/items/2",
        "PATCH",
        Some("application/json"),
        br#"{"from":"file"}"#,
    );
    assert_eq!(seen.len(), 6 * 6);

    let report = read_json(&run_dir(&dir.path().join("reports")).join("loadgen.json"));
    for name in [
        "create",
        "replace",
        "note",
        "patch from file",
        "remove",
        "GET /",
    ] {
        assert_eq!(row(&report, name)["count"], 6, "{name}");
    }
    assert_eq!(report["settings"]["scenario"], file.to_str().unwrap());
}

/// Three record requests in a flow: every user's sends, in key order, go a, b, c, a, ...
#[test]
fn every_user_keeps_the_order_of_its_flow() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let step = |p: &str| {
        format!("[[scenario.request]]\nmethod = \"POST\"\npath = \"{p}\"\nrecord = true\n")
    };
    let file = scenario_file(
        dir.path(),
        &format!("[[scenario]]\n{}{}{}", step("a"), step("b"), step("c")),
    );
    let run = Args::fast(&target.url())
        .users(8)
        .loop_for("2s")
        .with(&["--scenario", file.to_str().unwrap(), "--no-reconcile"])
        .run(&dir.path().join("reports"), DEADLINE);
    assert_ran(&run);

    let mut by_user: BTreeMap<usize, Vec<(u64, String)>> = BTreeMap::new();
    for seen in target.seen() {
        let (user, n) = seen.user_and_send().expect("every request sends a record");
        by_user
            .entry(user)
            .or_default()
            .push((n, seen.target.clone()));
    }
    assert_eq!(by_user.len(), 8, "every user sent");
    for (user, mut sends) in by_user {
        sends.sort();
        assert!(sends.len() >= 3, "user {user} made a whole pass: {sends:?}");
        for (i, (n, path)) in sends.iter().enumerate() {
            assert_eq!(*n, i as u64, "user {user}: no send is missing");
            assert_eq!(path, ["/a", "/b", "/c"][i % 3], "user {user}, send {n}");
        }
    }
}

/// Four flows weighted 1:2:3:4 split the users, and so the requests, in those shares:
/// a chi-square test of the counts at p = 0.001 (3 degrees of freedom: 16.27).
#[test]
fn flows_get_their_weights_by_chi_square() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let text: String = (1..=4)
        .map(|w| format!("[[scenario]]\nweight = {w}\n[[scenario.request]]\npath = \"w{w}\"\n"))
        .collect();
    let file = scenario_file(dir.path(), &text);
    let run = Args::fast(&target.url())
        .users(40)
        .with(&["--scenario", file.to_str().unwrap(), "-t", "4s"])
        .run(&dir.path().join("reports"), DEADLINE);
    assert_ran(&run);

    let seen = target.seen();
    let counts: Vec<f64> = (1..=4)
        .map(|w| seen.iter().filter(|s| s.target == format!("/w{w}")).count() as f64)
        .collect();
    let total: f64 = counts.iter().sum();
    assert!(
        total >= 5000.0,
        "{total} requests are too few to judge the weights"
    );
    let chi_square: f64 = counts
        .iter()
        .enumerate()
        .map(|(i, observed)| {
            let expected = total * (i + 1) as f64 / 10.0;
            (observed - expected).powi(2) / expected
        })
        .sum();
    assert!(
        chi_square < 16.27,
        "counts {counts:?}: chi-square {chi_square:.1}"
    );
}

/// Checks fail the requests whose answer does not pass, and only those, each counted by
/// its reason; a status outside the expected ones fails without a check.
#[test]
fn checks_fail_the_right_requests_and_only_those() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        r#"
[[scenario]]

[[scenario.request]]
name = "good"
path = "good"
check = { pointer = "/ok", equals = true }

[[scenario.request]]
name = "bad"
path = "bad"
check = { pointer = "/ok", equals = true }

[[scenario.request]]
name = "missing text"
path = "good"
check = { contains = "nope" }

[[scenario.request]]
name = "server error"
path = "fail"

[[scenario.request]]
name = "expected error"
path = "fail"
status = [500]
check = { contains = "false" }
"#,
    );
    let run = Args::fast(&target.url())
        .users(2)
        .with(&["--scenario", file.to_str().unwrap(), "-t", "1s"])
        .run(&dir.path().join("reports"), DEADLINE);
    assert_ran(&run);
    assert!(
        run.stdout.contains("No HTTP answer, or a failed check"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("check: /ok is false, expected true"),
        "{}",
        run.stdout
    );

    let report = read_json(&run_dir(&dir.path().join("reports")).join("loadgen.json"));
    let failed = |name: &str| {
        let r = row(&report, name);
        let count = r["count"].as_u64().unwrap();
        assert!(count > 0, "{name}");
        (r["failures"].as_u64().unwrap(), count, r["errors"].clone())
    };
    let (fails, _, errors) = failed("good");
    assert_eq!((fails, errors), (0, serde_json::json!({})));
    let (fails, count, errors) = failed("bad");
    assert_eq!(fails, count);
    assert_eq!(
        errors,
        serde_json::json!({ "check: /ok is false, expected true": count })
    );
    let (fails, count, errors) = failed("missing text");
    assert_eq!(fails, count);
    assert_eq!(
        errors,
        serde_json::json!({ "check: the body does not contain \"nope\"": count })
    );
    let (fails, count, errors) = failed("server error");
    assert_eq!(fails, count);
    assert_eq!(
        errors,
        serde_json::json!({}),
        "a status failure is counted by its status"
    );
    assert_eq!(row(&report, "server error")["status_codes"]["500"], count);
    let (fails, _, errors) = failed("expected error");
    assert_eq!((fails, errors), (0, serde_json::json!({})));

    // No request sends a record: no ledger, said in the report, and not an error.
    assert!(report["delivery"].is_null());
    assert!(
        report["settings"]["ledger_off"]
            .as_str()
            .unwrap()
            .contains("no request")
    );
    assert!(run.stdout.contains("No delivery ledger"), "{}", run.stdout);
    assert_eq!(report["settings"]["mode"], "loop");
}

/// The same seed and run id: `seed.toml` and no file send the same requests, each key with
/// the same record, method, path and headers.
#[test]
fn the_seed_file_sends_what_no_file_sends() {
    let requests = |scenario: Option<&str>| {
        let target = RecordingTarget::start();
        let dir = tempfile::tempdir().unwrap();
        let mut args = Args::fast(&target.url()).users(3).with(&[
            "--seed",
            "7",
            "--run-id",
            "seed-compare",
            "--no-reconcile",
        ]);
        if let Some(file) = scenario {
            args = args.with(&["--scenario", file]);
        }
        assert_ran(&args.run(dir.path(), DEADLINE));
        let mut seen: Vec<String> = target
            .seen()
            .iter()
            .map(|s| {
                let mut headers: Vec<String> = s
                    .headers
                    .iter()
                    // Each run has its own target, on its own port.
                    .filter(|(k, _)| *k != "host")
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                    .collect();
                headers.sort();
                format!(
                    "{} {} {headers:?} {}",
                    s.method,
                    s.target,
                    String::from_utf8_lossy(&s.body)
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let without = requests(None);
    let with = requests(Some("examples/scenarios/seed.toml"));
    // 3 users, each every record of data/traffic.json once, each POST followed by a GET.
    assert_eq!(without.len(), 3 * 100 * 2);
    assert_eq!(with.len(), without.len());
    let differ = without.iter().zip(&with).find(|(a, b)| a != b);
    assert_eq!(differ, None, "the first request that differs");
}

/// `--users-plan 20@10s,20@10s,5@5s`: 0 to 20 users over 10 s, 20 held for 10 s, down to 5
/// over 5 s. The distinct users the target sees each second follow the plan within one
/// hatch step (2 users a second up, 3 down), users that leave are not failures, and the
/// report's users over time and the progress line show the plan.
#[test]
fn a_users_plan_is_followed_at_the_target() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let plan = "20@10s,20@10s,5@5s";
    let run = Args::against(&target.url())
        .wait("100ms..100ms")
        .with(&[
            "--users-plan",
            plan,
            "--no-reconcile",
            "--scenario",
            "examples/scenarios/seed.toml",
        ])
        .run(&dir.path().join("reports"), DEADLINE);
    assert_ran(&run);
    assert!(
        run.stderr.contains("users over time 20@10s,20@10s,5@5s"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("planned"),
        "the progress line shows the plan: {}",
        run.stderr
    );

    let planned = |t: f64| -> f64 {
        match t {
            t if t < 10.0 => 2.0 * t,
            t if t < 20.0 => 20.0,
            t if t < 25.0 => 20.0 - 3.0 * (t - 20.0),
            _ => 5.0,
        }
    };
    let seen = target.seen();
    let t0 = seen.iter().map(|s| s.at).min().unwrap();
    let mut users_per_second: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.method == "POST") {
        let second = s.at.duration_since(t0).as_secs();
        users_per_second
            .entry(second)
            .or_default()
            .insert(s.user_and_send().unwrap().0);
    }
    for second in 0..25 {
        let active = users_per_second.get(&second).map_or(0, BTreeSet::len) as f64;
        let (a, b) = (planned(second as f64), planned(second as f64 + 1.0));
        let (low, high) = (a.min(b) - 3.0, a.max(b) + 3.0);
        assert!(
            (low..=high).contains(&active),
            "second {second}: {active} users seen, the plan says {a}..{b}: {users_per_second:?}"
        );
    }

    let folder = run_dir(&dir.path().join("reports"));
    let page = std::fs::read_to_string(folder.join("index.html")).unwrap();
    assert!(page.contains("planned") && page.contains("over time 20@10s,20@10s,5@5s"));
    let report = read_json(&folder.join("loadgen.json"));
    assert_eq!(report["settings"]["users_plan"], plan);
    assert_eq!(report["settings"]["users"], 20);
    assert_eq!(report["aggregate"]["failures"], 0, "leaving is not failing");
    assert_eq!(report["interrupted"], 0);
    let users: Vec<u64> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["users"].as_u64().unwrap())
        .collect();
    assert_eq!(users.iter().max(), Some(&20), "{users:?}");
    let held_last = users[users.len().saturating_sub(3)..].to_vec();
    assert!(
        held_last.iter().all(|u| (4..=8).contains(u)),
        "the last seconds hold about 5: {users:?}"
    );
}

/// Workers split a users plan as they split `--users`: of 6 users, worker 0 runs users 0,
/// 2 and 4 and worker 1 users 1, 3 and 5, each its share of every step.
#[test]
fn workers_split_a_users_plan() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let plan = "6@1s,6@2s";
    std::thread::scope(|scope| {
        for worker in ["0/2", "1/2"] {
            let (url, reports) = (target.url(), dir.path().to_path_buf());
            scope.spawn(move || {
                let run = Args::against(&url)
                    .wait("50ms..50ms")
                    .with(&["--users-plan", plan, "--no-reconcile"])
                    .with(&["--worker", worker, "--run-id", "plan-split-1"])
                    .run(&reports, DEADLINE);
                assert_ran(&run);
            });
        }
    });
    let mut users: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for seen in target.seen().iter().filter(|s| s.method == "POST") {
        let key = seen.header("idempotency-key").unwrap();
        let worker = key
            .split('-')
            .find(|p| p.starts_with('w'))
            .unwrap()
            .to_string();
        users
            .entry(worker)
            .or_default()
            .insert(seen.user_and_send().unwrap().0);
    }
    assert_eq!(users["w0"], BTreeSet::from([0, 2, 4]), "{users:?}");
    assert_eq!(users["w1"], BTreeSet::from([1, 3, 5]), "{users:?}");
    for worker in 0..2 {
        let report = read_json(
            &dir.path()
                .join(format!("plan-split-1-w{worker}/loadgen.json")),
        );
        assert_eq!(report["settings"]["users_plan"], plan);
        assert_eq!(report["settings"]["worker"]["users"], 3);
    }
}
