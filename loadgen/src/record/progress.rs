//! Live counters that the users bump as they send, and the once-a-second sampler that
//! turns them into the report's timeline and the terminal's progress lines. In the open
//! model it also samples the schedule: requested, sent, late and dropped per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::arrival::Schedule;
pub use crate::model::TimelinePoint;
use crate::users_plan::UsersPlan;

/// Counters written by every user, read by one sampler; relaxed ordering is enough
/// because each is a standalone tally, not a guard for other data.
#[derive(Debug, Default)]
pub struct Live {
    pub users_started: AtomicU64,
    pub users_finished: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// Requests sent (counted at the send, where `requests` counts at the answer).
    pub sent: AtomicU64,
    /// Requests that waited for one of the `--max-connections` slots.
    pub waited_for_connection: AtomicU64,
    /// Requests that got no HTTP answer, and the cause of the last one, for the progress
    /// line: the report counts them by cause, but only at the end.
    pub no_answer: AtomicU64,
    pub last_no_answer: Mutex<String>,
    /// Requests still in flight when `--graceful-stop` ran out after `--run-time`, cancelled.
    pub interrupted: AtomicU64,
}

/// Running totals at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    requests: u64,
    failures: u64,
    users: u64,
    sent: u64,
    late: u64,
    dropped: u64,
    waited: u64,
    no_answer: u64,
}

impl Live {
    fn totals(&self, schedule: Option<&Schedule>) -> Totals {
        let started = self.users_started.load(Ordering::Relaxed);
        let finished = self.users_finished.load(Ordering::Relaxed);
        Totals {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            users: started.saturating_sub(finished),
            sent: self.sent.load(Ordering::Relaxed),
            late: schedule.map_or(0, |s| s.late.load(Ordering::Relaxed)),
            dropped: schedule.map_or(0, |s| s.dropped.load(Ordering::Relaxed)),
            waited: self.waited_for_connection.load(Ordering::Relaxed),
            no_answer: self.no_answer.load(Ordering::Relaxed),
        }
    }

    /// Counts a request that got no HTTP answer, for `cause`.
    pub fn no_answer(&self, cause: &str) {
        self.no_answer.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_no_answer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *last != cause {
            cause.clone_into(&mut last);
        }
    }

    /// The progress line's note on `n` requests with no answer since the last line.
    fn no_answer_note(&self, n: u64) -> String {
        if n == 0 {
            return String::new();
        }
        let last = self
            .last_no_answer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        format!("; {n} with no HTTP answer, the last: {last}")
    }
}

/// A running sampler; `finish` stops it and hands back the timeline.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<TimelinePoint>>,
}

/// One second's point: the difference of two totals, and loadgen's CPU share over it.
fn point(
    second: u64,
    now: Totals,
    last: Totals,
    schedule: Option<&Schedule>,
    cpu_share: Option<f64>,
) -> TimelinePoint {
    let open = schedule.map(|s| {
        let plan = s.plan();
        (
            plan.cumulative(second as f64) - plan.cumulative(second.saturating_sub(1) as f64),
            now.sent - last.sent,
            now.late - last.late,
            now.dropped - last.dropped,
        )
    });
    TimelinePoint {
        second,
        requests: now.requests - last.requests,
        failures: now.failures - last.failures,
        users: now.users,
        requested: open.map(|o| o.0),
        sent: open.map(|o| o.1),
        late: open.map(|o| o.2),
        dropped: open.map(|o| o.3),
        cpu_share,
        saturated: cpu_share.is_some_and(|share| share >= CPU_BOUND),
    }
}

/// The seconds of `timeline` in which loadgen was CPU-bound.
pub fn saturated_secs(timeline: &[TimelinePoint]) -> u64 {
    timeline.iter().filter(|p| p.saturated).count() as u64
}

/// loadgen's CPU over a span, as a share of its threads: `cpu` used in `wall` on `threads`.
fn cpu_share(cpu: Duration, wall: Duration, threads: usize) -> f64 {
    cpu.as_secs_f64() / (wall.as_secs_f64() * threads as f64).max(f64::EPSILON)
}

/// This second's CPU share, from the CPU time at the last sample; updates it.
fn sample_cpu(last: &mut Option<(Instant, Duration)>, threads: usize) -> Option<f64> {
    let now = (Instant::now(), process_cpu()?);
    let share = last.map(|(at, cpu)| cpu_share(now.1.saturating_sub(cpu), now.0 - at, threads));
    *last = Some(now);
    share
}

/// The users a progress line measures the running ones against.
#[derive(Debug, Clone)]
pub enum Target {
    /// A fixed number.
    Users(usize),
    /// What the users plan asks for at each moment.
    Plan(UsersPlan),
}

