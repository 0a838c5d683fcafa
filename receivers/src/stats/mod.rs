//! Counters and latency histograms per route: workers bump atomics and send latency samples
//! over a channel; one collector task owns every histogram, so no lock is ever shared. The
//! snapshot is served as `/stats`, encoded for Prometheus by `prometheus`, and written at
//! shutdown by `reports`.

pub mod prometheus;
pub mod reports;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use contract::Route;
pub use contract::{RouteStats, SCHEMA_VERSION, Stage, StageStats, StatsSnapshot};
use hdr::new_histogram;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use crate::store::{InsertOutcome, Inserted};

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    /// Duplicates that came from a broker redelivering, not from a client resending: they
    /// must not count against in-flight, which tracks accepted sends.
    redelivered_duplicates: AtomicU64,
    conflicts: AtomicU64,
    /// Conflicts the client was told of (409): that send was never accepted, so it does not
    /// settle an accepted one.
    answered_conflicts: AtomicU64,
    dead_lettered: AtomicU64,
    store_failures: AtomicU64,
    /// Records that reached the store without passing an entry (a foreign publisher on the
    /// broker, a direct gRPC client) and so settle no accepted send: in-flight leaves them
    /// out, or a foreign publisher would hide the entry's own records still on their way.
    foreign_settled: AtomicU64,
}

/// What happened to one record at the store side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    Duplicate {
        redelivered: bool,
    },
    /// The id is stored with another body; `answered` when the client got 409 for it.
    Conflict {
        answered: bool,
    },
    /// Failed the record checks: sent where a person can inspect it, never stored.
    DeadLettered,
}

type Sample = (Route, Stage, u64);
type Query = oneshot::Sender<HashMap<(Route, Stage), Histogram<u64>>>;

/// The handle every worker holds; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Stats {
    counters: [Counters; 3],
    samples: mpsc::UnboundedSender<Sample>,
    queries: mpsc::Sender<Query>,
    pub instance_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub enabled: Vec<Route>,
}

impl Stats {
    /// Starts the collector task; it ends when the last `Stats` handle is dropped.
    pub fn start(instance_id: String, enabled: Vec<Route>) -> Stats {
        let (samples, mut sample_rx) = mpsc::unbounded_channel::<Sample>();
        let (queries, mut query_rx) = mpsc::channel::<Query>(16);
        tokio::spawn(async move {
            let mut histograms: HashMap<(Route, Stage), Histogram<u64>> = HashMap::new();
            loop {
                tokio::select! {
                    // Samples first: a snapshot must include every sample sent before it was asked.
                    biased;
                    sample = sample_rx.recv() => match sample {
                        Some((route, stage, micros)) => {
                            let h = histograms.entry((route, stage)).or_insert_with(new_histogram);
                            h.saturating_record(micros.max(1));
                        }
                        None => break,
                    },
                    Some(reply) = query_rx.recv() => {
                        let _ = reply.send(histograms.clone());
                    }
                }
            }
        });
        Stats {
            counters: Default::default(),
            samples,
            queries,
            instance_id,
            started_at: chrono::Utc::now(),
            enabled,
        }
    }

    pub fn latency(&self, route: Route, stage: Stage, micros: u64) {
        let _ = self.samples.send((route, stage, micros));
    }

