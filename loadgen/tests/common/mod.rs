//! Test support: a recording HTTP target on port 0 and a runner for the real `loadgen`
//! binary with a deadline, so no test can hang and each gets its own reports folder.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod receivers;
pub mod recording;

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

/// One POST / the target received.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct Recorded {
    pub posts: Vec<Received>,
    pub gets: usize,
    /// When the first POST arrived: a stall is timed from it.
    pub first: Option<Instant>,
    /// POSTs being answered now, and the most there were at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// The client ends of the connections POSTs came over.
    pub peers: HashSet<SocketAddr>,
}

/// How the target answers POST /.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    status: StatusCode,
    /// A fixed service time.
    delay: Duration,
    /// Once: every POST arriving in [first + .0, first + .0 + .1) waits until its end, as a
    /// target stalled by a pause would.
    stall: Option<(Duration, Duration)>,
}

/// A target that answers POST / with 201 and GET / with 200, recording what came.
pub struct Target {
    pub addr: SocketAddr,
    pub recorded: Arc<Mutex<Recorded>>,
    _runtime: tokio::runtime::Runtime,
}

impl Target {
    pub fn start() -> Target {
        Self::start_with(StatusCode::CREATED)
    }

    /// A target whose POST / answers `post_status` (to make the gate fail on errors).
    pub fn start_with(post_status: StatusCode) -> Target {
        Self::start_full(Behaviour {
            status: post_status,
            delay: Duration::ZERO,
            stall: None,
        })
    }

    /// A target with a fixed service time: every POST / is answered after `delay`.
    pub fn start_slow(delay: Duration) -> Target {
        Self::start_full(Behaviour {
            status: StatusCode::CREATED,
            delay,
            stall: None,
        })
    }

    /// A fast target that stalls once: from `at` after the first POST, for `stall`, every
    /// POST is held until the stall ends.
    pub fn start_stalling(at: Duration, stall: Duration) -> Target {
        Self::start_full(Behaviour {
            status: StatusCode::CREATED,
            delay: Duration::ZERO,
            stall: Some((at, stall)),
        })
    }

    fn start_full(behaviour: Behaviour) -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let state = (Arc::clone(&recorded), behaviour);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", get(on_get).post(on_post))
            .with_state(state);
        runtime.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Target {
            addr,
            recorded,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn posts(&self) -> Vec<Received> {
        self.recorded.lock().unwrap().posts.clone()
    }

    pub fn gets(&self) -> usize {
        self.recorded.lock().unwrap().gets
    }

    /// The most POSTs the target was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.recorded.lock().unwrap().max_in_flight
    }

    /// How many connections POSTs came over.
    pub fn connections(&self) -> usize {
        self.recorded.lock().unwrap().peers.len()
    }
}

/// Counts a POST out of `in_flight` when its answer is done, however the handler ends.
struct InFlight(Arc<Mutex<Recorded>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

type Shared = (Arc<Mutex<Recorded>>, Behaviour);

async fn on_post(
    State((recorded, behaviour)): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let now = Instant::now();
    let first = {
        let mut recorded = recorded.lock().unwrap();
        recorded.posts.push(Received {
            key: header("idempotency-key"),
            content_type: header("content-type"),
            body,
            at: now,
        });
        recorded.in_flight += 1;
        recorded.max_in_flight = recorded.max_in_flight.max(recorded.in_flight);
        recorded.peers.insert(peer);
        *recorded.first.get_or_insert(now)
    };
    let _in_flight = InFlight(Arc::clone(&recorded));
    if let Some((at, stall)) = behaviour.stall {
        let (from, until) = (first + at, first + at + stall);
        if now >= from && now < until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    behaviour.status
}

async fn on_get(State((recorded, _)): State<Shared>) -> &'static str {
    recorded.lock().unwrap().gets += 1;
    "ok"
}

/// The finished binary: its exit code, output and the reports folder it wrote into.
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `loadgen args…` with `--reports <reports>`, killing it after `deadline`.
pub fn loadgen(args: &[&str], reports: &Path, deadline: Duration) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.args(args);
    finish(command, args, reports, deadline)
}

/// Runs `loadgen args…` as [`loadgen`] does, after the shell's `ulimit <limits>` (such as
/// `-Sn 64`, a soft limit of 64 open files).
pub fn loadgen_under_ulimit(
    limits: &str,
    args: &[&str],
    reports: &Path,
    deadline: Duration,
) -> Finished {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_loadgen"))
        .args(args);
    finish(command, args, reports, deadline)
}

fn finish(mut command: Command, args: &[&str], reports: &Path, deadline: Duration) -> Finished {
    command.arg("--reports").arg(reports);
    run_to_deadline(command, &format!("loadgen {args:?}"), deadline)
}

