//! The Locust-style command line (clap), checked into `Settings` before anything is sent.
//! Goose never sees argv: it refuses `--hatch-rate`, so loadgen owns every flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser as _;
use serde::Deserialize;

use crate::arrival::Plan;
use crate::duration::{BareUnit, parse_span, parse_wait};
use crate::error::LoadgenError;
use crate::judge::gate::{RuleSource, SourcedRule};
use crate::judge::rule::Rule;
use crate::model::{Arrivals, Worker};
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
    /// loop: cycle until --run-time
    #[arg(long, value_enum, default_value_t = Mode::PerUser)]
    pub mode: Mode,

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

    /// Send only the POST / task (no GET /), as benchmarks of the write path want
    #[arg(long)]
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
    /// more than --max-regression with 95% confidence
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<PathBuf>,

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

impl ReconcileArgs {
    /// The receivers as URLs (none with --no-reconcile, `host` when none is given) and
    /// the drain timeout.
    pub fn parse(
        &self,
        host: Option<&url::Url>,
    ) -> Result<(Vec<url::Url>, Duration), LoadgenError> {
        let drain_timeout = parse_span(&self.drain_timeout, BareUnit::Seconds)
            .map_err(|e| LoadgenError::Usage(format!("--drain-timeout: {e}")))?;
        Ok((self.receivers(host)?, drain_timeout))
    }

    fn receivers(&self, host: Option<&url::Url>) -> Result<Vec<url::Url>, LoadgenError> {
        if self.no_reconcile {
            return Ok(Vec::new());
        }
        if self.receivers.is_empty() {
            return Ok(host.into_iter().cloned().collect());
        }
        self.receivers
            .iter()
            .map(|text| {
                parse_host(text).map_err(|_| {
                    LoadgenError::Usage(format!(
                        "--receivers {text}: give the receivers' base URL, such as http://127.0.0.1:8080"
                    ))
                })
            })
            .collect()
    }
}

/// The rules of a run: `--threshold`s, then the gate file's, each judged once.
pub fn parse_rules(
    thresholds: &[String],
    gate: Option<&std::path::Path>,
    max_regression: f64,
) -> Result<(Vec<SourcedRule>, f64), LoadgenError> {
    let mut rules = Vec::new();
    for text in thresholds {
        let rule: Rule = text
            .parse()
            .map_err(|e| LoadgenError::Usage(format!("--threshold: {e}")))?;
        rules.push(SourcedRule {
            rule,
            source: RuleSource::Cli,
        });
    }
    let mut max_regression = max_regression;
    if let Some(path) = gate {
        let gate = read_gate_file(path)?;
        for text in &gate.thresholds {
            let rule: Rule = text
                .parse()
                .map_err(|e| LoadgenError::Usage(format!("gate file {}: {e}", path.display())))?;
            rules.push(SourcedRule {
                rule,
                source: RuleSource::GateFile,
            });
        }
        max_regression = gate.max_regression.unwrap_or(max_regression);
    }
    // The same rule from a flag and the gate file is judged once.
    let mut seen = std::collections::HashSet::new();
    rules.retain(|r: &SourcedRule| seen.insert(r.rule.text.clone()));
    if !(max_regression.is_finite() && max_regression >= 0.0) {
        return Err(LoadgenError::Usage(format!(
            "--max-regression {max_regression}: it must be a percentage of 0 or more, such as 10"
        )));
    }
    Ok((rules, max_regression))
}

/// A run id becomes a folder name and every key's prefix: letters, digits, `.`, `_`, `-`.
fn check_run_id(id: &str) -> Result<(), LoadgenError> {
    // The receivers page through a run's ids by `<run-id>-`, a prefix of 8 or more.
    let ok = (7..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(LoadgenError::Usage(format!(
            "--run-id {id:?}: 7 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-', such as nightly-42"
        )))
    }
}

/// `I/N` with 0 <= I < N.
fn parse_worker(text: &str) -> Result<Worker, LoadgenError> {
    let bad = || {
        LoadgenError::Usage(format!(
            "--worker {text}: give I/N with I from 0 to N-1, such as 0/2 and 1/2 for two workers"
        ))
    };
    let (index, count) = text.split_once('/').ok_or_else(bad)?;
    let (index, count): (usize, usize) = (
        index.trim().parse().map_err(|_| bad())?,
        count.trim().parse().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Worker { index, count })
}

/// What loadgen does besides a load test.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Each gated metric's trend over the runs in the history, with its change points
    History(crate::judge::history::HistoryArgs),
    /// Joins the folders of a run's workers into one run, reconciled and judged as one
    Merge(MergeArgs),
}

