//! Test support shared by the receivers' and loadgen's integration tests (a dev-dependency
//! only, never in the shipped library): a config on port 0 with a queue, stream, consumer,
//! dead-letter destinations and store of its own, and the cleanup that leaves nothing behind
//! in the brokers.

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
    config.grpc_entry_addr = any;
    config.rabbitmq_entry_addr = any;
    config.nats_entry_addr = any;
    config.grpc_addr = any;
    config.amqp_url = AMQP_URL.into();
    config.nats_url = NATS_URL.into();
    config.store = dir.join("store.db");
    config.reports = dir.join("reports");
    config.queue = names.queue.clone();
    config.stream = names.stream.clone();
    config.subject = names.subject.clone();
    config.consumer = names.consumer.clone();
    config
}
