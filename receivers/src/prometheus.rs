//! `GET /metrics`: the `/stats` snapshot in the Prometheus text format.

use std::fmt::Write;

use crate::stats::StatsSnapshot;

pub fn render(snapshot: &StatsSnapshot) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP receivers_records_total Records per route by outcome at the entry or the store.\n",
    );
    out.push_str("# TYPE receivers_records_total counter\n");
    for (route, stats) in &snapshot.routes {
        for (outcome, value) in [
            ("accepted", stats.accepted),
            ("rejected", stats.rejected),
            ("stored", stats.stored),
            ("duplicate", stats.duplicates),
            ("conflict", stats.conflicts),
            ("dead_lettered", stats.dead_lettered),
            ("store_failure", stats.store_failures),
        ] {
            let _ = writeln!(
                out,
                "receivers_records_total{{route=\"{route}\",outcome=\"{outcome}\"}} {value}"
            );
        }
    }
    out.push_str("# HELP receivers_in_flight Records accepted and not yet stored.\n");
    out.push_str("# TYPE receivers_in_flight gauge\n");
    for (route, stats) in &snapshot.routes {
        let _ = writeln!(
            out,
            "receivers_in_flight{{route=\"{route}\"}} {}",
            stats.in_flight
        );
    }
    out.push_str(
        "# HELP receivers_latency_seconds Latency per route and stage (ingress, hop, e2e).\n",
    );
    out.push_str("# TYPE receivers_latency_seconds summary\n");
    for (route, stats) in &snapshot.routes {
        for (stage, s) in &stats.latency {
            let stage = stage.name();
            for (quantile, ms) in [
                ("0.5", s.p50_ms),
                ("0.9", s.p90_ms),
                ("0.99", s.p99_ms),
                ("0.999", s.p99_9_ms),
            ] {
                let _ = writeln!(
                    out,
                    "receivers_latency_seconds{{route=\"{route}\",stage=\"{stage}\",quantile=\"{quantile}\"}} {}",
                    ms / 1000.0
                );
            }
            let labels = format!("route=\"{route}\",stage=\"{stage}\"");
            let _ = writeln!(
                out,
                "receivers_latency_seconds_sum{{{labels}}} {}",
                s.mean_ms * s.count as f64 / 1000.0
            );
            let _ = writeln!(
                out,
                "receivers_latency_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
    out
}
