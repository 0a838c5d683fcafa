//! The load's shape, checked: the flows (`--scenario`, or the seed's), the users over time
//! (`--users-plan` or the file's `[[stage]]`) and the replay mode they allow.

use std::time::Duration;

use crate::cli::args::Cli;
use crate::error::LoadgenError;
use crate::replay::Mode;
use crate::scenario::{self, Scenarios};
use crate::users_plan::UsersPlan;

/// What users send, how many there are over time, and which records they take.
#[derive(Debug, Clone)]
pub struct Shape {
    pub scenarios: Scenarios,
    pub users_plan: Option<UsersPlan>,
    pub mode: Mode,
}

impl Cli {
    /// Reads the scenario file and the users plan, and resolves the mode; `open` says
    /// whether the run is in the open model, `run_time` whether something ends it.
    pub(super) fn shape(
        &self,
        open: bool,
        run_time: Option<Duration>,
    ) -> Result<Shape, LoadgenError> {
        let usage = |m: String| Err(LoadgenError::Usage(m));
        let scenarios = match &self.scenario {
            Some(path) => scenario::read(path).map_err(|e| LoadgenError::Usage(e.to_string()))?,
            None => Scenarios::seed(self.post_only),
        };
        let file = || {
            self.scenario
                .as_ref()
                .map_or("the scenario".to_string(), |p| p.display().to_string())
        };
        let users_plan = match (&self.users_plan, &scenarios.stages) {
            (Some(_), Some(_)) => {
                return usage(format!(
                    "--users-plan and the [[stage]] of {} both shape the users; give the plan once",
                    file()
                ));
            }
            (Some(text), None) => Some(UsersPlan::parse(text).map_err(|why| {
                LoadgenError::Usage(format!(
                    "--users-plan {text:?}: {why}; a plan is USERS@DURATION steps, such as 10@30s,10@5m,0@30s"
                ))
            })?),
            (None, stages) => stages.clone(),
        };
        if open && users_plan.is_some() {
            return usage(
                "--users-plan (or [[stage]]) shapes the closed model's users; the open model's load over time is --arrival-plan".into(),
            );
        }
        let mode = self.mode(&scenarios, users_plan.is_some(), &file())?;
        if mode == Mode::Loop && run_time.is_none() && users_plan.is_none() {
            let why = if scenarios.sends_records() {
                "--mode loop never runs out of records"
            } else {
                "no request of the scenario sends a record, so nothing ends the run; it"
            };
            return usage(format!(
                "{why}, so it needs --run-time, such as -t 60s (or --users-plan)"
            ));
        }
        Ok(Shape {
            scenarios,
            users_plan,
            mode,
        })
    }

    /// `--mode`, or its default: per-user, unless nothing ends a user by its records (a
    /// users plan keeps users for its time; a scenario may send no record), then loop.
    fn mode(&self, scenarios: &Scenarios, planned: bool, file: &str) -> Result<Mode, LoadgenError> {
        let records = scenarios.sends_records();
        match self.mode {
            None if planned || !records => Ok(Mode::Loop),
            None => Ok(Mode::PerUser),
            Some(Mode::Loop) => Ok(Mode::Loop),
            Some(mode) if planned => Err(LoadgenError::Usage(format!(
                "--mode {} ends each user once its records are spent, but --users-plan keeps the users for the plan's time; leave --mode out (loop)",
                mode.name()
            ))),
            Some(mode) if !records => Err(LoadgenError::Usage(format!(
                "--mode {}: no request of {file} sends a record (record = true), so there are none to share out; leave --mode out",
                mode.name()
            ))),
            Some(mode) => Ok(mode),
        }
    }
}
