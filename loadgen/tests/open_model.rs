//! The open model against real HTTP targets started here: the offered rate counted at the
//! target matches --arrival-rate, a one-second stall shows in the corrected percentiles
//! (and not in the closed model's), late and dropped requests are counted, Poisson
//! arrivals vary as they should, and bad flags are refused before anything is sent.

mod common;

use std::time::Duration;

use common::{Args, Target, loadgen, read_json, run_dir, schema_errors};

const DEADLINE: Duration = Duration::from_secs(120);

fn open_run(target: &Target, reports: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let url = target.url();
    let args = [
        &[
            "-H",
            &url,
            "--mode",
            "loop",
            "--post-only",
            "--no-reconcile",
        ][..],
        extra,
    ]
    .concat();
    let run = loadgen(&args, reports, DEADLINE);
    assert!(
        run.code == 0 || run.code == 1,
        "{}{}",
        run.stdout,
        run.stderr
    );
    let report = read_json(&run_dir(reports).join("loadgen.json"));
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    report
}

fn post<'a>(rows: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows}"))
}

#[test]
fn the_offered_rate_at_the_target_is_the_requested_one() {
    for rate in [50.0, 500.0] {
        let target = Target::start();
        let dir = tempfile::tempdir().unwrap();
        let report = open_run(
            &target,
            dir.path(),
            &[
                "--arrival-rate",
                &rate.to_string(),
                "-t",
                "8s",
                "--max-users",
                "50",
                // loadgen's own timers wake up to about a millisecond late: that is lag,
                // and late past 1 ms; a wait for a busy pool would be longer.
                "--late-after",
                "20ms",
            ],
        );
        let offered = target.posts().len() as f64 / 8.0;
        assert!(
            (offered - rate).abs() <= rate * 0.02,
            "asked {rate}/s, the target counted {offered}/s"
        );
        let open = &report["open"];
        assert_eq!(
            open["late"], 0,
            "a fast target and a big pool: nothing waited 20 ms"
        );
        assert_eq!(open["dropped"], 0);
        assert!(report["timeline"][2]["requested"].as_f64().unwrap() > rate * 0.99);
    }
}

