//! `GET /records?prefix=RUN_ID`: the stored records of one loadgen run, by id, so loadgen
//! can reconcile what it sent with what was stored.

use serde::{Deserialize, Serialize};

use crate::route::Route;

/// A stored record's id, the path that stored it, and how many duplicate inserts it absorbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub id: String,
    pub route: Route,
    pub duplicates: u64,
}

/// The answer to `GET /records?prefix=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsPage {
    pub prefix: String,
    pub count: usize,
    pub records: Vec<LedgerRow>,
}
