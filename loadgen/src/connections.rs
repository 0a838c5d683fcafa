//! The users' one pool of connections and its cap (`--max-connections`): at most that many
//! requests in flight from this process, and at most that many idle connections kept.
//!
//! Why a cap: hyper's pool has no maximum. When loadgen's thread stalls for 100 ms at
//! 40,000 req/s, thousands of users fall due at once and the pool opens a connection for
//! each one it has no idle connection for. A connection costs about 35 KB in hyper (read
//! and write buffers, and its dispatch channel), so at 20,000 users one stall opened 5,900
//! connections and took loadgen from 195 to 380 MB. With the cap, those users wait for a
//! connection instead, as a browser waits for one of its six; the wait is in their latency.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::record::progress::Live;

/// The default cap. At 20,000 users on a 1 ms target, 60 requests are in flight in the
/// steady state, so the cap binds only after a stall; a target that answers in 100 ms
/// still gets 10,000 req/s through it.
pub const DEFAULT_MAX: usize = 1024;

/// Files a run holds besides its connections (reports, the traffic file, the runtime's
/// own), with room to spare.
const OTHER_FILES: u64 = 64;

/// Raises this process's soft limit on open files to its hard limit, as Go's runtime does
/// at start: every connection is a file, and the soft limit is often 1,024, which a run of
/// a few thousand users in flight would pass. Returns the soft limit now.
pub fn raise_open_files() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The cap a run can hold open under `limit` files, and what to say when it is lower than
/// the `max` asked for. Past the limit a connection fails with "Too many open files", and
/// so would the reports at the end of the run while the pool keeps its connections: a user
/// that waits for a connection instead loses nothing, and its wait is in its latency.
///
/// A cap of N may hold 2N connections: N in use and N idle. hyper's pool races a new
/// connection against the next idle one for a request that finds none idle, and keeps the
/// loser as an idle connection (hyper-util's `connection_for`). 300 users under a cap of 192
/// held 245 connections, and requests failed, at a limit of 256 files.
pub fn fit_to_open_files(max: usize, users: usize, limit: u64) -> (usize, Option<String>) {
    let needed = 2 * max.min(users) as u64 + OTHER_FILES;
    if needed <= limit {
        return (max, None);
    }
    let fits = (limit.saturating_sub(OTHER_FILES) / 2).max(1) as usize;
    let note = format!(
        "loadgen: --max-connections {max} with {users} users may need {needed} open files, above this process's limit of {limit} (`ulimit -Hn`); running with --max-connections {fits}, so that users wait for a connection rather than fail with \"Too many open files\". Raise the hard limit for more connections"
    );
    (fits, Some(note))
}

#[derive(Debug)]
pub struct Connections {
    client: reqwest::Client,
    slots: Semaphore,
}

impl Connections {
    /// A pool of at most `max` requests in flight (and `max` idle connections) whose
    /// requests fail after `timeout` without their whole answer; the command line makes
    /// sure `max` is at least 1.
    pub fn new(max: usize, timeout: Duration) -> Result<Connections, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            // A connection the pool cannot keep is closed when its request is done: the
            // ones opened to race a busy pool (hyper opens one while it waits for an idle
            // one) would otherwise pile up beyond the cap.
            .pool_max_idle_per_host(max)
            .build()?;
        Ok(Connections {
            client,
            slots: Semaphore::new(max),
        })
    }

    /// The client every user sends through: clones share the pool.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits for one of the `max` slots, to hold until the answer's body is read; a request
    /// that had to wait is counted in `live.waited_for_connection`.
    pub async fn slot(&self, live: &Live) -> SemaphorePermit<'_> {
        // A request can fail before it waits for anything (a socket refused with "Too many
        // open files"), so a user with no think time would loop without giving the thread
        // back: the run timer, the progress line and the other users would stall for ever.
        // A unit of tokio's cooperative budget a request makes it yield every 128.
        tokio::task::consume_budget().await;
        if let Ok(permit) = self.slots.try_acquire() {
            return permit;
        }
        live.waited_for_connection.fetch_add(1, Ordering::Relaxed);
        self.slots
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[tokio::test]
    async fn a_request_beyond_the_cap_waits_for_a_slot_and_is_counted() {
        let connections = Connections::new(2, Duration::from_secs(60)).unwrap();
        let live = Live::default();
        let first = connections.slot(&live).await;
        let _second = connections.slot(&live).await;
        assert_eq!(live.waited_for_connection.load(Ordering::Relaxed), 0);
        let third = connections.slot(&live);
        tokio::pin!(third);
        assert!(
            futures_poll_once(third.as_mut()).await.is_none(),
            "a third slot of two was handed out"
        );
        drop(first);
        let _third = third.await;
        assert_eq!(live.waited_for_connection.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cap_that_may_pass_the_open_files_limit_is_lowered_to_one_that_fits() {
        assert_eq!(fit_to_open_files(1024, 20_000, 20_000), (1024, None));
        // 50 users never hold more than 50 requests in flight, whatever the cap.
        assert_eq!(fit_to_open_files(1024, 50, 1024), (1024, None));
        let (fits, note) = fit_to_open_files(1024, 20_000, 1024);
        assert_eq!(fits, 480);
        let note = note.expect("2,112 files > 1,024");
        assert!(note.contains("need 2112 open files"), "{note}");
        assert!(note.contains("limit of 1024"), "{note}");
        assert!(
            note.contains("running with --max-connections 480"),
            "{note}"
        );
        // A limit below the files a run needs besides its connections still leaves one.
        assert_eq!(fit_to_open_files(1024, 20_000, 10).0, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn taking_slots_gives_the_thread_back_to_other_tasks() {
        // As a user whose requests fail at once does: slot after slot, never waiting.
        let connections = Connections::new(4, Duration::from_secs(60)).unwrap();
        let live = Live::default();
        let other_ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&other_ran);
        let other = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let mut taken = 0;
        while taken < 100_000 && !other_ran.load(Ordering::SeqCst) {
            drop(connections.slot(&live).await);
            taken += 1;
        }
        assert!(
            other_ran.load(Ordering::SeqCst),
            "{taken} slots taken and the other task never ran"
        );
        other.await.unwrap();
    }

    /// Polls `future` once: `Some` if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
