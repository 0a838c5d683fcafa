//! The open model's scheduler: requests arrive at a rate (`--arrival-rate`) or a plan of
//! linear ramps (`--arrival-plan`), evenly spaced or as a Poisson process, whatever the
//! target does. Each arrival is a ticket with an intended send time; a pool of Goose users
//! (`--max-users`) takes tickets in order and sends when they are due. A request sent more
//! than `--late-after` after its time, once the whole pool has started, is `late`, judged at
//! its actual send as its lag is (a busy pool, or a timer that woke late); with
//! `--drop-late` one too far behind is not sent at all (`dropped`).
//! Latency is then measured from the intended time, so a target that stalls shows it
//! (wrk2's correction). A ticket is waited for on the timer thread of `timer`, which wakes
//! within tens of microseconds of its time, where tokio's millisecond ticks woke up to 1 ms
//! late.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::duration::{BareUnit, parse_span};
use crate::timer::PreciseTimer;

pub use crate::model::Arrivals;

/// The requested rate over time: stages that each ramp linearly from the rate before (0 at
/// the start) to their own, over their duration; `R@0s` jumps.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// (rate at the stage's end, the stage's duration in seconds)
    stages: Vec<(f64, f64)>,
}

/// `--late-after`'s default: a request sent more than this after its time is late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

impl Plan {
    /// A constant rate for `duration` (forever when `None`).
    pub fn constant(rate: f64, duration: Option<Duration>) -> Plan {
        let secs = duration.map_or(f64::INFINITY, |d| d.as_secs_f64());
        Plan {
            stages: vec![(rate, 0.0), (rate, secs)],
        }
    }

    /// `"100@0s,100@30s,500@1m"`: jump to 100/s, hold it 30 s, ramp to 500/s over a minute.
    pub fn parse(text: &str) -> Result<Plan, String> {
        let mut stages = Vec::new();
        for stage in text.split(',').map(str::trim) {
            let (rate, span) = stage
                .split_once('@')
                .ok_or_else(|| format!("stage {stage:?} is not RATE@DURATION, such as 200@30s"))?;
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| {
                    format!("stage {stage:?}: {rate:?} is not a rate of 0 or more per second")
                })?;
            let span = parse_span(span.trim(), BareUnit::Seconds)
                .map_err(|e| format!("stage {stage:?}: {e}"))?;
            stages.push((rate, span.as_secs_f64()));
        }
        let plan = Plan { stages };
        if plan.duration() <= 0.0 {
            return Err("the plan lasts no time; give stages such as 100@0s,100@30s".into());
        }
        if plan.stages.iter().all(|(r, _)| *r == 0.0) {
            return Err("every stage's rate is 0, so nothing would be sent".into());
        }
        Ok(plan)
    }

    /// The same plan at `factor` times the rate: a worker's share of the run's.
    pub fn scaled(&self, factor: f64) -> Plan {
        Plan {
            stages: self.stages.iter().map(|(r, d)| (r * factor, *d)).collect(),
        }
    }

    /// The plan in `--arrival-plan`'s notation, durations in seconds.
    pub fn text(&self) -> String {
        self.stages
            .iter()
            .map(|(rate, secs)| format!("{rate}@{secs}s"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Seconds the plan lasts (infinite for a constant rate without a run time).
    pub fn duration(&self) -> f64 {
        self.stages.iter().map(|(_, d)| d).sum()
    }

    /// The requested rate `t` seconds in.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start_rate = 0.0;
        let mut start = 0.0;
        for (rate, span) in &self.stages {
            if t < start + span {
                return start_rate + (rate - start_rate) * (t - start) / span;
            }
            start += span;
            start_rate = *rate;
        }
        if t <= start { start_rate } else { 0.0 }
    }

    /// Arrivals requested in the first `t` seconds: the rate's integral.
    pub fn cumulative(&self, t: f64) -> f64 {
        let mut total = 0.0;
        let mut start_rate = 0.0;
        let mut start = 0.0;
        for (rate, span) in &self.stages {
            let upto = (t - start).clamp(0.0, *span);
            if upto > 0.0 {
                let slope = (rate - start_rate) / span;
                total += start_rate * upto + slope * upto * upto / 2.0;
            }
            if t <= start + span {
                return total;
            }
            start += span;
            start_rate = *rate;
        }
        total
    }

    /// The time by which `n` arrivals are requested, or `None` past the plan's end.
    pub fn time_of(&self, n: f64) -> Option<f64> {
        let mut total = 0.0;
        let mut start_rate = 0.0;
        let mut start = 0.0;
        for (rate, span) in &self.stages {
            let slope = if *span > 0.0 {
                (rate - start_rate) / span
            } else {
                0.0
            };
            // A stage without end holds its rate (0 x infinity would be NaN).
            let whole = if span.is_infinite() {
                f64::INFINITY
            } else {
                start_rate * span + slope * span * span / 2.0
            };
            if *span > 0.0 && total + whole > n {
                // Solve start_rate * x + slope * x^2 / 2 = n - total for x in [0, span].
                let need = n - total;
                let x = if slope.abs() < 1e-12 {
                    need / start_rate
                } else {
                    let disc = (start_rate * start_rate + 2.0 * slope * need).max(0.0);
                    (-start_rate + disc.sqrt()) / slope
                };
                return Some(start + x.clamp(0.0, *span));
            }
            total += whole;
            start += span;
            start_rate = *rate;
        }
        None
    }
}

/// What a taken ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// When the request was meant to be sent.
    pub intended: Instant,
}

