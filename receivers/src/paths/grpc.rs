//! The gRPC path: the entry calls `Ingest/Store` (tonic, with a deadline), or
//! `Ingest/StoreBatch` for the records that queued behind its last call, and the server
//! answers only after the store commit, so a record's success is its durable acceptance.
//! The server applies the entry's checks (INVALID_ARGUMENT), answers a reused id with
//! another body with ALREADY_EXISTS, and serves `grpc.health.v1` so `/ready` can see it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use futures::future::BoxFuture;
use proto::ingest::ingest_client::IngestClient;
use proto::ingest::ingest_server::{Ingest, IngestServer};
use proto::ingest::{RecordOutcome, StoreBatchReply, StoreBatchRequest, StoreReply, StoreRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::group::{GROUP_LIMITS, Group, SendGroup, batched, receive_batch};
use super::{
    Accepted, Disposition, EntrySide, PathContext, PublishError, Publisher, Received, Sink,
    StartedPath,
};
use crate::record::{Record, now_us};
use crate::serve::{bind, serve};
use crate::stats::Stage;
use crate::store::InsertOutcome;
use contract::Route;

/// The gRPC path's flags.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "gRPC path")]
pub struct GrpcArgs {
    /// HTTP entry of the gRPC path
    #[arg(
        id = "grpc_entry_addr",
        long = "grpc-entry-addr",
        env = "GRPC_ENTRY_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub entry_addr: SocketAddr,

    /// gRPC server (the gRPC path's store side)
    #[arg(
        id = "grpc_addr",
        long = "grpc-addr",
        env = "GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub addr: SocketAddr,

    /// gRPC server the gRPC entry calls [default: http://<grpc-addr>]
    #[arg(id = "grpc_url", long = "grpc-url", env = "GRPC_URL")]
    pub url: Option<String>,
}

impl GrpcArgs {
    /// The gRPC server the entry calls.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
    }
}

/// Starts the gRPC server (the store side) and the entry's publisher, which calls this
/// process's own server unless `--grpc-url` names another.
pub async fn start(args: &GrpcArgs, context: &PathContext) -> anyhow::Result<StartedPath> {
    let mut started = StartedPath {
        route: Route::Grpc,
        entry: None,
        server: None,
    };
    if context.consumers {
        let listener = bind(args.addr, "gRPC server", "--grpc-addr").await?;
        let addr = listener.local_addr()?;
        let call_timeout = context.body_read_timeout + context.publish_timeout;
        let app = router(context.sink.clone(), call_timeout, context.shutdown.clone()).await;
        // Stopped after the entries, which call it; by then only direct clients remain.
        let deadline = Duration::from_secs(1);
        let server = tokio::spawn(serve(
            listener,
            app,
            context.limits,
            context.shutdown.clone(),
            deadline,
        ));
        started.server = Some((addr, server));
    }
    if context.entries {
        let url = match (&started.server, &args.url) {
            (Some((addr, _)), None) => format!("http://{addr}"),
            _ => args.url(),
        };
        let publisher =
            GrpcPublisher::new(&url, context.publish_timeout).map_err(|e| anyhow!(e))?;
        started.entry = Some(EntrySide {
            publisher: Arc::new(publisher),
            addr: args.entry_addr,
            flag: "--grpc-entry-addr",
        });
    }
    Ok(started)
}

/// The entry's side: a lazily connected HTTP/2 channel, shared by every request. The
/// records that queue while a call is in flight go together in the next, one `StoreBatch`
/// (group commit): a call's HTTP/2 stream, headers and framing at both ends cost more than
/// the record it carries, and the server commits the batch's records together.
pub struct GrpcPublisher {
    group: Group,
    health: HealthClient<Channel>,
}

struct GrpcSender {
    client: IngestClient<Channel>,
    deadline: Duration,
}

