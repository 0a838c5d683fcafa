//! Benchmark: loadgen's side of reconciling a long run, against real receivers whose store
//! already holds the run's records (`scripts/bench-reconcile` fills it and runs this in
//! release): the sent ledger of USERS users with PER_USER accepted POSTs each, then the
//! drain (paging through `GET /records`) and the ledger. Prints the time, what was found,
//! and this process's peak RSS.
//!
//!   cargo run --release -p loadgen --example reconcile_bench -- URL RUN_ID USERS PER_USER

use std::time::{Duration, Instant};

use contract::Route;
use loadgen::ledger::delivery::{Receivers, ledger};
use loadgen::ledger::sent::SentLedger;

/// This process's peak resident set, in MiB, from /proc.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, run_id, users, per_user] = &args[..] else {
        eprintln!("usage: reconcile_bench URL RUN_ID USERS PER_USER");
        std::process::exit(2);
    };
    let (users, per_user): (usize, u64) = (users.parse().unwrap(), per_user.parse().unwrap());
    let sent = SentLedger::default();
    for user in 0..users {
        for n in 0..per_user {
            sent.record(user, n, Some(Route::ALL[(n % 3) as usize]), true);
        }
    }
    let sent = sent.snapshot();
    let receivers = Receivers::new(vec![url.parse().expect("a URL")]);
    let started = Instant::now();
    let (stored, drained, _) = receivers
        .drain(run_id, &sent, Duration::from_secs(60))
        .await
        .expect("the receivers answer");
    let (routes, _) = ledger(run_id, &sent, &stored, 1.0);
    let secs = started.elapsed().as_secs_f64();
    let all = &routes["all"];
    println!(
        "reconciled {} accepted: {} stored, {} lost, drained {drained}, in {secs:.2} s; loadgen peak RSS {:.1} MiB",
        all.accepted,
        all.stored,
        all.lost,
        peak_rss_mib()
    );
}
