//! The gRPC path: the entry calls `Ingest/Store` (tonic, with a deadline) and the server
//! answers only after the store commit, so the call's success is the durable acceptance.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::ingest::ingest_client::IngestClient;
use proto::ingest::ingest_server::{Ingest, IngestServer};
use proto::ingest::{StoreReply, StoreRequest};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::{Accepted, PublishError, Publisher};
use crate::record::{Record, now_us};
use crate::route::Route;
use crate::stats::{Stage, Stats};
use crate::store::Store;

/// The entry's side: a lazily connected HTTP/2 channel, shared by every request.
pub struct GrpcPublisher {
    client: IngestClient<Channel>,
    deadline: Duration,
}

impl GrpcPublisher {
    /// `url` is the gRPC server, such as http://127.0.0.1:50051. Connects on first use and
    /// reconnects by itself, so a server that starts later is picked up.
    pub fn new(url: &str, deadline: Duration) -> Result<GrpcPublisher, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("gRPC server URL '{url}': {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        Ok(GrpcPublisher {
            client: IngestClient::new(endpoint.connect_lazy()),
            deadline,
        })
    }
}

impl Publisher for GrpcPublisher {
    fn route(&self) -> Route {
        Route::Grpc
    }

    fn publish<'a>(&'a self, record: &'a Record) -> BoxFuture<'a, Result<Accepted, PublishError>> {
        Box::pin(async move {
            let mut request = Request::new(StoreRequest {
                id: record.id.clone(),
                payload: String::from_utf8_lossy(&record.payload).into_owned(),
                accepted_at_us: record.accepted_at_us,
                sent_at_us: now_us(),
            });
            // The deadline travels with the call, so the server gives up too.
            request.set_timeout(self.deadline);
            let mut client = self.client.clone();
            match client.store(request).await {
                Ok(reply) => Ok(Accepted {
                    duplicate: reply.into_inner().duplicate,
                    dropped_by_broker: false,
                }),
                Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                    Err(PublishError::Timeout {
                        route: Route::Grpc,
                        timeout_ms: self.deadline.as_millis() as u64,
                    })
                }
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    Err(PublishError::NotConnected {
                        route: Route::Grpc,
                        why: status.message().to_string(),
                    })
                }
                Err(status) => Err(PublishError::Refused {
                    route: Route::Grpc,
                    why: format!("{:?}: {}", status.code(), status.message()),
                }),
            }
        })
    }

    fn ready(&self) -> bool {
        // The channel reconnects on demand; readiness is the server's, checked by /ready.
        true
    }
}

/// The store side: commits each record, then replies.
pub struct IngestService {
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn store(&self, request: Request<StoreRequest>) -> Result<Response<StoreReply>, Status> {
        let received_at = now_us();
        let call = request.into_inner();
        self.stats.latency(
            Route::Grpc,
            Stage::Hop,
            (received_at - call.sent_at_us).max(0) as u64,
        );
        let record = Record {
            id: call.id,
            payload: call.payload.into_bytes().into(),
            accepted_at_us: call.accepted_at_us,
        };
        let accepted_at = record.accepted_at_us;
        let inserted = self.store.insert(Route::Grpc, record).await.map_err(|e| {
            Status::unavailable(format!("the store did not commit the record: {e}"))
        })?;
        self.stats.stored(Route::Grpc, inserted, accepted_at, false);
        Ok(Response::new(StoreReply {
            duplicate: !inserted.new,
        }))
    }
}

/// Serves `Ingest` on `listener` until `shutdown`; in-flight calls finish first.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = IngestServer::new(IngestService { store, stats });
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
}