/// The gate file's shape; unknown keys are refused so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    #[serde(default)]
    thresholds: Vec<String>,
    max_regression: Option<f64>,
}

/// A checked command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub users: usize,
    pub hatch_rate: f64,
    pub host: url::Url,
    pub run_time: Option<Duration>,
    pub traffic: PathBuf,
    pub wait: (Duration, Duration),
    pub mode: Mode,
    pub reports: PathBuf,
    pub seed: Option<u64>,
    pub rules: Vec<SourcedRule>,
    pub baseline: Option<PathBuf>,
    pub max_regression: f64,
    pub calibration: Vec<PathBuf>,
    pub interval: Duration,
    pub abort_on_fail: bool,
    pub progress_every: Duration,
    pub max_rps: Option<usize>,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub post_only: bool,
    /// Empty when --no-reconcile.
    pub receivers: Vec<url::Url>,
    pub drain_timeout: Duration,
    pub worker: Option<Worker>,
    pub run_id: Option<String>,
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The open model; `None` runs the closed one, users waiting `wait` between tasks.
    pub open: Option<OpenSettings>,
}

impl Settings {
    /// The users this process runs: its share when it is one worker of several.
    pub fn process_users(&self) -> usize {
        self.worker.map_or(self.users, |w| w.share(self.users))
    }
}

/// A checked open model.
#[derive(Debug, Clone)]
pub struct OpenSettings {
    pub plan: Plan,
    /// As the report shows it: `200/s` or the plan text.
    pub plan_text: String,
    pub arrivals: Arrivals,
    pub max_users: usize,
    pub drop_late: Option<Duration>,
}

