//! The RabbitMQ path: the entry publishes a persistent, mandatory message on a confirm
//! channel to a durable queue and waits for the broker's Ack; a consumer with bounded
//! prefetch stores each message and acks it only after the commit. Both reconnect alone.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Event};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Accepted, PublishError, Publisher};
use crate::record::{Record, now_us};
use crate::route::Route;
use crate::stats::{Stage, Stats};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct RabbitConfig {
    /// amqp://user:pass@host:port/vhost
    pub url: String,
    /// The durable queue records travel through.
    pub queue: String,
    /// Unacked messages the consumer may hold: bounds its memory and the store's batch.
    pub prefetch: u16,
}

const ACCEPTED_AT: &str = "accepted_at_us";
const PUBLISHED_AT: &str = "published_at_us";

/// Connects, declares the durable queue, and hands back the connection and a channel.
async fn open(config: &RabbitConfig) -> lapin::Result<(Connection, Channel)> {
    let connection = Connection::connect(&config.url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel))
}

/// Resolves when the connection reports an error (the broker went away).
async fn lost(connection: &Connection) {
    let mut events = Box::pin(connection.events_listener());
    while let Some(event) = events.next().await {
        if let Event::Error(error) = event {
            tracing::warn!("RabbitMQ connection lost: {error}");
            return;
        }
    }
}

/// Waits `delay` unless shutdown comes first; returns false on shutdown.
async fn backoff(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// The entry's side: publishes on the current confirm channel, kept by a maintainer task.
pub struct RabbitPublisher {
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
            let mut delay = Duration::from_millis(200);
            loop {
                match open(&config).await {
                    Ok((connection, channel)) => match channel.confirm_select(ConfirmSelectOptions::default()).await {
                        Ok(()) => {
                            tracing::info!(url = %redact(&config.url), queue = %config.queue, "RabbitMQ publisher connected");
                            delay = Duration::from_millis(200);
                            current.send_replace(Some(channel));
                            tokio::select! {
                                _ = shutdown.cancelled() => {}
                                _ = wake.notified() => {}
                                _ = lost(&connection) => {}
                            }
                            current.send_replace(None);
                            let _ = connection.close(200, "reconnecting or shutting down".into()).await;
                        }
                        Err(error) => tracing::warn!("RabbitMQ confirm_select failed: {error}"),
                    },
                    Err(error) => tracing::warn!(url = %redact(&config.url), "RabbitMQ publisher cannot connect: {error}"),
                }
                if shutdown.is_cancelled() || !backoff(delay, &shutdown).await {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        RabbitPublisher {
            channel,
            broken,
            queue,
        }
    }
}

impl Publisher for RabbitPublisher {
    fn route(&self) -> Route {
        Route::Rabbitmq
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async move {
            let not_connected = |why: String| PublishError::NotConnected {
                route: Route::Rabbitmq,
                why,
            };
            let Some(channel) = self.channel.borrow().clone() else {
                return Err(not_connected("no connection to the broker yet".into()));
            };
            let mut headers = FieldTable::default();
            headers.insert(
                ACCEPTED_AT.into(),
                AMQPValue::LongLongInt(record.accepted_at_us),
            );
            headers.insert(PUBLISHED_AT.into(), AMQPValue::LongLongInt(now_us()));
            let properties = BasicProperties::default()
                .with_delivery_mode(2) // persistent: written to disk before the confirm
                .with_content_type("application/json".into())
                .with_message_id(record.id.as_str().into())
                .with_headers(headers);
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
                    &record.payload,
                    properties,
                )
                .await;
            let confirmation = match confirm {
                Ok(confirm) => confirm.await,
                Err(error) => Err(error),
            };
            match confirmation {
                Ok(Confirmation::Ack(None)) => Ok(Accepted {
                    duplicate: false,
                    dropped_by_broker: false,
                }),
                Ok(Confirmation::Ack(Some(returned))) => Err(PublishError::Refused {
                    route: Route::Rabbitmq,
                    why: format!(
                        "the broker returned it ({} {})",
                        returned.reply_code, returned.reply_text
                    ),
                }),
                Ok(Confirmation::Nack(_)) => Err(PublishError::Refused {
                    route: Route::Rabbitmq,
                    why: "the broker nacked it".into(),
                }),
                Ok(Confirmation::NotRequested) => Err(PublishError::Refused {
                    route: Route::Rabbitmq,
                    why: "the channel is not in confirm mode".into(),
                }),
                Err(error) => {
                    self.broken.notify_one();
                    Err(not_connected(error.to_string()))
                }
            }
        })
    }

    fn ready(&self) -> bool {
        self.channel
            .borrow()
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }
}

