//! Gate rules in Goose's threshold syntax (`p95<500ms`, `error-rate<1%`, `rps>=200`,
//! `p99<2s for POST /`), parsed before the run so a typo costs nothing.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::duration::{BareUnit, parse_span};
pub use crate::model::Unit;

/// One pass/fail rule: `metric op limit`, optionally for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as the user wrote it, shown in every table and report.
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: milliseconds, percent, requests per second or a count.
    pub limit: f64,
    /// For request metrics a request name as the reports show it (`POST /`); for delivery
    /// and stage metrics a route (`nats`). `None` means all requests, or all routes.
    pub target: Option<String>,
    /// The limit is a multiple of the same figure in a calibration run (`p50<=8x`): a
    /// machine-independent limit, judged against `--calibration`.
    pub relative: bool,
}

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile, 0 < p <= 100.
    Percentile(f64),
    Avg,
    Max,
    ErrorRate,
    Rps,
    /// A count from the delivery ledger (reconciliation with the receivers' store).
    Ledger(LedgerField),
    /// A latency percentile of a receivers stage, e.g. `e2e-p99`.
    Stage(StageName, f64),
    /// Open model: a percentile of service time (from the actual send), `service-p99`.
    Service(f64),
    /// Open model: requests sent after their intended time.
    Late,
    /// Open model: requests not sent, too far behind (`--drop-late`).
    Dropped,
    /// Seconds in which loadgen itself was CPU-bound, so its latencies include its own
    /// queueing: `saturated==0` refuses a run whose generator was the bottleneck.
    Saturated,
}

/// The delivery ledger's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerField {
    Accepted,
    Stored,
    Lost,
    Duplicates,
    Conflicts,
    DeadLettered,
    Rejected,
}

/// The receivers' latency stages: the contract's names.
pub use contract::Stage as StageName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// Why a rule was refused. The message quotes the rule and says what is accepted.
#[derive(Debug, Error, PartialEq)]
pub enum RuleError {
    #[error(
        "rule '{rule}': {why}; a rule is METRIC OP VALUE [for REQUEST], e.g. p95<500ms, error-rate<1%, rps>=200, p99<2s for POST /"
    )]
    Malformed { rule: String, why: String },
    #[error("rule '{rule}' can never pass ({why}); fix the limit")]
    Impossible { rule: String, why: String },
}

impl Metric {
    pub fn unit(self) -> Unit {
        match self {
            Metric::Percentile(_)
            | Metric::Avg
            | Metric::Max
            | Metric::Stage(..)
            | Metric::Service(_) => Unit::Ms,
            Metric::Late | Metric::Dropped | Metric::Saturated => Unit::Count,
            Metric::ErrorRate => Unit::Percent,
            Metric::Rps => Unit::PerSecond,
            Metric::Ledger(_) => Unit::Count,
        }
    }

    /// Whether `for X` names a route (delivery and stage metrics) rather than a request.
    pub fn is_per_route(self) -> bool {
        matches!(self, Metric::Ledger(_) | Metric::Stage(..))
    }

    fn parse(text: &str) -> Option<Metric> {
        let percentile = |text: &str| -> Option<f64> {
            let percent: f64 = text.strip_prefix('p')?.parse().ok()?;
            (percent > 0.0 && percent <= 100.0).then_some(percent)
        };
        match text {
            "avg" => Some(Metric::Avg),
            "max" => Some(Metric::Max),
            "error-rate" => Some(Metric::ErrorRate),
            "rps" => Some(Metric::Rps),
            "accepted" => Some(Metric::Ledger(LedgerField::Accepted)),
            "stored" => Some(Metric::Ledger(LedgerField::Stored)),
            "lost" => Some(Metric::Ledger(LedgerField::Lost)),
            "duplicates" => Some(Metric::Ledger(LedgerField::Duplicates)),
            "conflicts" => Some(Metric::Ledger(LedgerField::Conflicts)),
            "dead_lettered" | "dead-lettered" => Some(Metric::Ledger(LedgerField::DeadLettered)),
            "rejected" => Some(Metric::Ledger(LedgerField::Rejected)),
            "late" => Some(Metric::Late),
            "dropped" => Some(Metric::Dropped),
            "saturated" => Some(Metric::Saturated),
            _ if text.starts_with("service-") => {
                percentile(text.trim_start_matches("service-")).map(Metric::Service)
            }
            _ => match text.split_once('-') {
                Some((stage, p)) => {
                    let stage = StageName::from_name(stage)?;
                    Some(Metric::Stage(stage, percentile(p)?))
                }
                None => percentile(text).map(Metric::Percentile),
            },
        }
    }
}