impl Cli {
    /// Checks every flag and reads the gate file; the first problem is the error.
    pub fn settings(self) -> Result<Settings, LoadgenError> {
        let usage = |message: String| Err(LoadgenError::Usage(message));
        if self.users == 0 {
            return usage("--users 0: at least one user is needed; try --users 10".into());
        }
        if !(self.hatch_rate.is_finite() && self.hatch_rate > 0.0) {
            return usage(format!(
                "--hatch-rate {}: it must be a number of users per second above 0, such as 20 or 0.5",
                self.hatch_rate
            ));
        }
        let host = parse_host(&self.host)?;
        let run_time = match &self.run_time {
            None => None,
            Some(text) => match parse_span(text, BareUnit::Seconds) {
                Ok(span) if span > Duration::ZERO => Some(span),
                Ok(_) => return usage(format!("--run-time {text}: it must be longer than 0")),
                Err(error) => return usage(format!("--run-time: {error}")),
            },
        };
        let open = self.open_settings(run_time)?;
        // A plan ends the run when it ends, unless --run-time cuts it shorter.
        let plan_length = open
            .as_ref()
            .map(|o| o.plan.duration())
            .filter(|d| d.is_finite())
            .map(Duration::from_secs_f64);
        let run_time = match (run_time, plan_length) {
            (Some(t), Some(p)) => Some(t.min(p)),
            (t, p) => t.or(p),
        };
        if self.mode == Mode::Loop && run_time.is_none() {
            return usage(
                "--mode loop never runs out of records, so it needs --run-time, such as -t 60s"
                    .into(),
            );
        }
        let wait = parse_wait(self.wait.as_deref().unwrap_or("100ms..900ms"))
            .map_err(|e| LoadgenError::Usage(format!("--wait: {e}")))?;
        let (receivers, drain_timeout) = self.reconcile.parse(Some(&host))?;
        let (rules, max_regression) = parse_rules(
            &self.gate.thresholds,
            self.gate.gate.as_deref(),
            self.gate.max_regression,
        )?;
        if self.max_rps == Some(0) {
            return usage(
                "--max-rps 0 would send nothing; give a rate such as 500, or leave it out".into(),
            );
        }
        let worker = self.worker.as_deref().map(parse_worker).transpose()?;
        if let Some(w) = worker
            && w.share(self.users) == 0
        {
            return usage(format!(
                "--worker {}/{}: {} users leave worker {} none; give at least {} users",
                w.index, w.count, self.users, w.index, w.count
            ));
        }
        if let Some(id) = &self.run_id {
            check_run_id(id)?;
        }
        let start_at = match &self.start_at {
            None => None,
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|e| {
                        LoadgenError::Usage(format!(
                            "--start-at {text}: {e}; give an RFC 3339 time such as 2026-11-27T10:00:00Z"
                        ))
                    })?
                    .with_timezone(&chrono::Utc),
            ),
        };
        let interval = span_at_least("--interval", &self.interval, "10ms", "1s")?;
        let request_timeout =
            span_at_least("--request-timeout", &self.request_timeout, "1ms", "10s")?;
        if rules.iter().any(|r| r.rule.relative) && self.calibration.is_empty() {
            let relative: Vec<&str> = rules
                .iter()
                .filter(|r| r.rule.relative)
                .map(|r| r.rule.text.as_str())
                .collect();
            return usage(format!(
                "the rules {} are multiples of a calibration run; pass --calibration RUN (a run of the same load against a trivial handler, see scripts/demo)",
                relative.join(", ")
            ));
        }
        Ok(Settings {
            // In the open model the users are the pool that takes the tickets.
            users: open.as_ref().map_or(self.users, |o| o.max_users),
            hatch_rate: self.hatch_rate,
            host,
            run_time,
            traffic: self.traffic,
            wait,
            mode: self.mode,
            reports: self.reports,
            seed: self.seed,
            rules,
            baseline: self.gate.baseline,
            max_regression,
            calibration: self.calibration,
            interval,
            abort_on_fail: self.abort_on_fail,
            progress_every: Duration::from_secs(self.progress_every.max(1)),
            max_rps: self.max_rps,
            max_connections: self.max_connections,
            request_timeout,
            post_only: self.post_only,
            receivers,
            drain_timeout,
            worker,
            run_id: self.run_id,
            start_at,
            open,
        })
    }

    /// The open model's flags, checked: a rate above 0 or a plan that reads, no think time
    /// beside them, a pool of at least one user.
    fn open_settings(
        &self,
        run_time: Option<Duration>,
    ) -> Result<Option<OpenSettings>, LoadgenError> {
        let usage = |m: String| Err(LoadgenError::Usage(m));
        let (plan, plan_text) = match (self.arrival_rate, &self.arrival_plan) {
            (Some(_), Some(_)) => {
                return usage(
                    "--arrival-rate and --arrival-plan both set the rate; give one (a constant rate is the plan R@0s,R@TIME)".into(),
                );
            }
            (Some(rate), None) => {
                if !(rate.is_finite() && rate > 0.0) {
                    return usage(format!(
                        "--arrival-rate {rate}: it must be a number of requests per second above 0, such as 200 or 0.5"
                    ));
                }
                (Plan::constant(rate, run_time), format!("{rate}/s"))
            }
            (None, Some(text)) => match Plan::parse(text) {
                Ok(plan) => (plan, text.clone()),
                Err(why) => {
                    return usage(format!(
                        "--arrival-plan {text:?}: {why}; a plan is RATE@DURATION stages, such as 100@0s,100@30s,500@1m"
                    ));
                }
            },
            (None, None) => {
                let stray = [
                    ("--arrivals", self.arrivals.is_some()),
                    ("--max-users", self.max_users.is_some()),
                    ("--drop-late", self.drop_late.is_some()),
                ];
                if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                    return usage(format!(
                        "{flag} belongs to the open model; give --arrival-rate R or --arrival-plan PLAN with it"
                    ));
                }
                return Ok(None);
            }
        };
        if let Some(wait) = &self.wait {
            return usage(format!(
                "--wait {wait} is the closed model's think time; in the open model (--arrival-rate, --arrival-plan) the schedule sets when requests go, so leave --wait out"
            ));
        }
        if let Some(rps) = self.max_rps {
            return usage(format!(
                "--max-rps {rps} caps the closed model; in the open model the schedule sets the rate, so give it as --arrival-rate and leave --max-rps out"
            ));
        }
        let max_users = self.max_users.unwrap_or(100);
        if max_users == 0 {
            return usage(
                "--max-users 0: the pool needs at least one user to send; try --max-users 50"
                    .into(),
            );
        }
        let drop_late = match &self.drop_late {
            None => None,
            Some(text) => Some(
                parse_span(text, BareUnit::Millis)
                    .map_err(|e| LoadgenError::Usage(format!("--drop-late: {e}")))?,
            ),
        };
        Ok(Some(OpenSettings {
            plan,
            plan_text,
            arrivals: self.arrivals.unwrap_or(Arrivals::Uniform),
            max_users,
            drop_late,
        }))
    }
}

/// The time `text` given to `flag` (a bare number is seconds), refused when shorter than
/// `min`, with `example` as a value that would do.
fn span_at_least(
    flag: &str,
    text: &str,
    min: &str,
    example: &str,
) -> Result<Duration, LoadgenError> {
    let least = parse_span(min, BareUnit::Seconds).expect("the minimum is a valid time");
    match parse_span(text, BareUnit::Seconds) {
        Ok(span) if span >= least => Ok(span),
        Ok(_) => Err(LoadgenError::Usage(format!(
            "{flag} {text}: it must be at least {min}, such as {example}"
        ))),
        Err(error) => Err(LoadgenError::Usage(format!("{flag}: {error}"))),
    }
}

