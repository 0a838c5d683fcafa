//! The original deployment as real processes: `scripts/topology` starts nginx in front of
//! three receivers (one path each) sharing a PostgreSQL database. Records sent through
//! nginx are spread over the three paths and stored once each in the shared store; with one
//! entry stopped, nginx retries on the others and still nothing is lost.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use testkit::{Names, TestDatabase, require_brokers};

/// `scripts/topology <command>` with this test's ports, names, state and store.
struct Topology {
    env: Vec<(&'static str, String)>,
    names: Names,
}

impl Topology {
    fn run(&self, command: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = Command::new(root.join("scripts/topology"))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("scripts/topology runs");
        assert!(
            output.status.success(),
            "scripts/topology {command} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.run("down");
        self.names.remove_from_brokers();
    }
}

/// A base port with the three after it free (the balancer and the entries). Below Linux's
/// ephemeral range (32768 and up), so the receivers' own outgoing connections to the brokers
/// and the database cannot take one of them before they listen.
fn free_base_port() -> u16 {
    loop {
        let base = rand::rng().random_range(20_000..32_000);
        if (base..base + 4).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, id: &str) -> (u16, String) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", id)
        .body(format!("{{\"id\":\"{id}\"}}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        answer["route"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_three_receivers_sharing_postgres_stores_each_record_once() {
    require_brokers();
    let db = TestDatabase::create();
    let state = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let tag = format!("-t{:08x}", rand::rng().random::<u32>());
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let topology = Topology {
        env: vec![
            ("TOPOLOGY_BASE_PORT", base.to_string()),
            ("TOPOLOGY_GRPC_PORT", grpc_port.to_string()),
            ("TOPOLOGY_TAG", tag.clone()),
            ("TOPOLOGY_STATE", state.path().display().to_string()),
            (
                "TOPOLOGY_REPORTS",
                state.path().join("reports").display().to_string(),
            ),
            ("TOPOLOGY_STORE", db.url.clone()),
            ("TOPOLOGY_BIN", env!("CARGO_BIN_EXE_receivers").to_string()),
        ],
        names: Names {
            queue: format!("records{tag}"),
            stream: format!("RECORDS{tag}"),
            subject: format!("records.ingest{tag}"),
            consumer: format!("receivers{tag}"),
        },
    };
    topology.run("up");
    let http = reqwest::Client::new();
    let nginx = format!("http://127.0.0.1:{base}/");

    let mut routes: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..30 {
        let (status, route) = post(&http, &nginx, &format!("topo-{n:03}")).await;
        assert_eq!(status, 201, "record {n}");
        *routes.entry(route).or_default() += 1;
    }
    assert_eq!(
        routes.keys().collect::<Vec<_>>(),
        ["grpc", "nats", "rabbitmq"],
        "nginx spreads over the three processes: {routes:?}"
    );

    // One entry gone: nginx retries the others, with the same key.
    let pid = std::fs::read_to_string(state.path().join("rabbitmq.pid")).unwrap();
    assert!(
        Command::new("kill")
            .args(["-INT", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", base + 2)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the rabbitmq receivers did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 30..45 {
        let (status, route) = post(&http, &nginx, &format!("topo-{n:03}")).await;
        assert_eq!(status, 201, "record {n} with the rabbitmq entry down");
        assert_ne!(route, "rabbitmq");
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = db.rows();
        if rows.len() >= 45 {
            break rows;
        }
        assert!(Instant::now() < deadline, "{} of 45 stored", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    let expected: Vec<String> = (0..45).map(|n| format!("topo-{n:03}")).collect();
    assert_eq!(ids, expected, "each record stored once in the shared store");
    drop(topology);
}