    pub fn accepted(&self, route: Route) {
        self.counters[route.index()]
            .accepted
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, route: Route) {
        self.counters[route.index()]
            .rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A received record the store did not commit (it will be redelivered).
    pub fn store_failed(&self, route: Route) {
        self.counters[route.index()]
            .store_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_outcome(&self, route: Route, outcome: StoreOutcome) {
        let c = &self.counters[route.index()];
        match outcome {
            StoreOutcome::Stored => c.stored.fetch_add(1, Ordering::Relaxed),
            StoreOutcome::Duplicate { redelivered } => {
                if redelivered {
                    c.redelivered_duplicates.fetch_add(1, Ordering::Relaxed);
                }
                c.duplicates.fetch_add(1, Ordering::Relaxed)
            }
            StoreOutcome::Conflict { answered } => {
                if answered {
                    c.answered_conflicts.fetch_add(1, Ordering::Relaxed);
                }
                c.conflicts.fetch_add(1, Ordering::Relaxed)
            }
            StoreOutcome::DeadLettered => c.dead_lettered.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Books one store insert: stored, duplicate or conflict and, for a first store, the
    /// end-to-end latency from the entry's acceptance to the commit. `answered`: the client
    /// is told of a conflict (gRPC answers while it can).
    /// A committed record. `accepted_at_us` is the entry's time of acceptance, `None` for a
    /// record that did not pass an entry: it has no end-to-end latency, and settles no
    /// accepted send.
    pub fn stored(
        &self,
        route: Route,
        inserted: Inserted,
        accepted_at_us: Option<i64>,
        redelivered: bool,
        answered: bool,
    ) {
        let outcome = match inserted.outcome {
            InsertOutcome::New => {
                // The sample goes first: a snapshot that counts this record then holds its latency.
                if let Some(accepted_at_us) = accepted_at_us {
                    let e2e = (inserted.stored_at_us - accepted_at_us).max(0) as u64;
                    self.latency(route, Stage::E2e, e2e);
                }
                StoreOutcome::Stored
            }
            InsertOutcome::Duplicate => StoreOutcome::Duplicate { redelivered },
            InsertOutcome::Conflict => StoreOutcome::Conflict { answered },
        };
        let settles = match outcome {
            StoreOutcome::Duplicate { redelivered } => !redelivered,
            StoreOutcome::Conflict { answered } => !answered,
            _ => true,
        };
        if accepted_at_us.is_none() && settles {
            self.counters[route.index()]
                .foreign_settled
                .fetch_add(1, Ordering::Relaxed);
        }
        self.store_outcome(route, outcome);
    }

    /// Every counter and histogram as `/stats` serves it.
    pub async fn snapshot(&self) -> StatsSnapshot {
        let (reply, answer) = oneshot::channel();
        let histograms = match self.queries.send(reply).await {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => HashMap::new(),
        };
        let routes = Route::ALL
            .into_iter()
            .map(|route| {
                let c = &self.counters[route.index()];
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let (accepted, stored, duplicates, conflicts) = (
                    load(&c.accepted),
                    load(&c.stored),
                    load(&c.duplicates),
                    load(&c.conflicts),
                );
                let settled = (stored + duplicates + conflicts).saturating_sub(
                    load(&c.redelivered_duplicates)
                        + load(&c.answered_conflicts)
                        + load(&c.foreign_settled),
                );
                let latency = Stage::ALL
                    .into_iter()
                    .map(|stage| {
                        let h = histograms
                            .get(&(route, stage))
                            .cloned()
                            .unwrap_or_else(new_histogram);
                        (stage, StageStats::of(&h))
                    })
                    .collect();
                let stats = RouteStats {
                    enabled: self.enabled.contains(&route),
                    accepted,
                    stored,
                    duplicates,
                    conflicts,
                    dead_lettered: load(&c.dead_lettered),
                    store_failures: load(&c.store_failures),
                    rejected: load(&c.rejected),
                    in_flight: accepted.saturating_sub(settled),
                    latency,
                };
                (route, stats)
            })
            .collect();
        StatsSnapshot {
            schema_version: SCHEMA_VERSION,
            instance_id: self.instance_id.clone(),
            started_at: self.started_at.to_rfc3339(),
            uptime_secs: (chrono::Utc::now() - self.started_at).num_milliseconds() as f64 / 1000.0,
            routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_and_percentiles_come_back_in_the_snapshot() {
        let stats = Stats::start("t".into(), vec![Route::Nats]);
        for _ in 0..3 {
            stats.accepted(Route::Nats);
        }
        stats.store_outcome(Route::Nats, StoreOutcome::Stored);
        stats.store_outcome(Route::Nats, StoreOutcome::Duplicate { redelivered: true });
        stats.store_outcome(Route::Nats, StoreOutcome::DeadLettered);
        stats.store_outcome(Route::Grpc, StoreOutcome::Conflict { answered: true });
        stats.rejected(Route::Grpc);
        for micros in 1..=1000 {
            stats.latency(Route::Nats, Stage::E2e, micros * 10);
        }
        let snapshot = stats.snapshot().await;
        let nats = &snapshot.routes[&Route::Nats];
        assert_eq!((nats.accepted, nats.stored, nats.duplicates), (3, 1, 1));
        assert_eq!(
            nats.in_flight, 2,
            "a redelivered duplicate does not settle an accepted send"
        );
        assert!(nats.enabled && !snapshot.routes[&Route::Grpc].enabled);
        assert_eq!(snapshot.routes[&Route::Grpc].rejected, 1);
        assert_eq!(nats.dead_lettered, 1);
        let grpc = &snapshot.routes[&Route::Grpc];
        assert_eq!((grpc.conflicts, grpc.in_flight), (1, 0));

        // Records from a foreign publisher are stored, but settle none of the entry's.
        let foreign = Inserted {
            outcome: InsertOutcome::New,
            stored_at_us: 10,
        };
        for _ in 0..5 {
            stats.stored(Route::Nats, foreign, None, false, false);
        }
        let nats = &stats.snapshot().await.routes[&Route::Nats];
        assert_eq!((nats.stored, nats.in_flight), (6, 2));
        assert_eq!(
            nats.latency[&Stage::E2e].count,
            1000,
            "no end-to-end latency without the entry's time"
        );
        let e2e = &nats.latency[&Stage::E2e];
        assert_eq!(e2e.count, 1000);
        assert!((4.9..=5.1).contains(&e2e.p50_ms), "p50 {}", e2e.p50_ms);
        assert!((9.9..=10.1).contains(&e2e.max_ms), "max {}", e2e.max_ms);
        assert!(
            e2e.histogram.starts_with("HISTFAAA"),
            "{}",
            &e2e.histogram[..12]
        );
    }
}
