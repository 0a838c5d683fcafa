//! `index.html`, the page a person reads: settings and verdicts, traffic and latency over
//! time, request and route percentiles, and per route the delivery ledger and
//! latency-by-percentile plots. Rendered from `loadgen.json` alone with maud, which escapes
//! every value by default, self-contained (inline CSS and SVG) so it works offline. Also
//! the list of every run, `reports/index.html`.

use maud::{DOCTYPE, Markup, PreEscaped, html};

mod charts;
mod delivery;
mod open_model;

use crate::duration::format_ms;
use crate::model::{LoadgenReport, RequestStats, Verdict, WorkerShare};

use charts::{latency_over_time, timeline};
use delivery::routes;
use open_model::open_model;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
.pass { color: #0a7d32; font-weight: 600; } .fail { color: #c5221f; font-weight: 600; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; }
.verdict.pass { background: #0a7d32; } .verdict.fail { background: #c5221f; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } .chart { width: 560px; max-width: 100%; height: auto; }
.chart .grid { stroke: #eee; } .chart .tick, .chart .legend { font-size: 10px; fill: #555; }
.chart .axis { font-size: 11px; fill: #333; } .chart .title { font-size: 13px; font-weight: 600; fill: #222; }
.muted { color: #777; } code { background: #f4f4f4; padding: 0 3px; } td.why { text-align: left; }
.warning { background: #fff4e5; border-left: 4px solid #ff7f0e; padding: 4px 10px; }
.chart .saturated { fill: #ff7f0e; fill-opacity: 0.15; }
"#;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            title { (title) }
            style { (PreEscaped(STYLE)) }
        }
    }
}

fn pass_class(passed: bool) -> &'static str {
    if passed { "pass" } else { "fail" }
}

/// The run's page.
pub fn render(report: &LoadgenReport) -> String {
    let passed = report.gate.passed;
    html! {
        (DOCTYPE)
        html lang="en" {
        (head(&format!("loadgen run {}", report.run_id)))
        body {
            h1 {
                "Run " (report.run_id) " "
                span class=(format!("verdict {}", pass_class(passed))) {
                    (if passed { "PASSED" } else { "FAILED" })
                }
            }
            p.muted {
                (report.started_at) " to " (report.finished_at) ", "
                (format!("{:.1}", report.duration_secs)) " s, ended: " (report.ended_by.describe())
            }
            @if report.interrupted > 0 {
                p.muted {
                    (report.interrupted) " requests were still in flight when --graceful-stop ran out, and were interrupted: the run's end, not failures of the target."
                }
            }
            @if let Some(note) = crate::render::saturated_note(report) {
                p.warning { (note) }
            }
            (settings(report))
            (workers(&report.workers))
            (gate(&report.gate.rules))
            (timeline(report))
            @if let Some(open) = &report.open { (open_model(report, open)) }
            (latency_over_time(report))
            (requests(report))
            @match &report.delivery {
                Some(delivery) => (routes(delivery)),
                None => section #delivery {
                    h2 { "Delivery by route" }
                    p.muted {
                        @if let Some(why) = &report.settings.ledger_off {
                            "No delivery ledger: " (why) "."
                        } @else {
                            "No delivery ledger: this run did not reconcile with the receivers (the target did not serve "
                            code { "/stats" } ", or " code { "--no-reconcile" } ")."
                        }
                    }
                }
            }
            (files(report))
        }
        }
    }
    .into_string()
}

fn settings(report: &LoadgenReport) -> Markup {
    let s = &report.settings;
    let rows = [
        ("host", s.host.clone()),
        (
            "users",
            match &s.users_plan {
                Some(plan) => format!("{} at most, over time {plan}", s.users),
                None => s.users.to_string(),
            },
        ),
        ("hatch rate", format!("{}/s", s.hatch_rate)),
        (
            "run time",
            s.run_time_secs
                .map_or("until every user is done".into(), |t| format!("{t} s")),
        ),
        (
            "wait",
            format!("{}..{}", format_ms(s.wait_min_ms), format_ms(s.wait_max_ms)),
        ),
        (
            "scenario",
            s.scenario
                .clone()
                .unwrap_or_else(|| "the default: POST / with a record, then GET /".into()),
        ),
        ("mode", s.mode.name().to_string()),
        (
            "traffic file",
            format!("{} ({} records)", s.traffic_file, s.records),
        ),
        ("seed", s.seed.map_or("random".into(), |v| v.to_string())),
        ("histogram interval", format!("{} s", s.interval_secs)),
        (
            "request timeout",
            s.request_timeout_secs
                .map_or("60 s".into(), |t| format!("{t} s")),
        ),
        (
            "graceful stop",
            s.graceful_stop_secs
                .map_or("none".into(), |t| format!("{t} s")),
        ),
        (
            "git commit",
            s.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
    ]
    .into_iter()
    .chain(s.worker.as_ref().map(|w| {
        (
            "worker",
            format!(
                "{} of {} ({} users), started {:.3} s after --start-at {}",
                w.index,
                w.count,
                w.users,
                w.start_skew_secs,
                w.start_at.as_deref().unwrap_or("(none)")
            ),
        )
    }));
    html! {
        section #settings {
            h2 { "Run settings" }
            table { @for (name, value) in rows { tr { td { (name) } td { (value) } } } }
        }
    }
}

/// A merged run's workers: count, and each one's share and start skew.
fn workers(workers: &[WorkerShare]) -> Markup {
    let requests: u64 = workers.iter().map(|w| w.requests).sum();
    html! {
        @if !workers.is_empty() {
            section #workers {
                h2 { "Workers" }
                p.muted {
                    (workers.len()) " workers merged: their histograms added, counters summed and timelines aligned on wall-clock seconds; the gate judged the merged run."
                }
                table {
                    tr { th { "worker" } th { "users" } th { "requests" } th { "share" } th { "started" } th { "start skew" } th { "folder" } }
                    @for w in workers {
                        tr {
                            td { (w.index) } td { (w.users) } td { (w.requests) }
                            td { (format!("{:.1}%", w.requests as f64 * 100.0 / requests.max(1) as f64)) }
                            td { (w.started_at) } td { (format!("{:.3} s", w.start_skew_secs)) }
                            td { code { (w.folder) } }
                        }
                    }
                }
            }
        }
    }
}

fn gate(rules: &[Verdict]) -> Markup {
    html! {
        section #gate {
            h2 { "Gate" }
            @if rules.is_empty() {
                p.muted { "No rules (pass " code { "--threshold" } " or " code { "--gate" } ")." }
            } @else {
                table {
                    tr {
                        th { "rule" } th { "observed" } th { "limit" } th { "change" }
                        th { "95% interval" } th { "result" } th { "why" }
                    }
                    @for v in rules {
                        tr {
                            td { code { (v.rule) } }
                            td { (v.observed.map_or("-".into(), |o| v.unit.format(o))) }
                            td { (v.unit.format(v.limit)) }
                            @match &v.change {
                                Some(c) => {
                                    td { (format!("{:+.1}%", c.percent)) }
                                    td { (format!("{:+.1}% .. {:+.1}%", c.low, c.high)) }
                                }
                                None => { td { "-" } td { "-" } }
                            }
                            td class=(pass_class(v.passed)) { (if v.passed { "PASS" } else { "FAIL" }) }
                            td.why { (v.detail) }
                        }
                    }
                }
            }
        }
    }
}

