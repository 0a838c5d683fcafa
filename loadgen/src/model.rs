//! The serde model of `loadgen.json` (schema in `schema/loadgen.schema.json`): plain data,
//! importing nothing else from this crate, so the computations above it and the renderers
//! above those can all depend on it without a cycle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The routes the receivers run, by name, in report order: the contract's, so a new path
/// needs nothing here.
pub const ROUTES: [&str; contract::Route::ALL.len()] = {
    let mut names = [""; contract::Route::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = contract::Route::ALL[i].name();
        i += 1;
    }
    names
};

fn default_late_after_ms() -> f64 {
    1.0
}

/// Bumped whenever a field changes meaning or goes away; additions keep the number.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadgenReport {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_secs: f64,
    pub ended_by: EndedBy,
    pub settings: SettingsRecord,
    /// One row per request name (`POST /`, `GET /`).
    pub requests: Vec<RequestStats>,
    /// One row per route the answers named (`grpc`, `rabbitmq`, `nats`): POST / split by
    /// where the receivers sent it.
    #[serde(default)]
    pub routes: Vec<RequestStats>,
    /// All requests together.
    pub aggregate: RequestStats,
    /// Requests still in flight when `--graceful-stop` ran out after `--run-time`: cancelled
    /// by the run's end, so neither failures nor latencies.
    #[serde(default)]
    pub interrupted: u64,
    pub timeline: Vec<TimelinePoint>,
    /// Seconds of the timeline in which loadgen was CPU-bound (`saturated`), the gate's
    /// `saturated` metric.
    #[serde(default)]
    pub saturated_secs: u64,
    /// Latency per interval, per request and per route, from loadgen's own histograms.
    #[serde(default)]
    pub latency_timeline: Vec<IntervalLatency>,
    /// The reconciliation with the receivers; `null` when it was off or impossible.
    pub delivery: Option<Delivery>,
    pub gate: GateRecord,
    /// Files in the run folder, relative to it.
    pub files: BTreeMap<String, String>,
    /// For a run merged from workers (`loadgen merge`): each worker's share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerShare>,
    /// For an open-model run: the schedule and how it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenModel>,
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// Every user sent its records.
    Completed,
    /// --run-time passed.
    RunTime,
    /// Ctrl-C, or a gate rule with --abort-on-fail.
    Interrupted,
}

impl EndedBy {
    /// Why the run stopped, for people.
    pub fn describe(self) -> &'static str {
        match self {
            EndedBy::Completed => "every user sent its records",
            EndedBy::RunTime => "--run-time reached",
            EndedBy::Interrupted => "interrupted",
        }
    }
}

/// Which records a user sends, and when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each user sends every record once, in its own random order, then stops
    /// (what the original Locust script did).
    PerUser,
    /// Every record is sent exactly once across all users.
    Shared,
    /// Users cycle through the records, reshuffled each pass, until --run-time.
    Loop,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PerUser => "per-user",
            Mode::Shared => "shared",
            Mode::Loop => "loop",
        }
    }
}

/// The settings the run was made with, so a report explains itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub host: String,
    pub users: usize,
    pub hatch_rate: f64,
    pub run_time_secs: Option<f64>,
    pub wait_min_ms: f64,
    pub wait_max_ms: f64,
    pub mode: Mode,
    pub traffic_file: String,
    pub records: usize,
    pub seed: Option<u64>,
    /// The commit of the checkout loadgen ran from, when it is one.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// Seconds per histogram interval in the `.hlog` and the latency timeline.
    #[serde(default = "one_second")]
    pub interval_secs: f64,
    /// `--request-timeout`, in seconds; absent in reports older than the flag (60 s then).
    #[serde(default)]
    pub request_timeout_secs: Option<f64>,
    /// `--graceful-stop`, in seconds; absent in reports older than the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_stop_secs: Option<f64>,
    /// Set when this process was one worker of several (`--worker I/N`); `users` and
    /// `hatch_rate` above are then the whole run's, and this worker ran its share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerRecord>,
    /// `--scenario`'s file; absent for the default flow (POST / then GET /).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The closed model's users over time (`--users-plan` or the file's stages), in
    /// `--users-plan`'s notation; `users` above is then its most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_plan: Option<String>,
    /// Why the run has no delivery ledger, when no request of its flows sends a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_off: Option<String>,
}

/// Which share of a run one worker ran: users `index`, `index + count`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub index: usize,
    pub count: usize,
}

impl Worker {
    /// The global index of this worker's `local`-th user.
    pub fn user(self, local: usize) -> usize {
        self.index + local * self.count
    }

