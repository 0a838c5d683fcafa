//! `--max-rps` in the closed model: turns to send, evenly spaced across every user. A user
//! waits for its turn before its request's clock starts, so the wait is not counted as the
//! target's latency (Goose's own throttle waits inside the request, after loadgen's clock
//! started: at 50 users and 300/s a 1 ms answer was reported as 188 ms).

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so the tests can run on paused time.
use tokio::time::Instant;

#[derive(Debug)]
pub struct Throttle {
    gap: Duration,
    /// The next free turn; `None` until the first user asks.
    next: Mutex<Option<Instant>>,
}

impl Throttle {
    /// At most `per_sec` turns a second.
    pub fn new(per_sec: f64) -> Throttle {
        Throttle {
            gap: Duration::from_secs_f64(1.0 / per_sec),
            next: Mutex::new(None),
        }
    }

    /// Waits for the next turn. Turns no user took are not made up: one who comes after its
    /// turn goes at once, and the turns after it count from then, so a stall in the target is
    /// never followed by a burst above the cap.
    pub async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |next| next.max(now));
            *next = Some(at + self.gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_evenly_spaced_and_lost_turns_are_not_made_up() {
        let throttle = Throttle::new(100.0);
        let start = Instant::now();
        for _ in 0..11 {
            throttle.turn().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100),
            "11 turns at 100/s"
        );

        // Nobody asks for a second; then the turns restart from now, 10 ms apart.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let resumed = Instant::now();
        throttle.turn().await;
        throttle.turn().await;
        assert_eq!(
            resumed.elapsed(),
            Duration::from_millis(10),
            "no burst after a pause"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn users_at_once_share_the_rate() {
        let throttle = std::sync::Arc::new(Throttle::new(50.0));
        let start = Instant::now();
        let users: Vec<_> = (0..10)
            .map(|_| {
                let throttle = std::sync::Arc::clone(&throttle);
                tokio::spawn(async move { throttle.turn().await })
            })
            .collect();
        for user in users {
            user.await.unwrap();
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(180),
            "10 turns at 50/s"
        );
    }
}
