//! The three middleware paths by name: the key of every counter, histogram, store row and URL.

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

    pub fn name(self) -> &'static str {
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
