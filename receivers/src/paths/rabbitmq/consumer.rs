//! The RabbitMQ path's store side: consumes with manual acks and bounded prefetch, stores,
//! then acks; dead-letters a message that fails the checks; reconnects until shutdown.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use prost::Message as _;
use proto::ingest::RecordBatch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    ACCEPTED_AT, DEAD_LETTER_REASON, PUBLISHED_AT, RECORDS, RabbitConfig, close_in_time,
    connection_broken, open_in_time,
};
use crate::paths::group::receive_batch;
use crate::paths::{Backoff, Disposition, Received, Sink, keep_running};
use crate::record::now_us;
use crate::stats::Stage;
use contract::Route;

/// The store side: consumes with manual acks, stores, then acks; reconnects until shutdown.
pub(super) fn spawn_consumer(
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
