//! `gate.xml`: the gate's verdicts as a JUnit report (quick-junit), one test case per rule,
//! so CI systems that read JUnit show each rule as a passed or failed test. A baseline
//! comparison's change, interval and reason ride along as properties and system-out.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::model::Verdict;

pub fn render(run_id: &str, verdicts: &[Verdict]) -> String {
    let mut suite = TestSuite::new(format!("gate {run_id}"));
    for verdict in verdicts {
        let observed = verdict
            .observed
            .map_or("no samples".to_string(), |o| verdict.unit.format(o));
        let summary = format!(
            "observed {observed}, limit {}: {}",
            verdict.unit.format(verdict.limit),
            verdict.detail
        );
        let status = if verdict.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(summary.clone());
            status.set_description(summary.clone());
            status
        };
        let mut case = TestCase::new(verdict.rule.clone(), status);
        case.set_classname(format!("gate.{:?}", verdict.source));
        case.set_system_out(summary);
        if let Some(change) = &verdict.change {
            case.add_properties([
                Property::new("baseline", format!("{}", change.baseline)),
                Property::new("now", format!("{}", change.now)),
                Property::new("change_percent", format!("{:.2}", change.percent)),
                Property::new("interval_low_percent", format!("{:.2}", change.low)),
                Property::new("interval_high_percent", format!("{:.2}", change.high)),
                Property::new("confidence", format!("{}", change.confidence)),
            ]);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("loadgen gate");
    report.add_test_suite(suite);
    report
        .to_string()
        .expect("a report built in memory serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, test_verdict as verdict};

    #[test]
    fn one_case_per_rule_with_failures_marked_and_escaped() {
        let mut compared = verdict("p95 regression<=10% for POST /", false);
        compared.change = Some(Change {
            baseline: 10.0,
            now: 12.0,
            percent: 20.0,
            low: 15.5,
            high: 24.0,
            confidence: 0.95,
            intervals: [20, 20],
        });
        let xml = render(
            "r1",
            &[
                verdict("p95<10ms", false),
                verdict("rps>=1", true),
                compared,
            ],
        );
        assert!(
            xml.contains("tests=\"3\" skipped=\"0\" failures=\"2\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"p95&lt;10ms\""), "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(
            xml.contains("name=\"interval_low_percent\" value=\"15.50\""),
            "{xml}"
        );
    }
}