impl GrpcPublisher {
    /// `url` is the gRPC server, such as http://127.0.0.1:50051. Connects on first use and
    /// reconnects by itself, so a server that starts later is picked up. Starts the task
    /// that sends what queues, so it needs a Tokio runtime.
    pub fn new(url: &str, deadline: Duration) -> Result<GrpcPublisher, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("gRPC server URL '{url}': {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        let sender = Arc::new(GrpcSender {
            client: IngestClient::new(channel.clone()),
            deadline,
        });
        Ok(GrpcPublisher {
            group: Group::start(Route::Grpc, sender, GROUP_LIMITS),
            health: HealthClient::new(channel),
        })
    }
}

impl GrpcSender {
    /// One record, in a `Store` call of its own.
    async fn store(&self, record: &Record) -> Result<Accepted, PublishError> {
        let mut request = Request::new(StoreRequest {
            id: record.id.clone(),
            payload: String::from_utf8_lossy(&record.payload).into_owned(),
            accepted_at_us: record.accepted_at_us,
            sent_at_us: now_us(),
        });
        // The deadline travels with the call, so the server gives up too.
        request.set_timeout(self.deadline);
        let reply = self
            .client
            .clone()
            .store(request)
            .await
            .map_err(|status| self.refusal(&status))?;
        Ok(Accepted {
            duplicate: reply.into_inner().duplicate,
            dropped_by_broker: false,
        })
    }

    /// Several records in one `StoreBatch` call: each gets the outcome the server gave it,
    /// or all the call's error.
    async fn store_batch(&self, records: Vec<Record>) -> Vec<Result<Accepted, PublishError>> {
        let count = records.len();
        let mut request = Request::new(StoreBatchRequest {
            records: batched(records),
            sent_at_us: now_us(),
        });
        request.set_timeout(self.deadline);
        let outcomes = match self.client.clone().store_batch(request).await {
            Ok(reply) => reply.into_inner().outcomes,
            Err(status) => return vec![Err(self.refusal(&status)); count],
        };
        if outcomes.len() != count {
            let why = format!(
                "the gRPC server answered {} outcomes to a batch of {count} records",
                outcomes.len()
            );
            let refused = PublishError::Refused {
                route: Route::Grpc,
                why,
            };
            return vec![Err(refused); count];
        }
        outcomes
            .into_iter()
            .map(|outcome| match Code::from_i32(outcome.code) {
                Code::Ok => Ok(Accepted {
                    duplicate: outcome.duplicate,
                    dropped_by_broker: false,
                }),
                code => Err(self.refusal(&Status::new(code, outcome.message))),
            })
            .collect()
    }

    /// What a call's error status, or a record's in a batch, means to the entry.
    fn refusal(&self, status: &Status) -> PublishError {
        let route = Route::Grpc;
        match status.code() {
            Code::DeadlineExceeded => PublishError::Timeout {
                route,
                timeout_ms: self.deadline.as_millis() as u64,
            },
            Code::Unavailable => PublishError::NotConnected {
                route,
                why: status.message().to_string(),
            },
            Code::AlreadyExists => PublishError::Conflict { route },
            Code::InvalidArgument => PublishError::Invalid {
                route,
                why: status.message().to_string(),
            },
            code => PublishError::Refused {
                route,
                why: format!("{code:?}: {}", status.message()),
            },
        }
    }
}

impl SendGroup for GrpcSender {
    /// One record goes in a `Store` call, as before group commit; several in a `StoreBatch`.
    fn send(&self, records: Vec<Record>) -> BoxFuture<'_, Vec<Result<Accepted, PublishError>>> {
        Box::pin(async move {
            match records.as_slice() {
                [record] => vec![self.store(record).await],
                _ => self.store_batch(records).await,
            }
        })
    }
}

impl Publisher for GrpcPublisher {
    fn route(&self) -> Route {
        Route::Grpc
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(self.group.publish(record.clone()))
    }

