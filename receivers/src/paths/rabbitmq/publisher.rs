//! The RabbitMQ path's entry side: publishes on a confirm channel kept by a maintainer task,
//! and waits for the broker's Ack; records that queue behind a publish go in one message.

use std::sync::Arc;

use futures::future::BoxFuture;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use prost::Message as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    ACCEPTED_AT, BATCH_CONTENT_TYPE, PUBLISHED_AT, RECORDS, RabbitConfig, close_in_time,
    connection_broken, open_in_time,
};
use crate::paths::group::{GROUP_LIMITS, Group, SendGroup, record_batch};
use crate::paths::{Accepted, PublishError, Publisher, keep_running};
use crate::record::{Record, now_us};
use crate::redact::redact;
use contract::Route;

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
