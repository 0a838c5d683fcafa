//! Pure renderers: the report's model in, text out (index.html and its SVG charts with maud,
//! gate.xml with quick-junit, the terminal tables). Nothing here touches a file.

pub mod history;
pub mod html;
pub mod junit;
pub mod svg;
pub mod terminal;

use crate::model::LoadgenReport;

/// The report's warning when loadgen itself was the bottleneck for part of the run: "12 of
/// 60 s: loadgen was CPU-bound; latencies there include its own queueing".
pub fn saturated_note(report: &LoadgenReport) -> Option<String> {
    (report.saturated_secs > 0).then(|| {
        format!(
            "{} of {} s: loadgen was CPU-bound; latencies there include its own queueing (pass --threads, or add workers)",
            report.saturated_secs,
            report.timeline.len()
        )
    })
}
