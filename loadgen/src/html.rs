//! `index.html`, the page a person reads: settings and verdicts, traffic over time, request
//! percentiles, and per route the delivery ledger and latency-by-percentile plots. Rendered
//! from `loadgen.json` alone, self-contained (inline CSS and SVG), so it works offline.
//! Also `reports/index.html`, the list of every run.

use std::fmt::Write;
use std::path::Path;

use crate::delivery::{Delivery, ROUTES};
use crate::duration::format_ms;
use crate::progress::TimelinePoint;
use crate::report::{LoadgenReport, RequestStats};
use crate::svg::{Axis, PALETTE, Series, escape, line_chart, nice_ticks, nines, nines_axis};

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
.muted { color: #777; } code { background: #f4f4f4; padding: 0 3px; }
"#;

/// The run's page.
pub fn render(report: &LoadgenReport) -> String {
    let mut page = String::new();
    let passed = report.gate.passed;
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadgen run {id}</title><style>{STYLE}</style></head><body>\n<h1>Run {id} <span class=\"verdict {cls}\">{word}</span></h1>\n<p class=\"muted\">{start} to {end}, {secs:.1} s, ended: {ended}</p>\n",
        id = escape(&report.run_id),
        cls = if passed { "pass" } else { "fail" },
        word = if passed { "PASSED" } else { "FAILED" },
        start = escape(&report.started_at),
        end = escape(&report.finished_at),
        secs = report.duration_secs,
        ended = report.ended_by.describe(),
    );
    settings(&mut page, report);
    gate(&mut page, report);
    timeline(&mut page, report);
    requests(&mut page, report);
    match &report.delivery {
        Some(delivery) => routes(&mut page, delivery),
        None => page.push_str(
            "<section id=\"delivery\"><h2>Delivery by route</h2><p class=\"muted\">No delivery ledger: this run did not reconcile with the receivers (the target did not serve <code>/stats</code>, or <code>--no-reconcile</code>).</p></section>\n",
        ),
    }
    files(&mut page, report);
    page.push_str("</body></html>\n");
    page
}

fn settings(page: &mut String, report: &LoadgenReport) {
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
        (
            "git commit",
            s.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
    ];
    page.push_str("<section id=\"settings\"><h2>Run settings</h2><table>");
    for (name, value) in rows {
        let _ = write!(page, "<tr><td>{name}</td><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table></section>\n");
}

fn gate(page: &mut String, report: &LoadgenReport) {
    page.push_str("<section id=\"gate\"><h2>Gate</h2>");
    if report.gate.rules.is_empty() {
        page.push_str("<p class=\"muted\">No rules (pass <code>--threshold</code> or <code>--gate</code>).</p></section>\n");
        return;
    }
    page.push_str("<table><tr><th>rule</th><th>observed</th><th>limit</th><th>result</th><th>detail</th></tr>");
    for v in &report.gate.rules {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            escape(&v.rule),
            v.observed.map_or("-".into(), |o| v.unit.format(o)),
            v.unit.format(v.limit),
            if v.passed { "pass" } else { "fail" },
            if v.passed { "PASS" } else { "FAIL" },
            escape(&v.detail)
        );
    }
    page.push_str("</table></section>\n");
}

fn timeline(page: &mut String, report: &LoadgenReport) {
    let seconds = report.timeline.len().max(1) as f64;
    let x = Axis {
        label: "seconds".into(),
        ticks: nice_ticks(seconds),
    };
    let series = |name: &str, color, value: fn(&TimelinePoint) -> u64| Series {
        name: name.into(),
        color,
        points: report
            .timeline
            .iter()
            .map(|p| (p.second as f64, value(p) as f64))
            .collect(),
    };
    let requests = series("requests/s", PALETTE[0], |p| p.requests);
    let errors = series("errors/s", PALETTE[1], |p| p.failures);
    let users = series("users", PALETTE[2], |p| p.users);
    page.push_str("<section id=\"timeline\"><h2>Requests, errors and users over time</h2><div class=\"charts\">");
    page.push_str(&line_chart(
        "Requests and errors per second",
        &[requests, errors],
        &x,
        &Axis {
            label: "per second".into(),
            ticks: vec![],
        },
    ));
    page.push_str(&line_chart(
        "Users running",
        &[users],
        &x,
        &Axis {
            label: "users".into(),
            ticks: vec![],
        },
    ));
    page.push_str("</div></section>\n");
}

fn requests(page: &mut String, report: &LoadgenReport) {
    page.push_str("<section id=\"requests\"><h2>Request latency, from the load generator</h2><table><tr><th>request</th><th>count</th><th>failures</th><th>error rate</th><th>req/s</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    let row = |page: &mut String, r: &RequestStats| {
        let l = &r.latency_ms;
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            r.count,
            r.failures,
            r.error_rate,
            r.rps,
            format_ms(l.p50),
            format_ms(l.p90),
            format_ms(l.p95),
            format_ms(l.p99),
            format_ms(l.p99_9),
            format_ms(l.max)
        );
    };
    for r in &report.requests {
        row(page, r);
    }
    row(page, &report.aggregate);
    page.push_str("</table></section>\n");
}