fn parse_host(text: &str) -> Result<url::Url, LoadgenError> {
    let bad = |why: &str| {
        LoadgenError::Usage(format!(
            "--host {text}: {why}; give a base URL such as http://127.0.0.1:8080"
        ))
    };
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host name"));
    }
    Ok(url)
}

fn read_gate_file(path: &std::path::Path) -> Result<GateFile, LoadgenError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LoadgenError::Usage(format!(
            "gate file {}: cannot read it ({e}); check the --gate path",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        LoadgenError::Usage(format!(
            "gate file {}: {}; it takes thresholds = [\"p95<500ms\", ...] and an optional max_regression = 10",
            path.display(),
            e.to_string().trim_end()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, LoadgenError> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .map_err(|e| LoadgenError::Usage(e.to_string()))?
            .settings()
    }

    #[test]
    fn locust_flags_and_defaults() {
        let s = parse(&[
            "--users",
            "500",
            "--hatch-rate",
            "20",
            "--host",
            "http://127.0.0.1:8080",
        ])
        .unwrap();
        assert_eq!((s.users, s.hatch_rate), (500, 20.0));
        assert_eq!(
            s.wait,
            (Duration::from_millis(100), Duration::from_millis(900))
        );
        assert_eq!(s.mode, Mode::PerUser);
        assert_eq!(s.traffic, PathBuf::from("data/traffic.json"));
        assert_eq!(s.run_time, None);
        let s = parse(&[
            "-u",
            "3",
            "-r",
            "1.5",
            "-H",
            "http://localhost:1",
            "-t",
            "1m30s",
        ])
        .unwrap();
        assert_eq!((s.users, s.hatch_rate), (3, 1.5));
        assert_eq!(s.run_time, Some(Duration::from_secs(90)));
        let s = parse(&["--spawn-rate", "7"]).unwrap();
        assert_eq!(s.hatch_rate, 7.0);
    }

    #[test]
    fn receivers_default_to_the_host_and_repeat_for_a_topology() {
        let s = parse(&["-H", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(s.receivers.len(), 1);
        assert_eq!(s.receivers[0].as_str(), "http://127.0.0.1:8080/");
        let s = parse(&[
            "--receivers",
            "http://127.0.0.1:8081",
            "--receivers",
            "http://127.0.0.1:8082",
        ])
        .unwrap();
        assert_eq!(s.receivers.len(), 2);
        assert!(parse(&["--no-reconcile"]).unwrap().receivers.is_empty());
    }

    #[test]
    fn bad_flags_are_usage_errors_that_name_the_flag() {
        for (args, needle) in [
            (&["--users", "0"][..], "--users 0"),
            (&["--hatch-rate", "0"], "--hatch-rate"),
            (&["--run-time", "soon"], "--run-time"),
            (&["--wait", "9s..1s"], "--wait"),
            (&["--wait", "fast"], "--wait"),
            (&["--host", "not a url"], "--host"),
            (&["--host", "ftp://127.0.0.1"], "--host"),
            (&["--threshold", "p95<"], "--threshold"),
            (&["--mode", "loop"], "--run-time"),
            (&["--max-regression=-5"], "--max-regression"),
            (&["--max-rps", "0"], "--max-rps"),
            (&["--receivers", "nowhere"], "--receivers"),
            (&["--drain-timeout", "later"], "--drain-timeout"),
        ] {
            match parse(args) {
                Err(LoadgenError::Usage(message)) => {
                    assert!(message.contains(needle), "{args:?}: {message}")
                }
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn gate_file_rules_are_read_and_typos_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("gate.toml");
        std::fs::write(
            &good,
            "thresholds = [\"p95<1s\", \"error-rate<1%\"]\nmax_regression = 20\n",
        )
        .unwrap();
        let s = parse(&[
            "--gate",
            good.to_str().unwrap(),
            "--threshold",
            "rps>=1",
            "--threshold",
            "p95<1s",
        ])
        .unwrap();
        assert_eq!(s.rules.len(), 3, "a rule given twice is judged once");
        let sources: Vec<(&str, RuleSource)> = s
            .rules
            .iter()
            .map(|r| (r.rule.text.as_str(), r.source))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("rps>=1", RuleSource::Cli),
                ("p95<1s", RuleSource::Cli),
                ("error-rate<1%", RuleSource::GateFile)
            ]
        );
        assert_eq!(s.max_regression, 20.0);

        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "treshold = [\"p95<1s\"]\n").unwrap();
        match parse(&["--gate", typo.to_str().unwrap()]) {
            Err(LoadgenError::Usage(message)) => {
                assert!(
                    message.contains("typo.toml") && message.contains("treshold"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