/// The shared ticket dispenser.
#[derive(Debug)]
pub struct Schedule {
    plan: Plan,
    arrivals: Arrivals,
    /// Longest a ticket may be behind and still be sent (`--drop-late`).
    drop_late: Option<Duration>,
    /// A request sent more than this after its time is late (`--late-after`).
    late_after: Duration,
    /// The users of this process's pool, and how many have started (`join`). Goose starts
    /// them one by one; a ticket behind its time before the last has started waited for
    /// the pool's start-up, not for a busy pool, so it is not `late` (its lag is still in
    /// its response time).
    pool: usize,
    joined: AtomicUsize,
    state: Mutex<State>,
    pub late: AtomicU64,
    pub dropped: AtomicU64,
    /// Tickets that came due: sent, or dropped.
    pub issued: AtomicU64,
    timer: PreciseTimer,
}

#[derive(Debug)]
struct State {
    /// The clock starts when the first user asks, so the time before any user has started
    /// is not in the schedule.
    start: Option<Instant>,
    /// Arrivals issued so far, and for Poisson the unit-rate clock (time rescaling).
    issued: u64,
    unit_clock: f64,
    rng: StdRng,
}

impl Schedule {
    /// The schedule, with its timer thread started (the only way this fails).
    pub fn new(
        plan: Plan,
        arrivals: Arrivals,
        (drop_late, late_after): (Option<Duration>, Duration),
        seed: Option<u64>,
        pool: usize,
    ) -> std::io::Result<Schedule> {
        Ok(Schedule {
            plan,
            arrivals,
            drop_late,
            late_after,
            pool,
            joined: AtomicUsize::new(0),
            state: Mutex::new(State {
                start: None,
                issued: 0,
                unit_clock: 0.0,
                rng: match seed {
                    Some(seed) => StdRng::seed_from_u64(seed ^ 0xA55A_5AA5),
                    None => StdRng::from_rng(&mut rand::rng()),
                },
            }),
            late: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            timer: PreciseTimer::start()?,
        })
    }