fn routes(page: &mut String, delivery: &Delivery) {
    let _ = write!(
        page,
        "<section id=\"delivery\"><h2>Delivery by route</h2><p class=\"muted\">Reconciled with the receivers at {} by Idempotency-Key; {}.</p>",
        escape(&delivery.receivers),
        {
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
            said
        }
    );
    page.push_str("<table><tr><th>route</th><th>accepted</th><th>stored</th><th>lost</th><th>duplicates</th><th>conflicts</th><th>dead-lettered</th><th>rejected</th><th>throughput</th><th>ingress p99</th><th>e2e p50</th><th>e2e p99</th></tr>");
    for name in ROUTES.iter().chain(["all"].iter()) {
        let Some(r) = delivery.routes.get(*name) else {
            continue;
        };
        let stage = |s: &str| r.latency.get(s).cloned().unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{:.1}/s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.accepted,
            r.stored,
            if r.lost == 0 { "pass" } else { "fail" },
            r.lost,
            r.duplicates,
            if r.conflicts == 0 { "pass" } else { "fail" },
            r.conflicts,
            if r.dead_lettered == 0 { "pass" } else { "fail" },
            r.dead_lettered,
            r.rejected,
            r.throughput,
            format_ms(stage("ingress").p99),
            format_ms(stage("e2e").p50),
            format_ms(stage("e2e").p99)
        );
    }
    page.push_str("</table>");
    if delivery.unrouted_rejected > 0 {
        let _ = write!(
            page,
            "<p>Refused with no route named (every path down): {}</p>",
            delivery.unrouted_rejected
        );
    }
    for name in ROUTES {
        if let Some(r) = delivery.routes.get(name).filter(|r| !r.lost_ids.is_empty()) {
            let _ = write!(
                page,
                "<p class=\"fail\">Lost on {name} ({} in all; first {} listed): {}</p>",
                r.lost,
                r.lost_ids.len(),
                r.lost_ids
                    .iter()
                    .map(|id| format!("<code>{}</code>", escape(id)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    page.push_str("</section>\n<section id=\"latency\"><h2>Latency by percentile, per route</h2><p class=\"muted\">All routes on one chart per stage; the x axis counts nines as HdrHistogram's plotter does.</p><div class=\"charts\">");
    for (stage, title) in [
        ("ingress", "Ingress latency (entry: request to response)"),
        ("e2e", "End-to-end latency (accepted to stored)"),
    ] {
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
        // The axis ends at the deepest percentile short of 100% (which has no finite place on
        // a nines axis), rounded up to whole nines, so the lines fill the chart.
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
        page.push_str(&line_chart(
            title,
            &series,
            &axis,
            &Axis {
                label: "milliseconds".into(),
                ticks: vec![],
            },
        ));
    }
    page.push_str("</div></section>\n");
}

fn files(page: &mut String, report: &LoadgenReport) {
    page.push_str("<section id=\"files\"><h2>Files</h2><ul>");
    for (role, file) in &report.files {
        if file == "index.html" {
            continue;
        }
        let _ = write!(
            page,
            "<li><a href=\"{0}\">{0}</a> <span class=\"muted\">{1}</span></li>",
            escape(file),
            escape(role)
        );
    }
    page.push_str("</ul></section>\n");
}

/// `reports/index.html`: every run in `reports`, newest first.
pub fn write_run_list(reports: &Path) -> std::io::Result<()> {
    let mut runs: Vec<LoadgenReport> = std::fs::read_dir(reports)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| LoadgenReport::read(&e.path().join("loadgen.json")).ok())
        .collect();
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadgen runs</title><style>{STYLE}</style></head><body><h1>loadgen runs</h1><table><tr><th>run</th><th>verdict</th><th>users</th><th>requests</th><th>req/s</th><th>p99</th><th>lost</th><th>host</th></tr>"
    );
    for run in &runs {
        let lost = run
            .delivery
            .as_ref()
            .and_then(|d| d.routes.get("all"))
            .map_or("-".into(), |r| r.lost.to_string());
        let _ = write!(
            page,
            "<tr><td><a href=\"{id}/index.html\">{id}</a></td><td class=\"{cls}\">{word}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{lost}</td><td>{}</td></tr>",
            run.settings.users,
            run.aggregate.count,
            run.aggregate.rps,
            format_ms(run.aggregate.latency_ms.p99),
            escape(&run.settings.host),
            id = escape(&run.run_id),
            cls = if run.gate.passed { "pass" } else { "fail" },
            word = if run.gate.passed { "PASSED" } else { "FAILED" },
        );
    }
    page.push_str("</table></body></html>\n");
    std::fs::write(reports.join("index.html"), page)
}
