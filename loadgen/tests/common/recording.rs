//! A target that records every request whatever its method and path (method, path and
//! query, headers, body, arrival) and answers by path, so scenario tests can see what each
//! request carried and make checks pass or fail: `/bad...` answers `{"ok":false}`, `/fail...`
//! answers 500, anything else `{"ok":true}`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request the target received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Idempotency-Key's user and send number: `<run>-u<user>-<n>`.
    pub fn user_and_send(&self) -> Option<(usize, u64)> {
        let key = self.header("idempotency-key")?;
        let mut parts = key.rsplit('-');
        let n = parts.next()?.parse().ok()?;
        let user = parts.next()?.strip_prefix('u')?.parse().ok()?;
        Some((user, n))
    }
}

pub struct RecordingTarget {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl RecordingTarget {
    pub fn start() -> RecordingTarget {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(answer).with_state(Arc::clone(&seen));
        runtime.spawn(async move { axum::serve(listener, app).await });
        RecordingTarget {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let path = uri.path().to_string();
    seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map_or(path.clone(), |p| p.as_str().to_string()),
        headers,
        body,
        at: Instant::now(),
    });
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.starts_with("bad") {
        (StatusCode::OK, r#"{"ok":false}"#)
    } else if last.starts_with("fail") {
        (StatusCode::INTERNAL_SERVER_ERROR, r#"{"ok":false}"#)
    } else {
        (StatusCode::OK, r#"{"ok":true}"#)
    }
}
