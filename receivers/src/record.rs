//! A record in transit: the id that makes storing it idempotent, the JSON it carries, the
//! timestamps the latency stages are measured from, and the one set of checks every hop
//! applies before it stores or forwards a record (entry, gRPC server, both consumers).

use bytes::Bytes;
use rand::Rng;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Microseconds since the Unix epoch: comparable across processes on one machine, which
/// the hop and end-to-end stages need (an `Instant` cannot cross a broker).
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[derive(Debug, Clone)]
pub struct Record {
    /// The Idempotency-Key, or a generated id: the store's primary key.
    pub id: String,
    /// One JSON object, exactly as the entry received it.
    pub payload: Bytes,
    /// When the entry accepted the request (start of the end-to-end stage).
    pub accepted_at_us: i64,
}

/// A random 128-bit id for a request that came without an Idempotency-Key.
pub fn generated_id() -> String {
    format!("gen-{:032x}", rand::rng().random::<u128>())
}

/// Keys become AMQP message ids (at most 255 bytes), NATS header values and SQLite keys:
/// visible ASCII keeps all three safe.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// SHA-256 of the body: the store keeps it beside the first body, so a reused key with
/// another body is told from a resend of the same one.
pub fn digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// Why a record may not be stored. The same rules hold at every hop, so a record that
/// reaches a broker or the gRPC port by another way than the entry is judged alike.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Invalid {
    #[error("the id is missing")]
    MissingId,
    #[error("the id must be 1 to 200 visible ASCII characters, such as run-u3-17")]
    BadId,
    #[error("the body is over the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("the body is empty")]
    Empty,
    #[error("the body is not valid JSON (line {line}, column {column}): {why}")]
    Malformed {
        line: usize,
        column: usize,
        why: String,
    },
    #[error("the body is JSON but not an object")]
    NotAnObject,
}

impl Invalid {
    /// The machine-readable code, in HTTP error bodies, dead-letter headers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::MissingId => "missing_id",
            Invalid::BadId => "bad_idempotency_key",
            Invalid::TooLarge { .. } => "payload_too_large",
            Invalid::Empty => "empty_body",
            Invalid::Malformed { .. } => "malformed_json",
            Invalid::NotAnObject => "not_an_object",
        }
    }
}

/// The id rule alone (the entry checks it before it reads the body).
pub fn check_id(id: Option<&str>) -> Result<&str, Invalid> {
    match id {
        None => Err(Invalid::MissingId),
        Some(id) if valid_id(id) => Ok(id),
        Some(_) => Err(Invalid::BadId),
    }
}

/// The body rule alone: one JSON object within `limit` bytes.
pub fn check_payload(payload: &[u8], limit: usize) -> Result<(), Invalid> {
    if payload.len() > limit {
        return Err(Invalid::TooLarge { limit });
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Invalid::Empty);
    }
    let raw: &RawValue = serde_json::from_slice(payload).map_err(|e| Invalid::Malformed {
        line: e.line(),
        column: e.column(),
        why: e.to_string(),
    })?;
    if raw.get().starts_with('{') {
        Ok(())
    } else {
        Err(Invalid::NotAnObject)
    }
}

/// Both rules: what the gRPC server and the consumers apply to whatever they are handed.
pub fn check(id: Option<&str>, payload: &[u8], limit: usize) -> Result<(), Invalid> {
    check_id(id)?;
    check_payload(payload, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("20261126-204426-6c02-u3-17"));
        assert!(!valid_id(""));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"x".repeat(201)));
        assert!(valid_id(&generated_id()));
        assert_ne!(generated_id(), generated_id());
        assert_eq!(check_id(None), Err(Invalid::MissingId));
        assert_eq!(check_id(Some("")), Err(Invalid::BadId));
        assert_eq!(check_id(Some("ok-1")), Ok("ok-1"));
    }

    #[test]
    fn only_json_objects_within_the_limit_pass() {
        assert!(check_payload(br#"{"a":1}"#, 100).is_ok());
        assert!(check_payload(b"  {}  ", 100).is_ok());
        assert_eq!(check_payload(b"", 100), Err(Invalid::Empty));
        assert_eq!(check_payload(b"[1]", 100), Err(Invalid::NotAnObject));
        assert_eq!(check_payload(b"\"s\"", 100), Err(Invalid::NotAnObject));
        assert_eq!(
            check_payload(b"{\"a\":", 100).unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(
            check_payload(b"not json", 100).unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(
            check_payload(br#"{"a":"0123456789"}"#, 10),
            Err(Invalid::TooLarge { limit: 10 })
        );
        assert_eq!(
            check(Some("k"), b"{}", 10).and(check(None, b"{}", 10)),
            Err(Invalid::MissingId)
        );
    }

    #[test]
    fn digests_tell_bodies_apart() {
        assert_eq!(digest(b"{}"), digest(b"{}"));
        assert_ne!(digest(b"{\"a\":1}"), digest(b"{\"a\":2}"));
    }
}
