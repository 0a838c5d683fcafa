//! Test support: receivers started in-process on port 0 against the real brokers, with a
//! queue, stream, consumer and SQLite file of their own, removed from the brokers on drop.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use receivers::serve::{Limits, serve};
use receivers::{Config, Route, Running};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use testkit::{Names, require_brokers};

/// A receivers instance for one test.
pub struct Harness {
    pub running: Option<Running>,
    pub names: Names,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// A config on port 0 everywhere, with its own names, store and reports.
pub fn test_config(names: &Names, dir: &Path) -> Config {
    let mut config = testkit::config(names, dir);
    config.publish_timeout_ms = 5000;
    config
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Harness {
        let harness = Self::start_unready(adjust).await;
        harness.wait_ready().await;
        harness
    }

    /// Starts without waiting for `/ready` (for tests where a broker is meant to be down).
    pub async fn start_unready(adjust: impl FnOnce(&mut Config)) -> Harness {
        require_brokers();
        let names = Names::unique();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&names, dir.path());
        adjust(&mut config);
        let running = receivers::start(config).await.expect("receivers start");
        Harness {
            running: Some(running),
            names,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn balancer(&self) -> String {
        format!("http://{}", self.running().addrs.balancer.unwrap())
    }

    pub fn entry(&self, route: Route) -> String {
        format!("http://{}", self.running().addrs.entry(route).unwrap())
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    /// Polls `/ready` until every path is connected, or fails after 30 s.
    pub async fn wait_ready(&self) {
        let url = format!("{}/ready", self.balancer());
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = self.http.get(&url).send().await {
                let ok = response.status().is_success();
                last = response.text().await.unwrap_or_default();
                if ok {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("receivers not ready within 30 s: {last}");
    }

    /// POSTs `body` with an Idempotency-Key; returns status and JSON answer.
    pub async fn post(&self, url: &str, key: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.balancer()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `/stats` until `check` holds; fails with `what` and the last snapshot after 30 s.
    pub async fn stats_until(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.get_json("/stats").await;
            if check(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "not within 30 s: {what}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.balancer()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops gracefully and returns the report folder.
    pub async fn stop(&mut self) -> PathBuf {
        let running = self.running.take().unwrap();
        running.shutdown();
        running.wait().await.expect("clean shutdown")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
        self.names.remove_from_brokers();
    }
}

/// Rows in the store: (id, route, payload).
pub fn stored_rows(store: &Path) -> Vec<(String, String, String)> {
    let connection = rusqlite::Connection::open(store).unwrap();
    let mut statement = connection
        .prepare("SELECT id, route, payload FROM records ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The ids in the store, in order.
pub fn stored_ids(store: &Path) -> Vec<String> {
    stored_rows(store)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
}

/// The NATS consumer's (pending, ack pending): (0, 0) once every message is settled.
pub async fn consumer_backlog(js: &async_nats::jetstream::Context, names: &Names) -> (u64, usize) {
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(&names.stream)
        .await
        .unwrap()
        .get_consumer(&names.consumer)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    (info.num_pending, info.num_ack_pending)
}

/// Polls `check` until it returns true, failing with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(check(), "not within {limit:?}: {what}");
}

/// The listener limits of a test server: short, so a stuck test fails soon.
pub const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(10),
    max_connections: 64,
    max_streams: 64,
};

/// Serves `app` as the receivers serve theirs (`serve.rs`) on a port of its own until
/// `stop`; returns its base URL.
pub async fn serve_on_port_0(app: Router, stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        app,
        LIMITS,
        stop.clone(),
        Duration::from_secs(1),
    ));
    url
}

/// POSTs `body` under the Idempotency-Key `id`; true on a 2xx within 10 s. A refusal or a
/// failed connection is false: the caller decides whether that is wrong.
pub async fn post_accepted(http: &reqwest::Client, url: &str, id: &str, body: String) -> bool {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", id)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    matches!(response, Ok(r) if r.status().is_success())
}
