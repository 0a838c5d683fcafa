//! The HTML report rendered from a recorded run: every section is there, nothing is loaded
//! from the network, and the JSON behind it matches its schema.

mod common;

use common::{read_json, workspace_root};
use loadgen::model::LoadgenReport;

fn recorded() -> (serde_json::Value, LoadgenReport) {
    let path = workspace_root().join("loadgen/tests/data/loadgen-recorded.json");
    let json = read_json(&path);
    let report = serde_json::from_value(json.clone()).expect("the recorded run reads as a report");
    (json, report)
}

#[test]
fn the_recorded_run_matches_the_schema() {
    let (json, _) = recorded();
    let errors = common::schema_errors(&json);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        !json["delivery"].is_null(),
        "the recording should include a delivery ledger"
    );
}

#[test]
fn every_section_is_rendered() {
    let (_, report) = recorded();
    let page = loadgen::render::html::render(&report);
    for (id, heading) in [
        ("settings", "Run settings"),
        ("gate", "Gate"),
        ("timeline", "Requests, errors and users over time"),
        ("latency-over-time", "Latency over time"),
        ("requests", "Request latency"),
        ("delivery", "Delivery by route"),
        ("latency", "Latency by percentile"),
        ("files", "Files"),
    ] {
        assert!(
            page.contains(&format!("<section id=\"{id}\"><h2>{heading}")),
            "missing section {id}"
        );
    }
    // Two timeline charts (requests+errors, users); p50/p95/p99 over time for each request
    // and each route; one line per route on each stage's percentile chart.
    let series = report.requests.len() + report.routes.len();
    assert_eq!(series, 5, "GET /, POST / and three routes");
    assert_eq!(page.matches("<svg").count(), 2 + series + 2);
    assert_eq!(page.matches("<polyline").count(), 3 + 3 * series + 3 * 2);
    for title in [
        "request POST /: latency per interval",
        "route nats: latency per interval",
    ] {
        assert!(page.contains(title), "no chart {title}");
    }
    for route in ["grpc", "rabbitmq", "nats"] {
        assert!(
            page.contains(&format!("<tr><td>{route}</td>")),
            "ledger row for {route}"
        );
    }
    for rule in &report.gate.rules {
        assert!(
            page.contains(&rule.rule.replace('<', "&lt;").replace('>', "&gt;")),
            "{}",
            rule.rule
        );
    }
    assert!(page.contains("href=\"latency.hlog\"") && page.contains("href=\"loadgen.json\""));
}

#[test]
fn nothing_is_loaded_from_the_network() {
    let (_, report) = recorded();
    let page = loadgen::render::html::render(&report);
    for attribute in ["href=\"", "src=\""] {
        for (at, _) in page.match_indices(attribute) {
            let target = &page[at + attribute.len()..];
            let target = &target[..target.find('"').unwrap()];
            assert!(
                !target.contains("://") && !target.starts_with("//"),
                "external reference {attribute}{target}"
            );
        }
    }
    for forbidden in ["<script", "<link", "url(", "@import", "<iframe", "<img"] {
        assert!(!page.contains(forbidden), "the page contains {forbidden}");
    }
}