#[test]
fn a_stall_shows_in_the_corrected_latency_and_not_in_the_closed_model() {
    // 200 req/s for 20 s from a pool of 10; 5 s in, the target holds every request 1 s.
    let target = Target::start_stalling(Duration::from_secs(5), Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let open = open_run(
        &target,
        &dir.path().join("open"),
        &[
            "--arrival-rate",
            "200",
            "-t",
            "20s",
            "--max-users",
            "10",
            // Late here means waited for the held pool, not loadgen's own timer lag.
            "--late-after",
            "20ms",
            "--threshold",
            "p99<300ms",
            "--threshold",
            "service-p99<100ms for POST /",
            "--threshold",
            "dropped==0",
        ],
    );
    let p99 = post(&open["requests"], "POST /")["latency_ms"]["p99"]
        .as_f64()
        .unwrap();
    assert!(p99 >= 300.0, "the corrected p99 was {p99} ms");
    let service = post(&open["open"]["service"], "POST /")["latency_ms"]["p99"]
        .as_f64()
        .unwrap();
    assert!(service < 100.0, "the service-time p99 was {service} ms");
    // The 10 users were held for the second; the ~190 tickets due meanwhile waited.
    let late = open["open"]["late"].as_u64().unwrap();
    assert!((120..=400).contains(&late), "{late} late");
    let late_per_second: u64 = open["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["late"].as_u64().unwrap())
        .sum();
    assert_eq!(
        late_per_second, late,
        "the timeline accounts for every late request"
    );
    // The gate judges the corrected p99 (fails), the service p99 and the counts (pass).
    let verdicts: Vec<(String, bool)> = open["gate"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["rule"].as_str().unwrap().to_string(),
                v["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("p99<300ms".to_string(), false),
            ("service-p99<100ms for POST /".to_string(), true),
            ("dropped==0".to_string(), true)
        ]
    );

    // The same target and stall as a closed model: 10 users, about 200 req/s. The users
    // wait on the stall instead of sending, so it barely touches the percentiles.
    let target = Target::start_stalling(Duration::from_secs(5), Duration::from_secs(1));
    let url = target.url();
    let closed_dir = dir.path().join("closed");
    let run = Args::against(&url)
        .users(10)
        .hatch(100)
        .loop_for("20s")
        .wait("45ms..55ms")
        .with(&["--post-only", "--no-reconcile"])
        .run(&closed_dir, DEADLINE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let closed = read_json(&run_dir(&closed_dir).join("loadgen.json"));
    let closed_p99 = post(&closed["requests"], "POST /")["latency_ms"]["p99"]
        .as_f64()
        .unwrap();
    assert!(
        closed_p99 < 100.0,
        "the closed model's p99 was {closed_p99} ms"
    );
    assert!(
        closed["open"].is_null(),
        "a closed-model report stays as it was"
    );
}

#[test]
fn requests_too_far_behind_are_dropped_with_drop_late() {
    let target = Target::start_stalling(Duration::from_secs(2), Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let report = open_run(
        &target,
        dir.path(),
        &[
            "--arrival-rate",
            "200",
            "-t",
            "6s",
            "--max-users",
            "10",
            "--drop-late",
            "100ms",
        ],
    );
    let open = &report["open"];
    let dropped = open["dropped"].as_u64().unwrap();
    assert!((100..=250).contains(&dropped), "{dropped} dropped");
    let scheduled = open["scheduled"].as_u64().unwrap();
    // Every ticket that came due was sent or dropped (a few sent at the very end may be
    // cut off by the run time before the target reads them).
    let accounted = target.posts().len() as u64 + dropped;
    assert!(
        accounted <= scheduled && scheduled - accounted <= 10,
        "{accounted} of {scheduled}"
    );
    // What was sent late was at most 100 ms behind, plus the stall it met.
    let lag = open["lag_ms"]["max"].as_f64().unwrap();
    assert!(lag < 150.0, "lag {lag} ms");
}

#[test]
fn poisson_arrivals_vary_as_exponential_gaps_do_and_uniform_ones_do_not() {
    let cv = |arrivals: &str| {
        let target = Target::start();
        let dir = tempfile::tempdir().unwrap();
        open_run(
            &target,
            dir.path(),
            &[
                "--arrival-rate",
                "200",
                "--arrivals",
                arrivals,
                "-t",
                "5s",
                "--max-users",
                "30",
            ],
        );
        let mut times: Vec<_> = target.posts().iter().map(|p| p.at).collect();
        times.sort();
        let gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        var.sqrt() / mean
    };
    // The exponential's coefficient of variation is 1; evenly spaced arrivals have ~0.
    let poisson = cv("poisson");
    assert!(
        (0.85..1.15).contains(&poisson),
        "poisson gaps: CV {poisson}"
    );
    let uniform = cv("uniform");
    assert!(uniform < 0.5, "uniform gaps: CV {uniform}");
}

#[test]
fn bad_open_model_flags_exit_2_before_anything_is_sent() {
    let target = Target::start();
    let dir = tempfile::tempdir().unwrap();
    let url = target.url();
    for (args, expect) in [
        (vec!["--arrival-rate", "0"], "above 0"),
        (vec!["--arrival-rate", "-5"], "above 0"),
        (vec!["--arrival-plan", "fast@10s"], "--arrival-plan"),
        (vec!["--arrival-plan", "100@10s,oops"], "RATE@DURATION"),
        (vec!["--arrival-rate", "10", "--wait", "1s..2s"], "--wait"),
        (vec!["--arrival-rate", "10", "--max-rps", "5"], "--max-rps"),
        (
            vec!["--arrival-rate", "10", "--max-users", "0"],
            "--max-users 0",
        ),
        (
            vec!["--arrival-rate", "10", "--arrival-plan", "10@1s"],
            "both",
        ),
        (vec!["--max-users", "10"], "open model"),
        (vec!["--late-after", "5ms"], "open model"),
        (
            vec!["--arrival-rate", "10", "--late-after", "soon"],
            "--late-after",
        ),
    ] {
        let run = loadgen(
            &[&["-H", &url, "-t", "2s"][..], &args].concat(),
            dir.path(),
            DEADLINE,
        );
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expect),
            "{args:?}: wanted {expect:?} in {}",
            run.stderr
        );
    }
    assert!(
        target.posts().is_empty(),
        "nothing may be sent on bad input"
    );
}

/// The lag of every request of a run, from its `latency.hlog`: all intervals added.
fn lag_histogram(dir: &std::path::Path) -> hdrhistogram::Histogram<u64> {
    common::logged_total(dir, |series| series.kind == loadgen::model::SeriesKind::Lag)
}

#[test]
fn late_counts_the_requests_whose_lag_passed_the_threshold() {
    let target = Target::start();
    // The default threshold (1 ms), then one that every timer's wake-up passes.
    for (late_after, threshold_us) in [(None, 1000), (Some("50us"), 50)] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--arrival-rate", "300", "-t", "3s", "--max-users", "20"];
        args.extend(late_after.map(|t| ["--late-after", t]).iter().flatten());
        let report = open_run(&target, dir.path(), &args);
        let open = &report["open"];
        let late = open["late"].as_u64().unwrap();
        let lag = lag_histogram(&run_dir(dir.path()));
        let over = lag.len() - lag.count_between(0, threshold_us);
        // Requests sent while Goose was still starting the pool are never late (a few at
        // most, with a pool of 20), and lags are recorded in whole microseconds.
        assert!(
            late <= over && over - late <= 25,
            "--late-after {late_after:?}: {late} late, {over} of {} lags over it",
            lag.len()
        );
        assert_eq!(open["late_after_ms"], threshold_us as f64 / 1000.0);
        if threshold_us == 50 {
            // A timer wakes on a millisecond tick: past 50 us, most sends are late.
            assert!(late > lag.len() / 2, "{late} of {} late", lag.len());
        }
    }
}
