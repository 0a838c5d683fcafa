//! The NATS path's set-up on the server: the stream, the durable consumer and the
//! dead-letter stream, made when missing and refused when they would not keep the promise.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::NatsConfig;

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
pub(super) async fn ensure_stream(
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
pub(super) async fn ensure_consumer(
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
