//! The gate's rules from `--threshold` and the gate file (`--gate FILE`, TOML), parsed and
//! checked into the rules a run or a merge judges.

use std::path::Path;

use serde::Deserialize;

use crate::error::LoadgenError;
use crate::judge::gate::{RuleSource, SourcedRule};
use crate::judge::rule::Rule;

/// The gate file's shape; unknown keys are refused so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    #[serde(default)]
    thresholds: Vec<String>,
    max_regression: Option<f64>,
}

/// The rules of a run: `--threshold`s, then the gate file's, each judged once.
pub fn parse_rules(
    thresholds: &[String],
    gate: Option<&Path>,
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

fn read_gate_file(path: &Path) -> Result<GateFile, LoadgenError> {
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
    use crate::cli::settings::tests::parse;

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
