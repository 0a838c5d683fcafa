//! A run says when its own numbers cannot be trusted: the seconds in which loadgen itself
//! was CPU-bound are marked in the timeline, the report's header and charts, and the gate's
//! `saturated` metric refuses such a run. Alone in its file, so no other test shares the
//! machine's two cores with it.

mod common;

use std::time::Duration;

use common::{Args, Target, read_json, run_dir, schema_errors};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn seconds_where_loadgen_was_cpu_bound_are_marked_and_gated() {
    let target = Target::start();

    // 50 users with no wait keep loadgen's one thread busy: the target answers from memory.
    let busy = tempfile::tempdir().unwrap();
    let run = Args::fast(&target.url())
        .users(50)
        .loop_for("4s")
        .with(&["--no-reconcile", "--threads", "1"])
        .rule("saturated==0")
        .run(busy.path(), DEADLINE);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let dir = run_dir(busy.path());
    let report = read_json(&dir.join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    let timeline = report["timeline"].as_array().unwrap();
    let marked: Vec<&serde_json::Value> =
        timeline.iter().filter(|p| p["saturated"] == true).collect();
    let seconds = report["saturated_secs"].as_u64().unwrap();
    assert!(seconds >= 1, "{timeline:?}");
    assert_eq!(seconds, marked.len() as u64);
    for point in &marked {
        assert!(point["cpu_share"].as_f64().unwrap() >= 0.9, "{point}");
    }
    let verdict = &report["gate"]["rules"][0];
    assert_eq!(
        (verdict["passed"].as_bool(), verdict["observed"].as_f64()),
        (Some(false), Some(seconds as f64))
    );
    let note = format!("{seconds} of {} s: loadgen was CPU-bound", timeline.len());
    assert!(run.stdout.contains(&note), "{}", run.stdout);
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains(&note) && page.contains(r#"class="saturated""#));

    // Two users who wait 200 ms between requests leave it idle: nothing is marked.
    let idle = tempfile::tempdir().unwrap();
    let run = Args::against(&target.url())
        .users(2)
        .hatch(100)
        .wait("200ms..200ms")
        .loop_for("3s")
        .with(&["--no-reconcile"])
        .rule("saturated==0")
        .run(idle.path(), DEADLINE);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let report = read_json(&run_dir(idle.path()).join("loadgen.json"));
    assert_eq!(report["saturated_secs"], 0);
    let timeline = report["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .all(|p| p["cpu_share"].as_f64().is_some_and(|c| c < 0.9)),
        "{timeline:?}"
    );
    assert!(run.stdout.contains("CPU to spare"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("loadgen was CPU-bound"),
        "{}",
        run.stdout
    );
}
