//! The command line checked and derived into `Settings`: every flag's value is refused
//! here, with the flag named and a value that would do, before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use crate::arrival::Plan;
use crate::cli::args::{Cli, ReconcileArgs};
use crate::cli::gate_file::parse_rules;
use crate::duration::{BareUnit, parse_span, parse_wait};
use crate::error::LoadgenError;
use crate::judge::gate::SourcedRule;
use crate::model::{Arrivals, Worker};
use crate::replay::Mode;
use crate::scenario::Scenarios;
use crate::users_plan::UsersPlan;

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
    pub baseline: Vec<PathBuf>,
    pub max_regression: f64,
    pub calibration: Vec<PathBuf>,
    pub interval: Duration,
    pub abort_on_fail: bool,
    pub progress_every: Duration,
    pub max_rps: Option<usize>,
    pub max_connections: usize,
    pub request_timeout: Duration,
    /// How long requests in flight at --run-time may still take before they are interrupted.
    pub graceful_stop: Duration,
    pub post_only: bool,
    /// Empty when --no-reconcile.
    pub receivers: Vec<url::Url>,
    pub drain_timeout: Duration,
    pub worker: Option<Worker>,
    pub run_id: Option<String>,
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The open model; `None` runs the closed one, users waiting `wait` between tasks.
    pub open: Option<OpenSettings>,
    /// The flows users follow: `--scenario`'s, or the seed's.
    pub scenarios: Scenarios,
    /// The closed model's users over time; `users` is then its most.
    pub users_plan: Option<UsersPlan>,
    /// Why the run has no delivery ledger, when its flows send no record.
    pub ledger_off: Option<String>,
}

impl Settings {
    /// The users this process runs: its share when it is one worker of several.
    pub fn process_users(&self) -> usize {
        self.worker.map_or(self.users, |w| w.share(self.users))
    }

    /// The users plan this process follows: its share of each step when it is a worker.
    pub fn process_plan(&self) -> Option<UsersPlan> {
        let plan = self.users_plan.as_ref()?;
        Some(self.worker.map_or_else(|| plan.clone(), |w| plan.share(w)))
    }
}

impl OpenSettings {
    /// What `worker` schedules: its share of the rate, in the notation the plan was given in.
    pub fn share(&self, worker: Worker) -> String {
        let factor = 1.0 / worker.count as f64;
        match self.rate {
            Some(rate) => format!("{}/s", rate * factor),
            None => self.plan.scaled(factor).text(),
        }
    }
}

/// A checked open model.
#[derive(Debug, Clone)]
pub struct OpenSettings {
    pub plan: Plan,
    /// As the report shows it: `200/s` or the plan text.
    pub plan_text: String,
    /// `--arrival-rate`'s rate, when the plan is that constant rate.
    pub rate: Option<f64>,
    pub arrivals: Arrivals,
    pub max_users: usize,
    pub drop_late: Option<Duration>,
    /// A request sent more than this after its time is late.
    pub late_after: Duration,
}

