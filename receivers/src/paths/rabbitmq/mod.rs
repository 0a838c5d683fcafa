//! The RabbitMQ path: the entry publishes a persistent, mandatory message on a confirm
//! channel to a durable queue and waits for the broker's Ack; a consumer with bounded
//! prefetch checks and stores each message and acks it only after the commit. A message
//! that fails the checks is published (confirmed) to the dead-letter exchange, whose queue
//! a person can inspect, and is never stored. Both sides reconnect alone.
//!
//! The records that queue at the entry while its last publish awaits its confirm go in
//! one message, a `RecordBatch` (header `records`): group commit. The consumer checks,
//! stores and dead-letters each of its records on its own.

mod consumer;
mod publisher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event, ExchangeKind};

pub use publisher::RabbitPublisher;

use super::{EntrySide, PathContext, Publisher, StartedPath};
use crate::redact::redact;
use contract::Route;

/// The RabbitMQ path's flags.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "RabbitMQ path")]
pub struct RabbitArgs {
    /// HTTP entry of the RabbitMQ path
    #[arg(
        id = "rabbitmq_entry_addr",
        long = "rabbitmq-entry-addr",
        env = "RABBITMQ_ENTRY_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub entry_addr: SocketAddr,

    /// RabbitMQ
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub url: String,

    /// Durable RabbitMQ queue
    #[arg(long, env = "RABBITMQ_QUEUE", default_value = "records")]
    pub queue: String,

    /// RabbitMQ dead-letter exchange and queue (one name) for messages that fail the checks
    /// [default: <queue>.dead]
    #[arg(long, env = "RABBITMQ_DEAD_LETTER")]
    pub dead_letter_queue: Option<String>,

    /// RabbitMQ consumer prefetch
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
}

impl RabbitArgs {
    /// The dead-letter exchange and queue.
    pub fn dead_letter_queue(&self) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dead", self.queue))
    }
}

/// Starts the consumer (the store side) and the entry's publisher, each on a connection of
/// its own that reconnects by itself.
pub async fn start(args: &RabbitArgs, context: &PathContext) -> anyhow::Result<StartedPath> {
    let config = RabbitConfig::new(args, context.broker_heartbeat);
    tracing::info!(url = %redact(&config.url), queue = %config.queue, "RabbitMQ path starting");
    if context.consumers {
        consumer::spawn_consumer(
            config.clone(),
            context.sink.clone(),
            context.shutdown.clone(),
            context.tracker.clone(),
        );
    }
    let entry = context.entries.then(|| EntrySide {
        publisher: Arc::new(RabbitPublisher::start(
            config,
            context.shutdown.clone(),
            &context.tracker,
        )) as Arc<dyn Publisher>,
        addr: args.entry_addr,
        flag: "--rabbitmq-entry-addr",
    });
    Ok(StartedPath {
        route: Route::Rabbitmq,
        entry,
        server: None,
    })
}

/// What the publisher and the consumer connect with.
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    /// amqp://user:pass@host:port/vhost
    pub url: String,
    /// The durable queue records travel through.
    pub queue: String,
    /// Unacked messages the consumer may hold: bounds its memory and the store's batch.
    pub prefetch: u16,
    /// The dead-letter exchange (fanout) and the durable queue bound to it, both this name.
    pub dead_letter: String,
    /// The heartbeat asked for when `url` sets none: lapin drops a connection it has heard
    /// nothing on for twice this long.
    pub heartbeat: Duration,
}

impl RabbitConfig {
    pub fn new(args: &RabbitArgs, heartbeat: Duration) -> RabbitConfig {
        RabbitConfig {
            url: args.url.clone(),
            queue: args.queue.clone(),
            prefetch: args.prefetch,
            dead_letter: args.dead_letter_queue(),
            heartbeat,
        }
    }
}

pub(super) const ACCEPTED_AT: &str = "accepted_at_us";
pub(super) const PUBLISHED_AT: &str = "published_at_us";
pub(super) const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
/// On a message that carries a `RecordBatch`: how many records it holds.
pub(super) const RECORDS: &str = "records";
pub(super) const BATCH_CONTENT_TYPE: &str =
    "application/x-protobuf; messageType=ingest.v1.RecordBatch";

