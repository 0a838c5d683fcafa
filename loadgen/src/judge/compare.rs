//! Is this run worse than the baseline, beyond noise? A percentile bootstrap over the runs'
//! intervals: each side's intervals are resampled with replacement, their histograms added,
//! and the statistic (a percentile, or the mean rate) read off; the change's confidence
//! interval is the spread of (now / baseline) across resamples. Intervals, not single
//! requests, are resampled because requests in one second share that second's conditions
//! (GC, a checkpoint, a noisy neighbour): treating them as independent would make a real
//! run-to-run wobble look significant.

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::Change;

/// Resamples per comparison: enough for stable 2.5% and 97.5% quantiles of the ratio.
pub const RESAMPLES: usize = 2000;
/// Fewer intervals than this on either side and the bootstrap cannot say much.
pub const MIN_INTERVALS: usize = 5;

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// A percentile of latency, 0..100; higher is worse.
    Percentile(f64),
    /// Requests per second; lower is worse.
    Rate,
}

/// One side's intervals in a compact form: the distinct values seen, and per interval the
/// (value index, count) pairs, so a resample adds a few hundred numbers, not whole arrays.
#[derive(Debug, Clone)]
pub struct Side {
    values: Vec<u64>,
    intervals: Vec<Vec<(u32, u64)>>,
    durations: Vec<f64>,
}

impl Side {
    /// `intervals` are (histogram, seconds it covers).
    pub fn new<'a>(intervals: impl IntoIterator<Item = (&'a Histogram<u64>, f64)>) -> Side {
        let intervals: Vec<(&Histogram<u64>, f64)> = intervals.into_iter().collect();
        let mut values: Vec<u64> = intervals
            .iter()
            .flat_map(|(h, _)| h.iter_recorded().map(|v| v.value_iterated_to()))
            .collect();
        values.sort_unstable();
        values.dedup();
        let sparse = intervals
            .iter()
            .map(|(h, _)| {
                h.iter_recorded()
                    .map(|v| {
                        let index = values
                            .binary_search(&v.value_iterated_to())
                            .expect("every value was collected");
                        (index as u32, v.count_at_value())
                    })
                    .collect()
            })
            .collect();
        Side {
            values,
            intervals: sparse,
            durations: intervals.iter().map(|(_, d)| *d).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The statistic over the intervals picked `weights[i]` times each.
    fn statistic(&self, statistic: Statistic, weights: &[u64], scratch: &mut Vec<u64>) -> f64 {
        match statistic {
            Statistic::Rate => {
                let mut count = 0u64;
                let mut seconds = 0.0;
                for (i, w) in weights.iter().enumerate() {
                    count += w * self.intervals[i].iter().map(|(_, c)| c).sum::<u64>();
                    seconds += *w as f64 * self.durations[i];
                }
                if seconds > 0.0 {
                    count as f64 / seconds
                } else {
                    0.0
                }
            }
            Statistic::Percentile(p) => {
                scratch.clear();
                scratch.resize(self.values.len(), 0);
                for (i, w) in weights.iter().enumerate() {
                    if *w == 0 {
                        continue;
                    }
                    for (index, count) in &self.intervals[i] {
                        scratch[*index as usize] += w * count;
                    }
                }
                let total: u64 = scratch.iter().sum();
                if total == 0 {
                    return 0.0;
                }
                // HdrHistogram's rule: the smallest value with at least p% at or below it.
                let wanted = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
                let mut seen = 0;
                for (index, count) in scratch.iter().enumerate() {
                    seen += count;
                    if seen >= wanted {
                        return self.values[index] as f64;
                    }
                }
                *self.values.last().unwrap_or(&0) as f64
            }
        }
    }

    fn resample(&self, statistic: Statistic, rng: &mut StdRng, scratch: &mut Vec<u64>) -> f64 {
        let n = self.intervals.len();
        let mut weights = vec![0u64; n];
        for _ in 0..n {
            weights[rng.random_range(0..n)] += 1;
        }
        self.statistic(statistic, &weights, scratch)
    }

    fn whole(&self, statistic: Statistic) -> f64 {
        self.statistic(statistic, &vec![1; self.len()], &mut Vec::new())
    }
}

/// The change from `baseline` to `now`, with its `confidence` interval. Seeded, so the same
/// two runs always get the same verdict. `None` when either side has no intervals.
pub fn change(
    baseline: &Side,
    now: &Side,
    statistic: Statistic,
    confidence: f64,
) -> Option<Change> {
    if baseline.is_empty() || now.is_empty() {
        return None;
    }
    let before = baseline.whole(statistic);
    let after = now.whole(statistic);
    if before <= 0.0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(0x10AD_6E4E);
    let mut scratch = Vec::new();
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let b = baseline.resample(statistic, &mut rng, &mut scratch);
            let a = now.resample(statistic, &mut rng, &mut scratch);
            if b > 0.0 { a / b } else { f64::INFINITY }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        let index = ((ratios.len() - 1) as f64 * q).round() as usize;
        (ratios[index] - 1.0) * 100.0
    };
    Some(Change {
        baseline: before,
        now: after,
        percent: (after / before - 1.0) * 100.0,
        low: at(tail),
        high: at(1.0 - tail),
        confidence,
        intervals: [baseline.len(), now.len()],
    })
}

