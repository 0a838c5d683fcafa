//! Every flag of loadgen and its subcommands, as clap parses them, with no judgement: the
//! checking lives in `settings.rs`. Goose never sees argv: it refuses `--hatch-rate`, so
//! loadgen owns every flag.

use std::path::PathBuf;

use clap::Parser;
use clap::builder::TypedValueParser as _;

use crate::model::Arrivals;
use crate::replay::Mode;

/// Replays a JSON traffic file against an HTTP host with Goose, writes reports, and
/// judges the run against gate rules (exit 0 passed, 1 a rule failed, 2 bad usage or input).
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Number of concurrent users
    #[arg(short = 'u', long, default_value_t = 1)]
    pub users: usize,

    /// Users started per second (Locust's --spawn-rate)
    #[arg(short = 'r', long, visible_alias = "spawn-rate", default_value_t = 1.0)]
    pub hatch_rate: f64,

    /// Base URL of the target, such as the receivers' balancer
    #[arg(short = 'H', long, default_value = "http://127.0.0.1:8080")]
    pub host: String,

    /// Stop after this long, counted from the first user's start as in Locust (60s, 5m, 1h30m)
    #[arg(short = 't', long, value_name = "TIME")]
    pub run_time: Option<String>,

    /// JSON array of objects to replay, one object per POST /
    #[arg(long, value_name = "FILE", default_value = "data/traffic.json")]
    pub traffic: PathBuf,

    /// Uniform random wait after each task, MIN..MAX [default: 100ms..900ms]
    #[arg(long, value_name = "MIN..MAX")]
    pub wait: Option<String>,

    /// per-user: each user sends every record once; shared: every record once in all;
    /// loop: cycle until --run-time [default: per-user; loop with --users-plan, or when no
    /// request of the scenario sends a record]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// A TOML file of weighted flows of requests: method, path under --host, headers, body,
    /// the statuses that succeed, a check [default: POST / with the next record, then GET /,
    /// as examples/scenarios/seed.toml spells out]
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Closed model: users over time in linear steps USERS@DURATION,... from 0 users, in
    /// whole seconds: 10@2s,10@4s,2@1s,2@4s ramps to 10 users over 2 s, holds them 4 s,
    /// drops to 2 over 1 s and holds those 4 s (instead of --users and --hatch-rate)
    #[arg(long, value_name = "PLAN", allow_hyphen_values = true,
          conflicts_with_all = ["users", "hatch_rate", "arrival_rate", "arrival_plan"])]
    pub users_plan: Option<String>,

    /// Folder that receives one sub-folder per run
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub reports: PathBuf,

    /// Seed for the users' record orders, to replay a run exactly
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    #[command(flatten)]
    pub gate: GateArgs,

    /// A calibration run measured in the same job (its folder or loadgen.json): the same
    /// load against a trivial handler. Rules with a limit such as 8x multiply its figures
    /// (repeatable: the slowest calibration sets the scale)
    #[arg(long, value_name = "RUN")]
    pub calibration: Vec<PathBuf>,

    /// Length of each latency histogram interval (latency.hlog, the latency-over-time chart)
    #[arg(long, value_name = "TIME", default_value = "1s")]
    pub interval: String,

    /// How long a request may wait for its whole answer before it fails with "operation
    /// timed out". Once --run-time is reached, the run ends when the requests in flight are
    /// answered or time out, so this is also how far a run can outlast its run time
    #[arg(long, value_name = "TIME", default_value = "60s")]
    pub request_timeout: String,

    /// Once --run-time is reached, how long the requests in flight may still take; then
    /// they are cancelled and counted as interrupted, never as failures of the target
    #[arg(long, value_name = "TIME", default_value = "5s")]
    pub graceful_stop: String,

    /// Stop the run as soon as a rule fails (checked every second once all users run)
    #[arg(long)]
    pub abort_on_fail: bool,

    /// Cap on requests per second across all users (of all workers): a fixed offered rate
    /// when there are enough users to reach it. The wait for a turn is not latency
    #[arg(long, value_name = "N")]
    pub max_rps: Option<usize>,

    /// Cap on requests in flight from this process, and on the idle connections it keeps.
    /// A user that finds them all busy waits for one, and the wait is in its latency; the
    /// progress line says when that happens. It bounds loadgen's memory when thousands of
    /// users fall due at once (each connection costs about 35 KB)
    #[arg(long, value_name = "N", default_value_t = crate::connections::DEFAULT_MAX,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,

    /// Send only the POST / task (no GET /), as benchmarks of the write path want; for the
    /// default scenario only
    #[arg(long, conflicts_with = "scenario")]
    pub post_only: bool,

    #[command(flatten)]
    pub reconcile: ReconcileArgs,

    /// Seconds between progress lines on stderr
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub progress_every: u64,

    /// Threads that run the users. One, as one Locust process, is the most requests per
    /// CPU-second and leaves the other cores to a target on the same machine; the progress
    /// line says when loadgen's own CPU is what limits the run. More threads, or more
    /// workers (--worker), take it past one core
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,

    /// Open model: requests per second in all (decimals allowed), whatever the target
    /// does; a pool of users (--max-users) takes send tickets instead of waiting a think time
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub arrival_rate: Option<f64>,

    /// Open model: a plan of linear ramps, RATE@DURATION,... from 0: 100@0s,100@30s,500@1m
    /// jumps to 100/s, holds it 30 s, then ramps to 500/s over a minute
    #[arg(long, value_name = "PLAN")]
    pub arrival_plan: Option<String>,

    /// Open model: arrivals evenly spaced, or a Poisson process
    #[arg(long, value_enum, value_name = "KIND")]
    pub arrivals: Option<Arrivals>,

    /// Open model: the pool of users that send the tickets [default: 100]
    #[arg(long, value_name = "N")]
    pub max_users: Option<usize>,

    /// Open model: a request more than this behind schedule is not sent and counts as
    /// dropped [default: every request is sent, late ones count as late]
    #[arg(long, value_name = "TIME")]
    pub drop_late: Option<String>,

    /// Open model: a request sent more than this after its intended time counts as late
    /// [default: 1ms]
    #[arg(long, value_name = "TIME")]
    pub late_after: Option<String>,

    /// Run as worker I of N (I from 0, as Kubernetes' JOB_COMPLETION_INDEX): users I, I+N,
    /// ... and 1/N of the hatch rate; `loadgen merge` joins the workers' folders
    #[arg(long, value_name = "I/N", requires = "run_id")]
    pub worker: Option<String>,

    /// The run's id, shared by all its workers [default: UTC time and 16 random bits]
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// Start the users at this RFC 3339 time (2026-11-27T10:00:00Z), so workers start
    /// together; a worker that starts late says by how much
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
}

