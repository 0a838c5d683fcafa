//! The run's closing summary on the terminal: request and route percentiles, the delivery
//! ledger and the gate's verdicts. Pure: each takes the report's model and returns text.

use crate::duration::format_ms;
use crate::judge::gate::Compared;
use crate::model::{Arrivals, Delivery, LoadgenReport, OpenModel, ROUTES, Verdict, WorkerShare};

/// Per-request counts and percentiles, as the run's closing summary.
pub fn requests(report: &LoadgenReport) -> String {
    let width = name_width(report);
    let mut out = format!(
        "\n{:<width$} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "request", "count", "fails", "req/s", "p50", "p95", "p99", "max"
    );
    let rows = report
        .requests
        .iter()
        .chain([&report.aggregate])
        .map(|row| (row.name.clone(), row))
        .chain(
            report
                .routes
                .iter()
                .map(|row| (format!("route {}", row.name), row)),
        );
    for (name, row) in rows {
        let l = &row.latency_ms;
        let ms = format_ms;
        out.push_str(&format!(
            "{:<width$} {:>9} {:>7} {:>9.1} {:>9} {:>9} {:>9} {:>9}\n",
            name,
            row.count,
            row.failures,
            row.rps,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max)
        ));
    }
    out.push_str(&no_answer(report));
    if report.interrupted > 0 {
        out.push_str(&format!(
            "\n{} requests were still in flight when --graceful-stop ran out, and were interrupted: the run's end, not failures of the target\n",
            report.interrupted
        ));
    }
    if let Some(note) = super::saturated_note(report) {
        out.push_str(&format!("\n{note}\n"));
    }
    if let Some(open) = &report.open {
        out.push_str(&open_model(open));
    }
    out.push('\n');
    out
}

/// The first column's width: the longest request name a scenario gives, 16 at least.
fn name_width(report: &LoadgenReport) -> usize {
    let names = report.requests.iter().map(|r| r.name.chars().count());
    let routes = report.routes.iter().map(|r| r.name.chars().count() + 6);
    names.chain(routes).max().unwrap_or(0).max(16)
}

/// The failed requests that got no HTTP answer or failed their check, by request and
/// cause, most frequent first (Locust's failures table); empty when there were none.
fn no_answer(report: &LoadgenReport) -> String {
    let width = name_width(report);
    let mut rows: Vec<(&str, &str, u64)> = report
        .requests
        .iter()
        .flat_map(|row| {
            row.errors
                .iter()
                .map(|(cause, n)| (row.name.as_str(), cause.as_str(), *n))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.cmp(b)));
    let mut out = format!(
        "\nNo HTTP answer, or a failed check\n{:<width$} {:>9}  cause\n",
        "request", "count"
    );
    for (name, cause, n) in rows {
        out.push_str(&format!("{name:<width$} {n:>9}  {cause}\n"));
    }
    out
}

/// The open model's schedule and how it was kept, and service time per request and route.
fn open_model(open: &OpenModel) -> String {
    let lag = &open.lag_ms;
    let mut out = format!(
        "\nOpen model: {} ({}), pool of {} users{}: {} scheduled, {} late (over {}), {} dropped; schedule lag p50 {}, p99 {}, max {}\n(the latency above is the response time, from each request's intended send time)\n",
        match &open.share {
            Some(share) => format!("{share} (this worker's share of {})", open.plan),
            None => open.plan.clone(),
        },
        match open.arrivals {
            Arrivals::Uniform => "uniform",
            Arrivals::Poisson => "poisson",
        },
        open.max_users,
        open.drop_late_ms.map_or(String::new(), |d| format!(
            ", dropping past {}",
            format_ms(d)
        )),
        open.scheduled,
        open.late,
        format_ms(open.late_after_ms),
        open.dropped,
        format_ms(lag.p50),
        format_ms(lag.p99),
        format_ms(lag.max)
    );
    out.push_str(&format!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "service time", "count", "p50", "p95", "p99", "max"
    ));
    for row in &open.service {
        let l = &row.latency_ms;
        out.push_str(&format!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            row.name,
            row.count,
            format_ms(l.p50),
            format_ms(l.p95),
            format_ms(l.p99),
            format_ms(l.max)
        ));
    }
    out
}

