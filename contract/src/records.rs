//! `GET /records?prefix=RUN_ID[&after=ID][&limit=N]`: the stored records of one loadgen
//! run, by id, a page at a time, so loadgen can reconcile what it sent with what was stored
//! and neither side holds every id of a long run in one document.

use serde::{Deserialize, Serialize};

use crate::route::Route;

/// A stored record's id, the path that stored it, and how many duplicate inserts it absorbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub id: String,
    pub route: Route,
    pub duplicates: u64,
}

/// One page of the answer to `GET /records?prefix=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsPage {
    pub prefix: String,
    /// Records on this page.
    pub count: usize,
    pub records: Vec<LedgerRow>,
    /// Pass as `after=` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