impl Op {
    /// Does `observed op limit` hold?
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

impl Unit {
    /// A limit or an observation in this unit, as people read it.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Ms => crate::duration::format_ms(value),
            Unit::Percent => format!("{value:.2}%"),
            Unit::PerSecond => format!("{value:.1}/s"),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(input: &str) -> Result<Rule, RuleError> {
        let text = input.trim().to_string();
        let malformed = |why: &str| RuleError::Malformed {
            rule: text.clone(),
            why: why.to_string(),
        };
        let (expression, target) = split_target(&text).map_err(malformed)?;
        let (name, op, value) = split_op(expression).map_err(malformed)?;
        let metric = Metric::parse(name).ok_or_else(|| {
            malformed(&format!(
                "unknown metric '{name}'; use pNN (such as p95 or p99.9), avg, max, error-rate, rps, \
                 accepted, stored, lost, duplicates, conflicts, dead_lettered, rejected, a stage percentile such as e2e-p99, \
                 hop-p99, ingress-p50, or in the open model service-pNN, late, dropped"
            ))
        })?;
        let (limit, relative) = parse_rule_limit(metric, value).map_err(|why| malformed(&why))?;
        check_target(metric, target.as_deref()).map_err(|why| malformed(&why))?;
        let rule = Rule {
            text: text.clone(),
            metric,
            op,
            limit,
            target,
            relative,
        };
        rule.check_possible()?;
        Ok(rule)
    }
}

/// `EXPRESSION for TARGET`, or the expression alone.
fn split_target(text: &str) -> Result<(&str, Option<String>), &'static str> {
    match text.split_once(" for ") {
        Some((expression, target)) if !target.trim().is_empty() => {
            Ok((expression.trim(), Some(target.trim().to_string())))
        }
        Some(_) => Err("'for' needs a request name after it"),
        None => Ok((text, None)),
    }
}

/// `METRIC OP VALUE`, split at its operator.
fn split_op(expression: &str) -> Result<(&str, Op, &str), &'static str> {
    let at = expression
        .find(['<', '>', '='])
        .ok_or("no operator (<, <=, >, >=, ==)")?;
    let (name, rest) = expression.split_at(at);
    let (op, value) = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|value| (op, value.trim())))
    .ok_or("unknown operator; use <, <=, >, >= or ==")?;
    Ok((name.trim(), op, value))
}

/// The limit in the metric's unit, or a multiple of the calibration's (`8x`, then `true`).
fn parse_rule_limit(metric: Metric, value: &str) -> Result<(f64, bool), String> {
    let relative_value = value.strip_suffix('x').map(str::trim);
    if relative_value.is_some()
        && !matches!(
            metric,
            Metric::Percentile(_) | Metric::Avg | Metric::Max | Metric::Rps
        )
    {
        return Err(
            "only latency (pNN, avg, max) and rps limits can be a multiple of the calibration run (such as 8x)".into(),
        );
    }
    let limit = match relative_value {
        Some(times) => times
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0),
        None => parse_limit(metric.unit(), value),
    };
    limit
        .map(|limit| (limit, relative_value.is_some()))
        .ok_or_else(|| match metric.unit() {
            _ if relative_value.is_some() => {
                format!("'{value}' is not a multiple such as 8x or 1.5x")
            }
            Unit::Ms => format!("'{value}' is not a time such as 500ms, 2s or 800us"),
            Unit::Percent => format!("'{value}' is not a percentage such as 1%"),
            Unit::PerSecond => format!("'{value}' is not a rate such as 200"),
            Unit::Count => format!("'{value}' is not a whole count such as 0"),
        })
}

/// `for …` fits the metric: none for the run's counts, a route for per-route metrics.
fn check_target(metric: Metric, target: Option<&str>) -> Result<(), String> {
    if matches!(metric, Metric::Late | Metric::Dropped | Metric::Saturated) && target.is_some() {
        return Err(
            "late, dropped and saturated count the whole run, not a request; leave out 'for …'"
                .into(),
        );
    }
    if let (true, Some(route)) = (metric.is_per_route(), target)
        && contract::Route::from_name(route).is_none()
    {
        return Err(format!(
            "'{route}' is not a route; use grpc, rabbitmq or nats"
        ));
    }
    Ok(())
}

impl Rule {
    /// Refuses rules no run could pass, as Goose does, so a typo does not look like a regression.
    fn check_possible(&self) -> Result<(), RuleError> {
        let impossible = |why: &str| {
            Err(RuleError::Impossible {
                rule: self.text.clone(),
                why: why.to_string(),
            })
        };
        match (self.op, self.limit) {
            (Op::Lt, limit) if limit <= 0.0 => return impossible("nothing is below 0"),
            (Op::Le, limit) if limit < 0.0 => return impossible("nothing is below 0"),
            _ => {}
        }
        if self.metric == Metric::Rps && self.op == Op::Le && self.limit <= 0.0 {
            return impossible("a run that sends nothing has no rate");
        }
        if self.metric == Metric::ErrorRate
            && ((self.op == Op::Gt && self.limit >= 100.0)
                || (self.op == Op::Ge && self.limit > 100.0))
        {
            return impossible("an error rate cannot exceed 100%");
        }
        Ok(())
    }
}

