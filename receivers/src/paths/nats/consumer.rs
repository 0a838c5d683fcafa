//! The NATS path's store side: a durable pull consumer with explicit acks that stores each
//! message before its ack, and copies one that fails the checks to the dead-letter stream.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use proto::ingest::RecordBatch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::setup::{ensure_consumer, ensure_stream};
use super::{ACCEPTED_AT, DEAD_LETTER_REASON, NatsConfig, PUBLISHED_AT, RECORD_ID, RECORDS};
use crate::paths::group::{BatchOutcome, receive_batch};
use crate::paths::{Disposition, Received, Sink, keep_running};
use crate::record::now_us;
use crate::stats::Stage;
use contract::Route;

/// The store side: a durable pull consumer with explicit acks, restarted until shutdown.
pub(super) fn spawn_consumer(
    client: async_nats::Client,
    config: NatsConfig,
    sink: Sink,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let inner = tracker.clone();
    tracker.spawn(async move {
        let js = jetstream::new(client);
        let what = format!("NATS consumer {} on {}", config.consumer, config.stream);
        keep_running(&what, &shutdown, || {
            consume(&js, &config, &sink, &shutdown, &inner)
        })
        .await;
    });
}

async fn consume(
    js: &jetstream::Context,
    config: &NatsConfig,
    sink: &Sink,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), String> {
    let stream = ensure_stream(js, &config.stream, &config.subject)
        .await
        .map_err(|e| e.to_string())?;
    ensure_stream(js, &config.dead_letter_stream, &config.dead_letter_subject)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = ensure_consumer(&stream, config)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("pull from {}: {e}", config.consumer))?;
    tracing::info!(stream = %config.stream, consumer = %config.consumer, "NATS consumer connected");
    let in_flight = TaskTracker::new();
    let result = loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = messages.next() => next,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => break Err(format!("pull: {error}")),
            None => break Ok(()),
        };
        let (js, config, sink) = (js.clone(), config.clone(), sink.clone());
        in_flight.spawn(tracker.track_future(async move {
            settle(&js, &config, &sink, message).await;
        }));
    };
    in_flight.close();
    in_flight.wait().await;
    result
}

/// What became of a message.
enum Settlement {
    /// Every record in it is committed: ack it.
    Stored,
    /// It, or each of its records that failed the checks, is in the dead-letter stream.
    DeadLettered,
    /// Not yet: have it redelivered later.
    Retry(String),
}

/// Checks and stores one message's records, then acks it; dead-letters what fails the
/// checks; asks for a later redelivery, later each time, if the store did not commit.
async fn settle(
    js: &jetstream::Context,
    config: &NatsConfig,
    sink: &Sink,
    message: jetstream::Message,
) {
    let received_at = now_us();
    let header = |name: &str| -> Option<String> {
        message
            .headers
            .as_ref()?
            .get(name)
            .map(|v| v.as_str().to_string())
    };
    let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
    let hop = number(PUBLISHED_AT).map(|published| (received_at - published).max(0) as u64);
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let settlement = if header(RECORDS).is_some() {
        settle_batch(js, config, sink, &message, hop, delivered > 1).await
    } else {
        if let Some(hop) = hop {
            sink.stats.latency(Route::Nats, Stage::Hop, hop);
        }
        let received = Received {
            // A publisher other than the entry may name the record by Nats-Msg-Id alone.
            id: header(RECORD_ID).or_else(|| header("Nats-Msg-Id")),
            payload: message.payload.clone(),
            accepted_at_us: number(ACCEPTED_AT),
            redelivered: delivered > 1,
        };
        match sink.receive(Route::Nats, received, false).await {
            Disposition::Settled(_) => Settlement::Stored,
            Disposition::Invalid(invalid) => {
                let headers = message.headers.clone().unwrap_or_default();
                dead_letter(
                    js,
                    config,
                    sink,
                    headers,
                    message.payload.clone(),
                    invalid.code(),
                )
                .await
            }
            Disposition::StoreFailed(_) => Settlement::Retry("the store did not commit".into()),
        }
    };
    let ack = match settlement {
        // Acked strictly after the commit, and the server confirms the ack, so a lost ack
        // means a redelivery (stored once by id), never a loss.
        Settlement::Stored => None,
        Settlement::DeadLettered => Some(jetstream::AckKind::Term),
        Settlement::Retry(why) => {
            // 200 ms, doubling with each delivery, at most 30 s: a failing disk is not hammered.
            let delay =
                Duration::from_millis(200 * 2u64.saturating_pow(delivered.min(8) as u32 - 1))
                    .min(Duration::from_secs(30));
            tracing::warn!("NATS message not settled ({why}); redelivery asked in {delay:?}");
            Some(jetstream::AckKind::Nak(Some(delay)))
        }
    };
    let outcome = match ack {
        None => message.double_ack().await,
        Some(kind) => message.ack_with(kind).await,
    };
    if let Err(error) = outcome {
        tracing::warn!("NATS ack failed (the message will be redelivered): {error}");
    }
}

