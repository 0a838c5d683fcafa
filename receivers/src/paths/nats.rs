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

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, message::PublishMessage, publish::PublishAck, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message as _;
use proto::ingest::RecordBatch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::group::{BatchOutcome, GROUP_LIMITS, Group, SendGroup, receive_batch, record_batch};
use super::{Accepted, Disposition, PublishError, Publisher, Received, Sink, keep_running};
use crate::record::{Record, digest, now_us};
use crate::redact::redact;
use crate::stats::Stage;
use contract::Route;

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

const RECORD_ID: &str = "Record-Id";
const ACCEPTED_AT: &str = "Accepted-At-Us";
const PUBLISHED_AT: &str = "Published-At-Us";
const DEAD_LETTER_REASON: &str = "Dead-Letter-Reason";
/// On a message that carries a `RecordBatch`: how many records it holds.
const RECORDS: &str = "Records";

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

/// Why the stream or consumer on the server cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("JetStream did not answer: {0}")]
    Unreachable(String),
    #[error(
        "{what} exists on the server but {why}; the receivers will not use it, since a 201 could then mean less than promised. Delete it (nats stream rm / nats consumer rm) or pick other names with --stream, --consumer, --subject"
    )]
    Mismatch { what: String, why: String },
}

/// Creates the stream if it is missing; an existing one must hold its messages on disk
/// and capture the entry's subject.
async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
) -> Result<stream::Stream, SetupError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            storage: stream::StorageType::File,
            // Resends with the same Nats-Msg-Id within this window are acked as duplicates.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| SetupError::Unreachable(format!("stream {name}: {e}")))?;
    let config = &stream.cached_info().config;
    let mismatch = |why: String| SetupError::Mismatch {
        what: format!("JetStream stream {name}"),
        why,
    };
    if config.storage != stream::StorageType::File {
        return Err(mismatch(format!(
            "keeps its messages in {:?} storage, not on disk",
            config.storage
        )));
    }
    if !config.subjects.iter().any(|s| s == subject) {
        return Err(mismatch(format!(
            "captures {:?}, not the subject {subject}",
            config.subjects
        )));
    }
    Ok(stream)
}

/// Creates the durable pull consumer if it is missing; an existing one must ack explicitly
/// and read the entry's subject.
async fn ensure_consumer(
    stream: &stream::Stream,
    config: &NatsConfig,
) -> Result<consumer::PullConsumer, SetupError> {
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
        .map_err(|e| SetupError::Unreachable(format!("consumer {}: {e}", config.consumer)))?;
    let found = &consumer.cached_info().config;
    let mismatch = |why: String| SetupError::Mismatch {
        what: format!(
            "JetStream consumer {} on stream {}",
            config.consumer, config.stream
        ),
        why,
    };
    if found.ack_policy != consumer::AckPolicy::Explicit {
        return Err(mismatch(format!(
            "acks with policy {:?}, not Explicit (a message would count as delivered before it is stored)",
            found.ack_policy
        )));
    }
    let filters: Vec<&String> = std::iter::once(&found.filter_subject)
        .chain(&found.filter_subjects)
        .filter(|s| !s.is_empty())
        .collect();
    if !filters.is_empty() && !filters.iter().any(|s| **s == config.subject) {
        return Err(mismatch(format!(
            "reads {filters:?}, not the subject {}",
            config.subject
        )));
    }
    Ok(consumer)
}

/// At start-up: the stream, the consumer and the dead-letter stream exist and are fit for
/// use. A mismatch is an error for the operator; NATS being down is not (the paths
/// reconnect and check again).
pub async fn check_setup(
    client: &async_nats::Client,
    config: &NatsConfig,
    with_consumer: bool,
) -> Result<(), SetupError> {
    let js = jetstream::new(client.clone());
    let stream = ensure_stream(&js, &config.stream, &config.subject).await?;
    if with_consumer {
        ensure_consumer(&stream, config).await?;
        ensure_stream(&js, &config.dead_letter_stream, &config.dead_letter_subject).await?;
    }
    Ok(())
}

