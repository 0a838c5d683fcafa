//! HdrHistogram as the receivers publish it and loadgen reads it: microsecond histograms,
//! exchanged as V2-compressed base64 (in `/stats`) and written as `.hgrm` percentile files.

use std::fmt::Write;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// 1 us to 60 s at 3 significant digits, as HdrHistogram's own tools default to.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// HdrHistogram's interchange form: V2 deflate, then base64 ("HISTFAAA...").
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of `encode`.
pub fn decode(encoded: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram is not HdrHistogram V2: {e:?}"))
}

/// The `.hgrm` text HdrHistogram's `outputPercentileDistribution` writes, in milliseconds,
/// so HdrHistogram's plotter and other tools read it unchanged.
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
            let _ = write!(out, "{ms:>12.3} {quantile:>2.12} {total:>10}");
            if quantile < 1.0 {
                let _ = write!(out, " {:>14.2}", 1.0 / (1.0 - quantile));
            }
            out.push('\n');
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean(), h.stdev())
    };
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        mean / 1000.0,
        stdev / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
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

    #[test]
    fn histograms_round_trip_and_print_as_hgrm() {
        let mut h = new_histogram();
        for us in [100, 200, 300, 5_000] {
            h.record(us).unwrap();
        }
        let encoded = encode(&h);
        assert!(encoded.starts_with("HISTFAAA"), "{encoded}");
        let back = decode(&encoded).unwrap();
        assert_eq!((back.len(), back.max()), (4, h.max()));
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
        assert!(decode("not base64!").is_err());
    }
}
