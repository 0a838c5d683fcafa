//! Every address, broker, name and limit the receivers use, from flags or environment
//! variables, with defaults that run everything on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::http::entry::EntryLimits;
use crate::paths::PathArgs;
use crate::serve::Limits;
use crate::store::StoreLocation;
use contract::Route;

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

    /// Each path's own flags (entry address, broker, names), from its file under paths/.
    #[command(flatten)]
    pub per_path: PathArgs,

    /// Where records are stored: an SQLite file (one process), or a PostgreSQL URL such as
    /// postgres://USER:PASSWORD@127.0.0.1:15432/rig, shared by many (see scripts/postgres)
    #[arg(
        long,
        env = "RECEIVERS_STORE",
        default_value = "receivers.db",
        hide_env_values = true
    )]
    pub store: StoreLocation,

    /// Folder for reports/<run-id>/ written at shutdown
    #[arg(long, env = "RECEIVERS_REPORTS", default_value = "reports")]
    pub reports: PathBuf,

    /// Name of this run's report folder [default: receivers-<UTC time>-<random>]
    #[arg(long, env = "RECEIVERS_RUN_ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// Upstream entry for the balancer, ROUTE=URL, repeatable [default: this process's entries]
    #[arg(long = "upstream", value_name = "ROUTE=URL")]
    pub upstreams: Vec<String>,

    /// Balancer weight, ROUTE=N, repeatable [default: 1 each]
    #[arg(long = "weight", value_name = "ROUTE=N")]
    pub weights: Vec<String>,

    /// Largest accepted body, bytes
    #[arg(long, default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Requests each entry handles at once; more get 503
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Milliseconds to wait for a middleware's acknowledgement before answering 503
    #[arg(long, default_value_t = 5000)]
    pub publish_timeout_ms: u64,

    /// How often the broker connections are checked while nothing else goes through them:
    /// RabbitMQ's heartbeat (unless --amqp-url sets `heartbeat=`) and NATS's ping. A
    /// connection the broker has not answered on for 2 (RabbitMQ) or 3 (NATS) intervals is
    /// dropped and made again; the brokers' own defaults wait 2 minutes or more
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub broker_heartbeat: Duration,

    /// Every listener: time a client has to send its request head (HTTP/1)
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Every listener: time a client has to send its whole body (408 after it)
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Every listener: a connection with nothing read or written for this long is closed
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Every listener: connections open at once; more wait to be accepted
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_connections: usize,

    /// Every listener: requests open at once on one HTTP/2 connection (gRPC clients); the
    /// client holds the next until one ends
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// How long shutdown lets open requests finish before it cuts them; the consumers then
    /// stop, the store commits and the reports are written all the same
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Run no consumers and no gRPC server (entries only)
    #[arg(long, conflicts_with = "no_entries")]
    pub no_consumers: bool,

    /// Run no HTTP entries and no balancer (consumers and gRPC server only)
    #[arg(long)]
    pub no_entries: bool,

    /// Run no front door (another balancer, such as nginx, spreads over the entries)
    #[arg(long)]
    pub no_balancer: bool,

    /// Test only: each entry answer waits (FACTOR - 1) times its own handling time (to tens
    /// of microseconds), so a build FACTOR times slower, such as 1.3, can be staged to prove
    /// the CI gate catches it
    #[arg(long, value_name = "FACTOR", env = "RECEIVERS_TEST_SLOWDOWN", default_value_t = 1.0, hide = true, value_parser = parse_slowdown)]
    pub test_slowdown: f64,
}

fn parse_slowdown(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && (1.0..=100.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{text}: a slowdown factor from 1 to 100, such as 2"
        )),
    }
}

impl Config {
    /// The defaults, for tests and embedding: as if run with no flags and no environment.
    pub fn defaults() -> Config {
        Config::parse_from(["receivers"])
    }

    /// What every listener allows a client.
    pub fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
        }
    }

    /// What each path's entry allows a request.
    pub fn entry_limits(&self) -> EntryLimits {
        EntryLimits {
            max_in_flight: self.max_in_flight,
            body_limit: self.body_limit,
            body_read_timeout: self.body_read_timeout,
            publish_timeout: self.publish_timeout(),
            slowdown: self.test_slowdown,
        }
    }

    /// How long an entry waits for its path's durable acceptance.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
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

/// A run id names a folder under --reports: one plain name, never a path.
pub fn parse_run_id(text: &str) -> Result<String, String> {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if text.is_empty() || text.len() > 100 || !plain || text.starts_with('.') {
        return Err(format!(
            "'{text}' is not a folder name: use 1 to 100 letters, digits, '-', '_' or '.', not starting with '.' (no '/', no '..'), such as nightly-42"
        ));
    }
    Ok(text.to_string())
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a time such as 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("'{text}': the unit must be ms, s or m, as in 10s")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("'{text}' must be longer than 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_everything_on_loopback() {
        let c = Config::defaults();
        assert_eq!(c.paths, Route::ALL.to_vec());
        assert_eq!(c.balancer_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.per_path.grpc.url(), "http://127.0.0.1:50051");
        assert_eq!(c.body_limit, 65536);
    }

    #[test]
    fn each_path_keeps_its_flags() {
        let c = Config::parse_from([
            "receivers",
            "--grpc-entry-addr",
            "127.0.0.1:9081",
            "--grpc-addr",
            "127.0.0.1:9051",
            "--amqp-url",
            "amqp://u:p@127.0.0.1:9672/%2f",
            "--queue",
            "q",
            "--nats-url",
            "nats://127.0.0.1:9222",
            "--stream",
            "S",
            "--subject",
            "s.x",
            "--nats-ack-wait-secs",
            "5",
        ]);
        let p = &c.per_path;
        assert_eq!(p.grpc.entry_addr.port(), 9081);
        assert_eq!(p.grpc.url(), "http://127.0.0.1:9051");
        assert_eq!(p.rabbitmq.url, "amqp://u:p@127.0.0.1:9672/%2f");
        assert_eq!(p.rabbitmq.dead_letter_queue(), "q.dead");
        assert_eq!(p.nats.url, "nats://127.0.0.1:9222");
        assert_eq!(p.nats.dead_letter_stream(), "S_DEAD");
        assert_eq!(p.nats.dead_letter_subject(), "s.x.dead");
        assert_eq!(p.nats.nats_ack_wait_secs, 5);
    }

    #[test]
    fn one_path_per_process() {
        let c = Config::parse_from(["receivers", "--paths", "nats"]);
        assert_eq!(c.paths, vec![Route::Nats]);
    }

    #[test]
    fn run_ids_are_folder_names_not_paths() {
        assert!(Config::try_parse_from(["receivers", "--run-id", "nightly-42"]).is_ok());
        for bad in ["../x", "a/b", "..", ".hidden", "a\\b", ""] {
            let error = Config::try_parse_from(["receivers", "--run-id", bad])
                .expect_err(bad)
                .to_string();
            assert!(error.contains("--run-id"), "{bad}: {error}");
        }
    }

    #[test]
    fn timeouts_take_units() {
        let c = Config::parse_from(["receivers", "--shutdown-timeout", "500ms"]);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(Config::defaults().shutdown_timeout, Duration::from_secs(10));
        let c = Config::parse_from(["receivers", "--broker-heartbeat", "3s"]);
        assert_eq!(c.broker_heartbeat, Duration::from_secs(3));
        assert_eq!(Config::defaults().broker_heartbeat, Duration::from_secs(10));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
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