impl Cli {
    /// Checks every flag and reads the gate file; the first problem is the error.
    pub fn settings(self) -> Result<Settings, LoadgenError> {
        self.check_closed_model()?;
        let host = parse_host(&self.host)?;
        let run_time = self.run_time()?;
        let open = self.open_settings(run_time)?;
        let shape = self.shape(open.is_some(), with_plan(run_time, open.as_ref(), None))?;
        let run_time = with_plan(run_time, open.as_ref(), shape.users_plan.as_ref());
        let wait = parse_wait(self.wait.as_deref().unwrap_or("100ms..900ms"))
            .map_err(|e| LoadgenError::Usage(format!("--wait: {e}")))?;
        let (receivers, drain_timeout) = self.reconcile.parse(Some(&host))?;
        let (receivers, ledger_off) = ledger(receivers, &shape.scenarios);
        let (rules, max_regression) = parse_rules(
            &self.gate.thresholds,
            self.gate.gate.as_deref(),
            self.gate.max_regression,
        )?;
        if self.max_rps == Some(0) {
            return Err(LoadgenError::Usage(
                "--max-rps 0 would send nothing; give a rate such as 500, or leave it out".into(),
            ));
        }
        let worker = self.worker(open.as_ref(), shape.users_plan.as_ref())?;
        if let Some(id) = &self.run_id {
            check_run_id(id)?;
        }
        let start_at = self.start_at()?;
        let interval = span_at_least("--interval", &self.interval, "10ms", "1s")?;
        let request_timeout =
            span_at_least("--request-timeout", &self.request_timeout, "1ms", "10s")?;
        let graceful_stop = span_at_least("--graceful-stop", &self.graceful_stop, "0s", "5s")?;
        check_calibrated(&rules, &self.calibration)?;
        check_rule_targets(&rules, &shape.scenarios)?;
        Ok(Settings {
            // In the open model the users are the pool that takes the tickets.
            users: match (&open, &shape.users_plan) {
                (Some(open), _) => open.max_users,
                (None, Some(plan)) => plan.max(),
                (None, None) => self.users,
            },
            hatch_rate: self.hatch_rate,
            host,
            run_time,
            traffic: self.traffic,
            wait,
            mode: shape.mode,
            scenarios: shape.scenarios,
            users_plan: shape.users_plan,
            ledger_off,
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
            graceful_stop,
            post_only: self.post_only,
            receivers,
            drain_timeout,
            worker,
            run_id: self.run_id,
            start_at,
            open,
        })
    }

    /// The closed model's numbers: at least one user, and a hatch rate above 0.
    fn check_closed_model(&self) -> Result<(), LoadgenError> {
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
        Ok(())
    }

    fn run_time(&self) -> Result<Option<Duration>, LoadgenError> {
        let Some(text) = &self.run_time else {
            return Ok(None);
        };
        match parse_span(text, BareUnit::Seconds) {
            Ok(span) if span > Duration::ZERO => Ok(Some(span)),
            Ok(_) => Err(LoadgenError::Usage(format!(
                "--run-time {text}: it must be longer than 0"
            ))),
            Err(error) => Err(LoadgenError::Usage(format!("--run-time: {error}"))),
        }
    }

    /// `--worker I/N`, refused when it would leave this worker no user: of `--users`, or in
    /// the open model of the pool (`--max-users`), whose users take the tickets.
    fn worker(
        &self,
        open: Option<&OpenSettings>,
        plan: Option<&UsersPlan>,
    ) -> Result<Option<Worker>, LoadgenError> {
        let worker = self.worker.as_deref().map(parse_worker).transpose()?;
        let (users, flag) = match (open, plan) {
            (Some(open), _) => (open.max_users, "--max-users"),
            (None, Some(plan)) => (plan.max(), "the most users of --users-plan,"),
            (None, None) => (self.users, "--users"),
        };
        if let Some(w) = worker
            && w.share(users) == 0
        {
            return Err(LoadgenError::Usage(format!(
                "--worker {}/{}: {users} users ({flag}) leave worker {} none; give {flag} {} or more",
                w.index, w.count, w.index, w.count
            )));
        }
        Ok(worker)
    }

