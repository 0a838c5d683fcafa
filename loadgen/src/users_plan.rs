//! The closed model's users over time (`--users-plan`, or `[[stage]]` in a scenario file):
//! linear ramps USERS@DURATION from 0 users, in `--arrival-plan`'s notation, run by Goose's
//! test plan. Goose's plan counts whole seconds, so each step does too.

use std::time::Duration;

use crate::duration::{BareUnit, parse_span};
use crate::model::Worker;

/// Each step ramps linearly from the users before it to `users` over `secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersPlan {
    pub steps: Vec<(usize, u64)>,
}

impl UsersPlan {
    /// Reads `10@2s,10@4s,2@1s,2@4s`: ramp to 10 users over 2 s, hold 4 s, drop to 2 over
    /// 1 s, hold 4 s.
    pub fn parse(text: &str) -> Result<UsersPlan, String> {
        let steps = text
            .split(',')
            .map(|step| {
                let step = step.trim();
                let (users, span) = step.split_once('@').ok_or_else(|| {
                    format!("step {step:?} is not USERS@DURATION, such as 10@30s")
                })?;
                let users = users.trim().parse::<usize>().map_err(|_| {
                    format!(
                        "step {step:?}: {:?} is not a number of users, 0 or more",
                        users.trim()
                    )
                })?;
                let secs = step_secs(span.trim()).map_err(|e| format!("step {step:?}: {e}"))?;
                Ok((users, secs))
            })
            .collect::<Result<Vec<_>, String>>()?;
        UsersPlan::new(steps)
    }

    /// A plan from checked steps: it must last some time and start some user.
    pub fn new(steps: Vec<(usize, u64)>) -> Result<UsersPlan, String> {
        let plan = UsersPlan { steps };
        if plan.duration().is_zero() {
            return Err("the plan lasts no time; give steps such as 10@10s,10@30s".into());
        }
        if plan.max() == 0 {
            return Err("every step has 0 users, so nothing would be sent".into());
        }
        Ok(plan)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.steps.iter().map(|(_, s)| s).sum())
    }

    /// The most users at once.
    pub fn max(&self) -> usize {
        self.steps.iter().map(|(u, _)| *u).max().unwrap_or(0)
    }

    /// Users Goose starts over the whole plan: a user that leaves is not restarted, so
    /// every rise starts new ones. It bounds the users' indices (and their keys).
    pub fn starts(&self) -> usize {
        let mut before = 0;
        self.steps
            .iter()
            .map(|&(users, _)| {
                let rise = users.saturating_sub(before);
                before = users;
                rise
            })
            .sum()
    }

    /// The users the plan asks for `t` into the run.
    pub fn users_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let (mut from, mut start) = (0.0, 0.0);
        for &(users, secs) in &self.steps {
            let (users, secs) = (users as f64, secs as f64);
            if t < start + secs {
                return from + (users - from) * (t - start) / secs;
            }
            start += secs;
            from = users;
        }
        from
    }

    /// A worker's share: of each step's users, the ones it would run of that many.
    pub fn share(&self, worker: Worker) -> UsersPlan {
        UsersPlan {
            steps: self
                .steps
                .iter()
                .map(|&(users, secs)| (worker.share(users), secs))
                .collect(),
        }
    }

    /// In `--users-plan`'s notation.
    pub fn text(&self) -> String {
        self.steps
            .iter()
            .map(|(users, secs)| format!("{users}@{secs}s"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// In Goose's `--test-plan` notation: `10,2s;10,4s`.
    pub fn goose_text(&self) -> String {
        self.steps
            .iter()
            .map(|(users, secs)| format!("{users},{secs}s"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// A step's duration in whole seconds, as Goose's test plan counts them.
pub fn step_secs(text: &str) -> Result<u64, String> {
    let span = parse_span(text, BareUnit::Seconds).map_err(|e| e.to_string())?;
    if span.subsec_nanos() != 0 {
        return Err(format!(
            "{text:?}: Goose's test plan counts whole seconds; give {}s or {}s",
            span.as_secs(),
            span.as_secs() + 1
        ));
    }
    Ok(span.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_ramps_holds_steps_and_drops() {
        let plan = UsersPlan::parse("10@2s, 10@4s,2@1s,2@4s").unwrap();
        assert_eq!(plan.steps, vec![(10, 2), (10, 4), (2, 1), (2, 4)]);
        assert_eq!(plan.duration(), Duration::from_secs(11));
        assert_eq!(plan.max(), 10);
        assert_eq!(plan.starts(), 10);
        assert_eq!(plan.users_at(Duration::from_secs(1)), 5.0);
        assert_eq!(plan.users_at(Duration::from_secs(5)), 10.0);
        assert_eq!(plan.users_at(Duration::from_millis(6500)), 6.0);
        assert_eq!(plan.users_at(Duration::from_secs(60)), 2.0);
        assert_eq!(plan.goose_text(), "10,2s;10,4s;2,1s;2,4s");
        assert_eq!(plan.text(), "10@2s,10@4s,2@1s,2@4s");
    }

    #[test]
    fn users_that_come_back_are_new_users() {
        assert_eq!(UsersPlan::parse("5@1s,0@1s,5@1s").unwrap().starts(), 10);
    }

    #[test]
    fn workers_split_each_step() {
        let plan = UsersPlan::parse("5@1s,3@2s").unwrap();
        let shares: Vec<UsersPlan> = (0..2)
            .map(|index| plan.share(Worker { index, count: 2 }))
            .collect();
        assert_eq!(shares[0].steps, vec![(3, 1), (2, 2)]);
        assert_eq!(shares[1].steps, vec![(2, 1), (1, 2)]);
    }

    #[test]
    fn bad_plans_say_what_to_write() {
        for (text, says) in [
            ("10", "USERS@DURATION"),
            ("-1@2s", "number of users"),
            ("10@soon", "time span"),
            ("10@1500ms", "whole seconds"),
            ("10@0s", "lasts no time"),
            ("0@5s", "0 users"),
        ] {
            let error = UsersPlan::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