impl Sampler {
    /// Samples `live` (and the open model's `schedule`) every second, and prints a
    /// progress line every `print_every` (on stderr, so stdout stays clean for the summary).
    pub fn start(
        live: Arc<Live>,
        schedule: Option<Arc<Schedule>>,
        target_users: Target,
        print_every: Duration,
        threads: usize,
        max_connections: usize,
    ) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let schedule = schedule.as_deref();
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut timeline = Vec::new();
            let mut last = Totals::default();
            let mut last_print = (Instant::now(), Totals::default());
            let mut last_cpu = process_cpu();
            let mut second_cpu = last_cpu.map(|cpu| (Instant::now(), cpu));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let now = live.totals(schedule);
                let share = sample_cpu(&mut second_cpu, threads);
                timeline.push(point(timeline.len() as u64 + 1, now, last, schedule, share));
                last = now;
                if last_print.0.elapsed() >= print_every {
                    let rate = (now.requests - last_print.1.requests) as f64
                        / last_print.0.elapsed().as_secs_f64();
                    let open = schedule.map_or(String::new(), |s| {
                        format!(
                            " | requested {:.1}/s, sent {} ({} late, {} dropped)",
                            s.plan().rate_at(started.elapsed().as_secs_f64()),
                            now.sent,
                            now.late,
                            now.dropped
                        )
                    });
                    // The CPU this second's point just read: one read of /proc a second.
                    let cpu = second_cpu.map(|(_, cpu)| cpu);
                    let bound = match (last_cpu, cpu) {
                        (Some(before), Some(after)) => cpu_bound_note(
                            after.saturating_sub(before),
                            last_print.0.elapsed(),
                            threads,
                        ),
                        _ => String::new(),
                    };
                    last_cpu = cpu;
                    let waited = waited_note(now.waited - last_print.1.waited, max_connections);
                    let no_answer = live.no_answer_note(now.no_answer - last_print.1.no_answer);
                    let target_users = match &target_users {
                        Target::Users(n) => n.to_string(),
                        Target::Plan(plan) => {
                            format!("{:.0} planned", plan.users_at(started.elapsed()))
                        }
                    };
                    eprintln!(
                        "[{:>5}s] users {}/{target_users} | requests {} ({} failed{no_answer}) | {rate:.1} req/s{open}{bound}{waited}",
                        started.elapsed().as_secs(),
                        now.users,
                        now.requests,
                        now.failures
                    );
                    last_print = (Instant::now(), now);
                }
            }
            // The last partial second is kept: a short run would otherwise show nothing.
            let now = live.totals(schedule);
            if now.requests > last.requests || timeline.is_empty() {
                let share = sample_cpu(&mut second_cpu, threads);
                timeline.push(point(timeline.len() as u64 + 1, now, last, schedule, share));
            }
            timeline
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Vec<TimelinePoint> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// At or above this share of its threads, loadgen itself is what limits the run.
const CPU_BOUND: f64 = 0.9;

/// The progress line's warning when loadgen used `cpu` of `threads` threads over `wall`:
/// its latencies then include its own queueing, as Locust warns above 90% CPU.
fn cpu_bound_note(cpu: Duration, wall: Duration, threads: usize) -> String {
    let share = cpu_share(cpu, wall, threads);
    if share < CPU_BOUND {
        return String::new();
    }
    format!(
        " | loadgen is CPU-bound ({:.0}% of its {threads} thread{}): its latencies include its own \
         queueing; pass --threads {} or add workers",
        share * 100.0,
        if threads == 1 { "" } else { "s" },
        threads * 2
    )
}

/// The progress line's note when `waited` requests since the last line had to wait for one
/// of the `max` connections: a slow target, or a stall of loadgen's own, filled them.
fn waited_note(waited: u64, max: usize) -> String {
    if waited == 0 {
        return String::new();
    }
    format!(
        " | {waited} request{} waited for one of the {max} connections (their wait is in \
         their latency); if the target is slow rather than loadgen stalled, pass a higher \
         --max-connections",
        if waited == 1 { "" } else { "s" }
    )
}

/// This process's CPU time so far (user and system), from /proc/self/stat; `None` where
/// there is no /proc, and the progress line then says nothing about CPU.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15, in USER_HZ ticks, which Linux fixes at 100 a
    // second for user space whatever the kernel's own tick.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_warns_only_when_loadgen_uses_most_of_its_threads() {
        let second = Duration::from_secs(1);
        assert_eq!(cpu_bound_note(Duration::from_millis(500), second, 1), "");
        assert_eq!(cpu_bound_note(Duration::from_millis(1700), second, 2), "");
        let bound = cpu_bound_note(Duration::from_millis(950), second, 1);
        assert!(bound.contains("CPU-bound (95% of its 1 thread)"), "{bound}");
        assert!(bound.contains("--threads 2"), "{bound}");
        assert!(cpu_bound_note(Duration::from_millis(1900), second, 2).contains("--threads 4"));
    }

    #[test]
    fn a_second_is_saturated_when_loadgen_used_most_of_its_threads() {
        let at = |share| point(1, Totals::default(), Totals::default(), None, share);
        assert!(at(Some(0.95)).saturated && at(Some(0.9)).saturated);
        assert!(!at(Some(0.89)).saturated && !at(None).saturated);
        assert_eq!(at(Some(0.5)).cpu_share, Some(0.5));
        let second = Duration::from_secs(1);
        assert_eq!(cpu_share(Duration::from_millis(1800), second, 2), 0.9);
        let mut last = Some((Instant::now() - second, Duration::ZERO));
        let share = sample_cpu(&mut last, 1).expect("Linux has /proc/self/stat");
        assert!(share > 0.0, "this test process has used some CPU: {share}");
    }

    #[test]
    fn the_progress_line_names_the_requests_that_waited_for_a_connection() {
        assert_eq!(waited_note(0, 1024), "");
        let note = waited_note(37, 1024);
        assert!(
            note.contains("37 requests waited for one of the 1024 connections"),
            "{note}"
        );
        assert!(note.contains("--max-connections"), "{note}");
        assert!(waited_note(1, 8).contains("1 request waited"));
    }

    #[test]
    fn process_cpu_grows_as_this_process_works() {
        let before = process_cpu().expect("Linux has /proc/self/stat");
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = process_cpu().unwrap();
        assert!(
            after > before,
            "{before:?} -> {after:?} after 300 ms of spinning"
        );
    }
}
