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
