//! The NATS path's group commit against the real broker and store: records that queue at
//! the entry while earlier publishes await their acks travel together in one message, and
//! each is still stored once and counted once (a resend among them is a duplicate); a
//! batch from another publisher is checked record by record, and one that does not decode
//! is dead-lettered whole.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::{Harness, consumer_backlog, eventually, stored_ids, stored_rows};
use futures::StreamExt;
use prost::Message as _;
use proto::ingest::{BatchedRecord, RecordBatch};
use receivers::Route;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);
const RECORDS: usize = 300;

fn nats(stats: &Value, field: &str) -> u64 {
    stats["routes"]["nats"][field].as_u64().unwrap()
}

/// POSTs `keys` to the NATS entry, 64 at a time; every answer must be 201.
async fn post_all(h: &Harness, keys: Vec<String>) {
    let url = h.entry(Route::Nats);
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
    assert!(refused.is_empty(), "not 201: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_queued_at_the_nats_entry_share_messages_and_are_each_stored_once() {
    let mut h = Harness::start().await;
    let keys: Vec<String> = (0..RECORDS).map(|n| format!("group-{n:04}")).collect();
    post_all(&h, keys.clone()).await;
    let store = h.store_path();
    eventually(SETTLE, "every record stored", || {
        stored_rows(&store).len() == RECORDS
    })
    .await;
    let ids = stored_ids(&store);
    assert_eq!(ids, keys);

    // Fewer messages than records reached the stream: some carried several.
    let js = jetstream::new(async_nats::connect(testkit::NATS_URL).await.unwrap());
    let mut stream = js.get_stream(&h.names.stream).await.unwrap();
    let messages = stream.info().await.unwrap().state.messages;
    assert!(
        messages < RECORDS as u64,
        "{messages} messages for {RECORDS} records"
    );

    // Resent, 50 of them are duplicates, counted once each, wherever they were caught: by
    // the broker (sent alone) or by the store (sent in a batch).
    post_all(&h, keys[..50].to_vec()).await;
    let stats = h
        .stats_until("50 duplicates on the NATS path", |stats| {
            nats(stats, "duplicates") == 50 && nats(stats, "in_flight") == 0
        })
        .await;
    assert_eq!(
        (nats(&stats, "accepted"), nats(&stats, "stored")),
        (RECORDS as u64 + 50, RECORDS as u64),
        "{stats}"
    );
    assert_eq!(stored_rows(&store).len(), RECORDS);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_batch_is_checked_record_by_record_and_a_broken_one_dead_lettered_whole() {
    let mut h = Harness::start().await;
    let names = h.names.clone();
    let js = jetstream::new(async_nats::connect(testkit::NATS_URL).await.unwrap());
    let record = |id: &str, payload: &[u8]| BatchedRecord {
        id: id.into(),
        payload: payload.to_vec(),
        accepted_at_us: 0,
    };
    let batch = RecordBatch {
        records: vec![
            record("batch-ok-1", b"{\"n\":1}"),
            record("batch-bad", b"not json"),
            record("batch-ok-2", b"{\"n\":2}"),
        ],
    };
    for (msg_id, count, body) in [
        ("foreign-batch", "3", batch.encode_to_vec()),
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
    eventually(SETTLE, "the two valid records stored", || {
        stored_rows(&store).len() >= 2
    })
    .await;
    h.stats_until("2 dead-lettered on the NATS path", |stats| {
        nats(stats, "dead_lettered") == 2
    })
    .await;
    let ids = stored_ids(&store);
    assert_eq!(ids, vec!["batch-ok-1", "batch-ok-2"]);

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
