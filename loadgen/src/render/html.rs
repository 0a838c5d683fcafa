//! `index.html`, the page a person reads: settings and verdicts, traffic and latency over
//! time, request and route percentiles, and per route the delivery ledger and
//! latency-by-percentile plots. Rendered from `loadgen.json` alone with maud, which escapes
//! every value by default, self-contained (inline CSS and SVG) so it works offline. Also
//! the list of every run, `reports/index.html`.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::duration::format_ms;
use crate::model::{
    Arrivals, Delivery, IntervalLatency, LoadgenReport, OpenModel, ROUTES, RequestStats,
    SeriesKind, TimelinePoint, Verdict, WorkerShare,
};
use crate::render::svg::{Axis, PALETTE, Series, line_chart, nice_ticks, nines, nines_axis};

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
                        "No delivery ledger: this run did not reconcile with the receivers (the target did not serve "
                        code { "/stats" } ", or " code { "--no-reconcile" } ")."
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
        ("users", s.users.to_string()),
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

fn seconds_axis(seconds: f64) -> Axis {
    Axis {
        label: "seconds".into(),
        ticks: nice_ticks(seconds.max(1.0)),
    }
}

fn timeline(report: &LoadgenReport) -> Markup {
    let x = seconds_axis(report.timeline.len() as f64);
    let series = |name: &str, color, value: fn(&TimelinePoint) -> u64| Series {
        name: name.into(),
        color,
        points: report
            .timeline
            .iter()
            .map(|p| (p.second as f64, value(p) as f64))
            .collect(),
    };
    let per_second = Axis {
        label: "per second".into(),
        ticks: vec![],
    };
    let users = Axis {
        label: "users".into(),
        ticks: vec![],
    };
    html! {
        section #timeline {
            h2 { "Requests, errors and users over time" }
            div.charts {
                (line_chart(
                    "Requests and errors per second",
                    &[
                        series("requests/s", PALETTE[0], |p| p.requests),
                        series("errors/s", PALETTE[1], |p| p.failures),
                    ],
                    &x,
                    &per_second,
                ))
                (line_chart("Users running", &[series("users", PALETTE[2], |p| p.users)], &x, &users))
            }
        }
    }
}

/// The open model: what was asked and how the schedule was kept, the requested against
/// the offered rate over time, late and dropped per second, and service time.
fn open_model(report: &LoadgenReport, open: &OpenModel) -> Markup {
    let x = seconds_axis(report.timeline.len() as f64);
    let series = |name: &str, color, value: fn(&TimelinePoint) -> Option<f64>| Series {
        name: name.into(),
        color,
        points: report
            .timeline
            .iter()
            .filter_map(|p| value(p).map(|v| (p.second as f64, v)))
            .collect(),
    };
    let per_second = Axis {
        label: "per second".into(),
        ticks: vec![],
    };
    let lag = &open.lag_ms;
    let rows = [
        ("arrival plan", open.plan.clone()),
        (
            "arrivals",
            match open.arrivals {
                Arrivals::Uniform => "uniform".into(),
                Arrivals::Poisson => "poisson".into(),
            },
        ),
        ("pool (--max-users)", open.max_users.to_string()),
        (
            "--drop-late",
            open.drop_late_ms
                .map_or("off: every request is sent".into(), format_ms),
        ),
        ("scheduled", open.scheduled.to_string()),
        ("late (sent after their time)", open.late.to_string()),
        ("dropped", open.dropped.to_string()),
        (
            "schedule lag p50 / p99 / max",
            format!(
                "{} / {} / {}",
                format_ms(lag.p50),
                format_ms(lag.p99),
                format_ms(lag.max)
            ),
        ),
    ];
    html! {
        section #open-model {
            h2 { "Open model" }
            p.muted {
                "Requests were sent at the plan's times whatever the target did. The request latency on this page is the response time, counted from each request's intended send time (what a user of the target felt); service time, below, counts from the actual send."
            }
            table { @for (name, value) in rows { tr { td { (name) } td { (value) } } } }
            div.charts {
                (line_chart(
                    "Requested and offered rate",
                    &[
                        series("requested/s", PALETTE[3], |p| p.requested),
                        series("sent/s", PALETTE[0], |p| p.sent.map(|v| v as f64)),
                    ],
                    &x,
                    &per_second,
                ))
                (line_chart(
                    "Late and dropped per second",
                    &[
                        series("late/s", PALETTE[4], |p| p.late.map(|v| v as f64)),
                        series("dropped/s", PALETTE[1], |p| p.dropped.map(|v| v as f64)),
                    ],
                    &x,
                    &per_second,
                ))
            }
            table {
                tr { th { "service time" } th { "count" } th { "p50" } th { "p95" } th { "p99" } th { "max" } }
                @for r in &open.service {
                    tr {
                        td { (r.name) } td { (r.count) } td { (format_ms(r.latency_ms.p50)) }
                        td { (format_ms(r.latency_ms.p95)) } td { (format_ms(r.latency_ms.p99)) }
                        td { (format_ms(r.latency_ms.max)) }
                    }
                }
            }
        }
    }
}

