//! The users' one pool of connections and its cap (`--max-connections`): at most that many
//! requests in flight from this process, over at most that many kept-alive connections.
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

/// How long a request may take: Goose's default, which the users had before loadgen built
/// their client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Files a run holds besides its connections (reports, the traffic file, the runtime's
/// own), with room to spare.
const OTHER_FILES: u64 = 64;

/// Raises this process's soft limit on open files to its hard limit, as Go's runtime does
/// at start: every connection is a file, and the soft limit is often 1,024, which a run of
/// a few thousand users in flight would pass. Returns the soft limit now.
pub fn raise_open_files() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The warning when `users` in flight over at most `max` connections may need more files
/// than `limit`.
pub fn open_files_note(max: usize, users: usize, limit: u64) -> Option<String> {
    let needed = max.min(users) as u64 + OTHER_FILES;
    (needed > limit).then(|| {
        format!(
            "loadgen: --max-connections {max} with {users} users may need {needed} open files, above this process's limit of {limit} (`ulimit -Hn`); past it, requests fail with \"Too many open files\". Raise the hard limit, or pass --max-connections {}",
            limit.saturating_sub(OTHER_FILES).max(1)
        )
    })
}

#[derive(Debug)]
pub struct Connections {
    client: reqwest::Client,
    slots: Semaphore,
}

impl Connections {
    /// A pool of at most `max` connections; the command line makes sure `max` is at least 1.
    pub fn new(max: usize) -> Result<Connections, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
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
    use super::*;

    #[tokio::test]
    async fn a_request_beyond_the_cap_waits_for_a_slot_and_is_counted() {
        let connections = Connections::new(2).unwrap();
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
    fn the_open_files_note_speaks_only_when_the_cap_may_pass_the_limit() {
        assert_eq!(open_files_note(1024, 20_000, 20_000), None);
        // 50 users never hold more than 50 connections, whatever the cap.
        assert_eq!(open_files_note(1024, 50, 1024), None);
        let note = open_files_note(1024, 20_000, 1024).expect("1,088 files > 1,024");
        assert!(note.contains("limit of 1024"), "{note}");
        assert!(note.contains("--max-connections 960"), "{note}");
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