fn requests(report: &LoadgenReport) -> Markup {
    let row = |label: String, r: &RequestStats| {
        let l = &r.latency_ms;
        html! {
            tr {
                td { (label) } td { (r.count) } td { (r.failures) }
                td { (format!("{:.2}%", r.error_rate)) } td { (format!("{:.1}", r.rps)) }
                td { (format_ms(l.p50)) } td { (format_ms(l.p90)) } td { (format_ms(l.p95)) }
                td { (format_ms(l.p99)) } td { (format_ms(l.p99_9)) } td { (format_ms(l.max)) }
            }
        }
    };
    html! {
        section #requests {
            h2 { "Request latency, from the load generator" }
            table {
                tr {
                    th { "request" } th { "count" } th { "failures" } th { "error rate" } th { "req/s" }
                    th { "p50" } th { "p90" } th { "p95" } th { "p99" } th { "p99.9" } th { "max" }
                }
                @for r in &report.requests { (row(r.name.clone(), r)) }
                (row(report.aggregate.name.clone(), &report.aggregate))
                @for r in &report.routes { (row(format!("route {}", r.name), r)) }
            }
            @if report.requests.iter().any(|r| !r.errors.is_empty()) {
                h3 { "No HTTP answer, or a failed check" }
                table {
                    tr { th { "request" } th { "count" } th { "cause" } }
                    @for r in &report.requests {
                        @for (cause, n) in &r.errors {
                            tr { td { (r.name) } td { (n) } td { (cause) } }
                        }
                    }
                }
            }
        }
    }
}

fn files(report: &LoadgenReport) -> Markup {
    html! {
        section #files {
            h2 { "Files" }
            ul {
                @for (role, file) in report.files.iter().filter(|(_, f)| *f != "index.html") {
                    li { a href=(file) { (file) } " " span.muted { (role) } }
                }
            }
        }
    }
}

/// `reports/index.html`: every run given, newest first.
pub fn run_list(runs: &[LoadgenReport]) -> String {
    let mut runs: Vec<&LoadgenReport> = runs.iter().collect();
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    html! {
        (DOCTYPE)
        html lang="en" {
        (head("loadgen runs"))
        body {
            h1 { "loadgen runs" }
            table {
                tr {
                    th { "run" } th { "verdict" } th { "users" } th { "requests" } th { "req/s" }
                    th { "p99" } th { "lost" } th { "host" }
                }
                @for run in runs {
                    @let lost = run
                        .delivery
                        .as_ref()
                        .and_then(|d| d.routes.get("all"))
                        .map_or("-".into(), |r| r.lost.to_string());
                    tr {
                        td { a href=(format!("{}/index.html", run.run_id)) { (run.run_id) } }
                        td class=(pass_class(run.gate.passed)) { (if run.gate.passed { "PASSED" } else { "FAILED" }) }
                        td { (run.settings.users) } td { (run.aggregate.count) }
                        td { (format!("{:.1}", run.aggregate.rps)) }
                        td { (format_ms(run.aggregate.latency_ms.p99)) }
                        td { (lost) } td { (run.settings.host) }
                    }
                }
            }
        }
        }
    }
    .into_string()
}