    fn start_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, LoadgenError> {
        let Some(text) = &self.start_at else {
            return Ok(None);
        };
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .map_err(|e| {
                LoadgenError::Usage(format!(
                    "--start-at {text}: {e}; give an RFC 3339 time such as 2026-11-27T10:00:00Z"
                ))
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
                    ("--late-after", self.late_after.is_some()),
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
        let drop_late = self
            .drop_late
            .as_deref()
            .map(|t| millis("--drop-late", t))
            .transpose()?;
        let late_after = match &self.late_after {
            None => crate::arrival::LATE_AFTER,
            Some(text) => millis("--late-after", text)?,
        };
        Ok(Some(OpenSettings {
            plan,
            plan_text,
            late_after,
            rate: self.arrival_rate,
            arrivals: self.arrivals.unwrap_or(Arrivals::Uniform),
            max_users,
            drop_late,
        }))
    }
}

/// The time `text` given to `flag`, a bare number being milliseconds.
fn millis(flag: &str, text: &str) -> Result<Duration, LoadgenError> {
    parse_span(text, BareUnit::Millis).map_err(|e| LoadgenError::Usage(format!("{flag}: {e}")))
}

/// A plan (of arrivals or of users) ends the run when it ends, unless --run-time cuts it
/// shorter.
fn with_plan(
    run_time: Option<Duration>,
    open: Option<&OpenSettings>,
    users: Option<&UsersPlan>,
) -> Option<Duration> {
    let plan_length = open
        .map(|o| o.plan.duration())
        .filter(|d| d.is_finite())
        .map(Duration::from_secs_f64)
        .or(users.map(UsersPlan::duration));
    match (run_time, plan_length) {
        (Some(t), Some(p)) => Some(t.min(p)),
        (t, p) => t.or(p),
    }
}

/// The receivers to reconcile with, and why there are none when the flows send no record:
/// only record requests carry keys into the ledger, so there is nothing to reconcile, which
/// is a fact of the flow, not an error.
fn ledger(receivers: Vec<url::Url>, scenarios: &Scenarios) -> (Vec<url::Url>, Option<String>) {
    if scenarios.sends_records() {
        return (receivers, None);
    }
    let why = "no request of the scenario sends a record (record = true), so there is no delivery ledger to reconcile";
    (Vec::new(), Some(why.to_string()))
}

/// A rule `for NAME` names a request of the scenario (or a route): a typo is refused
/// before the run, not found missing after it.
fn check_rule_targets(rules: &[SourcedRule], scenarios: &Scenarios) -> Result<(), LoadgenError> {
    for sourced in rules {
        let rule = &sourced.rule;
        let Some(target) = rule.target.as_deref() else {
            continue;
        };
        let known = rule.metric.is_per_route()
            || scenarios.names().any(|name| name == target)
            || contract::Route::from_name(target).is_some();
        if !known {
            return Err(LoadgenError::Usage(format!(
                "rule '{}': no request of the scenario is named '{target}'; its requests are {}",
                rule.text,
                scenarios.names().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

/// Rules with a limit such as `8x` need a calibration run to multiply.
fn check_calibrated(rules: &[SourcedRule], calibration: &[PathBuf]) -> Result<(), LoadgenError> {
    let relative: Vec<&str> = rules
        .iter()
        .filter(|r| r.rule.relative)
        .map(|r| r.rule.text.as_str())
        .collect();
    if relative.is_empty() || !calibration.is_empty() {
        return Ok(());
    }
    Err(LoadgenError::Usage(format!(
        "the rules {} are multiples of a calibration run; pass --calibration RUN (a run of the same load against a trivial handler, see scripts/demo)",
        relative.join(", ")
    )))
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    /// `loadgen ARGS…`, parsed and checked as the binary does.
    pub(in crate::cli) fn parse(args: &[&str]) -> Result<Settings, LoadgenError> {
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
            (&["--graceful-stop", "soon"], "--graceful-stop"),
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
    fn open_model_workers_split_the_pool_not_the_users() {
        // --users plays no part in the open model: the pool does.
        let s = parse(&[
            "--arrival-rate",
            "400",
            "--worker",
            "1/2",
            "--run-id",
            "open-run-1",
        ])
        .unwrap();
        let (open, worker) = (s.open.as_ref().unwrap(), s.worker.unwrap());
        assert_eq!(
            (s.process_users(), open.share(worker)),
            (50, "200/s".into())
        );
        let s = parse(&[
            "--arrival-plan",
            "100@0s,300@1m",
            "--worker",
            "0/2",
            "--run-id",
            "open-run-1",
        ])
        .unwrap();
        assert_eq!(
            s.open.as_ref().unwrap().share(s.worker.unwrap()),
            "50@0s,150@60s"
        );
        match parse(&[
            "--arrival-rate",
            "400",
            "--max-users",
            "1",
            "--worker",
            "1/2",
            "--run-id",
            "open-run-1",
        ]) {
            Err(LoadgenError::Usage(message)) => {
                assert!(message.contains("--max-users"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
