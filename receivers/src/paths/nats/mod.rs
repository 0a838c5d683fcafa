//! The NATS path: the entry publishes to a file-storage JetStream stream and waits for the
//! PublishAck (the publish is awaited twice: once to send, once for the ack); a durable pull
//! consumer checks and stores each message and acks it after the commit. A message that
//! fails the checks is copied to a dead-letter stream and terminated, never stored.
//!
//! The record id travels in `Record-Id`; `Nats-Msg-Id` is the id plus a digest of the body,
//! so the broker drops a resend of the same record but lets a reused id with another body
//! through to the store, which counts it as a conflict instead of losing it silently.
//!
//! The server syncs every message to disk before its PublishAck, whatever its size, so the
//! records that queue at the entry while its last publish awaits its ack go in one message,
//! a `RecordBatch` (header `Records`): group commit. The store's id check, not the broker,
//! then catches a resend among them.

mod consumer;
mod publisher;
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

pub use publisher::NatsPublisher;
pub use setup::{SetupError, check_setup};

use super::{EntrySide, PathContext, Publisher, StartedPath};
use crate::redact::redact;
use contract::Route;

/// The NATS path's flags.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "NATS path")]
pub struct NatsArgs {
    /// HTTP entry of the NATS path
    #[arg(
        id = "nats_entry_addr",
        long = "nats-entry-addr",
        env = "NATS_ENTRY_ADDR",
        default_value = "127.0.0.1:8083"
    )]
    pub entry_addr: SocketAddr,

    /// NATS with JetStream
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,

    /// JetStream stream
    #[arg(long, env = "NATS_STREAM", default_value = "RECORDS")]
    pub stream: String,

    /// Subject the NATS entry publishes on
    #[arg(long, env = "NATS_SUBJECT", default_value = "records.ingest")]
    pub subject: String,

    /// Durable NATS pull consumer
    #[arg(long, env = "NATS_CONSUMER", default_value = "receivers")]
    pub consumer: String,

    /// JetStream stream for NATS messages that fail the checks [default: <stream>_DEAD]
    #[arg(long, env = "NATS_DEAD_LETTER_STREAM")]
    pub dead_letter_stream: Option<String>,

    /// Subject of that stream [default: <subject>.dead]
    #[arg(long, env = "NATS_DEAD_LETTER_SUBJECT")]
    pub dead_letter_subject: Option<String>,

    /// NATS consumer max ack pending
    #[arg(long, default_value_t = 1024)]
    pub max_ack_pending: i64,

    /// Seconds NATS waits for the consumer's ack before redelivering
    #[arg(long, default_value_t = 30)]
    pub nats_ack_wait_secs: u64,
}

impl NatsArgs {
    /// The stream that messages failing the checks are copied to.
    pub fn dead_letter_stream(&self) -> String {
        self.dead_letter_stream
            .clone()
            .unwrap_or_else(|| format!("{}_DEAD", self.stream))
    }

    pub fn dead_letter_subject(&self) -> String {
        self.dead_letter_subject
            .clone()
            .unwrap_or_else(|| format!("{}.dead", self.subject))
    }
}

/// Connects (and keeps reconnecting), checks the stream and consumer on the server, then
/// starts the consumer (the store side) and the entry's publisher on the one client.
pub async fn start(args: &NatsArgs, context: &PathContext) -> anyhow::Result<StartedPath> {
    let config = NatsConfig::new(args, context.broker_heartbeat);
    tracing::info!(url = %redact(&config.url), stream = %config.stream, "NATS path starting");
    let client = connect(&config).await.map_err(|e| anyhow!(e))?;
    check_on_start(&client, &config, context.consumers).await?;
    if context.consumers {
        consumer::spawn_consumer(
            client.clone(),
            config.clone(),
            context.sink.clone(),
            context.shutdown.clone(),
            context.tracker.clone(),
        );
    }
    let entry = context.entries.then(|| EntrySide {
        publisher: Arc::new(NatsPublisher::new(client, config)) as Arc<dyn Publisher>,
        addr: args.entry_addr,
        flag: "--nats-entry-addr",
    });
    Ok(StartedPath {
        route: Route::Nats,
        entry,
        server: None,
    })
}

/// An existing stream or consumer that does not keep the NATS path's promise is refused at
/// start-up. NATS being down is not an error: the path answers 503 until it is back, and
/// checks again on reconnecting.
async fn check_on_start(
    client: &async_nats::Client,
    config: &NatsConfig,
    with_consumer: bool,
) -> anyhow::Result<()> {
    let connected = async {
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), connected)
        .await
        .is_err()
    {
        tracing::warn!(url = %redact(&config.url), "NATS is not reachable yet; the NATS path answers 503 until it is");
        return Ok(());
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        check_setup(client, config, with_consumer),
    )
    .await
    {
        Ok(Err(mismatch @ SetupError::Mismatch { .. })) => Err(anyhow!(mismatch)),
        Ok(Err(SetupError::Unreachable(why))) => {
            tracing::warn!("JetStream set-up not checked yet: {}", redact(&why));
            Ok(())
        }
        Err(_) => {
            tracing::warn!("JetStream did not answer within 10 s; set-up checked on reconnect");
            Ok(())
        }
        Ok(Ok(())) => Ok(()),
    }
}

/// What the publisher and the consumer connect with.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    /// The JetStream stream records travel through (file storage).
    pub stream: String,
    /// The subject the entry publishes on; the stream captures it.
    pub subject: String,
    /// The durable pull consumer's name.
    pub consumer: String,
    /// Messages delivered and not yet acked at most: bounds the consumer's memory.
    pub max_ack_pending: i64,
    /// How long an unacked delivery waits before NATS redelivers it.
    pub ack_wait: Duration,
    /// Where messages that fail the checks are copied (a stream of its own, file storage).
    pub dead_letter_stream: String,
    pub dead_letter_subject: String,
    /// How often the client pings the server when nothing else comes in; after 3 pings
    /// without an answer it drops the connection and makes another.
    pub ping_interval: Duration,
}

impl NatsConfig {
    pub fn new(args: &NatsArgs, ping_interval: Duration) -> NatsConfig {
        NatsConfig {
            url: args.url.clone(),
            stream: args.stream.clone(),
            subject: args.subject.clone(),
            consumer: args.consumer.clone(),
            max_ack_pending: args.max_ack_pending,
            ack_wait: Duration::from_secs(args.nats_ack_wait_secs),
            dead_letter_stream: args.dead_letter_stream(),
            dead_letter_subject: args.dead_letter_subject(),
            ping_interval,
        }
    }
}

pub(super) const RECORD_ID: &str = "Record-Id";
pub(super) const ACCEPTED_AT: &str = "Accepted-At-Us";
pub(super) const PUBLISHED_AT: &str = "Published-At-Us";
pub(super) const DEAD_LETTER_REASON: &str = "Dead-Letter-Reason";
/// On a message that carries a `RecordBatch`: how many records it holds.
pub(super) const RECORDS: &str = "Records";

/// Connects a client that keeps reconnecting by itself, including at first connect, so
/// the receivers start (and answer 503 on this path) while NATS is still down.
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("receivers")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        // A connection that went silent (a partition, a half-open socket) is otherwise
        // noticed only after async-nats's default 60 s pings, three of them.
        .ping_interval(config.ping_interval)
        .connect(config.url.as_str())
        .await
        .map_err(|e| {
            format!(
                "NATS at {}: {}",
                redact(&config.url),
                redact(&e.to_string())
            )
        })
}