    /// A user of the pool has started; called once per user, before its first ticket.
    pub fn join(&self) {
        self.joined.fetch_add(1, Ordering::Relaxed);
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// When the schedule began, once a user has asked for a ticket.
    pub fn started(&self) -> Option<Instant> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).start
    }

    /// The next arrival's intended time, or `None` once the plan is over.
    fn next_time(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = *state.start.get_or_insert_with(Instant::now);
        let n = match self.arrivals {
            // The n-th of evenly spaced arrivals is due when n have been requested.
            Arrivals::Uniform => state.issued as f64,
            // Time rescaling: unit-rate exponential gaps, mapped through the plan's integral,
            // give a Poisson process with the plan's rate at every moment.
            Arrivals::Poisson => {
                let u: f64 = state.rng.random::<f64>();
                state.unit_clock += -(1.0 - u).ln();
                state.unit_clock
            }
        };
        let at = self.plan.time_of(n)?;
        state.issued += 1;
        Some(start + Duration::from_secs_f64(at))
    }

    /// Takes the next ticket and waits until it is due; tickets too far behind under
    /// `--drop-late` are counted as dropped and skipped. `None` once the plan is over.
    pub async fn take(&self) -> Option<Ticket> {
        loop {
            let intended = self.next_time()?;
            let now = Instant::now();
            if intended > now {
                self.timer.sleep_until(intended).await;
                // Counted once due: a ticket whose user the run's end cut off while it
                // waited was never scheduled to be sent within the run.
                self.issued.fetch_add(1, Ordering::Relaxed);
                return Some(Ticket { intended });
            }
            self.issued.fetch_add(1, Ordering::Relaxed);
            if self.drop_late.is_some_and(|limit| now - intended > limit) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Some(Ticket { intended });
        }
    }

    /// A ticket's request goes out at `at`: late when that is more than `--late-after`
    /// after its time and the whole pool had started. Judged here, at the send, so `late`
    /// counts exactly the lags over the threshold, whether a busy pool or a timer that woke
    /// late made them; a ticket behind while Goose was still starting the pool waited for
    /// the start-up, not for a busy pool (its lag is still in its response time).
    pub fn sent(&self, ticket: Ticket, at: Instant) -> bool {
        let late = at.saturating_duration_since(ticket.intended) > self.late_after
            && self.joined.load(Ordering::Relaxed) >= self.pool;
        if late {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_ramp_and_integrate() {
        let plan = Plan::parse("100@0s,100@10s,300@10s").unwrap();
        assert_eq!(plan.duration(), 20.0);
        assert_eq!(plan.rate_at(5.0), 100.0);
        assert_eq!(plan.rate_at(15.0), 200.0);
        assert!((plan.cumulative(10.0) - 1000.0).abs() < 1e-9);
        assert!((plan.cumulative(20.0) - 3000.0).abs() < 1e-9);
        for n in [0.0, 500.0, 1000.0, 2000.0, 2999.0] {
            let t = plan.time_of(n).unwrap();
            assert!((plan.cumulative(t) - n).abs() < 1e-6, "n {n} at {t}");
        }
        assert_eq!(plan.time_of(3001.0), None);
        // From 0: the first stage ramps up from nothing.
        let ramp = Plan::parse("10@10s").unwrap();
        assert!((ramp.cumulative(10.0) - 50.0).abs() < 1e-9);
        for bad in [
            "",
            "100",
            "x@10s",
            "-1@10s",
            "100@forever",
            "100@0s",
            "0@10s",
        ] {
            assert!(Plan::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let constant = Plan::constant(50.0, Some(Duration::from_secs(2)));
        assert_eq!(constant.time_of(99.0), Some(1.98));
        assert_eq!(constant.time_of(100.0), None);
        assert!(Plan::constant(5.0, None).time_of(1e6).is_some());
    }

    /// Kolmogorov-Smirnov: the largest distance between the gaps' empirical distribution
    /// and the exponential with the rate's mean.
    fn ks_exponential(gaps: &mut [f64], rate: f64) -> f64 {
        gaps.sort_by(f64::total_cmp);
        let n = gaps.len() as f64;
        gaps.iter()
            .enumerate()
            .map(|(i, g)| {
                let cdf = 1.0 - (-rate * g).exp();
                (cdf - i as f64 / n)
                    .abs()
                    .max(((i + 1) as f64 / n - cdf).abs())
            })
            .fold(0.0, f64::max)
    }

    fn gaps(arrivals: Arrivals, rate: f64, n: usize, seed: u64) -> Vec<f64> {
        let schedule = Schedule::new(
            Plan::constant(rate, None),
            arrivals,
            (None, LATE_AFTER),
            Some(seed),
            1,
        )
        .unwrap();
        let times: Vec<Instant> = (0..n).map(|_| schedule.next_time().unwrap()).collect();
        times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    #[test]
    fn poisson_gaps_fit_the_exponential_and_uniform_ones_do_not() {
        let n = 5000;
        // The 5% critical value of the KS statistic is 1.36 / sqrt(n).
        let critical = 1.36 / ((n - 1) as f64).sqrt();
        let mut passed = 0;
        for seed in 0..20 {
            let mut poisson = gaps(Arrivals::Poisson, 200.0, n, seed);
            if ks_exponential(&mut poisson, 200.0) < critical {
                passed += 1;
            }
        }
        // At the 5% level, about 19 of 20 samples from the right distribution pass.
        assert!(
            passed >= 17,
            "{passed} of 20 Poisson samples fit the exponential"
        );
        let mut uniform = gaps(Arrivals::Uniform, 200.0, n, 1);
        assert!(ks_exponential(&mut uniform, 200.0) > 0.3);
        let mean = |g: &[f64]| g.iter().sum::<f64>() / g.len() as f64;
        let poisson = gaps(Arrivals::Poisson, 200.0, n, 99);
        assert!(
            (mean(&poisson) - 0.005).abs() < 0.0005,
            "mean gap {}",
            mean(&poisson)
        );
    }

    #[tokio::test]
    async fn tickets_wait_for_their_time_and_late_ones_are_counted_or_dropped() {
        let schedule = thousand_a_second(None, 1);
        schedule.join();
        let first = schedule.take().await.unwrap();
        assert!(!schedule.sent(first, first.intended));
        // Nobody takes tickets for 50 ms: the next ~50 are behind when taken.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let behind: Vec<Ticket> = futures_lite_take(&schedule, 20).await;
        let now = Instant::now();
        assert!(behind.iter().all(|t| schedule.sent(*t, now)));
        assert_eq!(schedule.late.load(Ordering::Relaxed), 20);

        let dropping = thousand_a_second(Some(Duration::from_millis(10)), 1);
        dropping.join();
        dropping.take().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = dropping.take().await.unwrap();
        // About 40 tickets were more than 10 ms behind and dropped; the first within 10 ms
        // was sent, late.
        let dropped = dropping.dropped.load(Ordering::Relaxed);
        assert!((30..=50).contains(&dropped), "{dropped} dropped");
        assert!(dropping.sent(next, Instant::now()));
    }

    #[tokio::test]
    async fn late_is_judged_at_the_send_against_the_threshold() {
        // A ticket taken on time whose request goes out 2 ms after it (a timer that woke
        // late) is late at 1 ms, as its lag says, and not at 5 ms.
        for (late_after, expected) in [(LATE_AFTER, true), (Duration::from_millis(5), false)] {
            let schedule = Schedule::new(
                Plan::constant(1000.0, None),
                Arrivals::Uniform,
                (None, late_after),
                Some(1),
                1,
            )
            .unwrap();
            schedule.join();
            let ticket = schedule.take().await.unwrap();
            let at = ticket.intended + Duration::from_millis(2);
            assert_eq!(schedule.sent(ticket, at), expected, "{late_after:?}");
            assert_eq!(schedule.late.load(Ordering::Relaxed), u64::from(expected));
        }
    }

    #[tokio::test]
    async fn tickets_behind_while_the_pool_starts_are_not_late() {
        let schedule = thousand_a_second(None, 3);
        // One user of three has started; the others are still being started by Goose.
        schedule.join();
        schedule.take().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let starting: Vec<Ticket> = futures_lite_take(&schedule, 5).await;
        let now = Instant::now();
        assert!(
            starting.iter().all(|t| !schedule.sent(*t, now)),
            "{starting:?}"
        );
        assert_eq!(schedule.late.load(Ordering::Relaxed), 0);
        // Once all three have started, a ticket behind its time waited for a busy pool.
        schedule.join();
        schedule.join();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let behind = schedule.take().await.unwrap();
        assert!(schedule.sent(behind, Instant::now()));
        assert_eq!(schedule.late.load(Ordering::Relaxed), 1);
    }

    /// Evenly spaced tickets, one a millisecond, for a pool of `pool` users.
    fn thousand_a_second(drop_late: Option<Duration>, pool: usize) -> Schedule {
        Schedule::new(
            Plan::constant(1000.0, None),
            Arrivals::Uniform,
            (drop_late, LATE_AFTER),
            Some(1),
            pool,
        )
        .unwrap()
    }

    async fn futures_lite_take(schedule: &Schedule, n: usize) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        for _ in 0..n {
            tickets.push(schedule.take().await.unwrap());
        }
        tickets
    }
}
