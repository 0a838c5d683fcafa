//! Test support shared by the receivers' and loadgen's integration tests (a dev-dependency
//! only, never in the shipped library): a config on port 0 with a queue, stream, consumer,
//! dead-letter destinations and store of its own, and the cleanup that leaves nothing behind
//! in the brokers; and a PostgreSQL database of its own on the project's cluster.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use rand::Rng;

use receivers::Config;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Fails with what to do when a broker is not there: a test that needs a broker must never
/// pass or skip silently without it.
pub fn require_brokers() {
    for (name, addr) in [("RabbitMQ", "127.0.0.1:5672"), ("NATS", "127.0.0.1:4222")] {
        let socket: SocketAddr = addr
            .to_socket_addrs()
            .expect("a literal address")
            .next()
            .expect("one address");
        if let Err(error) = TcpStream::connect_timeout(&socket, Duration::from_secs(2)) {
            panic!(
                "{name} is not reachable at {addr} ({error}); start the brokers with `scripts/brokers up` (scripts/test does it for you)"
            );
        }
    }
}

/// Names no other test uses, so tests run in parallel.
#[derive(Debug, Clone)]
pub struct Names {
    pub queue: String,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
}

impl Names {
    pub fn unique() -> Names {
        let tag = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
        Names {
            queue: format!("test-records-{tag}"),
            stream: format!("TEST_RECORDS_{tag}"),
            subject: format!("test.records.{tag}"),
            consumer: format!("test-consumer-{tag}"),
        }
    }

    /// The receivers' default dead-letter names for these names (see `Config`).
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }

    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DEAD", self.stream)
    }

    pub fn dead_letter_subject(&self) -> String {
        format!("{}.dead", self.subject)
    }

    /// Deletes the queues, exchange and streams from the brokers (blocking; safe to call from Drop).
    pub fn remove_from_brokers(&self) {
        let names = self.clone();
        // A small runtime of its own on a plain thread: callable from sync code and Drop.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(connection) =
                    lapin::Connection::connect(AMQP_URL, Default::default()).await
                    && let Ok(channel) = connection.create_channel().await
                {
                    for queue in [names.queue.clone(), names.dead_letter_queue()] {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), Default::default())
                            .await;
                    }
                    let _ = channel
                        .exchange_delete(
                            names.dead_letter_queue().as_str().into(),
                            Default::default(),
                        )
                        .await;
                    let _ = connection.close(200, "test cleanup".into()).await;
                }
                if let Ok(client) = async_nats::connect(NATS_URL).await {
                    let js = async_nats::jetstream::new(client);
                    for stream in [names.stream.clone(), names.dead_letter_stream()] {
                        let _ = js.delete_stream(&stream).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A config on port 0 everywhere, with `names`, and the store and reports under `dir`.
pub fn config(names: &Names, dir: &Path) -> Config {
    let mut config = Config::defaults();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("a literal address");
    config.balancer_addr = any;
    let paths = &mut config.per_path;
    paths.grpc.entry_addr = any;
    paths.rabbitmq.entry_addr = any;
    paths.nats.entry_addr = any;
    paths.grpc.addr = any;
    paths.rabbitmq.url = AMQP_URL.into();
    paths.nats.url = NATS_URL.into();
    paths.rabbitmq.queue = names.queue.clone();
    paths.nats.stream = names.stream.clone();
    paths.nats.subject = names.subject.clone();
    paths.nats.consumer = names.consumer.clone();
    config.store = receivers::store::StoreLocation::Sqlite(dir.join("store.db"));
    config.reports = dir.join("reports");
    config
}

/// The project's PostgreSQL cluster (`scripts/postgres url`); fails with what to do when it
/// is not up: a test that needs it must never pass or skip silently without it.
pub fn require_postgres() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres");
    let output = std::process::Command::new(&script)
        .arg("url")
        .output()
        .expect("scripts/postgres runs");
    let url = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success() && !url.is_empty(),
        "PostgreSQL is not set up ({}); start it with `scripts/postgres up` (scripts/test does it for you)",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    url
}

/// A database of its own on the project's cluster, dropped when this is.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    admin: String,
    name: String,
}

/// Runs `work` on a small runtime of its own on a plain thread: callable from sync code,
/// async tests and Drop alike.
fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(work)
    })
    .join()
    .expect("the helper thread")
}

/// One statement on the cluster's `rig` database.
fn admin(url: &str, statement: String) -> Result<(), String> {
    let url = url.to_string();
    on_own_runtime(async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        client
            .batch_execute(&statement)
            .await
            .map_err(|e| e.to_string())
    })
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin_url = require_postgres();
        let name = format!(
            "test_{:012x}",
            rand::rng().random::<u64>() & 0xffff_ffff_ffff
        );
        admin(&admin_url, format!("CREATE DATABASE {name}")).expect("create a test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .expect("a URL with a database");
        TestDatabase {
            url: format!("{base}/{name}"),
            admin: admin_url,
            name,
        }
    }

    /// Rows in its `records` table: (id, route, payload), in id order.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let url = self.url.clone();
        on_own_runtime(async move {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                return Vec::new();
            };
            tokio::spawn(connection);
            client
                .query("SELECT id, route, payload FROM records ORDER BY id", &[])
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin(
            &self.admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
