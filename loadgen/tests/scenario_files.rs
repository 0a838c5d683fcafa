//! Bad scenario files and plans: each exits 2 before anything is sent, naming the file,
//! the line and the key, and saying what would do.

mod common;

use std::time::Duration;

use common::recording::RecordingTarget;
use common::{Args, assert_refused};

const DEADLINE: Duration = Duration::from_secs(30);

/// A flow of one GET, for the cases whose problem is elsewhere.
const GET: &str = "[[scenario]]\n[[scenario.request]]\npath = \"/\"\n";

/// (what is wrong, the file, the line, the key, a word of the reason).
const BAD: &[(&str, &str, usize, &str, &str)] = &[
    (
        "an unknown key",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nmetod = \"GET\"\n",
        4,
        "metod",
        "unknown field",
    ),
    (
        "a bad method",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nmethod = \"FETCH\"\n",
        4,
        "method",
        "GET, POST, PUT, PATCH, DELETE, HEAD",
    ),
    (
        "a weight of 0 for every scenario",
        "[[scenario]]\nweight = 0\n[[scenario.request]]\npath = \"/\"\n",
        1,
        "weight",
        "weight 0",
    ),
    (
        "a negative weight",
        "[[scenario]]\nweight = -2\n[[scenario.request]]\npath = \"/\"\n",
        2,
        "weight",
        "negative",
    ),
    (
        "a pointer that cannot parse",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\ncheck = { pointer = \"ok\", equals = true }\n",
        4,
        "check.pointer",
        "does not start with '/'",
    ),
    (
        "a pointer with a bad escape",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\n\ncheck = { pointer = \"/a~2\", equals = 1 }\n",
        5,
        "check.pointer",
        "~0",
    ),
    (
        "a status outside 100-599",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nstatus = [200, 600]\n",
        4,
        "status",
        "100 to 599",
    ),
    (
        "a status class that is not one",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nstatus = \"6xx\"\n",
        4,
        "status",
        "classes such as",
    ),
    (
        "a stage with negative users",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\n[[stage]]\nusers = -1\nduration = \"10s\"\n",
        5,
        "stage.users",
        "negative",
    ),
    (
        "a stage that does not parse",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\n[[stage]]\nusers = 5\nduration = \"soon\"\n",
        6,
        "stage.duration",
        "time span",
    ),
    (
        "a body file that is missing",
        "[[scenario]]\n[[scenario.request]]\nmethod = \"POST\"\npath = \"/\"\nfile = \"no-such-body.json\"\n",
        5,
        "file",
        "no-such-body.json",
    ),
    (
        "a name used twice",
        "[[scenario]]\n[[scenario.request]]\nname = \"home\"\npath = \"/\"\n[[scenario]]\n[[scenario.request]]\nname = \"home\"\npath = \"/x\"\n",
        7,
        "name",
        "line 3",
    ),
    (
        "two bodies",
        "[[scenario]]\n[[scenario.request]]\nmethod = \"POST\"\npath = \"/\"\nrecord = true\njson = { a = 1 }\n",
        6,
        "json",
        "record and json",
    ),
    (
        "a check that is half a check",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\ncheck = { pointer = \"/ok\" }\n",
        4,
        "check",
        "pointer and equals",
    ),
    (
        "a TOML syntax error",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\n",
        3,
        "path",
        "invalid basic string",
    ),
    (
        "a value of the wrong type",
        "[[scenario]]\n[[scenario.request]]\npath = 5\n",
        3,
        "path",
        "expected a string",
    ),
    (
        "a URL for a path",
        "[[scenario]]\n[[scenario.request]]\npath = \"http://elsewhere/\"\n",
        3,
        "path",
        "relative to --host",
    ),
    (
        "a think time that is not one",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nthink = \"fast\"\n",
        4,
        "think",
        "time span",
    ),
    (
        "a header name with a space",
        "[[scenario]]\n[[scenario.request]]\npath = \"/\"\nheaders = { \"x team\" = \"blue\" }\n",
        4,
        "headers",
        "not a header name",
    ),
    (
        "no scenario at all",
        "[[stage]]\nusers = 5\nduration = \"10s\"\n",
        1,
        "scenario",
        "no [[scenario]]",
    ),
];

#[test]
fn bad_scenario_files_exit_2_naming_the_line_and_key_with_nothing_sent() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, text, line, key, says)) in BAD.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let run = Args::fast(&target.url())
            .with(&["--scenario", file.to_str().unwrap(), "-t", "1s"])
            .run(&dir.path().join("reports"), DEADLINE);
        let place = format!("{}:{line}: {key}", file.display());
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains(&place),
            "{what}: expected {place:?} in {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(says),
            "{what}: expected {says:?} in {}",
            run.stderr
        );
    }
    assert_eq!(target.seen().len(), 0, "nothing is sent");
    assert!(!dir.path().join("reports").exists(), "no run folder");
}

