//! Every listener's accept loop (front door, entries, gRPC server): a cap on open
//! connections, a header-read timeout (HTTP/1), a cap on streams per connection and
//! keep-alive pings (HTTP/2), an idle timeout on every connection, and a graceful shutdown
//! with a deadline past which open connections are cut. axum's own `serve` sets none of
//! these, so the loop is built from hyper-util's parts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

/// What one listener allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// An HTTP/1 client must send its whole request head within this.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed: a
    /// keep-alive connection left open, or a client that stalls mid-request.
    pub idle_timeout: Duration,
    /// Connections open at once; the next client waits in the kernel's backlog.
    pub max_connections: usize,
    /// Requests open at once on one HTTP/2 connection (the gRPC server's clients); the
    /// client holds the next until one ends. With `max_connections` it bounds the requests
    /// a few clients can keep the server holding.
    pub max_streams: u32,
}

/// The largest header block an HTTP/2 client may send (HTTP/1's is hyper's ~100 headers).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How a listener's shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open at the deadline, and so cut.
    pub cut: usize,
}

/// Binds `addr` for `what`; a port in use names the flag that moves it.
pub async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what}; stop whatever holds it or pass {flag}")
    })
}

/// Serves `app` on `listener` until `stop`; then lets the requests in progress finish for
/// at most `deadline`, and cuts whatever is still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    deadline: Duration,
) -> Stopped {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.idle_timeout.min(Duration::from_secs(20)));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!("accept on {:?} failed: {error}", listener.local_addr().ok());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_read_timeout(Some(limits.idle_timeout));
        io.set_write_timeout(Some(limits.idle_timeout));
        let io = TokioIo::new(Box::pin(io));
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(app.clone()))
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    match tokio::time::timeout(deadline, graceful.shutdown()).await {
        Ok(()) => Stopped { cut: 0 },
        Err(_) => {
            connections.abort_all();
            let mut cut = 0;
            while let Some(ended) = connections.join_next().await {
                cut += usize::from(ended.is_err_and(|e| e.is_cancelled()));
            }
            Stopped { cut }
        }
    }
}
