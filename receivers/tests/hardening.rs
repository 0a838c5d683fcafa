//! What a 201 survives, against hostile input and the real brokers: records that reach a
//! broker or the gRPC port without passing the entry are checked alike and dead-lettered,
//! never stored; a reused key with another body is a counted conflict; `/ready` sees a dead
//! gRPC server; an existing stream or consumer that would weaken the promise is refused.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::{Harness, consumer_backlog, eventually, stored_ids, stored_rows};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use proto::ingest::StoreRequest;
use proto::ingest::ingest_client::IngestClient;
use receivers::Route;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);

/// Messages in `queue` now (a passive declare does not create it).
async fn queue_depth(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

fn route_count(stats: &Value, route: Route, field: &str) -> u64 {
    stats["routes"][route.name()][field].as_u64().unwrap()
}

/// `field` for grpc, rabbitmq and nats, in that order.
fn per_route(stats: &Value, field: &str) -> [u64; 3] {
    Route::ALL.map(|r| route_count(stats, r, field))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_counted_and_never_stored() {
    let mut h = Harness::start().await;
    let names = h.names.clone();

    // A foreign AMQP publisher, straight onto the queue.
    let amqp = lapin::Connection::connect(testkit::AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = amqp.create_channel().await.unwrap();
    let rabbit_messages: [(Option<&str>, &[u8]); 4] = [
        (Some("poison-r1"), b"not json at all"),
        (Some("poison-r2"), b"[1,2,3]"),
        (None, b"{\"no\":\"message id\"}"),
        (Some("valid-rabbitmq"), b"{\"ok\":1}"),
    ];
    for (id, body) in rabbit_messages {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = id {
            properties = properties.with_message_id(id.into());
        }
        channel
            .basic_publish(
                "".into(),
                names.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // A foreign NATS publisher, straight onto the subject.
    let nats = async_nats::connect(testkit::NATS_URL).await.unwrap();
    let js = jetstream::new(nats);
    let nats_messages: [(Option<&str>, &[u8]); 4] = [
        (Some("poison-n1"), b"not json at all"),
        (Some("poison-n2"), b"\"a string\""),
        (None, b"{\"no\":\"id\"}"),
        (Some("valid-nats"), b"{\"ok\":2}"),
    ];
    for (id, body) in nats_messages {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = id {
            headers.insert("Nats-Msg-Id", id);
        }
        js.publish_with_headers(names.subject.clone(), headers, body.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // A direct gRPC caller.
    let grpc = format!("http://{}", h.running().addrs.grpc.unwrap());
    let mut client = IngestClient::connect(grpc).await.unwrap();
    for (id, payload) in [("", "{\"a\":1}"), ("poison-g1", "not json")] {
        let status = client
            .store(StoreRequest {
                id: id.into(),
                payload: payload.into(),
                accepted_at_us: 0,
                sent_at_us: 0,
            })
            .await
            .expect_err("an invalid record is refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{id}: {status:?}"
        );
    }
    client
        .store(StoreRequest {
            id: "valid-grpc".into(),
            payload: "{\"ok\":3}".into(),
            accepted_at_us: 0,
            sent_at_us: 0,
        })
        .await
        .unwrap();

    let store = h.store_path();
    eventually(SETTLE, "the valid records stored", || {
        stored_rows(&store).len() >= 3
    })
    .await;
    h.stats_until("dead_lettered per route is 2, 3, 3", |stats| {
        per_route(stats, "dead_lettered") == [2, 3, 3]
    })
    .await;
    // Every poison message sits where a person can look at it, once; nothing is left to loop.
    assert_eq!(queue_depth(&channel, &names.dead_letter_queue()).await, 3);
    assert_eq!(queue_depth(&channel, &names.queue).await, 0);
    let mut dead = js.get_stream(names.dead_letter_stream()).await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 3);
    let reason = dead.get_raw_message(1).await.unwrap();
    assert!(
        reason.headers.get("Dead-Letter-Reason").is_some(),
        "{:?}",
        reason.headers
    );
    assert_eq!(consumer_backlog(&js, &names).await, (0, 0));
    let ids = stored_ids(&store);
    assert_eq!(ids, vec!["valid-grpc", "valid-nats", "valid-rabbitmq"]);
    // Still exactly as many: a consumer that looped would count them again.
    let stats = h.get_json("/stats").await;
    assert_eq!(route_count(&stats, Route::Rabbitmq, "dead_lettered"), 3);
    let metrics = h.get_text("/metrics").await;
    assert!(
        metrics.contains("receivers_records_total{route=\"nats\",outcome=\"dead_lettered\"} 3"),
        "{metrics}"
    );
    let _ = amqp.close(200, "done".into()).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_with_another_body_is_a_conflict_and_the_first_body_stays() {
    let mut h = Harness::start().await;
    for route in Route::ALL {
        let key = format!("reused-{route}");
        let (status, _) = h.post(&h.entry(route), &key, "{\"body\":\"first\"}").await;
        assert_eq!(status, 201, "{route}");
        // Let the first reach the store, so the second meets it there.
        let store = h.store_path();
        eventually(SETTLE, "the first body stored", || {
            stored_rows(&store).iter().any(|(id, _, _)| *id == key)
        })
        .await;
        let (status, answer) = h.post(&h.entry(route), &key, "{\"body\":\"second\"}").await;
        match route {
            // The gRPC path can still answer: the server refuses, the entry says 409.
            Route::Grpc => {
                assert_eq!(
                    (status, answer["error"].as_str()),
                    (409, Some("conflict")),
                    "{answer}"
                )
            }
            // The brokers accepted it; the store side finds the conflict and counts it.
            _ => assert_eq!(status, 201, "{route}: {answer}"),
        }
        let (status, answer) = h.post(&h.entry(route), &key, "{\"body\":\"first\"}").await;
        assert_eq!(
            status, 201,
            "the same body again is a plain duplicate: {answer}"
        );
    }
    let stats = h
        .stats_until("one conflict per route", |stats| {
            per_route(stats, "conflicts") == [1, 1, 1]
        })
        .await;
    assert_eq!(per_route(&stats, "in_flight"), [0, 0, 0], "{stats}");
    for (_, _, payload) in stored_rows(&h.store_path()) {
        assert_eq!(payload, "{\"body\":\"first\"}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_notices_a_dead_grpc_server() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut h = Harness::start_unready(|c| {
        c.paths = vec![Route::Grpc];
        c.no_consumers = true;
        c.per_path.grpc.url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let response = h
        .http
        .get(format!("{}/ready", h.entry(Route::Grpc)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["checks"]["grpc"], false, "{answer}");
    assert_eq!(answer["checks"]["store"], true, "{answer}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_or_consumer_that_weakens_the_promise_is_refused_at_start_up() {
    testkit::require_brokers();
    let names = testkit::Names::unique();
    let js = jetstream::new(async_nats::connect(testkit::NATS_URL).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: names.stream.clone(),
        subjects: vec![names.subject.clone()],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&names, dir.path());
    config.paths = vec![Route::Nats];
    let error = receivers::start(config.clone())
        .await
        .err()
        .expect("a memory stream is refused");
    assert!(format!("{error:#}").contains("Memory"), "{error:#}");

    js.delete_stream(&names.stream).await.unwrap();
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(names.consumer.clone()),
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let error = receivers::start(config)
        .await
        .err()
        .expect("a consumer without explicit acks is refused");
    assert!(format!("{error:#}").contains("Explicit"), "{error:#}");
    names.remove_from_brokers();
}
