//! `--test-slowdown`'s pause keeps the resolution a 30% slowdown of a sub-millisecond answer
//! needs. Alone in its file, so no other test shares the machine's two cores with it.

use std::time::{Duration, Instant};

use receivers::http::slowdown::pause;

/// A 300 µs pause lasts at least 300 µs and (median of 21) well under tokio's 1 ms tick,
/// which a sleep on tokio's timer takes or more.
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
    assert!(took[10] < Duration::from_micros(600), "{took:?}");
    let start = Instant::now();
    tokio::time::sleep(wanted).await;
    assert!(start.elapsed() >= Duration::from_millis(1));
}
