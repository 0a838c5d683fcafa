//! `gate.xml`: the gate's verdicts as a JUnit report, one test case per rule, so CI
//! systems that read JUnit show each rule as a passed or failed test.

use crate::gate::Verdict;

pub fn render(run_id: &str, verdicts: &[Verdict]) -> String {
    let failures = verdicts.iter().filter(|v| !v.passed).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"loadgen gate\" tests=\"{}\" failures=\"{failures}\">\n",
        verdicts.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"gate {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        escape(run_id),
        verdicts.len()
    ));
    for verdict in verdicts {
        let observed = verdict
            .observed
            .map_or("no samples".to_string(), |o| verdict.unit.format(o));
        let summary = format!(
            "observed {observed}, limit {}: {}",
            verdict.unit.format(verdict.limit),
            verdict.detail
        );
        xml.push_str(&format!(
            "    <testcase classname=\"gate.{:?}\" name=\"{}\">\n",
            verdict.source,
            escape(&verdict.rule)
        ));
        if !verdict.passed {
            xml.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                escape(&summary),
                escape(&summary)
            ));
        }
        xml.push_str(&format!(
            "      <system-out>{}</system-out>\n    </testcase>\n",
            escape(&summary)
        ));
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::RuleSource;
    use crate::rule::Unit;

    #[test]
    fn one_case_per_rule_with_failures_marked_and_escaped() {
        let verdict = |rule: &str, passed| Verdict {
            rule: rule.into(),
            source: RuleSource::Cli,
            observed: Some(12.0),
            limit: 10.0,
            unit: Unit::Ms,
            passed,
            detail: "d".into(),
        };
        let xml = render("r1", &[verdict("p95<10ms", false), verdict("rps>=1", true)]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("name=\"p95&lt;10ms\""));
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 2);
    }
}
