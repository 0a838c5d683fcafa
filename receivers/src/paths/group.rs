//! Group commit at a path's entry: one send is in flight at a time, and the records that
//! queue meanwhile go out together in the next. A broker's fixed cost per message (the
//! NATS server's fsync before its PublishAck), or a gRPC call's HTTP/2 stream and headers,
//! is then paid once for many records; when the path is idle a record goes alone, at once.
//! One send at a time, as the store's writer commits one batch at a time: on the brokers
//! and on gRPC, fewer and larger sends cost less per record than 2 or 4 in flight
//! (docs/performance-notes.md), and a record's wait for the send ahead of it stays under
//! one round trip.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};
use proto::ingest::{BatchedRecord, RecordBatch};
use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Disposition, PublishError, Received, Sink};
use crate::record::Record;
use crate::stats::Stage;
use contract::Route;

/// How a path sends a group: one result per record, in order.
pub trait SendGroup: Send + Sync + 'static {
    fn send(&self, records: Vec<Record>) -> BoxFuture<'_, Vec<Result<Accepted, PublishError>>>;
}

/// How much goes out at once.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Records in one send at most, and their payload bytes (a record over it goes alone).
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Every path's limits.
pub const GROUP_LIMITS: GroupLimits = GroupLimits {
    max_records: 256,
    // A record's own limit (`--body-limit`, 64 KiB by default): a message then holds no
    // more than one record could, so the consumers' prefetch still bounds their memory,
    // and a gRPC call stays far below tonic's 4 MiB limit on a message it decodes.
    max_bytes: 64 * 1024,
};

struct Queued {
    record: Record,
    answer: oneshot::Sender<Result<Accepted, PublishError>>,
}

/// The entry's queue; the task that drains it ends when the queue is dropped. Unbounded,
/// because the entry's in-flight permits (`--max-in-flight`) already bound what it holds.
pub struct Group {
    route: Route,
    queue: mpsc::UnboundedSender<Queued>,
}

impl Group {
    /// Starts the task that sends what queues (so it needs a Tokio runtime).
    pub fn start(route: Route, sender: Arc<dyn SendGroup>, limits: GroupLimits) -> Group {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(drain(sender, queued, limits));
        Group { route, queue }
    }

    /// Resolves once `record`'s send was accepted, or says why not.
    pub async fn publish(&self, record: Record) -> Result<Accepted, PublishError> {
        let stopped = || PublishError::NotConnected {
            route: self.route,
            why: "the entry's sender has stopped".into(),
        };
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Queued { record, answer })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Several records as the one message that carries them.
pub fn record_batch(records: Vec<Record>) -> RecordBatch {
    RecordBatch {
        records: batched(records),
    }
}

/// Records as a batch holds them.
pub fn batched(records: Vec<Record>) -> Vec<BatchedRecord> {
    records
        .into_iter()
        .map(|r| BatchedRecord {
            id: r.id,
            payload: r.payload.to_vec(),
            accepted_at_us: r.accepted_at_us,
        })
        .collect()
}

/// One record of a received batch, and what became of it.
pub struct BatchOutcome {
    pub id: String,
    pub accepted_at_us: i64,
    pub payload: Bytes,
    pub disposition: Disposition,
}

/// The store side of a batch: checks and stores every record at once, so the store
/// commits them together, booking the message's hop for each. `redelivered` and `answered`
/// are `Sink::receive`'s.
pub async fn receive_batch(
    sink: &Sink,
    route: Route,
    records: Vec<BatchedRecord>,
    hop: Option<u64>,
    redelivered: bool,
    answered: bool,
) -> Vec<BatchOutcome> {
    join_all(records.into_iter().map(|record| async move {
        if let Some(hop) = hop {
            sink.stats.latency(route, Stage::Hop, hop);
        }
        let payload = Bytes::from(record.payload);
        let received = Received {
            id: Some(record.id.clone()),
            payload: payload.clone(),
            accepted_at_us: (record.accepted_at_us > 0).then_some(record.accepted_at_us),
            redelivered,
        };
        let disposition = sink.receive(route, received, answered).await;
        BatchOutcome {
            id: record.id,
            accepted_at_us: record.accepted_at_us,
            payload,
            disposition,
        }
    }))
    .await
}

/// Sends what has queued, up to the limits, once the send ahead of it is answered. A record
/// whose caller stopped waiting (the entry's publish timeout answered 503) is not sent.
async fn drain(
    sender: Arc<dyn SendGroup>,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    limits: GroupLimits,
) {
    let mut held: Option<Queued> = None;
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => match queued.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.record.payload.len();
        let mut group = vec![first];
        while group.len() < limits.max_records {
            let Ok(next) = queued.try_recv() else { break };
            if bytes + next.record.payload.len() > limits.max_bytes {
                held = Some(next);
                break;
            }
            bytes += next.record.payload.len();
            group.push(next);
        }
        group.retain(|q| !q.answer.is_closed());
        if group.is_empty() {
            continue;
        }
        let (records, answers): (Vec<Record>, Vec<_>) =
            group.into_iter().map(|q| (q.record, q.answer)).unzip();
        let results = sender.send(records).await;
        for (answer, result) in answers.into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Records each group's size; every send takes 20 ms, as a broker's fsync might.
    struct Slow {
        sizes: Mutex<Vec<usize>>,
    }

    impl SendGroup for Slow {
        fn send(&self, records: Vec<Record>) -> BoxFuture<'_, Vec<Result<Accepted, PublishError>>> {
            Box::pin(async move {
                self.sizes.lock().unwrap().push(records.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                records
                    .iter()
                    .map(|r| {
                        Ok(Accepted {
                            duplicate: r.id.ends_with("dup"),
                            dropped_by_broker: false,
                        })
                    })
                    .collect()
            })
        }
    }

    fn record(id: &str, bytes: usize) -> Record {
        Record {
            id: id.into(),
            payload: vec![b' '; bytes].into(),
            accepted_at_us: 1,
        }
    }

    #[tokio::test]
    async fn records_queued_behind_a_send_go_together_and_each_gets_its_own_answer() {
        let slow = Arc::new(Slow {
            sizes: Mutex::new(Vec::new()),
        });
        let limits = GroupLimits {
            max_records: 64,
            max_bytes: 1000,
        };
        let group = Arc::new(Group::start(Route::Nats, slow.clone(), limits));
        let first = {
            let group = Arc::clone(&group);
            tokio::spawn(async move { group.publish(record("r0", 10)).await })
        };
        // Let the first send start, then queue 30 behind it: one of them is too big to go
        // with the others.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut rest = Vec::new();
        for n in 1..=30 {
            let group = Arc::clone(&group);
            let (id, bytes) = match n {
                7 => ("r7dup".to_string(), 10),
                15 => ("r15".to_string(), 990),
                n => (format!("r{n}"), 10),
            };
            rest.push(tokio::spawn(async move {
                group.publish(record(&id, bytes)).await
            }));
        }
        assert!(!first.await.unwrap().unwrap().duplicate);
        let mut duplicates = 0;
        for answer in rest {
            duplicates += usize::from(answer.await.unwrap().unwrap().duplicate);
        }
        assert_eq!(duplicates, 1, "r7dup's own answer reached it");
        let sizes = slow.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 31);
        assert_eq!(
            sizes[0], 1,
            "the first record went alone, at once: {sizes:?}"
        );
        assert!(
            sizes.len() <= 4 && sizes.iter().all(|&n| n <= 30),
            "the 30 queued records went in a few sends, each under the byte limit: {sizes:?}"
        );
    }
}
