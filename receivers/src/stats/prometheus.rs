//! `GET /metrics`: the `/stats` snapshot in the OpenMetrics text format, encoded by
//! prometheus-client. Counters and gauges come straight from the snapshot; each stage's
//! HdrHistogram becomes a Prometheus histogram (buckets read off it exactly),
//! which, unlike a summary's quantiles, can be added across receivers by Prometheus.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::StatsSnapshot;

/// The histogram buckets' upper bounds, in seconds: loopback to a stalled broker.
const BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The media type of what `render` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn render(snapshot: &StatsSnapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(snapshot.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("encoding into a String cannot fail");
    out
}

/// One scrape's figures, handed to prometheus-client as a collector.
#[derive(Debug)]
struct Snapshot(StatsSnapshot);

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = &self.0.routes;
        let mut records = encoder.encode_descriptor(
            "receivers_records",
            "Records per route by outcome at the entry or the store.",
            None,
            MetricType::Counter,
        )?;
        for (route, stats) in routes {
            for (outcome, value) in [
                ("accepted", stats.accepted),
                ("rejected", stats.rejected),
                ("stored", stats.stored),
                ("duplicate", stats.duplicates),
                ("conflict", stats.conflicts),
                ("dead_lettered", stats.dead_lettered),
                ("store_failure", stats.store_failures),
            ] {
                let labels = [("route", route.name()), ("outcome", outcome)];
                records
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        let mut in_flight = encoder.encode_descriptor(
            "receivers_in_flight",
            "Records accepted and not yet stored.",
            None,
            MetricType::Gauge,
        )?;
        for (route, stats) in routes {
            in_flight
                .encode_family(&[("route", route.name())])?
                .encode_gauge(&stats.in_flight)?;
        }
        let mut latency = encoder.encode_descriptor(
            "receivers_latency",
            "Latency per route and stage (ingress, hop, e2e).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (route, stats) in routes {
            for (stage, s) in &stats.latency {
                // A histogram that does not decode is left out rather than shown as empty.
                let Ok(h) = hdr::decode(&s.histogram) else {
                    continue;
                };
                // prometheus-client takes each bucket's own count and accumulates them.
                let mut below = 0;
                let mut buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .map(|bound| {
                        let us = (bound * 1_000_000.0) as u64;
                        let upto = if h.is_empty() {
                            0
                        } else {
                            h.count_between(0, us)
                        };
                        let own = upto - below;
                        below = upto;
                        (*bound, own)
                    })
                    .collect();
                buckets.push((f64::INFINITY, h.len() - below));
                let labels = [("route", route.name()), ("stage", stage.name())];
                latency
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        s.mean_ms * s.count as f64 / 1000.0,
                        s.count,
                        &buckets,
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use contract::{Route, RouteStats, Stage, StageStats};

    use super::*;

    #[test]
    fn counters_gauges_and_cumulative_histogram_buckets() {
        let mut h = hdr::new_histogram();
        for us in [300, 800, 1_500, 40_000] {
            h.record(us).unwrap();
        }
        let route = RouteStats {
            enabled: true,
            accepted: 7,
            stored: 5,
            duplicates: 1,
            conflicts: 0,
            dead_lettered: 2,
            store_failures: 0,
            rejected: 1,
            in_flight: 2,
            latency: BTreeMap::from([(Stage::E2e, StageStats::of(&h))]),
        };
        let snapshot = StatsSnapshot {
            schema_version: 2,
            instance_id: "i".into(),
            started_at: String::new(),
            uptime_secs: 1.0,
            routes: BTreeMap::from([(Route::Nats, route)]),
        };
        let text = render(&snapshot);
        for line in [
            "# TYPE receivers_records counter",
            "receivers_records_total{route=\"nats\",outcome=\"stored\"} 5",
            "receivers_records_total{route=\"nats\",outcome=\"dead_lettered\"} 2",
            "receivers_in_flight{route=\"nats\"} 2",
            "# TYPE receivers_latency_seconds histogram",
            "# UNIT receivers_latency_seconds seconds",
            "receivers_latency_seconds_count{route=\"nats\",stage=\"e2e\"} 4",
            "receivers_latency_seconds_bucket{le=\"0.0005\",route=\"nats\",stage=\"e2e\"} 1",
            "receivers_latency_seconds_bucket{le=\"0.002\",route=\"nats\",stage=\"e2e\"} 3",
            "receivers_latency_seconds_bucket{le=\"0.05\",route=\"nats\",stage=\"e2e\"} 4",
            "receivers_latency_seconds_bucket{le=\"+Inf\",route=\"nats\",stage=\"e2e\"} 4",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
