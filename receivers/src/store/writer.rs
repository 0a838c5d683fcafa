//! The writer both stores share: inserts go into a queue that one thread drains, committing
//! whatever has queued up (at most `MAX_BATCH`) in one transaction, and each caller waits for
//! its batch's outcome. Closing drops the queue and waits for the last commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{Inserted, MAX_BATCH, Pending, StoreError};
use crate::record::Record;
use contract::Route;

pub(crate) struct Writer {
    /// `None` once closed. Sending is synchronous, so the lock is never held across an await.
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Health,
}

/// Whether the last commit failed; the writer thread reports each commit, and a change is
/// logged once, not every batch.
#[derive(Clone)]
pub(crate) struct Health {
    failing: Arc<AtomicBool>,
    /// The store as logs name it (a path, or a redacted URL).
    store: String,
}

impl Health {
    pub fn commit(&self, error: Option<&str>) {
        let failed = error.is_some();
        if failed != self.failing.swap(failed, Ordering::Relaxed) {
            match error {
                Some(error) => tracing::error!(
                    store = %self.store,
                    "store writes are failing: {error}; consumers back off until a commit succeeds"
                ),
                None => tracing::info!(store = %self.store, "store writes succeed again"),
            }
        }
    }
}

impl Writer {
    /// Starts `run` on a thread of its own with the queue's receiving end.
    pub fn start(
        store: String,
        run: impl FnOnce(mpsc::UnboundedReceiver<Pending>, Health) + Send + 'static,
    ) -> Writer {
        let (queue, receiver) = mpsc::unbounded_channel();
        let health = Health {
            failing: Arc::new(AtomicBool::new(false)),
            store,
        };
        let thread_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(receiver, thread_health))
            .expect("spawn the store writer thread");
        Writer {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
            health,
        }
    }

    /// Queues `record` and waits for its batch's commit.
    pub async fn insert(&self, route: Route, record: Record) -> Result<Inserted, StoreError> {
        let (reply, done) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send((route, record, reply))
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    pub fn failing(&self) -> bool {
        self.health.failing.load(Ordering::Relaxed)
    }

    /// Dropping the sender ends the queue: the thread commits what is left and exits.
    pub fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Adds to `batch` whatever else is queued now, up to `MAX_BATCH`.
pub(crate) fn take_queued(queue: &mut mpsc::UnboundedReceiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}
