//! Goose's per-request metrics turned into the report's rows, with an HdrHistogram per
//! request (and one merged for all requests) so any percentile a rule names can be judged.

use std::collections::BTreeMap;

use goose::metrics::{GooseMetrics, GooseRequestMetricAggregate};
use hdrhistogram::Histogram;

use crate::report::{Latency, RequestStats};

/// One request name's figures and the histogram behind them (microseconds).
#[derive(Debug, Clone)]
pub struct Measured {
    pub stats: RequestStats,
    pub histogram: Histogram<u64>,
}

/// Everything the gate judges and the report shows about requests.
#[derive(Debug, Clone)]
pub struct Measurements {
    pub requests: Vec<Measured>,
    pub aggregate: Measured,
}

impl Measurements {
    /// `duration_secs` is the whole run, ramp-up included, as Locust counts it.
    pub fn from_goose(metrics: &GooseMetrics, duration_secs: f64) -> Measurements {
        let mut names: Vec<&String> = metrics.requests.keys().collect();
        names.sort();
        let mut aggregate = Accumulator::new("Aggregated");
        let mut requests = Vec::new();
        for name in names {
            let mut one = Accumulator::new(name);
            one.add(&metrics.requests[name]);
            aggregate.add(&metrics.requests[name]);
            requests.push(one.finish(duration_secs));
        }
        Measurements {
            requests,
            aggregate: aggregate.finish(duration_secs),
        }
    }

    /// The row for `name` (`POST /`), or all requests for `None`.
    pub fn find(&self, name: Option<&str>) -> Option<&Measured> {
        match name {
            None => Some(&self.aggregate),
            Some(name) => self.requests.iter().find(|m| m.stats.name == name),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.requests
            .iter()
            .map(|m| m.stats.name.as_str())
            .collect()
    }
}

impl Measured {
    /// A percentile in milliseconds, or `None` without samples.
    pub fn percentile_ms(&self, percent: f64) -> Option<f64> {
        (!self.histogram.is_empty())
            .then(|| self.histogram.value_at_quantile(percent / 100.0) as f64 / 1000.0)
    }
}

/// Sums Goose aggregates; times come from Goose's microsecond buckets (each under 1% wide).
struct Accumulator {
    name: String,
    count: u64,
    failures: u64,
    total_us: u64,
    min_us: Option<u64>,
    max_us: u64,
    status_codes: BTreeMap<String, u64>,
    histogram: Histogram<u64>,
}

impl Accumulator {
    fn new(name: &str) -> Accumulator {
        Accumulator {
            name: name.to_string(),
            count: 0,
            failures: 0,
            total_us: 0,
            min_us: None,
            max_us: 0,
            status_codes: BTreeMap::new(),
            // 1 us to 1 h at 3 significant digits: finer than Goose's buckets, so no loss.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }

    fn add(&mut self, request: &GooseRequestMetricAggregate) {
        self.count += (request.success_count + request.fail_count) as u64;
        self.failures += request.fail_count as u64;
        let times = &request.raw_data;
        if times.counter > 0 {
            self.total_us += times.total_time_us;
            self.min_us = Some(
                self.min_us
                    .map_or(times.minimum_time_us, |m| m.min(times.minimum_time_us)),
            );
            self.max_us = self.max_us.max(times.maximum_time_us);
            for (&bucket, &count) in times.times_us.iter() {
                // Clamped into range: a sub-microsecond time still counts, as 1 us.
                let value = bucket.clamp(1, self.histogram.high());
                self.histogram
                    .record_n(value, count as u64)
                    .expect("value clamped into range");
            }
        }
        for (code, count) in &request.status_code_counts {
            *self.status_codes.entry(code.to_string()).or_default() += *count as u64;
        }
    }

    fn finish(self, duration_secs: f64) -> Measured {
        let samples = self.histogram.len();
        let quantile = |p: f64| self.histogram.value_at_quantile(p) as f64 / 1000.0;
        let latency = if samples == 0 {
            Latency::default()
        } else {
            Latency {
                min: self.min_us.unwrap_or(0) as f64 / 1000.0,
                avg: self.total_us as f64 / samples as f64 / 1000.0,
                p50: quantile(0.50),
                p90: quantile(0.90),
                p95: quantile(0.95),
                p99: quantile(0.99),
                p99_9: quantile(0.999),
                max: self.max_us as f64 / 1000.0,
            }
        };
        let stats = RequestStats {
            name: self.name,
            count: self.count,
            failures: self.failures,
            error_rate: if self.count == 0 {
                0.0
            } else {
                self.failures as f64 * 100.0 / self.count as f64
            },
            rps: if duration_secs > 0.0 {
                self.count as f64 / duration_secs
            } else {
                0.0
            },
            latency_ms: latency,
            status_codes: self.status_codes,
        };
        Measured {
            stats,
            histogram: self.histogram,
        }
    }
}
