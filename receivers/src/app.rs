//! Wires the receivers together: binds every listener first (so a port clash fails at once),
//! starts the store side, then the entries and the front door; shuts down in the order
//! that loses nothing, within `--shutdown-timeout`: stop HTTP (cutting what is still open at
//! the deadline), stop the gRPC server and drain the consumers, commit, write reports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, parse_run_id};
use crate::http::balancer::{Balancer, Hop, balancer_app};
use crate::http::entry::{Entry, entry_app};
use crate::http::read::ReadState;
use crate::http::serve::{Limits, Stopped, serve};
use crate::paths::grpc::{self, GrpcPublisher};
use crate::paths::nats::{self, NatsConfig, NatsPublisher, SetupError};
use crate::paths::rabbitmq::{self, RabbitConfig, RabbitPublisher};
use crate::paths::{Publisher, Sink};
use crate::redact::redact;
use crate::stats::Stats;
use crate::store::Store;
use contract::Route;

/// Where a started receivers instance listens (ports resolved, so port 0 works in tests).
#[derive(Debug, Clone, Default)]
pub struct Addrs {
    pub balancer: Option<SocketAddr>,
    pub entries: Vec<(Route, SocketAddr)>,
    pub grpc: Option<SocketAddr>,
}

impl Addrs {
    pub fn entry(&self, route: Route) -> Option<SocketAddr> {
        self.entries
            .iter()
            .find(|(r, _)| *r == route)
            .map(|(_, a)| *a)
    }
}

/// A running instance: its addresses, and the handle that stops it.
pub struct Running {
    pub addrs: Addrs,
    pub run_id: String,
    stop: CancellationToken,
    done: JoinHandle<anyhow::Result<PathBuf>>,
}

impl Running {
    /// Asks for a graceful shutdown; `wait` returns once it is complete.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits for shutdown to finish; returns the report folder written.
    pub async fn wait(self) -> anyhow::Result<PathBuf> {
        self.done
            .await
            .map_err(|e| anyhow!("the receivers task failed: {e}"))?
    }
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what}; stop whatever holds it or pass {flag}")
    })
}

