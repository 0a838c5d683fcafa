//! Wires the receivers together, and only wires: opens the store, starts each path through
//! `paths::start` (its store side, then its entry's publisher), then the entries and the
//! front door; shuts down in the order that loses nothing, within `--shutdown-timeout`:
//! stop HTTP (cutting what is still open at the deadline), stop the gRPC server and drain
//! the consumers, commit, write reports.

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
use crate::paths::{self, EntrySide, PathContext, Sink, StartedPath};
use crate::serve::{Limits, Stopped, bind, serve};
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

/// Starts everything `config` enables and returns at once: the store, every path (its
/// store side, then its entry's publisher), the entries and the front door. A start that
/// fails part-way stops what it had started.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let run_id = run_id(&config)?;
    if config.paths.is_empty() {
        anyhow::bail!("--paths is empty; enable at least one of grpc, rabbitmq, nats");
    }
    let store: Arc<dyn Store> = crate::store::open(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store))?;
    let stats = Arc::new(Stats::start(run_id.clone(), config.paths.clone()));
    let context = path_context(&config, &store, &stats);
    // A start that fails part-way drops this guard, which stops the store side's tasks
    // already started; once disarmed, the store side stops only in `shut_down`, after every
    // HTTP request has been answered.
    let backend_guard = context.shutdown.clone().drop_guard();
    let mut addrs = Addrs::default();
    let mut paths = Vec::new();
    let mut grpc_server = None;
    for route in &config.paths {
        let mut path = paths::start(*route, &config.per_path, &context).await?;
        if let Some((addr, server)) = path.server.take() {
            addrs.grpc = Some(addr);
            grpc_server = Some(server);
        }
        paths.push(path);
    }
    let stop = CancellationToken::new();
    let servers = if config.no_entries {
        Vec::new()
    } else {
        start_entries(&config, &paths, &store, &stats, &stop, &mut addrs).await?
    };
    log_listening(&addrs, &config);
    backend_guard.disarm();
    let done = tokio::spawn(shut_down(ShutdownPlan {
        stop: stop.clone(),
        servers,
        backend_stop: context.shutdown,
        backend: context.tracker,
        grpc_server,
        store,
        stats,
        reports: config.reports.clone(),
        run_id: run_id.clone(),
        timeout: config.shutdown_timeout,
    }));
    Ok(Running {
        addrs,
        run_id,
        stop,
        done,
    })
}

/// `--run-id`, or a fresh one: a folder name under `--reports`.
fn run_id(config: &Config) -> anyhow::Result<String> {
    let run_id = config.run_id.clone().unwrap_or_else(|| {
        format!(
            "receivers-{}-{:04x}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S"),
            rand::random::<u16>()
        )
    });
    parse_run_id(&run_id).map_err(|e| anyhow!("--run-id {e}"))?;
    Ok(run_id)
}

/// What every path's start needs from the receivers' own flags.
fn path_context(config: &Config, store: &Arc<dyn Store>, stats: &Arc<Stats>) -> PathContext {
    PathContext {
        sink: Sink {
            store: Arc::clone(store),
            stats: Arc::clone(stats),
            body_limit: config.body_limit,
        },
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        consumers: !config.no_consumers,
        entries: !config.no_entries,
        publish_timeout: config.publish_timeout(),
        body_read_timeout: config.body_read_timeout,
        broker_heartbeat: config.broker_heartbeat,
        limits: config.limits(),
    }
}

/// The entry side: one HTTP entry per path, and the front door over them.
async fn start_entries(
    config: &Config,
    paths: &[StartedPath],
    store: &Arc<dyn Store>,
    stats: &Arc<Stats>,
    stop: &CancellationToken,
    addrs: &mut Addrs,
) -> anyhow::Result<Vec<JoinHandle<Stopped>>> {
    let sides: Vec<&EntrySide> = paths.iter().filter_map(|p| p.entry.as_ref()).collect();
    let read_state = Arc::new(ReadState {
        store: Arc::clone(store),
        stats: Arc::clone(stats),
        publishers: sides.iter().map(|s| Arc::clone(&s.publisher)).collect(),
    });
    let limits = config.limits();
    let mut servers = Vec::new();
    let mut entries = Vec::new();
    for side in sides {
        let route = side.publisher.route();
        let listener = bind(side.addr, &format!("{route} entry"), side.flag).await?;
        addrs.entries.push((route, listener.local_addr()?));
        let entry = Arc::new(Entry::new(
            Arc::clone(&side.publisher),
            Arc::clone(stats),
            config.entry_limits(),
        ));
        entries.push(Arc::clone(&entry));
        let app = entry_app(entry, Arc::clone(&read_state));
        servers.push(spawn_server(listener, app, limits, stop, config));
    }
    if !config.no_balancer {
        let listener = bind(
            config.balancer_addr,
            "front-door balancer",
            "--balancer-addr",
        )
        .await?;
        addrs.balancer = Some(listener.local_addr()?);
        let balancer = Arc::new(front_door(config, &entries)?);
        let app = balancer_app(balancer, read_state);
        servers.push(spawn_server(listener, app, limits, stop, config));
    }
    Ok(servers)
}

/// Everything the shutdown stops, in the order it stops them.
struct ShutdownPlan {
    stop: CancellationToken,
    servers: Vec<JoinHandle<Stopped>>,
    backend_stop: CancellationToken,
    backend: TaskTracker,
    grpc_server: Option<JoinHandle<Stopped>>,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    reports: PathBuf,
    run_id: String,
    timeout: Duration,
}

/// Waits for `stop`, then shuts down in the order that loses nothing: HTTP (cutting what
/// is still open at the deadline), the gRPC server and the consumers, the store's commit,
/// and last the reports.
async fn shut_down(plan: ShutdownPlan) -> anyhow::Result<PathBuf> {
    plan.stop.cancelled().await;
    let deadline = Instant::now() + plan.timeout;
    let mut cut = 0;
    for server in plan.servers {
        cut += server.await.map_or(0, |s| s.cut);
    }
    if cut > 0 {
        tracing::warn!("HTTP stopped; {cut} connections still open at --shutdown-timeout were cut");
    }
    tracing::info!("HTTP stopped; stopping the gRPC server and draining consumers");
    plan.backend_stop.cancel();
    plan.backend.close();
    // The consumers finish what they hold (a store commit each); past the deadline, what
    // they did not ack is redelivered to the next consumer, so nothing is lost.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if tokio::time::timeout(left, plan.backend.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "consumers still busy at --shutdown-timeout; their unacked messages will be redelivered"
        );
    }
    if let Some(server) = plan.grpc_server {
        let _ = server.await;
    }
    // Commit everything queued before the snapshot, so the report matches the store.
    let closing = Arc::clone(&plan.store);
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    let snapshot = plan.stats.snapshot().await;
    let dir = crate::stats::reports::write(&plan.reports, &plan.run_id, &snapshot)
        .with_context(|| format!("writing reports into {}", plan.reports.display()))?;
    tracing::info!("reports written to {}", dir.display());
    Ok(dir)
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
