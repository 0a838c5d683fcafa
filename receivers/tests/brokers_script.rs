//! `scripts/brokers` stops only what it started: with a state folder of its own (no pid
//! file, no marker), `down` leaves a process named nats-server and the real brokers alone.

use std::process::{Command, Stdio};

#[test]
fn brokers_down_never_stops_a_process_it_did_not_start() {
    testkit::require_brokers();
    let dir = tempfile::tempdir().unwrap();
    // A process that looks like a nats-server to pgrep, which the script did not start.
    let impostor = dir.path().join("nats-server");
    std::fs::copy("/bin/sleep", &impostor).unwrap();
    let mut child = Command::new(&impostor)
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/brokers"))
        .arg("down")
        .env("BROKERS_STATE", dir.path().join("state"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        alive,
        "scripts/brokers down killed a process it did not start: {said}"
    );
    testkit::require_brokers(); // the real brokers still answer
}