    /// How many of `users` are this worker's.
    pub fn share(self, users: usize) -> usize {
        (0..users).filter(|u| u % self.count == self.index).count()
    }
}

/// A worker's own record of its share and its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub index: usize,
    pub count: usize,
    /// Users this worker ran.
    pub users: usize,
    /// The shared start time it was given (`--start-at`), RFC 3339.
    pub start_at: Option<String>,
    /// How late it started against `start_at`, in seconds (0 without one).
    pub start_skew_secs: f64,
}

/// One worker's part in a merged run, as the merged report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerShare {
    pub index: usize,
    /// The worker's run folder, as given to `loadgen merge`.
    pub folder: String,
    pub users: usize,
    pub requests: u64,
    pub started_at: String,
    /// Seconds after the earliest worker's start.
    pub start_skew_secs: f64,
}

fn one_second() -> f64 {
    1.0
}

/// Counts and latency of one request name, one route, or all requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestStats {
    pub name: String,
    pub count: u64,
    pub failures: u64,
    /// Failures as a percentage of count.
    pub error_rate: f64,
    /// Requests per second over the whole run.
    pub rps: f64,
    pub latency_ms: Latency,
    /// Responses per HTTP status code; 0 counts requests that got no response.
    pub status_codes: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer, by cause: the innermost error, such as
    /// "Connection refused (os error 111)". Absent in reports older than it.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
}

/// Milliseconds. All zero when there were no requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub avg: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// One second of the run, as the report charts it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimelinePoint {
    /// Seconds since the run started (1 = the first second).
    pub second: u64,
    /// Requests completed during this second.
    pub requests: u64,
    /// Requests that failed during this second.
    pub failures: u64,
    /// Users started and not yet finished at the end of this second.
    pub users: u64,
    /// Open model only: arrivals the plan requested during this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<f64>,
    /// Open model only: requests sent during this second (the offered rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// Open model only: requests sent after their time during this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// Open model only: requests dropped (`--drop-late`) during this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// loadgen's CPU during this second as a share of its threads (1 = all of them busy);
    /// absent where /proc cannot say, and in reports older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// loadgen used 90% or more of its threads this second: it was CPU-bound, and the
    /// latencies of this second include its own queueing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saturated: bool,
}

/// How arrivals are spaced in the open model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Evenly: at a constant rate R, one every 1/R s.
    Uniform,
    /// A Poisson process: exponential gaps with mean 1/R.
    Poisson,
}

/// An open-model run (`--arrival-rate` or `--arrival-plan`): what was asked and what came
/// of it. Its requests' latency (`requests`, `routes`, `aggregate`) is the response time,
/// counted from each request's intended send time; `service` is counted from the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenModel {
    /// `200/s`, or the plan as given (`100@0s,100@30s,500@1m`): the whole run's.
    pub plan: String,
    /// A worker's share of `plan`, what it scheduled itself (`--worker 1/2` of `400/s`:
    /// `200/s`); none for one process or a merged run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    pub arrivals: Arrivals,
    /// The users that took the tickets: a worker's own share of `--max-users`.
    pub max_users: usize,
    pub drop_late_ms: Option<f64>,
    /// Arrivals the schedule issued (sent, plus dropped).
    pub scheduled: u64,
    /// Requests sent more than `late_after_ms` after their intended time (a busy pool, or
    /// the generator's own lag).
    pub late: u64,
    /// The threshold of `late` (`--late-after`); 1 ms in reports written before it could be set.
    #[serde(default = "default_late_after_ms")]
    pub late_after_ms: f64,
    /// Requests not sent: more than `drop_late_ms` behind.
    pub dropped: u64,
    /// Service time per request and per route (`route nats`), from the actual send.
    pub service: Vec<RequestStats>,
    /// Schedule lag (actual send minus intended send), all requests, milliseconds.
    pub lag_ms: Latency,
}

/// One series' latency in one interval (milliseconds), read off that interval's histogram.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IntervalLatency {
    /// The interval's end, in seconds since the run started.
    pub end_secs: f64,
    /// `request` or `route`.
    pub kind: SeriesKind,
    /// `POST /`, or `grpc`.
    pub name: String,
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// What a latency series is split by, and in the open model what it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesKind {
    /// A request name, as Goose names it. In the open model: response time, counted from
    /// the intended send time.
    Request,
    /// The route the answer named.
    Route,
    /// Open model: a request name's service time, counted from the actual send.
    ServiceRequest,
    /// Open model: a route's service time.
    ServiceRoute,
    /// Open model: a request name's schedule lag, actual send minus intended send.
    Lag,
}

