//! Every address, broker, name and limit the receivers use, from flags or environment
//! variables, with defaults that run everything on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::route::Route;

/// Front-door balancer and three middleware paths (gRPC, RabbitMQ, NATS JetStream) into a store.
#[derive(Debug, Clone, Parser)]
#[command(name = "receivers", version)]
pub struct Config {
    /// Paths to run, comma-separated (one per process reproduces the original deployment)
    #[arg(
        long,
        env = "RECEIVERS_PATHS",
        value_enum,
        value_delimiter = ',',
        default_value = "grpc,rabbitmq,nats"
    )]
    pub paths: Vec<Route>,

    /// Front-door balancer: POST / spreads over the paths, POST /<route> picks one
    #[arg(long, env = "BALANCER_ADDR", default_value = "127.0.0.1:8080")]
    pub balancer_addr: SocketAddr,

    /// HTTP entry of the gRPC path
    #[arg(long, env = "GRPC_ENTRY_ADDR", default_value = "127.0.0.1:8081")]
    pub grpc_entry_addr: SocketAddr,

    /// HTTP entry of the RabbitMQ path
    #[arg(long, env = "RABBITMQ_ENTRY_ADDR", default_value = "127.0.0.1:8082")]
    pub rabbitmq_entry_addr: SocketAddr,

    /// HTTP entry of the NATS path
    #[arg(long, env = "NATS_ENTRY_ADDR", default_value = "127.0.0.1:8083")]
    pub nats_entry_addr: SocketAddr,

    /// gRPC server (the gRPC path's store side)
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// gRPC server the gRPC entry calls [default: http://<grpc-addr>]
    #[arg(long, env = "GRPC_URL")]
    pub grpc_url: Option<String>,

    /// RabbitMQ
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// NATS with JetStream
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// SQLite file of stored records
    #[arg(long, env = "RECEIVERS_STORE", default_value = "receivers.db")]
    pub store: PathBuf,

    /// Folder for reports/<run-id>/ written at shutdown
    #[arg(long, env = "RECEIVERS_REPORTS", default_value = "reports")]
    pub reports: PathBuf,

    /// Name of this run's report folder [default: receivers-<UTC time>-<random>]
    #[arg(long, env = "RECEIVERS_RUN_ID")]
    pub run_id: Option<String>,

    /// Upstream entry for the balancer, ROUTE=URL, repeatable [default: this process's entries]
    #[arg(long = "upstream", value_name = "ROUTE=URL")]
    pub upstreams: Vec<String>,

    /// Balancer weight, ROUTE=N, repeatable [default: 1 each]
    #[arg(long = "weight", value_name = "ROUTE=N")]
    pub weights: Vec<String>,

    /// Durable RabbitMQ queue
    #[arg(long, env = "RABBITMQ_QUEUE", default_value = "records")]
    pub queue: String,

    /// JetStream stream
    #[arg(long, env = "NATS_STREAM", default_value = "RECORDS")]
    pub stream: String,

    /// Subject the NATS entry publishes on
    #[arg(long, env = "NATS_SUBJECT", default_value = "records.ingest")]
    pub subject: String,

    /// Durable NATS pull consumer
    #[arg(long, env = "NATS_CONSUMER", default_value = "receivers")]
    pub consumer: String,

    /// RabbitMQ consumer prefetch
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,

    /// NATS consumer max ack pending
    #[arg(long, default_value_t = 1024)]
    pub max_ack_pending: i64,

    /// Seconds NATS waits for the consumer's ack before redelivering
    #[arg(long, default_value_t = 30)]
    pub nats_ack_wait_secs: u64,

    /// Largest accepted body, bytes
    #[arg(long, default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Requests each entry handles at once; more get 503
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Milliseconds to wait for a middleware's acknowledgement before answering 503
    #[arg(long, default_value_t = 5000)]
    pub publish_timeout_ms: u64,

    /// Run no consumers and no gRPC server (entries only)
    #[arg(long, conflicts_with = "no_entries")]
    pub no_consumers: bool,

    /// Run no HTTP entries and no balancer (consumers and gRPC server only)
    #[arg(long)]
    pub no_entries: bool,
}

impl Config {
    /// The defaults, for tests and embedding: as if run with no flags and no environment.
    pub fn defaults() -> Config {
        Config::parse_from(["receivers"])
    }

    pub fn grpc_url(&self) -> String {
        self.grpc_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.grpc_addr))
    }

    /// `ROUTE=VALUE` pairs, each route named once.
    pub fn pairs(items: &[String], flag: &str) -> Result<Vec<(Route, String)>, String> {
        items
            .iter()
            .map(|item| {
                let (route, value) = item.split_once('=').ok_or_else(|| {
                    format!(
                        "{flag} {item}: write it as ROUTE=VALUE, such as nats=http://10.0.0.3:8083"
                    )
                })?;
                let route = Route::from_name(route.trim()).ok_or_else(|| {
                    format!("{flag} {item}: '{route}' is not a route; use grpc, rabbitmq or nats")
                })?;
                Ok((route, value.trim().to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_everything_on_loopback() {
        let c = Config::defaults();
        assert_eq!(c.paths, Route::ALL.to_vec());
        assert_eq!(c.balancer_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.grpc_url(), "http://127.0.0.1:50051");
        assert_eq!(c.body_limit, 65536);
    }

    #[test]
    fn one_path_per_process() {
        let c = Config::parse_from(["receivers", "--paths", "nats"]);
        assert_eq!(c.paths, vec![Route::Nats]);
    }

    #[test]
    fn route_pairs() {
        let pairs = Config::pairs(&["nats=http://h:1".into()], "--upstream").unwrap();
        assert_eq!(pairs, vec![(Route::Nats, "http://h:1".to_string())]);
        assert!(
            Config::pairs(&["kafka=1".into()], "--weight")
                .unwrap_err()
                .contains("kafka")
        );
        assert!(
            Config::pairs(&["nats".into()], "--weight")
                .unwrap_err()
                .contains("ROUTE=VALUE")
        );
    }
}
