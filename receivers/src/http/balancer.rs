//! The front door: `POST /` goes round-robin (weighted) over the paths' entries, `POST /<route>`
//! to one. An entry in this process is called directly, with no HTTP hop, which is what
//! lets the front door carry more than nginx over the same entries (scripts/bench-receivers);
//! one elsewhere (`--upstream`) over HTTP. An entry that refuses connections or answers 503 is
//! skipped for a cooldown, and the request tries the next: resending is safe, the store keys on
//! the id, and a record sent without an Idempotency-Key is named here, before its first attempt,
//! so every attempt carries the same id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::http::entry::{Entry, post_record, read_body};
use crate::http::error::AppError;
use crate::http::read::{ReadState, read_routes};
use crate::record::generated_id;
use crate::redact::redact;
use contract::Route;

/// Where the front door sends a path's records.
pub enum Hop {
    /// An entry in this process: its handler is called with the request as it would get it.
    Local(Arc<Entry>),
    /// An entry elsewhere, over HTTP: its base URL, such as http://127.0.0.1:8083.
    Remote(String),
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hop::Local(entry) => write!(f, "Local({})", entry.publisher.route()),
            Hop::Remote(url) => write!(f, "Remote({})", redact(url)),
        }
    }
}

/// One path's entry as the balancer sees it.
#[derive(Debug)]
pub struct Upstream {
    pub route: Route,
    pub hop: Hop,
    /// Milliseconds since the balancer started before which this upstream is skipped.
    down_until_ms: AtomicU64,
}

#[derive(Debug)]
pub struct Balancer {
    upstreams: Vec<Upstream>,
    /// Upstream indices, each repeated by its weight, interleaved (smooth round-robin).
    schedule: Vec<usize>,
    next: AtomicUsize,
    client: reqwest::Client,
    cooldown: Duration,
    started: Instant,
    /// The body is read here (to be resent), under the entries' limits.
    body_limit: usize,
    body_read_timeout: Duration,
}

/// The front door's router: `POST /`, `POST /<route>`, and the read endpoints.
pub fn balancer_app(balancer: Arc<Balancer>, read: Arc<ReadState>) -> Router {
    Router::new()
        .route("/", post(post_any))
        .route("/{route}", post(post_route))
        .with_state(balancer)
        .merge(read_routes(read))
}

