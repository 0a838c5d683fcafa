//! The report's request and route rows, read off loadgen's own histograms (`intervals`):
//! exact microsecond percentiles at 3 significant digits, per request name, per route, and
//! for all requests together.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::model::{Latency, RequestStats, SeriesKind};
use crate::record::hlog::Log;
use crate::record::intervals::{Recorded, SeriesTotal, count_error, new_histogram};

/// One series' figures and the histogram behind them (microseconds).
#[derive(Debug, Clone)]
pub struct Measured {
    pub stats: RequestStats,
    pub histogram: Histogram<u64>,
}

/// Everything the gate judges and the report shows about requests.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    pub requests: Vec<Measured>,
    pub routes: Vec<Measured>,
    pub aggregate: Measured,
    /// Open model: service time per request and per route, and the schedule lag of all
    /// requests; empty in a closed-model run, where service time is the latency itself.
    pub service_requests: Vec<Measured>,
    pub service_routes: Vec<Measured>,
    pub service_aggregate: Option<Measured>,
    pub lag: Option<Measured>,
    /// Open model: requests sent late and requests dropped.
    pub late: u64,
    pub dropped: u64,
    /// Seconds in which loadgen was CPU-bound.
    pub saturated_secs: u64,
}

impl Measurements {
    /// `duration_secs` is the whole run, ramp-up included, as Locust counts it.
    pub fn from_recorded(recorded: &Recorded, duration_secs: f64) -> Measurements {
        let mut all = SeriesTotal::default();
        let mut service_all = SeriesTotal::default();
        let mut lag_all = SeriesTotal::default();
        let mut m = Measurements::default();
        for (key, total) in &recorded.totals {
            let measured = measure(&key.name, total, duration_secs);
            match key.kind {
                SeriesKind::Request => {
                    add_total(&mut all, total);
                    m.requests.push(measured);
                }
                SeriesKind::Route => m.routes.push(measured),
                SeriesKind::ServiceRequest => {
                    add_total(&mut service_all, total);
                    m.service_requests.push(measured);
                }
                SeriesKind::ServiceRoute => m.service_routes.push(measured),
                SeriesKind::Lag => add_total(&mut lag_all, total),
            }
        }
        m.aggregate = measure("Aggregated", &all, duration_secs);
        if !m.service_requests.is_empty() {
            m.service_aggregate = Some(measure("Aggregated", &service_all, duration_secs));
            m.lag = Some(measure("lag", &lag_all, duration_secs));
        }
        m
    }

    /// The figures of an earlier run, from its latency log: latency exactly as measured,
    /// rates over `duration_secs`; the log has no failures or status codes.
    pub fn from_log(log: &Log, duration_secs: f64) -> Measurements {
        let mut recorded = Recorded::default();
        for interval in &log.intervals {
            let total = recorded.totals.entry(interval.series.clone()).or_default();
            total
                .histogram
                .add(&interval.histogram)
                .expect("auto-resizing histograms add");
        }
        for total in recorded.totals.values_mut() {
            total.sum_us = (total.histogram.mean() * total.histogram.len() as f64) as u64;
        }
        Measurements::from_recorded(&recorded, duration_secs)
    }

    /// The row for `name`: a request (`POST /`) or a route (`nats`); all requests for `None`.
    pub fn find(&self, name: Option<&str>) -> Option<&Measured> {
        match name {
            None => Some(&self.aggregate),
            Some(name) => self
                .requests
                .iter()
                .chain(&self.routes)
                .find(|m| m.stats.name == name),
        }
    }

    /// Open model: the service-time rows, per request and per route (`route nats`).
    pub fn service_rows(&self) -> Vec<RequestStats> {
        self.service_requests
            .iter()
            .map(|m| m.stats.clone())
            .chain(self.service_routes.iter().map(|m| RequestStats {
                name: format!("route {}", m.stats.name),
                ..m.stats.clone()
            }))
            .collect()
    }

    /// Open model: the schedule lag of all requests (zero in a closed-model run).
    pub fn lag_ms(&self) -> Latency {
        self.lag
            .as_ref()
            .map(|l| l.stats.latency_ms.clone())
            .unwrap_or_default()
    }

    /// The same, for service time; in a closed-model run that is the latency itself.
    pub fn find_service(&self, name: Option<&str>) -> Option<&Measured> {
        let Some(all) = &self.service_aggregate else {
            return self.find(name);
        };
        match name {
            None => Some(all),
            Some(name) => self
                .service_requests
                .iter()
                .chain(&self.service_routes)
                .find(|m| m.stats.name == name),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.requests
            .iter()
            .chain(&self.routes)
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

fn add_total(sum: &mut SeriesTotal, total: &SeriesTotal) {
    sum.histogram
        .add(&total.histogram)
        .expect("auto-resizing histograms add");
    sum.failures += total.failures;
    sum.sum_us += total.sum_us;
    for (code, n) in &total.status_codes {
        *sum.status_codes.entry(*code).or_default() += n;
    }
    for (cause, n) in &total.errors {
        count_error(&mut sum.errors, cause, *n);
    }
}

fn measure(name: &str, total: &SeriesTotal, duration_secs: f64) -> Measured {
    let h = &total.histogram;
    let count = h.len();
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = if count == 0 {
        Latency::default()
    } else {
        Latency {
            min: ms(h.min()),
            avg: total.sum_us as f64 / count as f64 / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    };
    let status_codes: BTreeMap<String, u64> = total
        .status_codes
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    Measured {
        stats: RequestStats {
            name: name.to_string(),
            count,
            failures: total.failures,
            error_rate: if count == 0 {
                0.0
            } else {
                total.failures as f64 * 100.0 / count as f64
            },
            rps: if duration_secs > 0.0 {
                count as f64 / duration_secs
            } else {
                0.0
            },
            latency_ms: latency,
            status_codes,
            errors: total.errors.clone(),
        },
        histogram: if count == 0 {
            new_histogram()
        } else {
            h.clone()
        },
    }
}

impl Default for Measured {
    fn default() -> Measured {
        measure("Aggregated", &SeriesTotal::default(), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::record::intervals::{Recorder, Sample};

    #[test]
    fn rows_per_request_and_route_and_an_aggregate_of_requests_only() {
        let recorder = Recorder::new(Instant::now(), Duration::from_secs(1));
        for (request, route, ms, status) in [
            ("POST /", Some("grpc"), 2, 201),
            ("POST /", Some("nats"), 4, 201),
            ("POST /", None, 8, 503),
            ("GET /", None, 1, 200),
        ] {
            recorder.record(Sample::closed(
                request,
                route,
                status,
                status < 400,
                Duration::from_millis(ms),
            ));
        }
        let m = Measurements::from_recorded(&recorder.finish(), 2.0);
        let post = &m.find(Some("POST /")).unwrap().stats;
        assert_eq!((post.count, post.failures), (3, 1));
        assert!((post.latency_ms.avg - 14.0 / 3.0).abs() < 1e-9);
        assert_eq!(post.status_codes["503"], 1);
        assert_eq!(m.routes.len(), 2);
        assert_eq!(m.aggregate.stats.count, 4, "routes are not counted twice");
        assert_eq!(m.aggregate.stats.rps, 2.0);
        assert!((m.aggregate.stats.latency_ms.max - 8.0).abs() < 0.01);
    }
}
