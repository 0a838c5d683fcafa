//! What users send: weighted flows (Goose's scenarios), each a sequence of requests (Goose's
//! transactions) with a method, a path under `--host`, headers, a body, the statuses that
//! count as success and a check on the answer. `--scenario FILE` reads one from TOML
//! (`file.rs`); without it, `Scenarios::seed` is today's POST / and GET /.

mod check;
mod file;
mod join;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;

pub use check::{Check, Expected};
pub use file::{ScenarioError, read};
pub use join::join_under;

use crate::users_plan::UsersPlan;

/// The request names of the seed, as the reports and gate rules know them.
pub const POST_NAME: &str = "POST /";
pub const GET_NAME: &str = "GET /";

/// Every flow a run's users follow, and the users plan the file gives, if any.
#[derive(Debug, Clone)]
pub struct Scenarios {
    pub flows: Vec<Flow>,
    /// `[[stage]]` in the file: users over time, as `--users-plan`.
    pub stages: Option<UsersPlan>,
    /// The file it was read from; `None` for the seed.
    pub source: Option<std::path::PathBuf>,
}

/// One weighted flow: a Goose scenario. Goose gives it `weight` shares of the users.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub weight: usize,
    /// Goose's wait after each request; `None` takes `--wait`.
    pub wait: Option<(Duration, Duration)>,
    pub steps: Vec<Step>,
}

/// One request of a flow: a Goose transaction.
#[derive(Debug, Clone)]
pub struct Step {
    /// The reports' and the gate's key, as Locust's request names.
    pub name: String,
    pub method: reqwest::Method,
    /// As written, relative to `--host` (see `join_under`).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Body,
    pub expect: Expected,
    pub check: Option<Check>,
    /// An extra pause after this request's answer, on top of the flow's wait.
    pub think: Option<(Duration, Duration)>,
}

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// The user's next record from `--traffic`, with its Idempotency-Key, in the ledger.
    Record,
    /// The same bytes every time: a JSON value, a text, or a file's content.
    Fixed(Bytes),
    None,
}

impl Scenarios {
    /// Today's requests: POST / with the next record, then GET / (unless `post_only`).
    pub fn seed(post_only: bool) -> Scenarios {
        let step = |name: &str, method, body| Step {
            name: name.to_string(),
            method,
            path: "/".into(),
            headers: match body {
                Body::Record => HeaderMap::from_iter([(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/json"),
                )]),
                _ => HeaderMap::new(),
            },
            body,
            expect: Expected::default(),
            check: None,
            think: None,
        };
        let mut steps = vec![step(POST_NAME, reqwest::Method::POST, Body::Record)];
        if !post_only {
            steps.push(step(GET_NAME, reqwest::Method::GET, Body::None));
        }
        Scenarios {
            flows: vec![Flow {
                name: "Replay".into(),
                weight: 1,
                wait: None,
                steps,
            }],
            stages: None,
            source: None,
        }
    }

    /// Whether any request sends a record: only then is there a ledger to reconcile.
    pub fn sends_records(&self) -> bool {
        self.flows.iter().any(|f| f.record_steps() > 0)
    }

    /// The fewest records one pass of a flow sends, among flows that send any: a user in
    /// per-user or shared mode runs until its records are spent, so Goose runs enough
    /// passes for the flow that spends them slowest.
    pub fn fewest_records_per_pass(&self) -> Option<usize> {
        self.flows
            .iter()
            .map(Flow::record_steps)
            .filter(|n| *n > 0)
            .min()
    }

    /// Every request name, in the file's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.flows
            .iter()
            .flat_map(|f| f.steps.iter().map(|s| s.name.as_str()))
    }
}

impl Flow {
    fn record_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.body, Body::Record))
            .count()
    }
}
