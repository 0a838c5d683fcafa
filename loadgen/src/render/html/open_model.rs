//! The open model's section of the page: the plan and how it was kept, the requested
//! against the offered rate, late and dropped per second, and service time.

use maud::{Markup, html};

use crate::duration::format_ms;
use crate::model::{Arrivals, LoadgenReport, OpenModel, TimelinePoint};
use crate::render::svg::{Axis, PALETTE, Series, line_chart};

use super::charts::seconds_axis;

/// The open model: what was asked and how the schedule was kept, the requested against
/// the offered rate over time, late and dropped per second, and service time.
pub(super) fn open_model(report: &LoadgenReport, open: &OpenModel) -> Markup {
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
    let rows = settings_rows(open);
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

/// What was asked of the schedule, and how it was kept.
fn settings_rows(open: &OpenModel) -> [(&'static str, String); 8] {
    let lag = &open.lag_ms;
    [
        (
            "arrival plan",
            match &open.share {
                Some(share) => format!("{share} (this worker's share of {})", open.plan),
                None => open.plan.clone(),
            },
        ),
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
        (
            "late (sent after their time)",
            format!("{} (over {})", open.late, format_ms(open.late_after_ms)),
        ),
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
    ]
}
