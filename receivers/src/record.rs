//! A record in transit: the id that makes storing it idempotent, the JSON it carries, and
//! the timestamps the latency stages are measured from.

use bytes::Bytes;
use rand::Rng;

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
    }
}
