//! The delivery section of the page: the ledger per route, the lost ids, and each stage's
//! latency by percentile per route.

use maud::{Markup, html};

use crate::duration::format_ms;
use crate::model::{Delivery, ROUTES};
use crate::render::svg::{Axis, PALETTE, Series, line_chart, nines, nines_axis};

use super::pass_class;

/// The delivery ledger per route, the records lost by id, and per stage the latency by
/// percentile of every route.
pub(super) fn routes(delivery: &Delivery) -> Markup {
    let said = drain_said(delivery);
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
                (stage_chart(delivery, "ingress", "Ingress latency (entry: request to response)"))
                (stage_chart(delivery, "e2e", "End-to-end latency (accepted to stored)"))
            }
        }
    }
}

/// Whether the drain found every accepted record, in words.
fn drain_said(delivery: &Delivery) -> String {
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

/// One stage's latency by percentile, every route on one chart.
fn stage_chart(delivery: &Delivery, stage: &str, title: &str) -> Markup {
    let ms = Axis {
        label: "milliseconds".into(),
        ticks: vec![],
    };
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
}