/// Starts everything `config` enables and returns at once.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let run_id = config.run_id.clone().unwrap_or_else(|| {
        format!(
            "receivers-{}-{:04x}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S"),
            rand::random::<u16>()
        )
    });
    parse_run_id(&run_id).map_err(|e| anyhow!("--run-id {e}"))?;
    let enabled = config.paths.clone();
    if enabled.is_empty() {
        anyhow::bail!("--paths is empty; enable at least one of grpc, rabbitmq, nats");
    }
    let store: Arc<dyn Store> = crate::store::open(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store))?;
    let stats = Arc::new(Stats::start(run_id.clone(), enabled.clone()));
    let sink = Sink {
        store: Arc::clone(&store),
        stats: Arc::clone(&stats),
        body_limit: config.body_limit,
    };
    let publish_timeout = config.publish_timeout();
    let limits = config.limits();

    let stop = CancellationToken::new();
    // The store side stops only after every HTTP request has been answered.
    let backend_stop = CancellationToken::new();
    let backend = TaskTracker::new();
    let mut addrs = Addrs::default();

    let nats_config = NatsConfig {
        url: config.nats_url.clone(),
        stream: config.stream.clone(),
        subject: config.subject.clone(),
        consumer: config.consumer.clone(),
        max_ack_pending: config.max_ack_pending,
        ack_wait: Duration::from_secs(config.nats_ack_wait_secs),
        dead_letter_stream: config.dead_letter_stream(),
        dead_letter_subject: config.dead_letter_subject(),
        ping_interval: config.broker_heartbeat,
    };
    let rabbit_config = RabbitConfig {
        url: config.amqp_url.clone(),
        queue: config.queue.clone(),
        prefetch: config.prefetch,
        dead_letter: config.dead_letter_queue(),
        heartbeat: config.broker_heartbeat,
    };
    let nats_client = if enabled.contains(&Route::Nats) {
        let client = nats::connect(&nats_config).await.map_err(|e| anyhow!(e))?;
        check_nats_setup(&client, &nats_config, !config.no_consumers).await?;
        Some(client)
    } else {
        None
    };

    // Store side: the gRPC server and the two consumers.
    let mut grpc_server = None;
    if !config.no_consumers {
        if enabled.contains(&Route::Grpc) {
            let listener = bind(config.grpc_addr, "gRPC server", "--grpc-addr").await?;
            addrs.grpc = Some(listener.local_addr()?);
            let call_timeout = config.body_read_timeout + publish_timeout;
            let app = grpc::router(sink.clone(), call_timeout, backend_stop.clone()).await;
            // Stopped after the entries, which call it; by then only direct clients remain.
            let deadline = Duration::from_secs(1);
            grpc_server = Some(tokio::spawn(serve(
                listener,
                app,
                limits,
                backend_stop.clone(),
                deadline,
            )));
        }
        if enabled.contains(&Route::Rabbitmq) {
            rabbitmq::spawn_consumer(
                rabbit_config.clone(),
                sink.clone(),
                backend_stop.clone(),
                backend.clone(),
            );
        }
        if let Some(client) = &nats_client {
            nats::spawn_consumer(
                client.clone(),
                nats_config.clone(),
                sink.clone(),
                backend_stop.clone(),
                backend.clone(),
            );
        }
    }

    // Entry side: one HTTP entry per path, and the front door.
    let mut servers = Vec::new();
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    if !config.no_entries {
        for route in &enabled {
            let publisher: Arc<dyn Publisher> = match route {
                Route::Grpc => {
                    let url = match addrs.grpc {
                        Some(addr) if config.grpc_url.is_none() => format!("http://{addr}"),
                        _ => config.grpc_url(),
                    };
                    Arc::new(GrpcPublisher::new(&url, publish_timeout).map_err(|e| anyhow!(e))?)
                }
                Route::Rabbitmq => Arc::new(RabbitPublisher::start(
                    rabbit_config.clone(),
                    backend_stop.clone(),
                    &backend,
                )),
                Route::Nats => Arc::new(NatsPublisher::new(
                    nats_client.clone().expect("a client when nats is enabled"),
                    nats_config.clone(),
                )),
            };
            publishers.push(publisher);
        }
        let read_state = Arc::new(ReadState {
            store: Arc::clone(&store),
            stats: Arc::clone(&stats),
            publishers: publishers.clone(),
        });
        let mut entries = Vec::new();
        for publisher in &publishers {
            let route = publisher.route();
            let (addr, flag) = match route {
                Route::Grpc => (config.grpc_entry_addr, "--grpc-entry-addr"),
                Route::Rabbitmq => (config.rabbitmq_entry_addr, "--rabbitmq-entry-addr"),
                Route::Nats => (config.nats_entry_addr, "--nats-entry-addr"),
            };
            let listener = bind(addr, &format!("{route} entry"), flag).await?;
            addrs.entries.push((route, listener.local_addr()?));
            let entry = Arc::new(Entry::new(
                Arc::clone(publisher),
                Arc::clone(&stats),
                &config,
            ));
            entries.push(Arc::clone(&entry));
            let app = entry_app(entry, Arc::clone(&read_state));
            servers.push(spawn_server(listener, app, limits, &stop, &config));
        }
        if !config.no_balancer {
            let listener = bind(
                config.balancer_addr,
                "front-door balancer",
                "--balancer-addr",
            )
            .await?;
            addrs.balancer = Some(listener.local_addr()?);
            let balancer = Arc::new(front_door(&config, &entries)?);
            let app = balancer_app(balancer, read_state);
            servers.push(spawn_server(listener, app, limits, &stop, &config));
        }
    }
    log_listening(&addrs, &config);

    let reports = config.reports.clone();
    let id = run_id.clone();
    let stopped = stop.clone();
    let shutdown_timeout = config.shutdown_timeout;
    let done = tokio::spawn(async move {
        stopped.cancelled().await;
        let deadline = Instant::now() + shutdown_timeout;
        let mut cut = 0;
        for server in servers {
            cut += server.await.map_or(0, |s| s.cut);
        }
        if cut > 0 {
            tracing::warn!(
                "HTTP stopped; {cut} connections still open at --shutdown-timeout were cut"
            );
        }
        tracing::info!("HTTP stopped; stopping the gRPC server and draining consumers");
        backend_stop.cancel();
        backend.close();
        // The consumers finish what they hold (a store commit each); past the deadline, what
        // they did not ack is redelivered to the next consumer, so nothing is lost.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if tokio::time::timeout(left, backend.wait()).await.is_err() {
            tracing::warn!(
                "consumers still busy at --shutdown-timeout; their unacked messages will be redelivered"
            );
        }
        if let Some(server) = grpc_server {
            let _ = server.await;
        }
        // Commit everything queued before the snapshot, so the report matches the store.
        let closing = Arc::clone(&store);
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        let snapshot = stats.snapshot().await;
        let dir = crate::stats::reports::write(&reports, &id, &snapshot)
            .with_context(|| format!("writing reports into {}", reports.display()))?;
        tracing::info!("reports written to {}", dir.display());
        Ok(dir)
    });
    Ok(Running {
        addrs,
        run_id,
        stop,
        done,
    })
}

