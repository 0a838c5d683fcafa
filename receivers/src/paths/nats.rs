//! The NATS path: the entry publishes to a file-storage JetStream stream with Nats-Msg-Id = id
//! and waits for the PublishAck (the publish is awaited twice: once to send, once for the
//! ack); a durable pull consumer stores each message and acks it after the commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Accepted, PublishError, Publisher};
use crate::record::{Record, now_us};
use crate::route::Route;
use crate::stats::{Stage, Stats};
use crate::store::Store;

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
}

const ACCEPTED_AT: &str = "Accepted-At-Us";
const PUBLISHED_AT: &str = "Published-At-Us";

/// Connects a client that keeps reconnecting by itself, including at first connect, so
/// the receivers start (and answer 503 on this path) while NATS is still down.
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("receivers")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(config.url.as_str())
        .await
        .map_err(|e| format!("NATS at {}: {e}", config.url))
}

/// Creates the stream if it is missing; an existing one is used as it is.
async fn ensure_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.subject.clone()],
        storage: stream::StorageType::File,
        // Resends with the same Nats-Msg-Id within this window are acked as duplicates.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("JetStream stream {}: {e}", config.stream))
}

/// The entry's side.
pub struct NatsPublisher {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
    /// Set once the stream is known to exist; until then each publish tries to create it.
    stream_ready: AtomicBool,
}

impl NatsPublisher {
    pub fn new(client: async_nats::Client, config: NatsConfig) -> NatsPublisher {
        let js = jetstream::new(client.clone());
        NatsPublisher {
            client,
            js,
            config,
            stream_ready: AtomicBool::new(false),
        }
    }
}

impl Publisher for NatsPublisher {
    fn route(&self) -> Route {
        Route::Nats
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async move {
            let not_connected = |why: String| PublishError::NotConnected {
                route: Route::Nats,
                why,
            };
            if !self.ready() {
                return Err(not_connected(format!(
                    "no connection to {}",
                    self.config.url
                )));
            }
            if !self.stream_ready.load(Ordering::Relaxed) {
                ensure_stream(&self.js, &self.config)
                    .await
                    .map_err(not_connected)?;
                self.stream_ready.store(true, Ordering::Relaxed);
            }
            let message = PublishMessage::build()
                .payload(record.payload.clone())
                .message_id(&record.id)
                .header(ACCEPTED_AT, record.accepted_at_us.to_string().as_str())
                .header(PUBLISHED_AT, now_us().to_string().as_str());
            let ack = self
                .js
                .send_publish(self.config.subject.clone(), message)
                .await
                .map_err(|e| not_connected(e.to_string()))?
                .await
                .map_err(|e| PublishError::Refused {
                    route: Route::Nats,
                    why: e.to_string(),
                })?;
            Ok(Accepted {
                duplicate: ack.duplicate,
                dropped_by_broker: ack.duplicate,
            })
        })
    }

    fn ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// The store side: a durable pull consumer with explicit acks, restarted until shutdown.
pub fn spawn_consumer(
    client: async_nats::Client,
    config: NatsConfig,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let inner = tracker.clone();
    tracker.spawn(async move {
        let js = jetstream::new(client);
        let mut delay = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match consume(&js, &config, &store, &stats, &shutdown, &inner).await {
                Ok(()) => delay = Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(stream = %config.stream, "NATS consumer: {error}; restarting")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}

async fn consume(
    js: &jetstream::Context,
    config: &NatsConfig,
    store: &Arc<dyn Store>,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), String> {
    let stream = ensure_stream(js, config).await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: config.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", config.consumer))?;
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
        let (store, stats) = (Arc::clone(store), Arc::clone(stats));
        in_flight.spawn(tracker.track_future(async move {
            let received_at = now_us();
            let header = |name: &str| -> Option<String> {
                message
                    .headers
                    .as_ref()?
                    .get(name)
                    .map(|v| v.as_str().to_string())
            };
            let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
            if let Some(published) = number(PUBLISHED_AT) {
                stats.latency(
                    Route::Nats,
                    Stage::Hop,
                    (received_at - published).max(0) as u64,
                );
            }
            let Some(id) = header("Nats-Msg-Id") else {
                tracing::error!("NATS message without Nats-Msg-Id; terminating it");
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                return;
            };
            let redelivered = message.info().map(|i| i.delivered > 1).unwrap_or(false);
            let record = Record {
                id,
                payload: message.payload.clone(),
                accepted_at_us: number(ACCEPTED_AT).unwrap_or(received_at),
            };
            let accepted_at = record.accepted_at_us;
            match store.insert(Route::Nats, record).await {
                Ok(inserted) => {
                    // Booked at the commit, so /stats never lags the store.
                    stats.stored(Route::Nats, inserted, accepted_at, redelivered);
                    // Ack strictly after the commit, and wait for the server to confirm the ack,
                    // so a lost ack means a redelivery (stored once by id), never a loss.
                    if let Err(error) = message.double_ack().await {
                        tracing::warn!(
                            "NATS ack failed (the message will be redelivered): {error}"
                        );
                    }
                }
                Err(error) => {
                    tracing::error!("store failed, asking NATS to redeliver: {error}");
                    let _ = message
                        .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }));
    };
    in_flight.close();
    in_flight.wait().await;
    result
}
