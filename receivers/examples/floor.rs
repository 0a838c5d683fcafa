//! The paths' floor: the receivers' own entry (`POST /`, its checks, its counters and
//! histograms, served by `serve.rs`) with nothing durable behind it, so scripts/bench-receivers
//! can tell what the entry and the gRPC hop cost before any broker or store is involved.
//!
//! - `floor ADDR entry`: the entry answers 201 as soon as its checks pass (a publisher that
//!   accepts every record at once);
//! - `floor ADDR grpc GRPC_ADDR`: the entry calls the gRPC path's own client
//!   (`GrpcPublisher`), and an in-process tonic server, served as the receivers serve theirs,
//!   answers each call at once.
//!
//! `cargo run --release -p receivers --example floor -- 127.0.0.1:18101 grpc 127.0.0.1:18102`

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use futures::future::BoxFuture;
use proto::ingest::ingest_server::{Ingest, IngestServer};
use proto::ingest::{RecordOutcome, StoreBatchReply, StoreBatchRequest, StoreReply, StoreRequest};
use receivers::http::entry::{Entry, post_record};
use receivers::paths::grpc::GrpcPublisher;
use receivers::paths::{Accepted, PublishError, Publisher};
use receivers::record::Record;
use receivers::serve::serve;
use receivers::stats::Stats;
use receivers::{Config, Route};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Accepts every record at once: the entry alone.
struct AcceptAll;

impl Publisher for AcceptAll {
    fn route(&self) -> Route {
        Route::Grpc
    }

    fn publish<'a>(&'a self, _: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async {
            Ok(Accepted {
                duplicate: false,
                dropped_by_broker: false,
            })
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// The gRPC server's side with no store: every call succeeds at once.
struct AnswerAtOnce;

#[tonic::async_trait]
impl Ingest for AnswerAtOnce {
    async fn store(
        &self,
        _: tonic::Request<StoreRequest>,
    ) -> Result<tonic::Response<StoreReply>, tonic::Status> {
        Ok(tonic::Response::new(StoreReply { duplicate: false }))
    }

    async fn store_batch(
        &self,
        request: tonic::Request<StoreBatchRequest>,
    ) -> Result<tonic::Response<StoreBatchReply>, tonic::Status> {
        let outcomes = request
            .into_inner()
            .records
            .iter()
            .map(|_| RecordOutcome::default())
            .collect();
        Ok(tonic::Response::new(StoreBatchReply { outcomes }))
    }
}

fn usage(why: &str) -> ! {
    eprintln!("floor: {why}; usage: floor ADDR entry | floor ADDR grpc GRPC_ADDR");
    std::process::exit(2);
}

async fn listen(addr: &str) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => usage(&format!("cannot listen on {addr}: {error}")),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, mode) = match args.as_slice() {
        [addr, mode, ..] => (addr.as_str(), mode.as_str()),
        _ => usage("an address and a mode are needed"),
    };
    // The receivers' own defaults, so the limits and timeouts are theirs.
    let config = Config::defaults();
    let limits = config.limits();
    let stop = CancellationToken::new();
    let publisher: Arc<dyn Publisher> = match (mode, args.get(2)) {
        ("entry", None) => Arc::new(AcceptAll),
        ("grpc", Some(grpc_addr)) => {
            let server = listen(grpc_addr).await;
            let router = tonic::service::Routes::new(IngestServer::new(AnswerAtOnce))
                .prepare()
                .into_axum_router();
            tokio::spawn(serve(
                server,
                router,
                limits,
                stop.clone(),
                config.shutdown_timeout,
            ));
            match GrpcPublisher::new(&format!("http://{grpc_addr}"), config.publish_timeout()) {
                Ok(publisher) => Arc::new(publisher),
                Err(why) => usage(&why),
            }
        }
        _ => usage(&format!("mode {mode:?} with {} arguments", args.len())),
    };
    let stats = Arc::new(Stats::start("floor".into(), vec![Route::Grpc]));
    let entry = Arc::new(Entry::new(publisher, stats, config.entry_limits()));
    let listener = listen(addr).await;
    eprintln!("floor: the entry listens on http://{addr}, mode {mode}");
    let app = Router::new().route("/", post(post_record).with_state(entry));
    serve(listener, app, limits, stop, config.shutdown_timeout).await;
}