impl SeriesKind {
    pub const ALL: [SeriesKind; 5] = [
        SeriesKind::Request,
        SeriesKind::Route,
        SeriesKind::ServiceRequest,
        SeriesKind::ServiceRoute,
        SeriesKind::Lag,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SeriesKind::Request => "request",
            SeriesKind::Route => "route",
            SeriesKind::ServiceRequest => "service-request",
            SeriesKind::ServiceRoute => "service-route",
            SeriesKind::Lag => "lag",
        }
    }

    pub fn from_name(name: &str) -> Option<SeriesKind> {
        SeriesKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The delivery section of `loadgen.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// The receivers read, comma-separated when there are several.
    pub receivers: String,
    /// Whether every accepted key was found stored before the drain timeout.
    pub drained: bool,
    pub drain_secs: f64,
    /// Per route; `all` sums them.
    pub routes: BTreeMap<String, RouteLedger>,
    /// Refusals whose answer named no route (the front door with every path down).
    pub unrouted_rejected: u64,
    /// A receivers process restarted during the run (its `instance_id` changed): its
    /// counters and histograms began again, so the run's latency and store-side counts
    /// cannot be told apart and are left out. The ids are reconciled all the same.
    #[serde(default)]
    pub receivers_restarted: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteLedger {
    /// 2xx answers naming this route.
    pub accepted: u64,
    /// Accepted sends found in the store.
    pub stored: u64,
    /// Accepted sends not in the store: the promise broken.
    pub lost: u64,
    /// Duplicate inserts the store absorbed for this run's ids (resends, redeliveries).
    pub duplicates: u64,
    /// Inserts of a stored id with another body during the run, as the receivers count them
    /// (their counter at the end minus at the start).
    #[serde(default)]
    pub conflicts: u64,
    /// Records the receivers dead-lettered during the run (counter at the end minus the start).
    #[serde(default)]
    pub dead_lettered: u64,
    /// Non-2xx answers naming this route.
    pub rejected: u64,
    /// Accepted per second over the run.
    pub throughput: f64,
    /// The first `delivery::LOST_IDS_LISTED` lost ids: a route's row lists those it had
    /// accepted, the `all` row those of every route.
    pub lost_ids: Vec<String>,
    /// Per stage (`ingress`, `hop`, `e2e`), this run's latency as the receivers measured it.
    pub latency: BTreeMap<String, StageLatency>,
}

/// Milliseconds; `distribution` is (percentile, ms) points for a percentile plot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageLatency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub distribution: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRecord {
    pub passed: bool,
    pub rules: Vec<Verdict>,
}

/// Where a rule came from, so a failing CI run points at the file or flag to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleSource {
    Cli,
    GateFile,
    Baseline,
    /// A limit relative to a calibration run measured in the same job (`--calibration`).
    Calibration,
}

/// The unit a metric is judged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    Ms,
    Percent,
    PerSecond,
    Count,
}

/// One rule's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub rule: String,
    pub source: RuleSource,
    /// What the run measured, in `unit`; `null` when there was nothing to measure.
    pub observed: Option<f64>,
    pub limit: f64,
    pub unit: Unit,
    pub passed: bool,
    /// Why it failed, or how it was measured.
    pub detail: String,
    /// For a comparison with a baseline: the change and how sure it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// A metric's change against a baseline, as a percentage of the baseline's value, with a
/// bootstrap confidence interval over the runs' intervals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub baseline: f64,
    pub now: f64,
    /// (now - baseline) / baseline, in percent; positive is worse for latency.
    pub percent: f64,
    /// The interval's bounds, in percent, at `confidence`.
    pub low: f64,
    pub high: f64,
    /// 0.95 for a 95% interval.
    pub confidence: f64,
    /// How many intervals each side contributed.
    pub intervals: [usize; 2],
}

impl LoadgenReport {
    /// Reads an earlier `loadgen.json`, for --baseline, --calibration and the run list.
    pub fn parse(text: &str) -> Result<LoadgenReport, String> {
        serde_json::from_str(text).map_err(|error| {
            format!(
                "not a loadgen.json report ({error} at line {}, column {})",
                error.line(),
                error.column()
            )
        })
    }
}

/// A verdict for renderers' tests: `rule`, 12 ms against a 10 ms limit.
#[cfg(test)]
pub fn test_verdict(rule: &str, passed: bool) -> Verdict {
    Verdict {
        rule: rule.into(),
        source: RuleSource::Cli,
        observed: Some(12.0),
        limit: 10.0,
        unit: Unit::Ms,
        passed,
        detail: "why".into(),
        change: None,
    }
}
