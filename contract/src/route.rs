//! The three middleware paths by name (the key of every counter, histogram, store row and
//! URL), and the stages each path's latency is measured in.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Grpc,
    Rabbitmq,
    Nats,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Grpc, Route::Rabbitmq, Route::Nats];

    pub const fn name(self) -> &'static str {
        match self {
            Route::Grpc => "grpc",
            Route::Rabbitmq => "rabbitmq",
            Route::Nats => "nats",
        }
    }

    pub fn from_name(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Position in `ALL`, for fixed-size per-route tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a latency was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// From the request arriving at the entry to its response.
    Ingress,
    /// From publish to consume: the broker (or the gRPC call) alone.
    Hop,
    /// From the entry accepting the record to the store committing it.
    E2e,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Ingress, Stage::Hop, Stage::E2e];

    pub const fn name(self) -> &'static str {
        match self {
            Stage::Ingress => "ingress",
            Stage::Hop => "hop",
            Stage::E2e => "e2e",
        }
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
