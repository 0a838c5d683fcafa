//! At shutdown: `reports/<run-id>/receivers.json` (the final `/stats`) and one HdrHistogram
//! percentile-distribution file (`<route>-<stage>.hgrm`) per route and stage.

use std::path::{Path, PathBuf};

use hdr::{decode, percentile_distribution};

use crate::stats::StatsSnapshot;

/// Writes the files and returns the folder.
pub fn write(reports: &Path, run_id: &str, snapshot: &StatsSnapshot) -> std::io::Result<PathBuf> {
    let dir = reports.join(run_id);
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("receivers.json"), json)?;
    for (route, stats) in &snapshot.routes {
        for (stage, stage_stats) in &stats.latency {
            let histogram = decode(&stage_stats.histogram).map_err(std::io::Error::other)?;
            let name = format!("{route}-{}.hgrm", stage.name());
            std::fs::write(dir.join(name), percentile_distribution(&histogram))?;
        }
    }
    Ok(dir)
}
