//! The test-only slowdown (`--test-slowdown`): the pause that makes an entry's answer take
//! FACTOR times its handling time, precise below a millisecond.

use std::time::Duration;

/// Pauses longer than this use tokio's timer, whose millisecond ticks are then a small part.
const COARSE: Duration = Duration::from_millis(20);

/// The pause after an answer that took `handled`: (factor - 1) times as long.
pub fn extra(handled: Duration, factor: f64) -> Duration {
    handled.mul_f64((factor - 1.0).max(0.0))
}

/// Waits `pause`. tokio's timer counts whole milliseconds, so a 300 µs pause there lasts
/// 1-2 ms, and a 30% slowdown of a 1 ms answer would be 2x. A blocking-pool thread's own
/// sleep (nanosleep) overshoots by tens of microseconds instead.
pub async fn pause(pause: Duration) {
    if pause.is_zero() {
        return;
    }
    if pause >= COARSE {
        tokio::time::sleep(pause).await;
        return;
    }
    // A failed join is a panicked sleep, which cannot happen; the pause is then shorter.
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(pause)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_pause_is_the_factor_less_one_times_the_handling() {
        let handled = Duration::from_micros(1000);
        assert_eq!(extra(handled, 1.3), Duration::from_micros(300));
        assert_eq!(extra(handled, 2.0), handled);
        assert_eq!(extra(handled, 1.0), Duration::ZERO);
    }

    /// The resolution a 30% slowdown of a sub-millisecond answer needs: a 300 µs pause
    /// lasts at least 300 µs, and (median of 21) well under tokio's 1 ms tick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_below_a_millisecond_keeps_its_length() {
        let wanted = Duration::from_micros(300);
        let mut took = Vec::new();
        for _ in 0..21 {
            let start = Instant::now();
            pause(wanted).await;
            took.push(start.elapsed());
        }
        took.sort();
        assert!(took[0] >= wanted, "{took:?}");
        assert!(took[10] < Duration::from_micros(800), "{took:?}");
        // tokio's own timer, for contrast: a whole tick or more.
        let start = Instant::now();
        tokio::time::sleep(wanted).await;
        assert!(start.elapsed() >= Duration::from_millis(1));
    }
}
