//! The answers to `POST /`: `201 Created` once a path durably accepted a record, and the
//! one error body every refusal carries. Both name the route, because behind a balancer
//! only the answer can say which path took a record.

use serde::{Deserialize, Serialize};

use crate::route::Route;

/// `201`: the record is durably accepted under `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    pub route: Route,
    /// The path saw this id before (a resend): it is stored once.
    pub duplicate: bool,
}

/// Every non-2xx answer: a machine-readable code, a sentence that says what failed and
/// what to do, and the path that refused, when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// The `route` of any answer, 201 or error, if it names one: what a client reads to book
/// a send to a path without caring which kind of answer it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct NamedRoute {
    #[serde(default)]
    pub route: Option<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_with_lowercase_routes() {
        let created = Created {
            id: "r-u0-1".into(),
            route: Route::Nats,
            duplicate: false,
        };
        let text = serde_json::to_string(&created).unwrap();
        assert_eq!(text, r#"{"id":"r-u0-1","route":"nats","duplicate":false}"#);
        let error: ErrorBody =
            serde_json::from_str(r#"{"error":"overloaded","message":"m"}"#).unwrap();
        assert_eq!(error.route, None);
        let named: NamedRoute = serde_json::from_str(&text).unwrap();
        assert_eq!(named.route, Some(Route::Nats));
    }
}
