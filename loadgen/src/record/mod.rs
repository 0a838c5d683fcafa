//! What was measured: every request's latency in per-interval HdrHistograms, the interval
//! log, the live counters behind the timeline, and the percentiles read off the histograms.

pub mod hlog;
pub mod intervals;
pub mod progress;
pub mod summary;
