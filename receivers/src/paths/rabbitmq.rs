//! The RabbitMQ path: the entry publishes a persistent, mandatory message on a confirm
//! channel to a durable queue and waits for the broker's Ack; a consumer with bounded
//! prefetch checks and stores each message and acks it only after the commit. A message
//! that fails the checks is published (confirmed) to the dead-letter exchange, whose queue
//! a person can inspect, and is never stored. Both sides reconnect alone.
//!
//! The records that queue at the entry while its last publish awaits its confirm go in
//! one message, a `RecordBatch` (header `records`): group commit. The consumer checks,
//! stores and dead-letters each of its records on its own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Event, ExchangeKind,
};
use prost::Message as _;
use proto::ingest::RecordBatch;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::group::{GROUP_LIMITS, Group, SendGroup, receive_batch, record_batch};
use super::{
    Accepted, Backoff, Disposition, PublishError, Publisher, Received, Sink, keep_running,
};
use crate::record::{Record, now_us};
use crate::redact::redact;
use crate::stats::Stage;
use contract::Route;

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

const ACCEPTED_AT: &str = "accepted_at_us";
const PUBLISHED_AT: &str = "published_at_us";
const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
/// On a message that carries a `RecordBatch`: how many records it holds.
const RECORDS: &str = "records";
const BATCH_CONTENT_TYPE: &str = "application/x-protobuf; messageType=ingest.v1.RecordBatch";

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
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the connection's state is checked besides its events.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Connects as `open` does, but gives up after `OPEN_TIMEOUT`: a broker that accepts the TCP
/// connection while it is still starting may never finish the handshake.
async fn open_in_time(config: &RabbitConfig) -> Result<(Connection, Channel), String> {
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
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a connection that is being abandoned (to reconnect, or on shutdown), waiting at
/// most `CLOSE_TIMEOUT`. lapin's `close` waits for the broker's Close-Ok with no limit, so
/// a broker that stopped answering held up a shutdown for all of `--shutdown-timeout`. It
/// also waits for ever when the close reaches lapin's internal task after that task has
/// stopped with the connection (lapin 4.12 drops the queued command, and its promise with
/// it, unresolved): the likely cause of a publisher that made no reconnect attempt for 60 s
/// after a broker restart in CI. Either way the connection is gone; dropping it is enough.
async fn close_in_time(connection: &Connection, who: &str) {
    let close = connection.close(200, "reconnecting or shutting down".into());
    if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
        tracing::warn!(
            "{who}: the broker did not confirm the close within {CLOSE_TIMEOUT:?}; dropping the connection"
        );
    }
}

/// Resolves, with the reason, when the connection reports an error or is no longer
/// connected. Both are watched, rather than trusting the consumer's stream to end: in a CI
/// run on 2026-11-27, after `rabbitmqctl stop_app` and `start_app`, the publisher was back
/// within seconds but the consumer, which then learnt of a loss only from its stream, stored
/// nothing for over 60 s.
async fn connection_broken(connection: &Connection) -> String {
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

/// The entry's side: publishes on the current confirm channel, kept by a maintainer task.
/// Records that queue while the last publish awaits its confirm go in one message (group
/// commit): the broker's work is per message, whatever its size.
pub struct RabbitPublisher {
    sender: Arc<RabbitSender>,
    group: Group,
}

struct RabbitSender {
    channel: watch::Receiver<Option<Channel>>,
    /// A failed publish wakes the maintainer so it reconnects without waiting for an event.
    broken: Arc<Notify>,
    queue: String,
}

impl RabbitPublisher {
    pub fn start(
        config: RabbitConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> RabbitPublisher {
        let (current, channel) = watch::channel(None);
        let broken = Arc::new(Notify::new());
        let queue = config.queue.clone();
        let wake = Arc::clone(&broken);
        tracker.spawn(async move {
            keep_running("RabbitMQ publisher", &shutdown, || async {
                let (connection, channel) = open_in_time(&config).await?;
                tracing::info!(url = %redact(&config.url), queue = %config.queue, "RabbitMQ publisher connected");
                current.send_replace(Some(channel));
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = wake.notified() => {}
                    why = connection_broken(&connection) => {
                        tracing::warn!("RabbitMQ publisher: {why}; reconnecting");
                    }
                }
                current.send_replace(None);
                close_in_time(&connection, "RabbitMQ publisher").await;
                Ok(())
            })
            .await;
        });
        let sender = Arc::new(RabbitSender {
            channel,
            broken,
            queue,
        });
        let group = Group::start(Route::Rabbitmq, sender.clone(), GROUP_LIMITS);
        RabbitPublisher { sender, group }
    }
}

impl RabbitSender {
    /// Publishes one persistent, mandatory message and waits for the broker's confirm.
    async fn publish(&self, body: &[u8], properties: BasicProperties) -> Result<(), PublishError> {
        let not_connected = |why: String| PublishError::NotConnected {
            route: Route::Rabbitmq,
            why,
        };
        let Some(channel) = self.channel.borrow().clone() else {
            return Err(not_connected("no connection to the broker yet".into()));
        };
        // persistent: written to disk before the confirm.
        let properties = properties.with_delivery_mode(2);
        // mandatory: an unroutable message comes back instead of vanishing.
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                options,
                body,
                properties,
            )
            .await;
        let confirmation = match confirm {
            Ok(confirm) => confirm.await,
            Err(error) => Err(error),
        };
        let refused = |why: String| PublishError::Refused {
            route: Route::Rabbitmq,
            why,
        };
        match confirmation {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) => Err(refused(format!(
                "the broker returned it ({} {})",
                returned.reply_code, returned.reply_text
            ))),
            Ok(Confirmation::Nack(_)) => Err(refused("the broker nacked it".into())),
            Ok(Confirmation::NotRequested) => {
                Err(refused("the channel is not in confirm mode".into()))
            }
            Err(error) => {
                self.broken.notify_one();
                Err(not_connected(error.to_string()))
            }
        }
    }
}

