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
    // Another test's fork can hold the copy's write descriptor for a moment (until its exec
    // closes it), and exec then fails with "Text file busy": try again until a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut child = loop {
        match Command::new(&impostor)
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => break child,
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start {}: {e}", impostor.display()),
        }
    };
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

/// Every listening TCP socket on this machine: (its process's name, its local address as
/// `/proc/net/tcp{,6}` print it, hex).
fn listeners() -> Vec<(String, String)> {
    let mut by_inode = std::collections::HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; the inode names the socket in its process's fd table.
            if fields.len() > 9 && fields[3] == "0A" {
                by_inode.insert(fields[9].to_string(), fields[1].to_string());
            }
        }
    }
    let mut found = Vec::new();
    for process in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let name = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
        for fd in fds.filter_map(Result::ok) {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                && let Some(address) = by_inode.get(inode)
            {
                found.push((name.trim().to_string(), address.clone()));
            }
        }
    }
    found
}

/// Whether a `/proc/net/tcp{,6}` local address (`0100007F:1628`) is on loopback: 127.0.0.0/8,
/// `::1`, or an IPv4-mapped 127.x. The words are in the kernel's byte order, so 127 is the
/// last byte of the IPv4 word.
fn on_loopback(address: &str) -> bool {
    let ip = address.split(':').next().unwrap_or_default();
    match ip.len() {
        8 => ip.ends_with("7F"),
        32 => {
            ip == "00000000000000000000000001000000"
                || (ip.starts_with("0000000000000000FFFF0000") && ip.ends_with("7F"))
        }
        _ => false,
    }
}

#[test]
fn the_brokers_and_the_store_listen_on_loopback_only() {
    testkit::require_brokers();
    testkit::require_postgres();
    let ours = ["beam.smp", "epmd", "nats-server", "postgres"];
    let found: Vec<(String, String)> = listeners()
        .into_iter()
        .filter(|(name, _)| ours.contains(&name.as_str()))
        .collect();
    for name in ["beam.smp", "epmd", "nats-server", "postgres"] {
        assert!(
            found.iter().any(|(n, _)| n == name),
            "no listener of {name} found: {found:?}"
        );
    }
    let open: Vec<&(String, String)> = found.iter().filter(|(_, a)| !on_loopback(a)).collect();
    assert!(
        open.is_empty(),
        "listening beyond loopback (hex, as /proc/net/tcp prints it): {open:?}; scripts/brokers up and scripts/postgres up bind every listener to 127.0.0.1"
    );
}

#[test]
fn loopback_addresses_read_from_proc() {
    assert!(on_loopback("0100007F:1628"));
    assert!(on_loopback("0101007F:0050"));
    assert!(!on_loopback("00000000:1628"));
    assert!(!on_loopback("0100000A:1628"));
    assert!(on_loopback("00000000000000000000000001000000:1628"));
    assert!(on_loopback("0000000000000000FFFF00000100007F:1628"));
    assert!(!on_loopback("00000000000000000000000000000000:1628"));
}
