//! Group commit on the broker paths (NATS, RabbitMQ) against the real brokers and store:
//! records that queue at an entry while earlier publishes await their acks travel together
//! in one message, and each is still stored once and counted once (a resend among them is a
//! duplicate), on the gRPC path too (its calls: `grpc_batch.rs`); a batch from another
//! publisher is checked record by record, and one that does not decode is dead-lettered
//! whole.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::{Harness, consumer_backlog, eventually, stored_ids, stored_rows};
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use prost::Message as _;
use proto::ingest::{BatchedRecord, RecordBatch};
use receivers::Route;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);
const RECORDS: usize = 300;
const BROKERS: [Route; 2] = [Route::Nats, Route::Rabbitmq];

fn count(stats: &Value, route: Route, field: &str) -> u64 {
    stats["routes"][route.name()][field].as_u64().unwrap()
}

fn keys(route: Route, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{route}-{i:04}")).collect()
}

/// POSTs `keys` to `route`'s entry, 64 at a time; every answer must be 201.
async fn post_all(h: &Harness, route: Route, keys: Vec<String>) {
    let url = h.entry(route);
    let statuses: Vec<(String, u16)> = futures::stream::iter(keys)
        .map(|key| {
            let url = url.clone();
            async move {
                let (status, _) = h.post(&url, &key, &format!("{{\"key\":\"{key}\"}}")).await;
                (key, status)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused: Vec<_> = statuses.iter().filter(|(_, s)| *s != 201).collect();
    assert!(refused.is_empty(), "{route}: not 201: {refused:?}");
}

/// Messages in RabbitMQ's `queue` now.
async fn queue_depth(queue: &str) -> u32 {
    let amqp = lapin::Connection::connect(testkit::AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = amqp.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap()
        .message_count();
    let _ = amqp.close(200, "done".into()).await;
    depth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_share_messages() {
    // No consumers: what the entries published stays in the broker, to be counted.
    let mut h = Harness::start_with(|c| {
        c.paths = BROKERS.to_vec();
        c.no_consumers = true;
    })
    .await;
    for route in BROKERS {
        post_all(&h, route, keys(route, RECORDS)).await;
    }
    let js = jetstream::new(async_nats::connect(testkit::NATS_URL).await.unwrap());
    let mut stream = js.get_stream(&h.names.stream).await.unwrap();
    let nats_messages = stream.info().await.unwrap().state.messages;
    let rabbit_messages = queue_depth(&h.names.queue).await;
    assert!(
        nats_messages < RECORDS as u64 && u64::from(rabbit_messages) < RECORDS as u64,
        "{RECORDS} records a path went in {nats_messages} NATS and {rabbit_messages} RabbitMQ messages"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_are_each_stored_once_and_a_resend_counted_once() {
    let mut h = Harness::start().await;
    for route in Route::ALL {
        post_all(&h, route, keys(route, RECORDS)).await;
    }
    let store = h.store_path();
    eventually(SETTLE, "every record stored", || {
        stored_rows(&store).len() == Route::ALL.len() * RECORDS
    })
    .await;
    let mut expected: Vec<String> = Route::ALL
        .iter()
        .flat_map(|&route| keys(route, RECORDS))
        .collect();
    expected.sort();
    assert_eq!(stored_ids(&store), expected);

    // Resent, 50 a path are duplicates, counted once each, wherever they were caught: by
    // the NATS server (a record sent alone) or by the store (one sent in a batch).
    for route in Route::ALL {
        post_all(&h, route, keys(route, 50)).await;
    }
    let stats = h
        .stats_until("50 duplicates on each path", |stats| {
            Route::ALL
                .iter()
                .all(|&r| count(stats, r, "duplicates") == 50 && count(stats, r, "in_flight") == 0)
        })
        .await;
    for route in Route::ALL {
        assert_eq!(
            (
                count(&stats, route, "accepted"),
                count(&stats, route, "stored")
            ),
            (RECORDS as u64 + 50, RECORDS as u64),
            "{route}: {stats}"
        );
    }
    assert_eq!(stored_rows(&store).len(), Route::ALL.len() * RECORDS);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_batch_is_checked_record_by_record_and_a_broken_one_dead_lettered_whole() {
    let mut h = Harness::start().await;
    let names = h.names.clone();
    let js = jetstream::new(async_nats::connect(testkit::NATS_URL).await.unwrap());
    let batch = |prefix: &str| {
        let record = |id: &str, payload: &[u8]| BatchedRecord {
            id: format!("{prefix}{id}"),
            payload: payload.to_vec(),
            accepted_at_us: 0,
        };
        RecordBatch {
            records: vec![
                record("batch-ok-1", b"{\"n\":1}"),
                record("batch-bad", b"not json"),
                record("batch-ok-2", b"{\"n\":2}"),
            ],
        }
    };
    let amqp = lapin::Connection::connect(testkit::AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = amqp.create_channel().await.unwrap();
    for (count, body) in [
        (3, batch("rabbitmq-").encode_to_vec()),
        (2, b"not a RecordBatch".to_vec()),
    ] {
        let mut headers = FieldTable::default();
        headers.insert("records".into(), AMQPValue::LongLongInt(count));
        let properties = lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        channel
            .basic_publish(
                "".into(),
                names.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = amqp.close(200, "done".into()).await;
    for (msg_id, count, body) in [
        ("foreign-batch", "3", batch("").encode_to_vec()),
        ("foreign-broken", "2", b"not a RecordBatch".to_vec()),
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        headers.insert("Records", count);
        js.publish_with_headers(names.subject.clone(), headers, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let store = h.store_path();
    eventually(SETTLE, "the four valid records stored", || {
        stored_rows(&store).len() >= 4
    })
    .await;
    h.stats_until("2 dead-lettered on each broker path", |stats| {
        BROKERS
            .iter()
            .all(|&r| count(stats, r, "dead_lettered") == 2)
    })
    .await;
    let ids = stored_ids(&store);
    assert_eq!(
        ids,
        vec![
            "batch-ok-1",
            "batch-ok-2",
            "rabbitmq-batch-ok-1",
            "rabbitmq-batch-ok-2"
        ]
    );
    assert_eq!(queue_depth(&names.dead_letter_queue()).await, 2);
    assert_eq!(queue_depth(&names.queue).await, 0);

    // The bad record alone, with its id and reason; the broken message whole, with its own.
    let dead = js.get_stream(names.dead_letter_stream()).await.unwrap();
    let mut found = Vec::new();
    for sequence in 1..=2 {
        let message = dead.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        found.push((
            header("Record-Id"),
            header("Dead-Letter-Reason"),
            message.payload.to_vec(),
        ));
    }
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                String::new(),
                "undecodable_batch".to_string(),
                b"not a RecordBatch".to_vec()
            ),
            (
                "batch-bad".to_string(),
                "malformed_json".to_string(),
                b"not json".to_vec()
            ),
        ]
    );
    // Both messages are settled: nothing pending, nothing left to loop.
    assert_eq!(consumer_backlog(&js, &names).await, (0, 0));
    h.stop().await;
}
