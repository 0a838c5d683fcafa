//! Live counters that the users bump as they send, and the once-a-second sampler that
//! turns them into the report's timeline and the terminal's progress lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use crate::model::TimelinePoint;

/// Counters written by every user, read by one sampler; relaxed ordering is enough
/// because each is a standalone tally, not a guard for other data.
#[derive(Debug, Default)]
pub struct Live {
    pub users_started: AtomicU64,
    pub users_finished: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

impl Live {
    fn snapshot(&self) -> (u64, u64, u64) {
        let started = self.users_started.load(Ordering::Relaxed);
        let finished = self.users_finished.load(Ordering::Relaxed);
        (
            self.requests.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            started.saturating_sub(finished),
        )
    }
}

/// A running sampler; `finish` stops it and hands back the timeline.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<TimelinePoint>>,
}

impl Sampler {
    /// Samples `live` every second, and prints a progress line every `print_every`
    /// (on stderr, so stdout stays clean for the summary).
    pub fn start(live: Arc<Live>, target_users: usize, print_every: Duration) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut timeline = Vec::new();
            let (mut last_requests, mut last_failures) = (0, 0);
            let mut last_print = (Instant::now(), 0);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let (requests, failures, users) = live.snapshot();
                timeline.push(TimelinePoint {
                    second: timeline.len() as u64 + 1,
                    requests: requests - last_requests,
                    failures: failures - last_failures,
                    users,
                });
                (last_requests, last_failures) = (requests, failures);
                if last_print.0.elapsed() >= print_every {
                    let rate =
                        (requests - last_print.1) as f64 / last_print.0.elapsed().as_secs_f64();
                    eprintln!(
                        "[{:>5}s] users {users}/{target_users} | requests {requests} ({failures} failed) | {rate:.1} req/s",
                        started.elapsed().as_secs()
                    );
                    last_print = (Instant::now(), requests);
                }
            }
            // The last partial second is kept: a short run would otherwise show nothing.
            let (requests, failures, users) = live.snapshot();
            if requests > last_requests || timeline.is_empty() {
                timeline.push(TimelinePoint {
                    second: timeline.len() as u64 + 1,
                    requests: requests - last_requests,
                    failures: failures - last_failures,
                    users,
                });
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
