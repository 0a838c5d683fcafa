//! The test-only slowdown (`--test-slowdown`): the pause that makes an entry's answer take
//! FACTOR times its handling time, precise to microseconds.

use std::time::{Duration, Instant};

/// Pauses longer than this sleep on tokio's timer, whose millisecond ticks are then a small
/// part of them.
const COARSE: Duration = Duration::from_millis(10);

/// The pause after an answer that took `handled`: (factor - 1) times as long.
pub fn extra(handled: Duration, factor: f64) -> Duration {
    handled.mul_f64((factor - 1.0).max(0.0))
}

/// Waits `pause`. Below 10 ms it spins: tokio's timer counts whole milliseconds, so a
/// 300 µs sleep there lasts 1-2 ms, and a sleep on a blocking thread came back 100-150 µs
/// late (a 30% slowdown measured 1.5x at the receivers' ingress). Spinning is late by
/// nothing, and spends the time on the CPU, as slower code does.
pub async fn pause(pause: Duration) {
    if pause >= COARSE {
        tokio::time::sleep(pause).await;
        return;
    }
    let until = Instant::now() + pause;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_is_the_factor_less_one_times_the_handling() {
        let handled = Duration::from_micros(1000);
        assert_eq!(extra(handled, 1.3), Duration::from_micros(300));
        assert_eq!(extra(handled, 2.0), handled);
        assert_eq!(extra(handled, 1.0), Duration::ZERO);
    }
}
