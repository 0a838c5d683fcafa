//! The page's charts over time: requests, errors and users per second, and each request's
//! and route's p50, p95 and p99 per interval.

use maud::{Markup, html};

use crate::model::{IntervalLatency, LoadgenReport, SeriesKind, TimelinePoint};
use std::time::Duration;

use crate::render::svg::{Axis, Marks, PALETTE, Series, marked_chart, nice_ticks};
use crate::users_plan::UsersPlan;

pub(super) fn seconds_axis(seconds: f64) -> Axis {
    Axis {
        label: "seconds".into(),
        ticks: nice_ticks(seconds.max(1.0)),
    }
}

/// The seconds in which loadgen was CPU-bound, to shade on every chart over time.
fn saturated(report: &LoadgenReport) -> Marks {
    Marks {
        spans: report
            .timeline
            .iter()
            .filter(|p| p.saturated)
            .map(|p| (p.second as f64 - 1.0, p.second as f64))
            .collect(),
        label: "loadgen CPU-bound".into(),
    }
}

/// Requests, errors and users per second.
pub(super) fn timeline(report: &LoadgenReport) -> Markup {
    let marks = saturated(report);
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
                (marked_chart(
                    "Requests and errors per second",
                    &[
                        series("requests/s", PALETTE[0], |p| p.requests),
                        series("errors/s", PALETTE[1], |p| p.failures),
                    ],
                    &x,
                    &per_second,
                    &marks,
                ))
                (marked_chart("Users running", &users_series(report, series("users", PALETTE[2], |p| p.users)), &x, &users, &marks))
            }
        }
    }
}

/// The users running, and beside them what the users plan asked for, when there was one.
fn users_series(report: &LoadgenReport, running: Series) -> Vec<Series> {
    let planned = report
        .settings
        .users_plan
        .as_deref()
        .and_then(|text| UsersPlan::parse(text).ok())
        .map(|plan| Series {
            name: "planned".into(),
            color: PALETTE[3],
            points: (0..=report.timeline.len())
                .map(|s| (s as f64, plan.users_at(Duration::from_secs(s as u64))))
                .collect(),
        });
    std::iter::once(running).chain(planned).collect()
}

/// p50, p95 and p99 per interval: one chart per request name and one per route.
pub(super) fn latency_over_time(report: &LoadgenReport) -> Markup {
    let points = &report.latency_timeline;
    let end = points
        .iter()
        .map(|p| p.end_secs)
        .fold(report.timeline.len() as f64, f64::max);
    let x = seconds_axis(end);
    let marks = saturated(report);
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
                    (marked_chart(
                        &format!("{} {name}: latency per interval", kind.name()),
                        &[
                            line(*kind, name, "p50", PALETTE[2], |p| p.p50),
                            line(*kind, name, "p95", PALETTE[0], |p| p.p95),
                            line(*kind, name, "p99", PALETTE[1], |p| p.p99),
                        ],
                        &x,
                        &ms,
                        &marks,
                    ))
                }
            }
        }
    }
}