fn parse_limit(unit: Unit, value: &str) -> Option<f64> {
    let number = match unit {
        Unit::Ms => parse_span(value, BareUnit::Millis).ok()?.as_secs_f64() * 1000.0,
        Unit::Percent => value
            .strip_suffix('%')
            .unwrap_or(value)
            .trim()
            .parse()
            .ok()?,
        Unit::PerSecond => value.parse().ok()?,
        Unit::Count => value.parse::<u64>().ok()? as f64,
    };
    (number.is_finite() && number >= 0.0).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        text.parse().unwrap()
    }

    #[test]
    fn goose_syntax() {
        let r = rule("p95<500ms");
        assert_eq!(
            (r.metric, r.op, r.limit, r.target),
            (Metric::Percentile(95.0), Op::Lt, 500.0, None)
        );
        let r = rule("p99.9 <= 2s for POST /");
        assert_eq!(
            (r.metric, r.op, r.limit, r.target.as_deref()),
            (Metric::Percentile(99.9), Op::Le, 2000.0, Some("POST /"))
        );
        assert_eq!(rule("error-rate<1%").limit, 1.0);
        assert_eq!(rule("error-rate<0.5").limit, 0.5);
        assert_eq!(rule("rps>=200").op, Op::Ge);
        assert_eq!(rule("avg<800us").limit, 0.8);
        assert_eq!(rule("max<250").limit, 250.0);
    }

    #[test]
    fn open_model_metrics() {
        assert_eq!(rule("service-p99<100ms").metric, Metric::Service(99.0));
        assert_eq!(rule("service-p99.9<1s for POST /").limit, 1000.0);
        assert_eq!(rule("late==0").metric, Metric::Late);
        let saturated = rule("saturated<=2");
        assert_eq!(
            (saturated.metric, saturated.limit),
            (Metric::Saturated, 2.0)
        );
        assert!("saturated==0 for POST /".parse::<Rule>().is_err());
        assert_eq!(rule("dropped<10").metric.unit(), Unit::Count);
        assert!("late==0 for POST /".parse::<Rule>().is_err());
        assert!("service-pX<1s".parse::<Rule>().is_err());
    }

    #[test]
    fn limits_relative_to_a_calibration_run() {
        let r = rule("p50<=8x for POST /");
        assert!(r.relative);
        assert_eq!((r.metric, r.limit), (Metric::Percentile(50.0), 8.0));
        assert!(rule("rps>=0.5x").relative);
        assert!(!rule("p50<=8ms").relative);
        for bad in ["lost<=2x", "error-rate<2x", "p50<=fastx", "p50<=0x"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn delivery_and_stage_rules() {
        let r = rule("lost==0");
        assert_eq!(
            (r.metric, r.op, r.limit),
            (Metric::Ledger(LedgerField::Lost), Op::Eq, 0.0)
        );
        assert_eq!(
            rule("duplicates==0").metric,
            Metric::Ledger(LedgerField::Duplicates)
        );
        assert_eq!(
            rule("dead_lettered==0 for nats").metric,
            Metric::Ledger(LedgerField::DeadLettered)
        );
        assert_eq!(
            rule("conflicts==0").metric,
            Metric::Ledger(LedgerField::Conflicts)
        );
        let r = rule("e2e-p99<50ms for nats");
        assert_eq!(
            (r.metric, r.limit, r.target.as_deref()),
            (Metric::Stage(StageName::E2e, 99.0), 50.0, Some("nats"))
        );
        assert_eq!(
            rule("hop-p99.9<1s").metric,
            Metric::Stage(StageName::Hop, 99.9)
        );
        assert!(matches!(
            "lost==0 for kafka".parse::<Rule>(),
            Err(RuleError::Malformed { .. })
        ));
        assert!(matches!(
            "lost==0.5".parse::<Rule>(),
            Err(RuleError::Malformed { .. })
        ));
        assert!(matches!(
            "wire-p99<1s".parse::<Rule>(),
            Err(RuleError::Malformed { .. })
        ));
    }

    #[test]
    fn malformed_rules_say_why() {
        for bad in [
            "p95",
            "p95 500ms",
            "latency<5ms",
            "p0<5ms",
            "p101<5ms",
            "p95<fast",
            "error-rate<lots",
            "p95<5ms for ",
            "p95=<5ms",
        ] {
            let error = bad.parse::<Rule>().unwrap_err();
            assert!(
                matches!(error, RuleError::Malformed { .. }),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains(bad.trim()), "{error}");
        }
    }

    #[test]
    fn impossible_rules_are_refused() {
        for bad in ["p95<0ms", "rps<=0", "error-rate>100%", "error-rate>=101%"] {
            assert!(
                matches!(bad.parse::<Rule>(), Err(RuleError::Impossible { .. })),
                "{bad}"
            );
        }
        assert!("error-rate>=100%".parse::<Rule>().is_ok());
    }

    #[test]
    fn operators_hold_as_written() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0) && !Op::Le.holds(2.1, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0) && !Op::Gt.holds(2.0, 2.0));
        assert!(Op::Ge.holds(2.0, 2.0) && !Op::Ge.holds(1.9, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0) && !Op::Eq.holds(1.0, 0.0));
    }
}
