//! A timer that wakes a task within tens of microseconds of its deadline, for the open
//! model's schedule. tokio's timer wheel counts whole milliseconds: a ticket due at t woke
//! at the next tick after it, so every send carried up to 1 ms of loadgen's own lag (p50
//! about 750 µs at 500/s), and a target's corrected latency with it. One thread holds the
//! deadlines in a heap and sleeps until the earliest, with the kernel's timer slack on that
//! thread cut from 50 µs to 1 µs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The timer; its thread ends when the timer is dropped.
#[derive(Debug)]
pub struct PreciseTimer {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    due: BinaryHeap<Reverse<Deadline>>,
    /// Ties between equal instants, so the heap's order is total.
    next: u64,
    closed: bool,
}

#[derive(Debug)]
struct Deadline {
    at: Instant,
    order: u64,
    waker: Waker,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Deadline) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Deadline) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Deadline) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl PreciseTimer {
    /// Starts the timer's thread.
    pub fn start() -> std::io::Result<PreciseTimer> {
        let shared = Arc::new(Shared::default());
        let thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("loadgen-timer".into())
            .spawn(move || thread.run())?;
        Ok(PreciseTimer { shared })
    }

    /// Completes at `at`, or at once when it has passed.
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        Sleep {
            shared: Arc::clone(&self.shared),
            at,
        }
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: wakes every task whose deadline has come, then sleeps until the next.
    fn run(&self) {
        // Only this thread's slack; a failure leaves the default (50 µs), only less precise.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        let mut woken = Vec::new();
        let mut state = self.lock();
        loop {
            if state.closed {
                return;
            }
            let now = Instant::now();
            while state.due.peek().is_some_and(|d| d.0.at <= now) {
                woken.push(state.due.pop().expect("peeked").0.waker);
            }
            if !woken.is_empty() {
                // Woken outside the lock, so a task that sleeps again at once need not wait.
                drop(state);
                woken.drain(..).for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = match state.due.peek().map(|d| d.0.at) {
                Some(at) => {
                    self.changed
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// [`PreciseTimer::sleep_until`]'s future.
#[derive(Debug)]
pub struct Sleep {
    shared: Arc<Shared>,
    at: Instant,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let mut state = self.shared.lock();
        let earliest = state.due.peek().is_none_or(|d| self.at < d.0.at);
        let order = state.next;
        state.next += 1;
        // A task polled again before its deadline leaves its earlier entry behind; that one
        // only wakes it once more, when it checks the time and sleeps again.
        state.due.push(Reverse(Deadline {
            at: self.at,
            order,
            waker: cx.waker().clone(),
        }));
        drop(state);
        if earliest {
            self.shared.changed.notify_one();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Many tasks waiting at once, registered in reverse order, each wake, none before its
    /// deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sleepers_each_wake_at_or_after_their_deadline() {
        let timer = Arc::new(PreciseTimer::start().unwrap());
        let base = Instant::now() + Duration::from_millis(20);
        let tasks: Vec<_> = (0..50u32)
            .rev()
            .map(|i| {
                let timer = Arc::clone(&timer);
                let at = base + Duration::from_millis(2) * i;
                tokio::spawn(async move {
                    timer.sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for task in tasks {
            let on_time = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("every sleeper wakes")
                .unwrap();
            assert!(on_time, "a sleeper woke before its deadline");
        }
    }
}
