//! loadgen's own latency recording: every request's time in microseconds (3 significant
//! digits) into an HdrHistogram per request name and per route, one set per interval (1 s by
//! default), plus the run's totals. Closed intervals are kept in HdrHistogram's compressed
//! interchange form, so a long run holds a few hundred bytes per series per interval, and
//! every figure can be added back up exactly (the `.hlog`, the baseline's bootstrap, a merge).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::model::{IntervalLatency, SeriesKind};

/// What a histogram measures: one request name or one route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub kind: SeriesKind,
    pub name: String,
}

impl SeriesKey {
    pub fn request(name: &str) -> SeriesKey {
        SeriesKey {
            kind: SeriesKind::Request,
            name: name.to_string(),
        }
    }

    pub fn route(name: &str) -> SeriesKey {
        SeriesKey {
            kind: SeriesKind::Route,
            name: name.to_string(),
        }
    }

    /// The `.hlog` tag: `request:POST%20/`. Tags may not hold spaces or commas, so those
    /// (and `%` itself) are percent-encoded, which keeps the mapping reversible.
    pub fn tag(&self) -> String {
        let name = self
            .name
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace(',', "%2C");
        format!("{}:{name}", self.kind.name())
    }

    /// The inverse of `tag`.
    pub fn from_tag(tag: &str) -> Option<SeriesKey> {
        let (kind, name) = tag.split_once(':')?;
        let kind = SeriesKind::from_name(kind)?;
        let name = name
            .replace("%20", " ")
            .replace("%2C", ",")
            .replace("%25", "%");
        Some(SeriesKey { kind, name })
    }
}

/// A new histogram in microseconds at 3 significant digits. It grows to the largest value
/// recorded, so an interval of 2 ms requests costs a few kilobytes, not the 1 h range.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid histogram bounds");
    h.auto(true);
    h
}

/// One series' histogram for one interval, in HdrHistogram's V2-deflate base64 form.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedInterval {
    /// Seconds since the run started.
    pub start_secs: f64,
    pub duration_secs: f64,
    pub series: SeriesKey,
    pub encoded: String,
}

impl EncodedInterval {
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        hdr::decode(&self.encoded)
    }
}

/// The run's totals for one series.
#[derive(Debug, Clone)]
pub struct SeriesTotal {
    pub histogram: Histogram<u64>,
    pub failures: u64,
    /// Exact sum of the recorded microseconds, for an exact mean.
    pub sum_us: u64,
    /// Responses per HTTP status code; 0 for no response.
    pub status_codes: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer, by cause (see `count_error`).
    pub errors: BTreeMap<String, u64>,
}

/// Distinct causes kept per series: a target that fails in ever new words cannot grow the
/// report (or the recorder's lock hold) without bound; the rest share one row.
pub const MAX_ERROR_KINDS: usize = 20;

/// The row that counts the causes past `MAX_ERROR_KINDS`.
pub const OTHER_ERRORS: &str = "(other causes)";

/// Counts `n` requests that failed for `cause` into `errors`.
pub fn count_error(errors: &mut BTreeMap<String, u64>, cause: &str, n: u64) {
    if let Some(count) = errors.get_mut(cause) {
        *count += n;
    } else if errors.len() < MAX_ERROR_KINDS {
        errors.insert(cause.to_string(), n);
    } else {
        *errors.entry(OTHER_ERRORS.to_string()).or_default() += n;
    }
}

impl Default for SeriesTotal {
    fn default() -> SeriesTotal {
        SeriesTotal {
            histogram: new_histogram(),
            failures: 0,
            sum_us: 0,
            status_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }
}

/// Everything the recorder measured, once the run is over.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub interval_secs: f64,
    pub totals: BTreeMap<SeriesKey, SeriesTotal>,
    pub intervals: Vec<EncodedInterval>,
    pub latency_timeline: Vec<IntervalLatency>,
}

#[derive(Debug)]
struct State {
    /// The interval now being filled: 0 is the first.
    index: u64,
    current: BTreeMap<SeriesKey, Histogram<u64>>,
    recorded: Recorded,
}

