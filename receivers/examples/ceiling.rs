//! The benchmark's ceiling: a trivial axum handler (201 for POST /, 200 for GET /) that shows
//! what HTTP alone costs on this machine, so each path's throughput can be read as a ratio.
//!
//! `cargo run --release -p receivers --example ceiling -- 127.0.0.1:18100`

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18100".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling: listening on http://{addr}");
    let app = Router::new().route(
        "/",
        get(|| async { "ok" }).post(|body: Bytes| async move {
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
