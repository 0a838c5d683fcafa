//! `GET /stats` (and the receivers' `receivers.json`): counters and latency per route and
//! stage. Schema: `receivers/schema/stats.schema.json`.

use std::collections::BTreeMap;

use hdr::encode;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::route::{Route, Stage};

/// Version 2 added `conflicts`, `dead_lettered` and `store_failures`.
pub const SCHEMA_VERSION: u32 = 2;

/// `GET /stats` (schema: `receivers/schema/stats.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub schema_version: u32,
    pub instance_id: String,
    pub started_at: String,
    pub uptime_secs: f64,
    pub routes: BTreeMap<Route, RouteStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteStats {
    pub enabled: bool,
    /// 2xx answers at the entry: records the path durably accepted.
    pub accepted: u64,
    /// Records committed to the store for the first time.
    pub stored: u64,
    /// Inserts of an id already stored with the same body (a resend, or a redelivery).
    pub duplicates: u64,
    /// Inserts of an id already stored with another body: refused, the first body stays.
    pub conflicts: u64,
    /// Records that failed the checks past the entry (foreign publishers, direct gRPC
    /// calls): sent to the dead-letter queue or stream, or refused, and never stored.
    pub dead_lettered: u64,
    /// Received records the store failed to commit (each is redelivered after a backoff).
    pub store_failures: u64,
    /// Non-2xx answers at the entry.
    pub rejected: u64,
    /// Accepted but not yet stored.
    pub in_flight: u64,
    pub latency: BTreeMap<Stage, StageStats>,
}

/// Milliseconds, plus the histogram itself for clients that merge or plot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageStats {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    /// HdrHistogram V2 compressed ("HISTFAAA…"), base64, values in microseconds.
    pub histogram: String,
}

impl StageStats {
    pub fn of(h: &Histogram<u64>) -> StageStats {
        let ms = |us: u64| us as f64 / 1000.0;
        let empty = h.is_empty();
        let q = |quantile: f64| {
            if empty {
                0.0
            } else {
                ms(h.value_at_quantile(quantile))
            }
        };
        StageStats {
            count: h.len(),
            min_ms: if empty { 0.0 } else { ms(h.min()) },
            mean_ms: if empty { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p99_9_ms: q(0.999),
            max_ms: if empty { 0.0 } else { ms(h.max()) },
            histogram: encode(h),
        }
    }
}

impl StatsSnapshot {
    /// Several receivers processes (one per path, behind a balancer) as one: counters
    /// summed, histograms added exactly, `enabled` where any runs the path, the instance
    /// ids joined in order (so a restart of any one changes the whole).
    pub fn merge(snapshots: Vec<StatsSnapshot>) -> Result<StatsSnapshot, String> {
        let mut snapshots = snapshots.into_iter();
        let mut merged = snapshots.next().ok_or("no /stats to merge")?;
        for other in snapshots {
            merged.instance_id = format!("{},{}", merged.instance_id, other.instance_id);
            merged.uptime_secs = merged.uptime_secs.min(other.uptime_secs);
            for (route, theirs) in other.routes {
                let Some(ours) = merged.routes.get_mut(&route) else {
                    merged.routes.insert(route, theirs);
                    continue;
                };
                ours.enabled |= theirs.enabled;
                ours.accepted += theirs.accepted;
                ours.stored += theirs.stored;
                ours.duplicates += theirs.duplicates;
                ours.conflicts += theirs.conflicts;
                ours.dead_lettered += theirs.dead_lettered;
                ours.store_failures += theirs.store_failures;
                ours.rejected += theirs.rejected;
                ours.in_flight += theirs.in_flight;
                for (stage, stats) in theirs.latency {
                    let added = match ours.latency.get(&stage) {
                        None => stats,
                        Some(mine) => {
                            let mut sum = hdr::decode(&mine.histogram)?;
                            sum.add(hdr::decode(&stats.histogram)?).map_err(|e| {
                                format!("adding the {route} {stage} histograms: {e}")
                            })?;
                            StageStats::of(&sum)
                        }
                    };
                    ours.latency.insert(stage, added);
                }
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, route: Route, enabled: bool, samples: &[u64]) -> StatsSnapshot {
        let mut h = hdr::new_histogram();
        for v in samples {
            h.record(*v).unwrap();
        }
        let stats = RouteStats {
            enabled,
            accepted: samples.len() as u64,
            stored: samples.len() as u64,
            duplicates: 0,
            conflicts: 1,
            dead_lettered: 0,
            store_failures: 0,
            rejected: 0,
            in_flight: 0,
            latency: Stage::ALL
                .into_iter()
                .map(|s| (s, StageStats::of(&h)))
                .collect(),
        };
        StatsSnapshot {
            schema_version: SCHEMA_VERSION,
            instance_id: id.into(),
            started_at: "2026-11-27T00:00:00Z".into(),
            uptime_secs: 5.0,
            routes: [(route, stats)].into_iter().collect(),
        }
    }

    #[test]
    fn merging_adds_counters_and_histograms_exactly() {
        let merged = StatsSnapshot::merge(vec![
            snapshot("a", Route::Nats, true, &[1_000, 2_000]),
            snapshot("b", Route::Nats, false, &[3_000]),
            snapshot("c", Route::Grpc, true, &[500]),
        ])
        .unwrap();
        assert_eq!(merged.instance_id, "a,b,c");
        let nats = &merged.routes[&Route::Nats];
        assert_eq!((nats.accepted, nats.conflicts, nats.enabled), (3, 2, true));
        let e2e = hdr::decode(&nats.latency[&Stage::E2e].histogram).unwrap();
        assert_eq!(e2e.len(), 3);
        assert_eq!(e2e.max(), e2e.highest_equivalent(3_000));
        assert_eq!(merged.routes[&Route::Grpc].accepted, 1);
        assert!(StatsSnapshot::merge(vec![]).is_err());
    }
}