/// Whether a change is a regression past `allowed` percent that the data is sure of: the
/// whole confidence interval lies beyond the allowance (above it for latency, below minus
/// it for a rate). A run that is merely noisy, or slower by less than allowed, passes.
pub fn regressed(change: &Change, statistic: Statistic, allowed: f64) -> bool {
    match statistic {
        Statistic::Percentile(_) => change.low > allowed,
        Statistic::Rate => change.high < -allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::intervals::new_histogram;
    use rand_distr_free::*;

    /// Normal-ish noise without another crate: the sum of uniforms (Irwin-Hall).
    mod rand_distr_free {
        use rand::Rng;
        pub fn noisy(rng: &mut impl Rng, mean: f64, spread: f64) -> f64 {
            let sum: f64 = (0..12).map(|_| rng.random::<f64>()).sum();
            mean + (sum - 6.0) * spread
        }
    }

    /// `n` one-second intervals of `per` requests around `service_us`, where each second
    /// also drifts a little, as real seconds do.
    fn run(seed: u64, n: usize, per: usize, service_us: f64) -> Vec<Histogram<u64>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let drift = noisy(&mut rng, 1.0, 0.03);
                let mut h = new_histogram();
                for _ in 0..per {
                    let v = noisy(&mut rng, service_us * drift, service_us * 0.1).max(1.0);
                    h.record(v as u64).unwrap();
                }
                h
            })
            .collect()
    }

    fn side(intervals: &[Histogram<u64>]) -> Side {
        Side::new(intervals.iter().map(|h| (h, 1.0)))
    }

    #[test]
    fn the_whole_statistic_matches_the_added_histogram() {
        let intervals = run(1, 10, 200, 2000.0);
        let mut sum = new_histogram();
        for h in &intervals {
            sum.add(h).unwrap();
        }
        let s = side(&intervals);
        for p in [50.0, 95.0, 99.0, 100.0] {
            assert_eq!(
                s.whole(Statistic::Percentile(p)),
                sum.value_at_quantile(p / 100.0) as f64,
                "p{p}"
            );
        }
        assert_eq!(s.whole(Statistic::Rate), 200.0);
    }

    #[test]
    fn identical_runs_pass_and_a_thirty_percent_regression_fails() {
        let mut false_alarms = 0;
        let mut caught = 0;
        for seed in 0..20 {
            let a = side(&run(seed, 20, 300, 2000.0));
            let b = side(&run(seed + 100, 20, 300, 2000.0));
            let slow = side(&run(seed + 200, 20, 300, 2600.0));
            let same = change(&a, &b, Statistic::Percentile(95.0), 0.95).unwrap();
            if regressed(&same, Statistic::Percentile(95.0), 10.0) {
                false_alarms += 1;
            }
            let worse = change(&a, &slow, Statistic::Percentile(95.0), 0.95).unwrap();
            assert!(
                worse.low < worse.percent && worse.percent < worse.high,
                "{worse:?}"
            );
            if regressed(&worse, Statistic::Percentile(95.0), 10.0) {
                caught += 1;
            }
        }
        assert!(
            false_alarms <= 1,
            "{false_alarms} of 20 identical pairs failed"
        );
        assert!(caught >= 19, "caught {caught} of 20 regressions");
    }

    #[test]
    fn a_rate_drop_is_a_regression_and_a_rise_is_not() {
        let base = run(7, 10, 400, 2000.0);
        let fewer = run(8, 10, 200, 2000.0);
        let c = change(&side(&base), &side(&fewer), Statistic::Rate, 0.95).unwrap();
        assert!((c.percent + 50.0).abs() < 1.0, "{c:?}");
        assert!(regressed(&c, Statistic::Rate, 10.0));
        let c = change(&side(&fewer), &side(&base), Statistic::Rate, 0.95).unwrap();
        assert!(!regressed(&c, Statistic::Rate, 10.0));
        assert!(change(&side(&[]), &side(&base), Statistic::Rate, 0.95).is_none());
    }
}