impl Balancer {
    /// `upstreams` are (route, where, weight); weights of 0 leave a route out of `POST /`.
    pub fn new(
        upstreams: Vec<(Route, Hop, u32)>,
        timeout: Duration,
        body_limit: usize,
        body_read_timeout: Duration,
    ) -> Result<Balancer, String> {
        let schedule = smooth_schedule(&upstreams.iter().map(|u| u.2).collect::<Vec<_>>());
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("balancer HTTP client: {e}"))?;
        Ok(Balancer {
            upstreams: upstreams
                .into_iter()
                .map(|(route, hop, _)| Upstream {
                    route,
                    hop: match hop {
                        Hop::Remote(url) => Hop::Remote(url.trim_end_matches('/').to_string()),
                        local => local,
                    },
                    down_until_ms: AtomicU64::new(0),
                })
                .collect(),
            schedule,
            next: AtomicUsize::new(0),
            client,
            cooldown: Duration::from_secs(1),
            started: Instant::now(),
            body_limit,
            body_read_timeout,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn is_up(&self, index: usize) -> bool {
        self.upstreams[index].down_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    fn mark_down(&self, index: usize) {
        let until = self.now_ms() + self.cooldown.as_millis() as u64;
        self.upstreams[index]
            .down_until_ms
            .store(until, Ordering::Relaxed);
    }

    /// The healthy upstreams to try, in turn order, each once.
    fn candidates(&self) -> Vec<usize> {
        if self.schedule.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order = Vec::with_capacity(self.upstreams.len());
        for step in 0..self.schedule.len() {
            let index = self.schedule[(start + step) % self.schedule.len()];
            if !order.contains(&index) && self.is_up(index) {
                order.push(index);
            }
        }
        order
    }

    /// Reads the body, names the record, and tries `candidates` in turn until one answers
    /// anything but 503.
    async fn forward(&self, candidates: Vec<usize>, headers: &HeaderMap, body: Body) -> Response {
        let body: Bytes = match read_body(body, self.body_limit, self.body_read_timeout).await {
            Ok(body) => body,
            Err(error) => return error.into_response(),
        };
        // Named once, here: a retry on another path must carry the same id, or a publish
        // that timed out after the broker took it would be stored twice.
        let key = match headers.get("idempotency-key") {
            Some(key) => key.clone(),
            None => {
                HeaderValue::from_str(&generated_id()).expect("a generated id is a header value")
            }
        };
        let content_type = headers.get(header::CONTENT_TYPE);
        let mut last_problem = String::from("every path is down (cooling off after failures)");
        for index in candidates {
            let upstream = &self.upstreams[index];
            let answer = match &upstream.hop {
                Hop::Local(entry) => {
                    let request = local_request(&key, content_type, body.clone());
                    Ok(post_record(State(Arc::clone(entry)), request).await)
                }
                Hop::Remote(url) => self.send(url, &key, content_type, body.clone()).await,
            };
            match answer {
                Ok(response) if response.status() != StatusCode::SERVICE_UNAVAILABLE => {
                    return response;
                }
                Ok(_) => {
                    last_problem = format!("the {} path answered 503", upstream.route);
                    self.mark_down(index);
                }
                Err(error) => {
                    // The entry's address and the error stay in the log.
                    tracing::warn!(route = %upstream.route, hop = ?upstream.hop, "front door: the entry failed: {}", redact(&error.to_string()));
                    last_problem = format!("the {} path did not answer", upstream.route);
                    self.mark_down(index);
                }
            }
        }
        AppError::unavailable(
            "no_path_available",
            format!("{last_problem}; resend with the same Idempotency-Key after Retry-After"),
        )
        .into_response()
    }

    /// One attempt at an entry elsewhere, its answer relayed.
    async fn send(
        &self,
        url: &str,
        key: &HeaderValue,
        content_type: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response, reqwest::Error> {
        let mut request = self
            .client
            .post(format!("{url}/"))
            .header("idempotency-key", key.as_bytes())
            .body(body);
        if let Some(value) = content_type {
            request = request.header(header::CONTENT_TYPE, value.as_bytes());
        }
        Ok(relay(request.send().await?).await)
    }
}

/// The request an entry in this process is handed: what the HTTP attempt would carry.
fn local_request(key: &HeaderValue, content_type: Option<&HeaderValue>, body: Bytes) -> Request {
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert("idempotency-key", key.clone());
    if let Some(value) = content_type {
        headers.insert(header::CONTENT_TYPE, value.clone());
    }
    request
}

/// Copies status, content type and body from the entry's response.
async fn relay(response: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let body = response.bytes().await.unwrap_or_default();
    let mut out = (status, body).into_response();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::RETRY_AFTER, retry_after),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

/// `POST /`: any path, in turn.
pub async fn post_any(
    State(balancer): State<Arc<Balancer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let candidates = balancer.candidates();
    balancer.forward(candidates, &headers, body).await
}

/// `POST /<route>`: that path only.
pub async fn post_route(
    State(balancer): State<Arc<Balancer>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = Route::from_name(&route) else {
        return AppError {
            status: StatusCode::NOT_FOUND,
            code: "no_such_route",
            message: format!(
                "there is no path '{route}'; use /grpc, /rabbitmq or /nats, or / for any"
            ),
            route: None,
        }
        .into_response();
    };
    let candidates: Vec<usize> = (0..balancer.upstreams.len())
        .filter(|i| balancer.upstreams[*i].route == route)
        .collect();
    if candidates.is_empty() {
        return AppError::unavailable(
            "path_not_enabled",
            format!("the {route} path is not enabled here"),
        )
        .into_response();
    }
    balancer.forward(candidates, &headers, body).await
}

/// Interleaves indices by weight so heavy upstreams are not hit in bursts
/// (nginx's smooth weighted round-robin): weights 2,1 give 0,1,0.
pub fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0_i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
            .expect("weights");
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_interleave() {
        assert_eq!(smooth_schedule(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(smooth_schedule(&[2, 1]), vec![0, 1, 0]);
        let s = smooth_schedule(&[5, 1, 0]);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 5);
        assert!(!s.contains(&2), "weight 0 is never chosen");
    }

    #[test]
    fn round_robin_skips_upstreams_that_are_down() {
        let b = Balancer::new(
            Route::ALL
                .iter()
                .map(|r| (*r, Hop::Remote(format!("http://127.0.0.1:1/{r}")), 1))
                .collect(),
            Duration::from_secs(1),
            1024,
            Duration::from_secs(1),
        )
        .unwrap();
        let firsts: Vec<usize> = (0..3).map(|_| b.candidates()[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2], "each path gets its turn");
        b.mark_down(1);
        for _ in 0..6 {
            assert!(
                !b.candidates().contains(&1),
                "a path that is down is skipped"
            );
        }
        assert_eq!(b.candidates().len(), 2);
    }
}
