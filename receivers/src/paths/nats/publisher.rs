//! The NATS path's entry side: publishes to the JetStream stream and waits for the
//! PublishAck; records that queue behind a publish go in one message.

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use futures::future::BoxFuture;
use prost::Message as _;

use super::setup::{SetupError, ensure_stream};
use super::{ACCEPTED_AT, NatsConfig, PUBLISHED_AT, RECORD_ID, RECORDS};
use crate::paths::group::{GROUP_LIMITS, Group, SendGroup, record_batch};
use crate::paths::{Accepted, PublishError, Publisher};
use crate::record::{Record, digest, now_us};
use contract::Route;

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