/// The store side: consumes with manual acks, stores, then acks; reconnects until shutdown.
pub fn spawn_consumer(
    config: RabbitConfig,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tracker.spawn(async move {
        let mut delay = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match consume(&config, &store, &stats, &shutdown).await {
                Ok(()) => delay = Duration::from_millis(200),
                Err(error) => tracing::warn!(queue = %config.queue, "RabbitMQ consumer: {error}; reconnecting"),
            }
            if !backoff(delay, &shutdown).await {
                break;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}

async fn consume(
    config: &RabbitConfig,
    store: &Arc<dyn Store>,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    let (connection, channel) = open(config).await?;
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
    // Deliveries are taken in batches of whatever has arrived (prefetch bounds it), stored
    // together (one commit), then acked with one `multiple` ack: strictly after the commit,
    // and far less work for the broker than an ack per message.
    let result = loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let mut batch = match first {
            Some(Ok(delivery)) => vec![delivery],
            Some(Err(error)) => break Err(error),
            None => break Ok(()),
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
        settle(batch, store, stats).await;
        if let Some(error) = failed {
            break Err(error);
        }
    };
    let _ = connection.close(200, "consumer stopping".into()).await;
    result
}

/// Stores a batch of consecutive deliveries, then acks it: one `multiple` ack when every
/// record is committed, else each on its own (a failed store is requeued).
async fn settle(batch: Vec<Delivery>, store: &Arc<dyn Store>, stats: &Arc<Stats>) {
    let stored = futures::future::join_all(batch.iter().map(|d| store_one(d, store, stats))).await;
    if stored.iter().all(|ok| *ok) {
        let last = batch.last().expect("a batch holds at least one delivery");
        let options = BasicAckOptions { multiple: true };
        if let Err(error) = last.ack(options).await {
            tracing::warn!("RabbitMQ ack failed (the batch will be redelivered): {error}");
        }
        return;
    }
    for (delivery, ok) in batch.iter().zip(stored) {
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

/// Stores one delivery; false when the store failed and the message must be requeued.
async fn store_one(delivery: &Delivery, store: &Arc<dyn Store>, stats: &Arc<Stats>) -> bool {
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
    if let Some(published) = header(PUBLISHED_AT) {
        stats.latency(
            Route::Rabbitmq,
            Stage::Hop,
            (received_at - published).max(0) as u64,
        );
    }
    let Some(id) = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
    else {
        // Nothing to key it by: it can never be stored exactly once, so it is not stored;
        // acked with the batch so it does not come back forever.
        tracing::error!("RabbitMQ message without message_id; dropping it");
        return true;
    };
    let record = Record {
        id,
        payload: delivery.data.clone().into(),
        accepted_at_us: header(ACCEPTED_AT).unwrap_or(received_at),
    };
    let accepted_at = record.accepted_at_us;
    match store.insert(Route::Rabbitmq, record).await {
        Ok(inserted) => {
            stats.stored(Route::Rabbitmq, inserted, accepted_at, delivery.redelivered);
            true
        }
        Err(error) => {
            tracing::error!("store failed, requeueing the RabbitMQ message: {error}");
            false
        }
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            super::redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
