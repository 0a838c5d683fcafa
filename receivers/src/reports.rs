//! At shutdown: `reports/<run-id>/receivers.json` (the final `/stats`) and one HdrHistogram
//! percentile-distribution file (`<route>-<stage>.hgrm`) per route and stage.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

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

/// The inverse of `stats::encode`.
pub fn decode(encoded: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram is not HdrHistogram V2: {e:?}"))
}

/// HdrHistogram's `.hgrm` text (as `outputPercentileDistribution` writes it), in
/// milliseconds, so HdrHistogram's plotter and other tools read it unchanged.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let quantile = v.quantile_iterated_to();
            let ms = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{ms:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{ms:>12.3} {quantile:>2.12} {total:>10}");
            }
        }
    }
    let ms = |us: f64| us / 1000.0;
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        ms(if h.is_empty() { 0.0 } else { h.mean() }),
        ms(if h.is_empty() { 0.0 } else { h.stdev() })
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max() as f64),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{encode, new_histogram};

    #[test]
    fn histograms_round_trip_and_print_as_hgrm() {
        let mut h = new_histogram();
        for us in [100, 200, 300, 5_000] {
            h.record(us).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        let text = percentile_distribution(&back);
        assert!(text.starts_with("       Value     Percentile"), "{text}");
        assert!(
            text.contains("#[Max     =        5.003, Total count    =            4]"),
            "{text}"
        );
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
    }
}
