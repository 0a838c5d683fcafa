//! The delivery ledger: what was sent (per-user ranges of accepted sends) and its
//! reconciliation with what the receivers stored.

pub mod delivery;
pub mod sent;