/// Shared by every user. One short lock per request: measured against the HTTP round trip
/// it guards, far below the noise (see scripts/bench-loadgen).
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    interval: Duration,
    state: Mutex<State>,
}

/// One finished request, as the recorder books it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub request: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub success: bool,
    /// What the client waited: from the intended send time in the open model, from the
    /// send in the closed one.
    pub response: Duration,
    /// From the actual send to the answer's last byte.
    pub service: Duration,
    /// Open model only: actual send minus intended send.
    pub lag: Option<Duration>,
    /// Why no HTTP answer came, when none did.
    pub error: Option<&'a str>,
}

impl Sample<'_> {
    /// A closed-model request: waited from its send.
    pub fn closed<'a>(
        request: &'a str,
        route: Option<&'a str>,
        status: u16,
        success: bool,
        elapsed: Duration,
    ) -> Sample<'a> {
        Sample {
            request,
            route,
            status,
            success,
            response: elapsed,
            service: elapsed,
            lag: None,
            error: None,
        }
    }
}

impl Recorder {
    pub fn new(started: Instant, interval: Duration) -> Recorder {
        Recorder {
            started,
            interval,
            state: Mutex::new(State {
                index: 0,
                current: BTreeMap::new(),
                recorded: Recorded {
                    interval_secs: interval.as_secs_f64(),
                    ..Recorded::default()
                },
            }),
        }
    }

    /// Books one request that has just finished.
    pub fn record(&self, sample: Sample<'_>) {
        let us = |d: Duration| (d.as_micros() as u64).max(1);
        // The interval is that of the request's end, as HdrHistogram's interval logs count.
        let index = (self.started.elapsed().as_nanos() / self.interval.as_nanos().max(1)) as u64;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if index > state.index {
            let end =
                state.index as f64 * self.interval.as_secs_f64() + self.interval.as_secs_f64();
            close(&mut state, end);
            state.index = index;
        }
        let mut book = |key: SeriesKey, value: u64| {
            let total = state.recorded.totals.entry(key.clone()).or_default();
            total.sum_us += value;
            *total.status_codes.entry(sample.status).or_default() += 1;
            if let Some(cause) = sample.error {
                count_error(&mut total.errors, cause, 1);
            }
            if !sample.success {
                total.failures += 1;
            }
            state
                .current
                .entry(key)
                .or_insert_with(new_histogram)
                .record(value)
                .expect("an auto-resizing histogram takes any value");
        };
        book(SeriesKey::request(sample.request), us(sample.response));
        if let Some(route) = sample.route {
            book(SeriesKey::route(route), us(sample.response));
        }
        if let Some(lag) = sample.lag {
            let key = |kind, name: &str| SeriesKey {
                kind,
                name: name.to_string(),
            };
            book(
                key(SeriesKind::ServiceRequest, sample.request),
                us(sample.service),
            );
            if let Some(route) = sample.route {
                book(key(SeriesKind::ServiceRoute, route), us(sample.service));
            }
            book(key(SeriesKind::Lag, sample.request), us(lag));
        }
    }

    /// The totals so far, the interval being filled included, for judging rules while the
    /// run goes on (`--abort-on-fail`); no intervals or timeline.
    pub fn so_far(&self) -> Recorded {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut totals = state.recorded.totals.clone();
        for (key, histogram) in &state.current {
            if let Some(total) = totals.get_mut(key) {
                total
                    .histogram
                    .add(histogram)
                    .expect("auto-resizing histograms add");
            }
        }
        Recorded {
            interval_secs: state.recorded.interval_secs,
            totals,
            ..Recorded::default()
        }
    }

    /// Closes the last interval (at the run's real end) and hands over what was recorded.
    pub fn finish(&self) -> Recorded {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let end = self.started.elapsed().as_secs_f64();
        close(&mut state, end);
        std::mem::take(&mut state.recorded)
    }
}