impl SendGroup for RabbitSender {
    /// One record goes as itself (its id in `message_id`); several as a `RecordBatch`
    /// (header `records`). RabbitMQ cannot tell a resend either way: the store counts it.
    fn send(&self, records: Vec<Record>) -> BoxFuture<'_, Vec<Result<Accepted, PublishError>>> {
        Box::pin(async move {
            let count = records.len();
            let mut headers = FieldTable::default();
            headers.insert(PUBLISHED_AT.into(), AMQPValue::LongLongInt(now_us()));
            let outcome = if let [record] = records.as_slice() {
                headers.insert(
                    ACCEPTED_AT.into(),
                    AMQPValue::LongLongInt(record.accepted_at_us),
                );
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_message_id(record.id.as_str().into())
                    .with_headers(headers);
                self.publish(&record.payload, properties).await
            } else {
                headers.insert(RECORDS.into(), AMQPValue::LongLongInt(count as i64));
                let body = record_batch(records).encode_to_vec();
                let properties = BasicProperties::default()
                    .with_content_type(BATCH_CONTENT_TYPE.into())
                    .with_headers(headers);
                self.publish(&body, properties).await
            };
            let accepted = Accepted {
                duplicate: false,
                dropped_by_broker: false,
            };
            vec![outcome.map(|()| accepted); count]
        })
    }
}

impl Publisher for RabbitPublisher {
    fn route(&self) -> Route {
        Route::Rabbitmq
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(self.group.publish(record.clone()))
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        let ready = self
            .sender
            .channel
            .borrow()
            .as_ref()
            .is_some_and(|c| c.status().connected());
        Box::pin(async move { ready })
    }
}

/// The store side: consumes with manual acks, stores, then acks; reconnects until shutdown.
pub fn spawn_consumer(
    config: RabbitConfig,
    sink: Sink,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tracker.spawn(async move {
        let what = format!("RabbitMQ consumer on {}", config.queue);
        keep_running(&what, &shutdown, || consume(&config, &sink, &shutdown)).await;
    });
}

/// One connection's worth of consuming: ends when the connection breaks (an error, so the
/// caller reconnects after a pause) or on shutdown. Stopping mid-batch is safe: what was
/// not acked is redelivered, and the store keeps one row per id.
async fn consume(
    config: &RabbitConfig,
    sink: &Sink,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let (connection, channel) = open_in_time(config).await?;
    let result = tokio::select! {
        result = deliveries(config, sink, shutdown, &channel) => result.map_err(|e| e.to_string()),
        why = connection_broken(&connection) => Err(why),
    };
    close_in_time(&connection, "RabbitMQ consumer").await;
    result
}

/// Takes deliveries off `channel` and settles them in batches, until the stream ends or fails.
async fn deliveries(
    config: &RabbitConfig,
    sink: &Sink,
    shutdown: &CancellationToken,
    channel: &Channel,
) -> lapin::Result<()> {
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "RabbitMQ consumer connected");
    // A batch that could not be settled (the store failing) waits longer each time before
    // it is requeued, so a full disk is not hammered with the same messages.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    // Deliveries are taken in batches of whatever has arrived (prefetch bounds it), stored
    // together (one commit), then acked with one `multiple` ack: strictly after the commit,
    // and far less work for the broker than an ack per message.
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let mut batch = match first {
            Some(Ok(delivery)) => vec![delivery],
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        };
        let mut failed = None;
        while batch.len() < usize::from(config.prefetch) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(error))) => {
                    failed = Some(error);
                    break;
                }
                _ => break,
            }
        }
        settle(batch, config, channel, sink, &mut backoff, shutdown).await;
        if let Some(error) = failed {
            return Err(error);
        }
    }
}

