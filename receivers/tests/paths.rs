//! The three paths against real RabbitMQ and NATS on loopback: records reach the store,
//! the front door spreads them, duplicates are stored once, bad input stores nothing, and
//! `/stats` agrees with the store.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, eventually, stored_ids, stored_rows};
use receivers::Route;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_path_takes_a_record_to_the_store() {
    let mut h = Harness::start().await;
    for route in Route::ALL {
        let body =
            format!("{{\"name\":\"Graeme\",\"msg\":\"via {route}\",\"ü\":[1,{{\"n\":null}}]}}");
        let key = format!("each-path-{route}");
        let (status, answer) = h.post(&h.entry(route), &key, &body).await;
        assert_eq!(status, 201, "{route}: {answer}");
        assert_eq!(
            answer,
            json!({"id": key, "route": route.name(), "duplicate": false})
        );
    }
    let store = h.store_path();
    eventually(SETTLE, "all three records stored", || {
        stored_rows(&store).len() == 3
    })
    .await;
    for (id, route, payload) in stored_rows(&store) {
        assert_eq!(id, format!("each-path-{route}"));
        let value: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(value["msg"], format!("via {route}"));
        assert_eq!(value["ü"], json!([1, {"n": null}]));
    }
    // GET /records pages through a run's ids in id order.
    let first = h.get_json("/records?prefix=each-path-&limit=2").await;
    assert_eq!(first["count"], 2, "{first}");
    assert_eq!(first["next"], "each-path-nats", "{first}");
    let second = h
        .get_json("/records?prefix=each-path-&after=each-path-nats")
        .await;
    assert_eq!(second["records"][0]["id"], "each-path-rabbitmq", "{second}");
    assert!(second.get("next").is_none(), "the last page: {second}");
    // GET / reads them back, newest first, with counts per route.
    let read = h.get_json("/").await;
    assert_eq!(read["counts"], json!({"grpc": 1, "rabbitmq": 1, "nats": 1}));
    assert_eq!(read["latest"].as_array().unwrap().len(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_spreads_records_over_all_three_paths() {
    let h = Harness::start().await;
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..30 {
        let (status, answer) = h
            .post(
                &h.balancer(),
                &format!("spread-{n}"),
                &format!("{{\"n\":{n}}}"),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        *answered
            .entry(answer["route"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = Route::ALL
        .iter()
        .map(|r| (r.name().to_string(), 10))
        .collect();
    assert_eq!(answered, expected, "round-robin over three healthy paths");
    let store = h.store_path();
    eventually(SETTLE, "30 records stored", || {
        stored_rows(&store).len() == 30
    })
    .await;
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for (_, route, _) in stored_rows(&store) {
        *stored.entry(route).or_default() += 1;
    }
    assert_eq!(stored, expected);
    // POST /<route> picks one path.
    let (status, answer) = h
        .post(&format!("{}/nats", h.balancer()), "picked", "{}")
        .await;
    assert_eq!((status, answer["route"].as_str()), (201, Some("nats")));
    let (status, _) = h
        .post(&format!("{}/kafka", h.balancer()), "nope", "{}")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_is_stored_once() {
    let h = Harness::start().await;
    for route in Route::ALL {
        for _ in 0..3 {
            let (status, _) = h
                .post(&h.entry(route), &format!("dup-{route}"), "{\"a\":1}")
                .await;
            assert_eq!(status, 201);
        }
    }
    // The same key through two different paths is still one record.
    let (status, _) = h.post(&h.entry(Route::Nats), "dup-grpc", "{\"a\":1}").await;
    assert_eq!(status, 201);
    let store = h.store_path();
    eventually(SETTLE, "every send settled", || {
        let stats = futures::executor::block_on(h.get_json("/stats"));
        Route::ALL
            .iter()
            .all(|r| stats["routes"][r.name()]["in_flight"] == 0)
    })
    .await;
    let ids = stored_ids(&store);
    assert_eq!(ids, vec!["dup-grpc", "dup-nats", "dup-rabbitmq"]);
    let (_, again) = h.post(&h.entry(Route::Grpc), "dup-grpc", "{\"a\":1}").await;
    assert_eq!(again["duplicate"], true, "gRPC knows the id is stored");
    let stats = h.get_json("/stats").await;
    let duplicates: u64 = Route::ALL
        .iter()
        .map(|r| stats["routes"][r.name()]["duplicates"].as_u64().unwrap())
        .sum();
    assert!(duplicates >= 6, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_stores_nothing() {
    let h = Harness::start_with(|c| c.body_limit = 1024).await;
    let big = format!("{{\"big\":\"{}\"}}", "x".repeat(2000));
    let cases: [(&str, Option<&str>, &str, u16, &str); 6] = [
        (
            "malformed",
            Some("application/json"),
            "{\"a\":",
            400,
            "malformed_json",
        ),
        (
            "array",
            Some("application/json"),
            "[1,2]",
            400,
            "not_an_object",
        ),
        ("empty", Some("application/json"), "", 400, "empty_body"),
        (
            "oversize",
            Some("application/json"),
            &big,
            413,
            "payload_too_large",
        ),
        (
            "text",
            Some("text/plain"),
            "{\"a\":1}",
            415,
            "unsupported_media_type",
        ),
        ("no-type", None, "{\"a\":1}", 415, "unsupported_media_type"),
    ];
    let targets: Vec<String> = Route::ALL
        .iter()
        .map(|r| h.entry(*r))
        .chain([h.balancer()])
        .collect();
    for target in &targets {
        for (name, content_type, body, status, code) in &cases {
            let mut request = h
                .http
                .post(target)
                .header("idempotency-key", format!("bad-{name}"))
                .body(body.to_string());
            if let Some(content_type) = content_type {
                request = request.header("content-type", *content_type);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), *status, "{target} {name}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["error"], *code, "{target} {name}: {answer}");
            assert!(
                answer["message"].as_str().is_some_and(|m| m.len() > 20),
                "{answer}"
            );
        }
    }
    let (status, answer) = h.post(&h.entry(Route::Nats), "has space", "{}").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_idempotency_key"))
    );
    // A good record afterwards proves the pipes work; it must be the only one stored.
    let (status, _) = h
        .post(&h.entry(Route::Rabbitmq), "good", "{\"ok\":true}")
        .await;
    assert_eq!(status, 201);
    let store = h.store_path();
    eventually(SETTLE, "the good record stored", || {
        !stored_rows(&store).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // anything wrongly published would land by now
    let ids = stored_ids(&store);
    assert_eq!(ids, vec!["good"]);
    let stats = h.get_json("/stats").await;
    let rejected: u64 = Route::ALL
        .iter()
        .map(|r| stats["routes"][r.name()]["rejected"].as_u64().unwrap())
        .sum();
    assert_eq!(
        rejected,
        3 * 6 + 6 + 1,
        "each case at each entry, each via the front door, the bad key: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_agree_with_the_store_and_reports_are_written() {
    let mut h = Harness::start().await;
    for route in Route::ALL {
        for n in 0..5 {
            let (status, _) = h
                .post(&h.entry(route), &format!("{route}-{n}"), "{\"x\":1}")
                .await;
            assert_eq!(status, 201);
        }
    }
    let store = h.store_path();
    eventually(SETTLE, "15 stored", || stored_rows(&store).len() == 15).await;
    // The counters follow the commits within moments; poll rather than race them.
    let deadline = std::time::Instant::now() + SETTLE;
    let stats = loop {
        let stats = h.get_json("/stats").await;
        if Route::ALL
            .iter()
            .all(|r| stats["routes"][r.name()]["stored"] == 5)
        {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never caught up: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let schema: Value = serde_json::from_str(include_str!("../schema/stats.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&stats)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for route in Route::ALL {
        let r = &stats["routes"][route.name()];
        assert_eq!(
            (
                r["accepted"].as_u64(),
                r["stored"].as_u64(),
                r["in_flight"].as_u64()
            ),
            (Some(5), Some(5), Some(0)),
            "{route}: {r}"
        );
        for stage in ["ingress", "hop", "e2e"] {
            assert_eq!(r["latency"][stage]["count"], 5, "{route} {stage}");
        }
    }
    let metrics = h.get_text("/metrics").await;
    assert!(
        metrics.contains("receivers_records_total{route=\"nats\",outcome=\"stored\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("receivers_latency_seconds_count{route=\"grpc\",stage=\"e2e\"} 5"),
        "{metrics}"
    );
    assert_eq!(h.get_json("/health").await["status"], "ok");

    let dir = h.stop().await;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("receivers.json")).unwrap())
            .unwrap();
    assert_eq!(report["routes"]["rabbitmq"]["stored"], 5);
    for route in Route::ALL {
        for stage in ["ingress", "hop", "e2e"] {
            let hgrm = std::fs::read_to_string(dir.join(format!("{route}-{stage}.hgrm"))).unwrap();
            assert!(
                hgrm.contains("Total count    =            5"),
                "{route}-{stage}: {hgrm}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_gets_503_never_201() {
    // Nothing listens on port 9 of loopback: both brokers are down for this instance.
    let mut h = Harness::start_unready(|c| {
        c.per_path.rabbitmq.url = "amqp://guest:guest@127.0.0.1:9/%2f".into();
        c.per_path.nats.url = "nats://127.0.0.1:9".into();
        c.paths = vec![Route::Rabbitmq, Route::Nats];
        c.publish_timeout_ms = 1000;
    })
    .await;
    for route in [Route::Rabbitmq, Route::Nats] {
        let response = h
            .http
            .post(h.entry(route))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("down-{route}"))
            .body("{\"a\":1}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503, "{route}");
        assert_eq!(response.headers()["retry-after"], "1", "{route}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["message"].as_str().unwrap().contains(route.name()),
            "{answer}"
        );
    }
    let (status, answer) = h.post(&h.balancer(), "down-any", "{}").await;
    assert_eq!(status, 503, "{answer}");
    let ready = h
        .http
        .get(format!("{}/ready", h.balancer()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["nats"], false);
    assert_eq!(ready["checks"]["rabbitmq"], false);
    assert!(stored_rows(&h.store_path()).is_empty());
    h.stop().await;
}