/// Encodes the current interval's histograms, adds them to the totals and starts afresh;
/// the histograms keep their memory for the next interval.
fn close(state: &mut State, end_secs: f64) {
    let State {
        index,
        current,
        recorded,
    } = state;
    let start_secs = *index as f64 * recorded.interval_secs;
    for (key, histogram) in current.iter_mut() {
        if histogram.is_empty() {
            continue;
        }
        recorded.intervals.push(EncodedInterval {
            start_secs,
            duration_secs: (end_secs - start_secs).max(0.001),
            series: key.clone(),
            encoded: hdr::encode(histogram),
        });
        recorded
            .latency_timeline
            .push(interval_latency(key, histogram, end_secs));
        let total = recorded.totals.entry(key.clone()).or_default();
        total
            .histogram
            .add(&*histogram)
            .expect("auto-resizing histograms add");
        histogram.reset();
    }
}

/// One interval's latency row for the report, read off its histogram.
pub fn interval_latency(key: &SeriesKey, h: &Histogram<u64>, end_secs: f64) -> IntervalLatency {
    let ms = |us: u64| us as f64 / 1000.0;
    IntervalLatency {
        end_secs,
        kind: key.kind,
        name: key.name.clone(),
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_names_with_spaces_commas_and_percent() {
        for name in ["POST /", "a,b", "50% off", "grpc"] {
            let key = SeriesKey::request(name);
            let tag = key.tag();
            assert!(!tag.contains(' ') && !tag.contains(','), "{tag}");
            assert_eq!(SeriesKey::from_tag(&tag), Some(key));
        }
        assert_eq!(SeriesKey::from_tag("other:x"), None);
    }

    #[test]
    fn causes_are_counted_and_capped_with_the_rest_in_one_row() {
        let recorder = Recorder::new(Instant::now(), Duration::from_secs(1));
        fn failed(cause: &str) -> Sample<'_> {
            Sample {
                error: Some(cause),
                ..Sample::closed("POST /", None, 0, false, Duration::from_millis(1))
            }
        }
        for _ in 0..3 {
            recorder.record(failed("Connection refused (os error 111)"));
        }
        for i in 0..MAX_ERROR_KINDS + 5 {
            recorder.record(failed(&format!("cause {i}")));
        }
        recorder.record(Sample::closed(
            "POST /",
            None,
            201,
            true,
            Duration::from_millis(1),
        ));
        let recorded = recorder.finish();
        let errors = &recorded.totals[&SeriesKey::request("POST /")].errors;
        assert_eq!(errors["Connection refused (os error 111)"], 3);
        assert_eq!(errors.len(), MAX_ERROR_KINDS + 1, "{errors:?}");
        // 1 distinct cause plus 19 more fit; the other 6 share a row.
        assert_eq!(errors[OTHER_ERRORS], 6);
        assert_eq!(errors.values().sum::<u64>(), 3 + MAX_ERROR_KINDS as u64 + 5);
    }

    #[test]
    fn intervals_add_up_to_the_totals() {
        let recorder = Recorder::new(Instant::now(), Duration::from_millis(20));
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            recorder.record(Sample::closed(
                "POST /",
                Some("nats"),
                201,
                true,
                Duration::from_micros(1500 + sent % 1000),
            ));
            sent += 1;
            std::thread::yield_now();
        }
        // Mid-run, the totals so far count the interval being filled too.
        let so_far = recorder.so_far();
        assert_eq!(
            so_far.totals[&SeriesKey::request("POST /")].histogram.len(),
            sent
        );
        let recorded = recorder.finish();
        let post = &recorded.totals[&SeriesKey::request("POST /")];
        assert_eq!(post.histogram.len(), sent);
        assert_eq!(
            recorded.totals[&SeriesKey::route("nats")].histogram.len(),
            sent
        );
        let posts: Vec<&EncodedInterval> = recorded
            .intervals
            .iter()
            .filter(|i| i.series == SeriesKey::request("POST /"))
            .collect();
        assert!(posts.len() >= 5, "{} intervals", posts.len());
        let mut sum = new_histogram();
        for interval in &posts {
            sum.add(interval.histogram().unwrap()).unwrap();
        }
        assert_eq!(sum, post.histogram, "the intervals add up exactly");
        assert!(
            posts.windows(2).all(|w| w[0].start_secs < w[1].start_secs),
            "intervals in time order"
        );
    }
}