/// Serves `app` until `stop`, letting requests in progress finish until --shutdown-timeout.
fn spawn_server(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: &CancellationToken,
    config: &Config,
) -> JoinHandle<Stopped> {
    tokio::spawn(serve(
        listener,
        app,
        limits,
        stop.clone(),
        config.shutdown_timeout,
    ))
}

/// An existing stream or consumer that does not keep the NATS path's promise is refused at
/// start-up. NATS being down is not an error: the path answers 503 until it is back, and
/// checks again on reconnecting.
async fn check_nats_setup(
    client: &async_nats::Client,
    config: &NatsConfig,
    with_consumer: bool,
) -> anyhow::Result<()> {
    let connected = async {
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), connected)
        .await
        .is_err()
    {
        tracing::warn!(url = %redact(&config.url), "NATS is not reachable yet; the NATS path answers 503 until it is");
        return Ok(());
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        nats::check_setup(client, config, with_consumer),
    )
    .await
    {
        Ok(Err(mismatch @ SetupError::Mismatch { .. })) => Err(anyhow!(mismatch)),
        Ok(Err(SetupError::Unreachable(why))) => {
            tracing::warn!("JetStream set-up not checked yet: {}", redact(&why));
            Ok(())
        }
        Err(_) => {
            tracing::warn!("JetStream did not answer within 10 s; set-up checked on reconnect");
            Ok(())
        }
        Ok(Ok(())) => Ok(()),
    }
}

/// The balancer's upstreams: `--upstream` pairs over HTTP, else this process's own entries,
/// called in-process.
fn front_door(config: &Config, entries: &[Arc<Entry>]) -> anyhow::Result<Balancer> {
    let weights = Config::pairs(&config.weights, "--weight").map_err(|e| anyhow!(e))?;
    let weight_of = |route: Route| -> anyhow::Result<u32> {
        match weights.iter().find(|(r, _)| *r == route) {
            None => Ok(1),
            Some((_, w)) => w.parse().map_err(|_| {
                anyhow!("--weight {route}={w}: the weight must be a whole number, such as 2")
            }),
        }
    };
    let explicit = Config::pairs(&config.upstreams, "--upstream").map_err(|e| anyhow!(e))?;
    let upstreams: Vec<(Route, Hop)> = if explicit.is_empty() {
        entries
            .iter()
            .map(|entry| (entry.publisher.route(), Hop::Local(Arc::clone(entry))))
            .collect()
    } else {
        explicit
            .into_iter()
            .map(|(route, url)| (route, Hop::Remote(url)))
            .collect()
    };
    let mut weighted = Vec::new();
    for (route, hop) in upstreams {
        weighted.push((route, hop, weight_of(route)?));
    }
    let timeout = config.publish_timeout() + Duration::from_secs(2);
    // Twice the entries' limit: an oversized body is the entry's to refuse, with its route.
    Balancer::new(
        weighted,
        timeout,
        config.body_limit * 2,
        config.body_read_timeout,
    )
    .map_err(|e| anyhow!(e))
}

fn log_listening(addrs: &Addrs, config: &Config) {
    if let Some(addr) = addrs.balancer {
        tracing::info!("front-door balancer listening on http://{addr}");
    }
    for (route, addr) in &addrs.entries {
        tracing::info!("{route} entry listening on http://{addr}");
    }
    if let Some(addr) = addrs.grpc {
        tracing::info!("gRPC server listening on {addr}");
    }
    tracing::info!(
        store = %config.store,
        amqp = %redact(&config.amqp_url),
        nats = %redact(&config.nats_url),
        "store opened; broker connections are reported as they come up"
    );
}

/// Runs until `shutdown` resolves, then stops gracefully (the binary's entry point).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<PathBuf> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down: no new requests; finishing in-flight work");
    running.shutdown();
    running.wait().await
}