/// p50, p95 and p99 per interval: one chart per request name and one per route.
fn latency_over_time(report: &LoadgenReport) -> Markup {
    let points = &report.latency_timeline;
    let end = points
        .iter()
        .map(|p| p.end_secs)
        .fold(report.timeline.len() as f64, f64::max);
    let x = seconds_axis(end);
    let mut charts: Vec<(SeriesKind, &str)> =
        points.iter().map(|p| (p.kind, p.name.as_str())).collect();
    charts.sort();
    charts.dedup();
    let ms = Axis {
        label: "milliseconds".into(),
        ticks: vec![],
    };
    let line =
        |kind: SeriesKind, name: &str, label: &str, color, value: fn(&IntervalLatency) -> f64| {
            Series {
                name: label.into(),
                color,
                points: points
                    .iter()
                    .filter(|p| p.kind == kind && p.name == name)
                    .map(|p| (p.end_secs, value(p)))
                    .collect(),
            }
        };
    html! {
        section #latency-over-time {
            h2 { "Latency over time" }
            p.muted {
                "Per " (report.settings.interval_secs) " s interval, from loadgen's own histograms (exact to 3 significant digits; "
                "the same intervals as " code { "latency.hlog" } "). Routes are the POSTs the answer named."
            }
            @if charts.is_empty() {
                p.muted { "No requests were measured." }
            }
            div.charts {
                @for (kind, name) in &charts {
                    (line_chart(
                        &format!("{} {name}: latency per interval", kind.name()),
                        &[
                            line(*kind, name, "p50", PALETTE[2], |p| p.p50),
                            line(*kind, name, "p95", PALETTE[0], |p| p.p95),
                            line(*kind, name, "p99", PALETTE[1], |p| p.p99),
                        ],
                        &x,
                        &ms,
                    ))
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
                h3 { "No HTTP answer" }
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

fn routes(delivery: &Delivery) -> Markup {
    let mut said = if delivery.drained {
        format!(
            "every accepted record was found stored within {:.1} s",
            delivery.drain_secs
        )
    } else {
        format!(
            "accepted records were still missing after {:.1} s (--drain-timeout)",
            delivery.drain_secs
        )
    };
    if delivery.receivers_restarted {
        said.push_str(
            "; a receivers process restarted during the run, so its latency and store-side counts for this run are not shown",
        );
    }
    let ms = Axis {
        label: "milliseconds".into(),
        ticks: vec![],
    };
    let stage_chart = |stage: &str, title: &str| {
        let series: Vec<Series> = ROUTES
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let latency = delivery.routes.get(*name)?.latency.get(stage)?;
                Some(Series {
                    name: name.to_string(),
                    color: PALETTE[i],
                    points: latency
                        .distribution
                        .iter()
                        .map(|p| (nines(p[0]), p[1]))
                        .collect(),
                })
            })
            .collect();
        // The axis ends at the deepest percentile short of 100% (which has no finite place
        // on a nines axis), rounded up to whole nines, so the lines fill the chart.
        let deepest = ROUTES
            .iter()
            .filter_map(|name| delivery.routes.get(*name)?.latency.get(stage))
            .flat_map(|l| {
                l.distribution
                    .iter()
                    .filter(|p| p[0] < 100.0)
                    .map(|p| nines(p[0]))
            })
            .fold(0.0, f64::max);
        let axis = nines_axis((deepest.ceil() as usize).clamp(2, 5));
        line_chart(title, &series, &axis, &ms)
    };
    html! {
        section #delivery {
            h2 { "Delivery by route" }
            p.muted { "Reconciled with the receivers at " (delivery.receivers) " by Idempotency-Key; " (said) "." }
            table {
                tr {
                    th { "route" } th { "accepted" } th { "stored" } th { "lost" } th { "duplicates" }
                    th { "conflicts" } th { "dead-lettered" } th { "rejected" } th { "throughput" }
                    th { "ingress p99" } th { "e2e p50" } th { "e2e p99" }
                }
                @for name in ROUTES.iter().chain(["all"].iter()) {
                    @if let Some(r) = delivery.routes.get(*name) {
                        @let stage = |s: &str| r.latency.get(s).cloned().unwrap_or_default();
                        tr {
                            td { (name) } td { (r.accepted) } td { (r.stored) }
                            td class=(pass_class(r.lost == 0)) { (r.lost) }
                            td { (r.duplicates) }
                            td class=(pass_class(r.conflicts == 0)) { (r.conflicts) }
                            td class=(pass_class(r.dead_lettered == 0)) { (r.dead_lettered) }
                            td { (r.rejected) }
                            td { (format!("{:.1}/s", r.throughput)) }
                            td { (format_ms(stage("ingress").p99)) }
                            td { (format_ms(stage("e2e").p50)) }
                            td { (format_ms(stage("e2e").p99)) }
                        }
                    }
                }
            }
            @if delivery.unrouted_rejected > 0 {
                p { "Refused with no route named (every path down): " (delivery.unrouted_rejected) }
            }
            @for name in ROUTES {
                @if let Some(r) = delivery.routes.get(name).filter(|r| !r.lost_ids.is_empty()) {
                    p.fail {
                        "Lost on " (name) " (" (r.lost) " in all; first " (r.lost_ids.len()) " listed): "
                        @for id in &r.lost_ids { code { (id) } " " }
                    }
                }
            }
        }
        section #latency {
            h2 { "Latency by percentile, per route" }
            p.muted { "All routes on one chart per stage; the x axis counts nines as HdrHistogram's plotter does." }
            div.charts {
                (stage_chart("ingress", "Ingress latency (entry: request to response)"))
                (stage_chart("e2e", "End-to-end latency (accepted to stored)"))
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