/// A message from the entry's group commit: each record is checked and stored on its own
/// (all at once, so the store commits them together), and one that fails the checks is
/// dead-lettered alone. The message is acked once every record is settled.
async fn settle_batch(
    js: &jetstream::Context,
    config: &NatsConfig,
    sink: &Sink,
    message: &jetstream::Message,
    hop: Option<u64>,
    redelivered: bool,
) -> Settlement {
    let Ok(batch) = RecordBatch::decode(message.payload.as_ref()) else {
        // Named a batch but not one: kept whole, for a person to look at.
        let headers = message.headers.clone().unwrap_or_default();
        return dead_letter(
            js,
            config,
            sink,
            headers,
            message.payload.clone(),
            "undecodable_batch",
        )
        .await;
    };
    let settled = receive_batch(sink, Route::Nats, batch.records, hop, redelivered, false).await;
    let mut settlement = Settlement::Stored;
    for BatchOutcome {
        id,
        accepted_at_us,
        payload,
        disposition,
    } in settled
    {
        match disposition {
            Disposition::Settled(_) => {}
            // The entry checks every record it batches, so this is a foreign publisher's.
            // If a sibling's commit fails too, the redelivery dead-letters it again.
            Disposition::Invalid(invalid) => {
                let mut headers = HeaderMap::new();
                headers.insert(RECORD_ID, id.as_str());
                headers.insert(ACCEPTED_AT, accepted_at_us.to_string().as_str());
                if let Settlement::Retry(why) =
                    dead_letter(js, config, sink, headers, payload, invalid.code()).await
                {
                    settlement = Settlement::Retry(why);
                }
            }
            Disposition::StoreFailed(_) => {
                settlement = Settlement::Retry("the store did not commit".into());
            }
        }
    }
    settlement
}

/// Publishes a copy (`headers` and `payload`) to the dead-letter stream with the reason,
/// waits for its PublishAck and books it.
async fn dead_letter(
    js: &jetstream::Context,
    config: &NatsConfig,
    sink: &Sink,
    headers: HeaderMap,
    payload: Bytes,
    reason: &str,
) -> Settlement {
    // The copy must not be deduplicated against anything: drop the original's message id.
    let mut copy = HeaderMap::new();
    for (name, values) in headers.iter() {
        if name.to_string() != "Nats-Msg-Id" {
            for value in values {
                copy.append(name.clone(), value.clone());
            }
        }
    }
    copy.insert(DEAD_LETTER_REASON, reason);
    let published = async {
        js.publish_with_headers(config.dead_letter_subject.clone(), copy, payload)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match published.await {
        Ok(_) => {
            sink.dead_lettered(Route::Nats);
            Settlement::DeadLettered
        }
        Err(why) => Settlement::Retry(format!("dead-lettering failed: {why}")),
    }
}