/// Connects, declares the durable queue and the dead-letter exchange and queue, and hands
/// back the connection and a channel in confirm mode.
async fn open(config: &RabbitConfig, uri: AMQPUri) -> lapin::Result<(Connection, Channel)> {
    let connection = Connection::connect_uri(uri, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let dead = config.dead_letter.as_str();
    channel
        .exchange_declare(
            dead.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            dead.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            dead.into(),
            dead.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// How long a connect and the topology declarations may take before the attempt is retried.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the connection's state is checked besides its events.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Connects as `open` does, but gives up after `OPEN_TIMEOUT`: a broker that accepts the TCP
/// connection while it is still starting may never finish the handshake.
pub(super) async fn open_in_time(config: &RabbitConfig) -> Result<(Connection, Channel), String> {
    let uri = amqp_uri(&config.url, config.heartbeat)?;
    match tokio::time::timeout(OPEN_TIMEOUT, open(config, uri)).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(error)) => Err(format!(
            "cannot connect to {}: {error}",
            redact(&config.url)
        )),
        Err(_) => Err(format!(
            "connecting to {} and declaring the queues took over {OPEN_TIMEOUT:?}",
            redact(&config.url)
        )),
    }
}

/// `url` parsed, asking for `heartbeat` (whole seconds, at least 1) unless `url` sets its
/// own. Without one, lapin takes the broker's (RabbitMQ: 60 s, so a connection that went
/// silent, after a partition or with a half-open socket, held the path at 503 for 2 min).
fn amqp_uri(url: &str, heartbeat: Duration) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = url.parse().map_err(|why| {
        format!(
            "{} is not an AMQP URL ({why}); expected amqp://USER:PASSWORD@HOST:PORT/VHOST",
            redact(url)
        )
    })?;
    if uri.query.heartbeat.is_none() {
        let secs = heartbeat.as_secs().max(1);
        uri.query.heartbeat = Some(u16::try_from(secs).unwrap_or(u16::MAX));
    }
    Ok(uri)
}

/// How long an abandoned connection's close may wait for the broker's Close-Ok.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a connection that is being abandoned (to reconnect, or on shutdown), waiting at
/// most `CLOSE_TIMEOUT`. lapin's `close` waits for the broker's Close-Ok with no limit, so
/// a broker that stopped answering held up a shutdown for all of `--shutdown-timeout`. It
/// also waits for ever when the close reaches lapin's internal task after that task has
/// stopped with the connection (lapin 4.12 drops the queued command, and its promise with
/// it, unresolved): the likely cause of a publisher that made no reconnect attempt for 60 s
/// after a broker restart in CI. Either way the connection is gone; dropping it is enough.
pub(super) async fn close_in_time(connection: &Connection, who: &str) {
    let close = connection.close(200, "reconnecting or shutting down".into());
    if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
        tracing::warn!(
            "{who}: the broker did not confirm the close within {CLOSE_TIMEOUT:?}; dropping the connection"
        );
    }
}

/// Resolves, with the reason, when the connection reports an error or is no longer
/// connected. Both are watched, rather than trusting the consumer's stream to end: after
/// `rabbitmqctl stop_app` and `start_app`, a consumer that learns of a loss only from its
/// stream can store nothing for over a minute while the publisher is long back.
pub(super) async fn connection_broken(connection: &Connection) -> String {
    let mut events = Box::pin(connection.events_listener());
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => return format!("the connection was lost: {error}"),
                Some(_) => {}
                None => return "the connection's events ended".into(),
            },
            _ = check.tick() => {
                if !connection.status().connected() {
                    return "the connection is no longer open".into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_asked_for_unless_the_url_sets_one() {
        let ten = Duration::from_secs(10);
        let uri = amqp_uri("amqp://guest:guest@127.0.0.1:5672/%2f", ten).unwrap();
        assert_eq!(uri.query.heartbeat, Some(10));
        let uri = amqp_uri("amqp://127.0.0.1:5672/%2f?heartbeat=30", ten).unwrap();
        assert_eq!(
            uri.query.heartbeat,
            Some(30),
            "the URL's own heartbeat wins"
        );
        let uri = amqp_uri("amqp://127.0.0.1/%2f", Duration::from_millis(500)).unwrap();
        assert_eq!(
            uri.query.heartbeat,
            Some(1),
            "AMQP counts whole seconds; 0 would be none"
        );
        let error = amqp_uri("http://user:secret@127.0.0.1/", ten).unwrap_err();
        assert!(error.contains("not an AMQP URL"), "{error}");
        assert!(
            !error.contains("secret"),
            "the password is redacted: {error}"
        );
    }
}
