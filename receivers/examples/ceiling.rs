//! The benchmark's ceiling: a trivial axum handler (201 for POST /, 200 for GET /) that shows
//! what HTTP alone costs on this machine, so each path's throughput can be read as a ratio.
//! With a service time it is also the fixed-latency target of scripts/bench-gate.
//!
//! `cargo run --release -p receivers --example ceiling -- 127.0.0.1:18100 [SERVICE_US]`

use std::time::Duration;

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
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling: listening on http://{addr}, service time {service:?}");
    let app = Router::new().route(
        "/",
        get(move || async move {
            serve(service).await;
            "ok"
        })
        .post(move |body: Bytes| async move {
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