/// The delivery ledger as a terminal table.
pub fn delivery(delivery: &Delivery) -> String {
    let mut out = format!(
        "Delivery (receivers at {}{}):\n{:<10} {:>9} {:>9} {:>6} {:>10} {:>9} {:>13} {:>9} {:>10} {:>10}\n",
        delivery.receivers,
        match (delivery.drained, delivery.receivers_restarted) {
            (true, false) => "",
            (false, false) => ", NOT drained",
            (true, true) => ", restarted during the run: no latency",
            (false, true) => ", NOT drained, restarted during the run: no latency",
        },
        "route",
        "accepted",
        "stored",
        "lost",
        "duplicates",
        "conflicts",
        "dead-lettered",
        "rejected",
        "e2e p50",
        "e2e p99"
    );
    for route in ROUTES.iter().chain(["all"].iter()) {
        let r = &delivery.routes[*route];
        let e2e = r.latency.get("e2e").cloned().unwrap_or_default();
        out.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>6} {:>10} {:>9} {:>13} {:>9} {:>10} {:>10}\n",
            route,
            r.accepted,
            r.stored,
            r.lost,
            r.duplicates,
            r.conflicts,
            r.dead_lettered,
            r.rejected,
            format_ms(e2e.p50),
            format_ms(e2e.p99)
        ));
    }
    if delivery.unrouted_rejected > 0 {
        out.push_str(&format!(
            "refused with no route named: {}\n",
            delivery.unrouted_rejected
        ));
    }
    out.push('\n');
    out
}

/// The terminal table: rule, observed, limit, verdict.
pub fn gate(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return "Gate: no rules (pass --threshold RULE or --gate FILE to judge the run)\n".into();
    }
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            vec![
                v.rule.clone(),
                v.observed.map_or("-".into(), |o| v.unit.format(o)),
                v.unit.format(v.limit),
                if v.passed { "PASS" } else { "FAIL" }.into(),
                v.detail.clone(),
            ]
        })
        .collect();
    let mut out = String::from("Gate:\n");
    out.push_str(&columns(
        &["rule", "observed", "limit", "result", "detail"],
        &rows,
    ));
    out.push_str(&tally(verdicts));
    out
}

/// "all N rules passed", or "K of N rules FAILED".
fn tally(verdicts: &[Verdict]) -> String {
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    if failed == 0 {
        format!("all {} rules passed\n", verdicts.len())
    } else {
        format!("{failed} of {} rules FAILED\n", verdicts.len())
    }
}

/// Rows under a header, each column as wide as its widest cell.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (c, cell) in cells.enumerate() {
            out.push_str(&format!("{:<width$}  ", cell, width = widths[c]));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The A/B comparison's verdicts: per series and statistic, both sides' values, the change,
/// its interval and the verdict; then the saturation checks of both sides.
pub fn comparison(compared: &[Compared], saturation: &[Verdict]) -> String {
    let rows: Vec<Vec<String>> = compared
        .iter()
        .map(|c| {
            let v = &c.verdict;
            let (base, now, change, interval) = match &v.change {
                Some(change) => (
                    v.unit.format(change.baseline),
                    v.unit.format(change.now),
                    format!("{:+.1}%", change.percent),
                    format!("[{:+.1}%, {:+.1}%]", change.low, change.high),
                ),
                None => ("-".into(), "-".into(), "-".into(), v.detail.clone()),
            };
            let verdict = if v.passed { "pass" } else { "REGRESSED" };
            vec![
                c.target.clone(),
                c.statistic.to_string(),
                base,
                now,
                change,
                interval,
                verdict.to_string(),
            ]
        })
        .collect();
    let mut out = columns(
        &[
            "series",
            "stat",
            "base",
            "head",
            "change",
            "95% interval",
            "verdict",
        ],
        &rows,
    );
    for v in saturation {
        out.push_str(&format!(
            "{}: {}: {}\n",
            v.rule,
            if v.passed { "pass" } else { "FAIL" },
            v.detail
        ));
    }
    let all: Vec<Verdict> = compared
        .iter()
        .map(|c| c.verdict.clone())
        .chain(saturation.iter().cloned())
        .collect();
    out.push_str(&tally(&all));
    out
}

/// A merged run's workers: each one's share of the users and requests, and its start.
pub fn workers(workers: &[WorkerShare]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let requests: u64 = workers.iter().map(|w| w.requests).sum();
    let mut out = format!(
        "\nWorkers: {}\n{:<7} {:>7} {:>10} {:>7} {:>11}  folder\n",
        workers.len(),
        "worker",
        "users",
        "requests",
        "share",
        "start skew"
    );
    for w in workers {
        out.push_str(&format!(
            "{:<7} {:>7} {:>10} {:>6.1}% {:>10.3}s  {}\n",
            w.index,
            w.users,
            w.requests,
            w.requests as f64 * 100.0 / requests.max(1) as f64,
            w.start_skew_secs,
            w.folder
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_verdict as verdict;

    #[test]
    fn the_table_shows_each_rule_and_the_outcome() {
        let text = gate(&[verdict("p95<200ms", true), verdict("p95<50ms", false)]);
        assert!(text.contains("p95<200ms") && text.contains("PASS"));
        assert!(text.contains("p95<50ms") && text.contains("FAIL"));
        assert!(text.contains("1 of 2 rules FAILED"));
    }
}
