//! The benchmark's ceiling: a trivial axum handler (201 for POST /, 200 for GET /) that shows
//! what HTTP alone costs on this machine, so each path's throughput can be read as a ratio.
//! With a service time it is also the fixed-latency target of scripts/bench-gate; with a
//! stall (AT:FOR, seconds after the first POST) the stalling target of scripts/bench-open.
//! `GET /count` answers how many POSTs arrived, so a rate can be counted at the target.
//!
//! `cargo run --release -p receivers --example ceiling -- 127.0.0.1:18100 [SERVICE_US [AT:FOR]]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18100".into());
    let service = match args.next() {
        None => Duration::ZERO,
        Some(text) => match text.parse::<u64>() {
            Ok(us) => Duration::from_micros(us),
            Err(_) => {
                eprintln!("ceiling: SERVICE_US {text:?} is not a whole number of microseconds");
                std::process::exit(2);
            }
        },
    };
    let stall = match args.next() {
        None => None,
        Some(text) => {
            let parsed = text.split_once(':').and_then(|(at, length)| {
                Some((at.parse::<f64>().ok()?, length.parse::<f64>().ok()?))
            });
            match parsed {
                Some((at, length)) => {
                    Some((Duration::from_secs_f64(at), Duration::from_secs_f64(length)))
                }
                None => {
                    eprintln!("ceiling: stall {text:?} is not AT:FOR in seconds, such as 5:1");
                    std::process::exit(2);
                }
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling: listening on http://{addr}, service time {service:?}, stall {stall:?}");
    let posts = Arc::new(AtomicU64::new(0));
    let first = Arc::new(OnceLock::<Instant>::new());
    let counted = Arc::clone(&posts);
    let app = Router::new().route(
        "/count",
        get(move || async move { counted.load(Ordering::Relaxed).to_string() }),
    );
    let app = app.route(
        "/",
        get(move || async move {
            serve(service).await;
            "ok"
        })
        .post(move |body: Bytes| async move {
            posts.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let first = *first.get_or_init(|| now);
            // Once: everything that arrives during the stall is held until it ends.
            if let Some((at, length)) = stall
                && now >= first + at
                && now < first + at + length
            {
                tokio::time::sleep_until((first + at + length).into()).await;
            }
            serve(service).await;
            // Parse as the entries do, so the ceiling pays for the same JSON check.
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(_) => (
                    StatusCode::CREATED,
                    "{\"id\":\"x\",\"route\":\"ceiling\",\"duplicate\":false}",
                ),
                Err(_) => (StatusCode::BAD_REQUEST, "{\"error\":\"malformed_json\"}"),
            }
        }),
    );
    axum::serve(listener, app).await
}

/// A fixed service time. On a blocking thread, because a timer sleep rounds up to whole
/// milliseconds and a +30% change of 2 ms would drown in that rounding.
async fn serve(service: Duration) {
    if !service.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(service)).await;
    }
}
