//! `latency.hlog`: the run's interval histograms as an HdrHistogram interval log, the format
//! HdrHistogram's HistogramLogProcessor and HistogramLogAnalyzer read. One line per series
//! per interval, tagged `request:<name>` or `route:<name>`; timestamps count from the run's
//! start (BaseTime), and StartTime gives that start as wall-clock time.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};

use crate::record::intervals::{EncodedInterval, SeriesKey};

/// One interval of one series, decoded.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub start_secs: f64,
    pub duration_secs: f64,
    pub series: SeriesKey,
    pub histogram: Histogram<u64>,
}

/// A whole log, read back.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Seconds since the epoch at which the run started, when the log says.
    pub start_time: Option<f64>,
    pub intervals: Vec<LoggedInterval>,
}

/// The log's text. Values are microseconds; the max column is in milliseconds, as the
/// Java tools print it with a divisor of 1000.
pub fn render(started: SystemTime, intervals: &[EncodedInterval]) -> Result<String, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("loadgen latency log: microseconds, one histogram per series per interval")
        .add_comment("tags: request:<request name> and route:<route>, spaces and commas %-encoded")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| e.to_string())?;
    for interval in intervals {
        let histogram = interval.histogram()?;
        let tag = interval.series.tag();
        writer
            .write_histogram(
                &histogram,
                Duration::from_secs_f64(interval.start_secs),
                Duration::from_secs_f64(interval.duration_secs),
                Tag::new(&tag),
            )
            .map_err(|e| format!("cannot write interval {tag}: {e}"))?;
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Reads a log written by `render` (or by any HdrHistogram implementation, untagged lines
/// being refused since they name no series). The error names the line to look at.
pub fn parse(text: &str) -> Result<Log, String> {
    let mut log = Log::default();
    let mut base_time = None;
    for (n, entry) in IntervalLogIterator::new(text.as_bytes()).enumerate() {
        let entry = entry.map_err(|e| {
            let offset = match e {
                hdrhistogram::serialization::interval_log::LogIteratorError::ParseError {
                    offset,
                } => offset,
            };
            let line = text[..offset.min(text.len())].lines().count().max(1);
            format!("not an HdrHistogram interval log: cannot parse line {line}")
        })?;
        match entry {
            LogEntry::StartTime(t) => log.start_time = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base_time = Some(t.as_secs_f64()),
            LogEntry::Interval(interval) => {
                let tag = interval.tag().map(|t| t.as_str().to_string());
                let series = tag
                    .as_deref()
                    .and_then(SeriesKey::from_tag)
                    .ok_or_else(|| {
                        format!(
                            "interval {n}: tag {tag:?} names no request or route (expected request:NAME or route:NAME)"
                        )
                    })?;
                let histogram = hdr::decode(interval.encoded_histogram())
                    .map_err(|why| format!("interval {n} ({}): {why}", series.tag()))?;
                let mut start_secs = interval.start_timestamp().as_secs_f64();
                // Without a BaseTime, timestamps are absolute; keep them run-relative.
                if base_time.is_none()
                    && let Some(start) = log.start_time
                {
                    start_secs -= start;
                }
                log.intervals.push(LoggedInterval {
                    start_secs,
                    duration_secs: interval.duration().as_secs_f64(),
                    series,
                    histogram,
                });
            }
        }
    }
    if log.start_time.is_none() {
        log.start_time = base_time;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::intervals::new_histogram;

    fn interval(start: f64, name: &str, values: &[u64]) -> EncodedInterval {
        let mut h = new_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        EncodedInterval {
            start_secs: start,
            duration_secs: 1.0,
            series: SeriesKey::request(name),
            encoded: hdr::encode(&h),
        }
    }

    #[test]
    fn a_log_reads_back_with_its_tags_times_and_counts() {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let intervals = [
            interval(0.0, "POST /", &[100, 200, 300]),
            interval(1.0, "POST /", &[5_000]),
            interval(1.0, "GET /", &[42]),
        ];
        let text = render(started, &intervals).unwrap();
        assert!(text.contains("#[StartTime: 1800000000.000"), "{text}");
        assert!(
            text.contains("Tag=request:POST%20/,1.000,1.000,5.00"),
            "{text}"
        );
        let log = parse(&text).unwrap();
        assert_eq!(log.start_time, Some(1_800_000_000.0));
        let counts: Vec<(String, f64, u64)> = log
            .intervals
            .iter()
            .map(|i| (i.series.name.clone(), i.start_secs, i.histogram.len()))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("POST /".into(), 0.0, 3),
                ("POST /".into(), 1.0, 1),
                ("GET /".into(), 1.0, 1)
            ]
        );
    }

    #[test]
    fn a_corrupt_log_is_refused_with_where() {
        let why = parse("#[BaseTime: 1.000 (seconds since epoch)]\nTag=request:x,0.0,1.0,2.0,HISTFAAAnotbase64!!\n").unwrap_err();
        assert!(why.contains("interval 1") || why.contains("line"), "{why}");
        let untagged =
            parse("0.000,1.000,0.001,HISTFAAAAB54nJNpmSzMwMDAxAABzFCaEUoz2X+AsQA/1wLt\n");
        assert!(untagged.is_err());
    }
}