#[test]
fn bad_users_plans_exit_2_with_the_step_named() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    for (plan, says) in [
        ("10@-5s", "time span"),
        ("-3@5s", "number of users"),
        ("10@5s;20@5s", "time span"),
        ("10@1.5s", "whole seconds"),
        ("0@10s", "0 users"),
    ] {
        let run = Args::against(&target.url())
            .with(&["--users-plan", plan, "--no-reconcile"])
            .run(dir.path(), DEADLINE);
        assert_refused(&run, &format!("--users-plan {plan:?}"));
        assert!(run.stderr.contains(says), "{plan}: {}", run.stderr);
    }
    // The plan is the closed model's; the open model has its own, and a file's stages and
    // the flag are one plan given twice.
    let run = Args::against(&target.url())
        .with(&["--users-plan", "5@5s", "--arrival-rate", "10"])
        .run(dir.path(), DEADLINE);
    assert_refused(&run, "--arrival-rate");
    let staged = dir.path().join("staged.toml");
    std::fs::write(
        &staged,
        format!("{GET}[[stage]]\nusers = 2\nduration = \"2s\"\n"),
    )
    .unwrap();
    let run = Args::against(&target.url())
        .with(&[
            "--users-plan",
            "5@5s",
            "--scenario",
            staged.to_str().unwrap(),
        ])
        .run(dir.path(), DEADLINE);
    assert_refused(&run, "give the plan once");
    let run = Args::against(&target.url())
        .with(&["--users-plan", "5@5s", "--mode", "per-user"])
        .run(dir.path(), DEADLINE);
    assert_refused(&run, "--mode per-user");
    assert_eq!(target.seen().len(), 0, "nothing is sent");
}

/// A flow without records needs something to end it; a rule for a request the scenario
/// does not have is a typo, caught before the run.
#[test]
fn a_flow_without_records_needs_a_run_time_and_rules_name_its_requests() {
    let target = RecordingTarget::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("get.toml");
    std::fs::write(&file, GET).unwrap();
    let run = Args::against(&target.url())
        .with(&["--scenario", file.to_str().unwrap()])
        .run(dir.path(), DEADLINE);
    assert_refused(&run, "needs --run-time");
    let run = Args::against(&target.url())
        .with(&[
            "--scenario",
            file.to_str().unwrap(),
            "-t",
            "1s",
            "--mode",
            "shared",
        ])
        .run(dir.path(), DEADLINE);
    assert_refused(&run, "sends a record");
    let run = Args::against(&target.url())
        .with(&["--scenario", file.to_str().unwrap(), "-t", "1s"])
        .rule("p95<1s for POST /")
        .run(dir.path(), DEADLINE);
    assert_refused(
        &run,
        "no request of the scenario is named 'POST /'; its requests are GET /",
    );
    assert_eq!(target.seen().len(), 0, "nothing is sent");
}