/// The gate's flags, the same for a run and for a merge.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// Gate rule in Goose's syntax, repeatable: p95<500ms, error-rate<1%, rps>=200,
    /// p99<2s for POST /
    #[arg(long = "threshold", value_name = "RULE")]
    pub thresholds: Vec<String>,

    /// TOML file of gate rules: thresholds = ["p95<500ms", ...]
    #[arg(long, value_name = "FILE")]
    pub gate: Option<PathBuf>,

    /// An earlier run (its folder or its loadgen.json, with latency.hlog beside it): per
    /// request and route, the gate fails if p50, p95 or p99 rise, or requests/s fall, by
    /// more than --max-regression with 95% confidence. Repeatable: several runs' intervals
    /// are pooled into one baseline
    #[arg(long, value_name = "RUN")]
    pub baseline: Vec<PathBuf>,

    /// Percent a percentile may rise, or requests/s fall, against --baseline
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    pub max_regression: f64,
}

/// `loadgen merge`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The workers' run folders, one per worker
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Folder that receives the merged run's folder
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub reports: PathBuf,

    #[command(flatten)]
    pub gate: GateArgs,

    #[command(flatten)]
    pub reconcile: ReconcileArgs,
}

/// The reconciliation's flags, the same for a run and for a merge.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The receivers to reconcile the ledger with (GET /stats, GET /records), repeatable:
    /// one URL per receivers process when they run one path each behind a balancer
    /// (their /stats are merged; they share one store) [default: the run's --host]
    #[arg(long, value_name = "URL")]
    pub receivers: Vec<String>,

    /// How long to wait after the run for the receivers to store what is in flight
    #[arg(long, value_name = "TIME", default_value = "30s")]
    pub drain_timeout: String,

    /// Skip reconciliation (for targets that are not the receivers)
    #[arg(long)]
    pub no_reconcile: bool,
}

/// What loadgen does besides a load test.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Each gated metric's trend over the runs in the history, with its change points
    History(HistoryArgs),
    /// Joins the folders of a run's workers into one run, reconciled and judged as one
    Merge(MergeArgs),
    /// Judges runs (pooled) against --baseline runs (pooled): the A/B gate's verdict
    Compare(CompareArgs),
}

/// `loadgen compare`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The runs to judge (B: the head), each a run folder or its loadgen.json
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,

    /// The runs to judge them against (A: the base), repeatable; their intervals are pooled
    #[arg(long, value_name = "RUN", required = true)]
    pub baseline: Vec<PathBuf>,

    /// Percent a percentile may rise, or requests/s fall, before the comparison fails
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    pub max_regression: f64,

    /// Also write the verdicts as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// `loadgen history`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// The reports folder whose history.jsonl to read
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub reports: PathBuf,
    /// Only metrics whose name contains this, such as p99 or nats
    #[arg(long, value_name = "TEXT")]
    pub metric: Option<String>,
    /// The most recent runs to show, per settings
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub last: usize,
}