/// Settles a batch of consecutive deliveries: one `multiple` ack when every record is
/// committed or dead-lettered; else, after a backoff, each on its own (the failed requeued).
async fn settle(
    batch: Vec<Delivery>,
    config: &RabbitConfig,
    channel: &Channel,
    sink: &Sink,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) {
    let settled =
        futures::future::join_all(batch.iter().map(|d| settle_one(d, config, channel, sink))).await;
    if settled.iter().all(|ok| *ok) {
        backoff.reset();
        let last = batch.last().expect("a batch holds at least one delivery");
        let options = BasicAckOptions { multiple: true };
        if let Err(error) = last.ack(options).await {
            tracing::warn!("RabbitMQ ack failed (the batch will be redelivered): {error}");
        }
        return;
    }
    backoff.wait(shutdown).await;
    for (delivery, ok) in batch.iter().zip(settled) {
        let outcome = if ok {
            delivery.ack(BasicAckOptions::default()).await
        } else {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            delivery.nack(requeue).await
        };
        if let Err(error) = outcome {
            tracing::warn!("RabbitMQ ack/nack failed (the message will be redelivered): {error}");
        }
    }
}

/// Checks and stores one delivery's records, or dead-letters what fails the checks; false
/// when it must be requeued.
async fn settle_one(
    delivery: &Delivery,
    config: &RabbitConfig,
    channel: &Channel,
    sink: &Sink,
) -> bool {
    let received_at = now_us();
    let header = |name: &str| match delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
    {
        Some(AMQPValue::LongLongInt(v)) => Some(*v),
        _ => None,
    };
    let hop = header(PUBLISHED_AT).map(|published| (received_at - published).max(0) as u64);
    if header(RECORDS).is_some() {
        return settle_batch(delivery, config, channel, sink, hop).await;
    }
    if let Some(hop) = hop {
        sink.stats.latency(Route::Rabbitmq, Stage::Hop, hop);
    }
    let received = Received {
        id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
        payload: delivery.data.clone().into(),
        accepted_at_us: header(ACCEPTED_AT),
        redelivered: delivery.redelivered,
    };
    match sink.receive(Route::Rabbitmq, received, false).await {
        Disposition::Settled(_) => true,
        Disposition::Invalid(invalid) => {
            let properties = delivery.properties.clone();
            dead_letter(
                &delivery.data,
                properties,
                config,
                channel,
                sink,
                invalid.code(),
            )
            .await
        }
        Disposition::StoreFailed(_) => false,
    }
}

/// A message from the entry's group commit: each record is checked and stored on its own
/// (all at once, so the store commits them together), and one that fails the checks is
/// dead-lettered alone. One that does not decode is dead-lettered whole.
async fn settle_batch(
    delivery: &Delivery,
    config: &RabbitConfig,
    channel: &Channel,
    sink: &Sink,
    hop: Option<u64>,
) -> bool {
    let Ok(batch) = RecordBatch::decode(delivery.data.as_slice()) else {
        let properties = delivery.properties.clone();
        return dead_letter(
            &delivery.data,
            properties,
            config,
            channel,
            sink,
            "undecodable_batch",
        )
        .await;
    };
    let redelivered = delivery.redelivered;
    let settled = receive_batch(
        sink,
        Route::Rabbitmq,
        batch.records,
        hop,
        redelivered,
        false,
    )
    .await;
    let mut ok = true;
    for record in settled {
        match record.disposition {
            Disposition::Settled(_) => {}
            // The entry checks every record it batches, so this is a foreign publisher's.
            // If a sibling's commit fails too, the redelivery dead-letters it again.
            Disposition::Invalid(invalid) => {
                let mut headers = FieldTable::default();
                headers.insert(
                    ACCEPTED_AT.into(),
                    AMQPValue::LongLongInt(record.accepted_at_us),
                );
                let properties = BasicProperties::default()
                    .with_message_id(record.id.as_str().into())
                    .with_headers(headers);
                ok &= dead_letter(
                    &record.payload,
                    properties,
                    config,
                    channel,
                    sink,
                    invalid.code(),
                )
                .await;
            }
            Disposition::StoreFailed(_) => ok = false,
        }
    }
    ok
}

/// Publishes a copy (`body` with `properties`) to the dead-letter exchange, with the reason
/// in its headers, waits for the broker's confirm and books it; false when it failed.
async fn dead_letter(
    body: &[u8],
    properties: BasicProperties,
    config: &RabbitConfig,
    channel: &Channel,
    sink: &Sink,
    reason: &str,
) -> bool {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        DEAD_LETTER_REASON.into(),
        AMQPValue::LongString(reason.into()),
    );
    headers.insert(
        "x-original-queue".into(),
        AMQPValue::LongString(config.queue.as_str().into()),
    );
    let properties = properties.with_delivery_mode(2).with_headers(headers);
    let published = async {
        channel
            .basic_publish(
                config.dead_letter.as_str().into(),
                ShortString::from(""),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    let error = match published.await {
        Ok(Confirmation::Ack(_)) => {
            sink.dead_lettered(Route::Rabbitmq);
            return true;
        }
        Ok(other) => format!("the broker did not confirm it ({other:?})"),
        Err(error) => error,
    };
    tracing::error!(queue = %config.dead_letter, "dead-lettering failed, requeueing: {error}");
    false
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