    /// Asks the server's `grpc.health.v1` service, so a dead server (or one whose store
    /// cannot write) shows on `/ready`, not only as 503s.
    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let mut request = Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(Duration::from_secs(1));
            let mut health = self.health.clone();
            let answer = tokio::time::timeout(Duration::from_secs(2), health.check(request)).await;
            matches!(answer, Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32)
        })
    }
}

/// The store side: checks each record, commits it, then replies.
pub struct IngestService {
    sink: Sink,
}

impl IngestService {
    /// What a record's disposition is to its caller: stored (`true` if it was a duplicate),
    /// or the error status that says why not. The same for a record alone or in a batch.
    fn answer(&self, disposition: Disposition) -> Result<bool, Status> {
        match disposition {
            Disposition::Settled(inserted) => match inserted.outcome {
                InsertOutcome::Conflict => Err(Status::already_exists(
                    "a record with this id is stored already with another body; send it under a new id",
                )),
                outcome => Ok(outcome == InsertOutcome::Duplicate),
            },
            Disposition::Invalid(invalid) => {
                self.sink.dead_lettered(Route::Grpc);
                Err(Status::invalid_argument(format!(
                    "{} ({}); nothing was stored",
                    invalid,
                    invalid.code()
                )))
            }
            // The detail (store path, SQL error) stays in the log.
            Disposition::StoreFailed(_) => Err(Status::unavailable(
                "the store did not commit the record; retry later with the same id",
            )),
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn store(&self, request: Request<StoreRequest>) -> Result<Response<StoreReply>, Status> {
        let received_at = now_us();
        let call = request.into_inner();
        self.sink.stats.latency(
            Route::Grpc,
            Stage::Hop,
            (received_at - call.sent_at_us).max(0) as u64,
        );
        let received = Received {
            id: Some(call.id),
            payload: call.payload.into_bytes().into(),
            accepted_at_us: (call.accepted_at_us > 0).then_some(call.accepted_at_us),
            redelivered: false,
        };
        let disposition = self.sink.receive(Route::Grpc, received, true).await;
        let duplicate = self.answer(disposition)?;
        Ok(Response::new(StoreReply { duplicate }))
    }

    async fn store_batch(
        &self,
        request: Request<StoreBatchRequest>,
    ) -> Result<Response<StoreBatchReply>, Status> {
        let received_at = now_us();
        let call = request.into_inner();
        let hop = (received_at - call.sent_at_us).max(0) as u64;
        let settled = receive_batch(
            &self.sink,
            Route::Grpc,
            call.records,
            Some(hop),
            false,
            true,
        );
        let outcomes = settled
            .await
            .into_iter()
            .map(|record| match self.answer(record.disposition) {
                Ok(duplicate) => RecordOutcome {
                    code: Code::Ok as i32,
                    message: String::new(),
                    duplicate,
                },
                Err(status) => RecordOutcome {
                    code: status.code() as i32,
                    message: status.message().to_string(),
                    duplicate: false,
                },
            })
            .collect();
        Ok(Response::new(StoreBatchReply { outcomes }))
    }
}

/// The gRPC server as a router, served like every other listener (`serve.rs`), so it has
/// the same header, idle and connection limits and shutdown deadline. A call must be over
/// within `call_timeout` (its body read, checked and committed), or it is answered
/// DEADLINE_EXCEEDED: HTTP/2 has no body timeout of its own. Its health service reports
/// NOT_SERVING while the store's writes fail, until `shutdown`.
pub async fn router(sink: Sink, call_timeout: Duration, shutdown: CancellationToken) -> Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    let store = sink.store.clone();
    tokio::spawn(async move {
        let mut serving = true;
        while !shutdown.is_cancelled() {
            let ok = !store.writes_failing();
            if ok != serving {
                let status = if ok {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", status).await;
                serving = ok;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    tonic::service::Routes::new(IngestServer::new(IngestService { sink }))
        .add_service(health)
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(call_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => Status::deadline_exceeded(format!(
                        "the call was not complete within {} ms (--body-read-timeout)",
                        call_timeout.as_millis()
                    ))
                    .into_http(),
                }
            },
        ))
}