/// Runs `command` from the workspace root, killing it after `deadline`. Its output is read
/// while it runs: a child that fills a pipe (64 KiB) would otherwise block until killed.
pub fn run_to_deadline(mut command: Command, what: &str, deadline: Duration) -> Finished {
    let started = Instant::now();
    let mut child = command
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).map(|_| bytes)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |reader: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| {
        String::from_utf8_lossy(&reader.join().unwrap().unwrap()).into_owned()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    let Some(status) = status else {
        panic!("{what} still running after {deadline:?}; stderr:\n{stderr}");
    };
    Finished {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The single run folder a test's reports directory holds.
pub fn run_dir(reports: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.is_symlink() && p.is_dir())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "expected one run folder in {reports:?}: {runs:?}"
    );
    runs.into_iter().next().unwrap()
}

/// The `POST /` row of a report's `requests`.
pub fn post_row(report: &serde_json::Value) -> &serde_json::Value {
    report["requests"]
        .as_array()
        .expect("the report lists its requests")
        .iter()
        .find(|r| r["name"] == "POST /")
        .expect("the report has a POST / row")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Where `report` breaks `loadgen/schema/loadgen.schema.json`; empty when it matches.
pub fn schema_errors(report: &serde_json::Value) -> Vec<String> {
    let schema = read_json(&workspace_root().join("loadgen/schema/loadgen.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// A traffic file in `dir` holding `records` (each a JSON value), returning its path.
pub fn traffic_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Quick flags for tests: no wait, every user at once.
pub const FAST: [&str; 4] = ["--wait", "0ms..0ms", "--hatch-rate", "1000"];

/// A loadgen command line, built the way the tests vary it:
/// `Args::fast(&url).users(2).rule("p95<1s").run(reports, DEADLINE)`.
#[derive(Debug, Clone, Default)]
pub struct Args(Vec<String>);

impl Args {
    /// Against `host`, with no wait and every user started at once (`FAST`).
    pub fn fast(host: &str) -> Args {
        Args::against(host).with(&FAST)
    }

    /// Against `host` (`-H`), with loadgen's defaults otherwise.
    pub fn against(host: &str) -> Args {
        Args::default().with(&["-H", host])
    }

    /// `-u n`.
    pub fn users(self, n: usize) -> Args {
        self.with(&["-u", &n.to_string()])
    }

    /// `--mode loop` for `time` (`-t`).
    pub fn loop_for(self, time: &str) -> Args {
        self.with(&["--mode", "loop", "-t", time])
    }

    /// `-r rate`: users started per second.
    pub fn hatch(self, rate: usize) -> Args {
        self.with(&["-r", &rate.to_string()])
    }

    /// `--wait MIN..MAX`.
    pub fn wait(self, range: &str) -> Args {
        self.with(&["--wait", range])
    }

    /// A gate rule (`--threshold`).
    pub fn rule(self, rule: &str) -> Args {
        self.with(&["--threshold", rule])
    }

    /// Gate rules, in order.
    pub fn rules(self, rules: &[&str]) -> Args {
        rules.iter().fold(self, |args, rule| args.rule(rule))
    }

    /// Any other flags, as given.
    pub fn with(mut self, args: &[&str]) -> Args {
        self.0.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn list(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    /// Runs `loadgen` with these flags, as [`loadgen`] does.
    pub fn run(&self, reports: &Path, deadline: Duration) -> Finished {
        loadgen(&self.list(), reports, deadline)
    }
}

/// Requests counted over the report's latency intervals: every request is in one.
pub fn interval_total(report: &serde_json::Value) -> u64 {
    report["latency_timeline"]
        .as_array()
        .expect("a latency timeline")
        .iter()
        .filter(|p| p["kind"] == "request")
        .map(|p| p["count"].as_u64().expect("a count"))
        .sum()
}

/// `run` was refused as bad usage (exit 2), with `needle` in what it said.
pub fn assert_refused(run: &Finished, needle: &str) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(needle), "{}", run.stderr);
}

/// The histogram of the series `keep` selects, all of a run folder's `latency.hlog`
/// intervals added: as one process would hold every request of the run.
pub fn logged_total(
    dir: &Path,
    keep: impl Fn(&loadgen::record::intervals::SeriesKey) -> bool,
) -> hdrhistogram::Histogram<u64> {
    let text = std::fs::read_to_string(dir.join("latency.hlog")).unwrap();
    let log = loadgen::record::hlog::parse(&text).unwrap();
    let mut total = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for interval in log.intervals.iter().filter(|i| keep(&i.series)) {
        total.add(&interval.histogram).unwrap();
    }
    total
}
