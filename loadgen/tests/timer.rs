//! The open model's timer wakes a task soon after its deadline, where tokio's millisecond
//! wheel woke it up to 1 ms late. Alone in its file, so no other test shares the machine's
//! two cores with it.

use std::time::{Duration, Instant};

use loadgen::timer::PreciseTimer;

/// Deadlines 200 µs apart, as 5,000 tickets a second are: each wakes at or after its time,
/// and the median within a fraction of tokio's 1 ms tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tasks_wake_soon_after_their_deadlines() {
    let timer = PreciseTimer::start().unwrap();
    let start = Instant::now() + Duration::from_millis(5);
    let mut lags = Vec::new();
    for i in 0..200u32 {
        let at = start + Duration::from_micros(200) * i;
        timer.sleep_until(at).await;
        let woke = Instant::now();
        assert!(woke >= at);
        lags.push(woke - at);
    }
    lags.sort();
    assert!(
        lags[100] < Duration::from_micros(500),
        "median {:?}",
        lags[100]
    );
    // A deadline already past completes at once.
    let past = Instant::now() - Duration::from_millis(1);
    tokio::time::timeout(Duration::from_secs(1), timer.sleep_until(past))
        .await
        .expect("a past deadline is ready");
}