/// The entry's side: records that queue while the last publish awaits its PublishAck go
/// in one message (group commit), since the server syncs each message to disk before it
/// acks, whatever its size.
pub struct NatsPublisher {
    sender: Arc<NatsSender>,
    group: Group,
}

struct NatsSender {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
    /// Set once the stream is known to be fit; until then each publish checks it.
    stream_ready: std::sync::atomic::AtomicBool,
}

impl NatsPublisher {
    /// Starts the task that publishes what queues, so it needs a Tokio runtime.
    pub fn new(client: async_nats::Client, config: NatsConfig) -> NatsPublisher {
        let js = jetstream::new(client.clone());
        let sender = Arc::new(NatsSender {
            client,
            js,
            config,
            stream_ready: std::sync::atomic::AtomicBool::new(false),
        });
        let group = Group::start(Route::Nats, sender.clone(), GROUP_LIMITS);
        NatsPublisher { sender, group }
    }
}

impl NatsSender {
    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `message` once the stream is known to be fit, and waits for its PublishAck.
    async fn publish(&self, message: PublishMessage) -> Result<PublishAck, PublishError> {
        use std::sync::atomic::Ordering;
        let not_connected = |why: String| PublishError::NotConnected {
            route: Route::Nats,
            why,
        };
        if !self.connected() {
            return Err(not_connected("no connection to the NATS server".into()));
        }
        if !self.stream_ready.load(Ordering::Relaxed) {
            ensure_stream(&self.js, &self.config.stream, &self.config.subject)
                .await
                .map_err(|e| match e {
                    SetupError::Unreachable(why) => not_connected(why),
                    mismatch => PublishError::Refused {
                        route: Route::Nats,
                        why: mismatch.to_string(),
                    },
                })?;
            self.stream_ready.store(true, Ordering::Relaxed);
        }
        self.js
            .send_publish(self.config.subject.clone(), message)
            .await
            .map_err(|e| not_connected(e.to_string()))?
            .await
            .map_err(|e| PublishError::Refused {
                route: Route::Nats,
                why: e.to_string(),
            })
    }
}

impl SendGroup for NatsSender {
    /// One record goes as itself: `Nats-Msg-Id` is its id plus a digest of its body, so
    /// the broker drops a resend. Several go as a `RecordBatch`; the store's id check then
    /// catches a resend, and counts it as a duplicate there.
    fn send(&self, records: Vec<Record>) -> BoxFuture<'_, Vec<Result<Accepted, PublishError>>> {
        Box::pin(async move {
            let count = records.len();
            let message = if let [record] = records.as_slice() {
                PublishMessage::build()
                    .payload(record.payload.clone())
                    .message_id(format!("{}:{}", record.id, hex8(&digest(&record.payload))))
                    .header(RECORD_ID, record.id.as_str())
                    .header(ACCEPTED_AT, record.accepted_at_us.to_string().as_str())
            } else {
                let body = record_batch(records).encode_to_vec();
                PublishMessage::build()
                    .message_id(format!("batch:{}", hex8(&digest(&body))))
                    .payload(body.into())
                    .header(RECORDS, count.to_string().as_str())
            };
            let message = message.header(PUBLISHED_AT, now_us().to_string().as_str());
            match self.publish(message).await {
                Ok(ack) => vec![
                    Ok(Accepted {
                        duplicate: ack.duplicate,
                        dropped_by_broker: ack.duplicate,
                    });
                    count
                ],
                Err(error) => vec![Err(error); count],
            }
        })
    }
}

impl Publisher for NatsPublisher {
    fn route(&self) -> Route {
        Route::Nats
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(self.group.publish(record.clone()))
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.sender.connected() })
    }
}

/// The first 8 bytes of a digest, as hex: enough to tell two bodies under one id apart.
fn hex8(digest: &[u8; 32]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The store side: a durable pull consumer with explicit acks, restarted until shutdown.
pub fn spawn_consumer(
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
