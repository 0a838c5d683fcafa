//! The receivers binary as an operator runs it: secrets in the broker URLs never reach a
//! response, a log line or a report, and a stalled client cannot hold shutdown past
//! `--shutdown-timeout`: the process exits and its reports are written.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

const PASSWORD: &str = "s3cret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    balancer: u16,
    grpc_entry: u16,
    rabbitmq_entry: u16,
    nats_entry: u16,
    grpc: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            balancer: free_port(),
            grpc_entry: free_port(),
            rabbitmq_entry: free_port(),
            nats_entry: free_port(),
            grpc: free_port(),
        }
    }

    fn args(&self) -> Vec<String> {
        [
            ("--balancer-addr", self.balancer),
            ("--grpc-entry-addr", self.grpc_entry),
            ("--rabbitmq-entry-addr", self.rabbitmq_entry),
            ("--nats-entry-addr", self.nats_entry),
            ("--grpc-addr", self.grpc),
        ]
        .iter()
        .flat_map(|(flag, port)| [flag.to_string(), format!("127.0.0.1:{port}")])
        .collect()
    }
}

/// The binary, killed if the test ends early; stderr goes to a file in `dir`.
struct Receivers {
    child: Child,
    log: std::path::PathBuf,
}

/// The gRPC server's HTTP/2 listener has the limits the HTTP/1 ones have: it offers a client
/// at most `--max-streams` requests open on a connection, and a client whose calls stall
/// mid-message cannot hold shutdown past `--shutdown-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_client_is_capped_and_cannot_hold_shutdown_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (receivers, ports) = start_grpc_only(dir.path(), &["--max-streams", "3"]).await;

    let grpc = format!("127.0.0.1:{}", ports.grpc);
    let (client, mut connection) = h2::client::handshake(connect_within(&grpc).await)
        .await
        .unwrap();
    let mut ping = connection
        .ping_pong()
        .expect("the connection's one ping handle");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // Three calls that send their headers and the first byte of a message, then nothing.
    let mut held = Vec::new();
    let mut client = client;
    for _ in 0..3 {
        client = client.ready().await.unwrap();
        let request = axum::http::Request::post(format!("http://{grpc}/ingest.v1.Ingest/Store"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(bytes::Bytes::from_static(&[0]), false)
            .unwrap();
        held.push((response, body));
    }
    let settled = Instant::now() + Duration::from_secs(10);
    while client.current_max_send_streams() != 3 && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client.current_max_send_streams(),
        3,
        "the server's SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    // The server reads a connection's frames in order: its PONG means it holds the calls.
    ping.ping(h2::Ping::opaque()).await.unwrap();

    stops_in_time_with_its_reports(receivers, dir.path(), "three stalled HTTP/2 calls");
    drop(held);
}

/// Receivers with only the gRPC path, `--shutdown-timeout 2s` and `extra` flags, started
/// against the test brokers and polled until the gRPC entry answers.
async fn start_grpc_only(dir: &Path, extra: &[&str]) -> (Receivers, Ports) {
    testkit::require_brokers();
    let ports = Ports::new();
    let env = [
        ("AMQP_URL", testkit::AMQP_URL.to_string()),
        ("NATS_URL", testkit::NATS_URL.to_string()),
    ];
    let mut args = vec!["--paths", "grpc", "--shutdown-timeout", "2s"];
    args.extend_from_slice(extra);
    let receivers = Receivers::start(dir, &ports, &env, &args);
    let entry = format!("127.0.0.1:{}", ports.grpc_entry);
    wait_until_listening(&reqwest::Client::new(), &format!("http://{entry}/health")).await;
    (receivers, ports)
}

/// SIGINT, then: the process is gone within its 2 s shutdown deadline (plus slack for a
/// loaded machine), exited cleanly, and wrote its reports although `holding` was still
/// holding it.
fn stops_in_time_with_its_reports(mut receivers: Receivers, dir: &Path, holding: &str) {
    let (status, took) = receivers.interrupt(Duration::from_secs(10));
    let log = receivers.log();
    assert!(
        status.is_some(),
        "still running {took:?} after SIGINT with {holding} and --shutdown-timeout 2s: {log}"
    );
    assert!(status.unwrap().success(), "{log}");
    for report in ["receivers.json", "grpc-e2e.hgrm"] {
        assert!(
            dir.join("reports/process-test").join(report).exists(),
            "{report} is written all the same: {log}"
        );
    }
}

/// A TCP connection to `addr`, polled for until it listens (30 s at most).
async fn connect_within(addr: &str) -> tokio::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return stream,
            Err(error) => assert!(Instant::now() < deadline, "{addr} never listened: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receivers {
    fn start(dir: &Path, ports: &Ports, env: &[(&str, String)], args: &[&str]) -> Receivers {
        let log = dir.join("receivers.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_receivers"))
            .args(ports.args())
            .args(args)
            .arg("--store")
            .arg(dir.join("store.db"))
            .arg("--reports")
            .arg(dir.join("reports"))
            .args(["--run-id", "process-test"])
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Receivers { child, log }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// SIGINT, then the time until the process exited (or `limit` passed).
    fn interrupt(&mut self, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let sent = Instant::now();
        while sent.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (Some(status), sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (None, sent.elapsed())
    }
}

/// Polls `url` until it answers at all, or fails after 30 s.
async fn wait_until_listening(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn every_file_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(every_file_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_passwords_reach_no_response_no_log_line_and_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();
    // Both brokers behind closed ports, with credentials in their URLs.
    let env = [
        (
            "AMQP_URL",
            format!("amqp://app:{PASSWORD}@127.0.0.1:{}/%2f", free_port()),
        ),
        (
            "NATS_URL",
            format!("nats://app:{PASSWORD}@127.0.0.1:{}", free_port()),
        ),
    ];
    let mut receivers =
        Receivers::start(dir.path(), &ports, &env, &["--publish-timeout-ms", "1000"]);
    let http = reqwest::Client::new();
    let front = format!("http://127.0.0.1:{}", ports.balancer);
    wait_until_listening(&http, &format!("{front}/health")).await;

    let mut answers = Vec::new();
    let posts = [
        format!("http://127.0.0.1:{}/", ports.rabbitmq_entry),
        format!("http://127.0.0.1:{}/", ports.nats_entry),
        format!("{front}/"),
        format!("{front}/nats"),
        format!("{front}/rabbitmq"),
    ];
    for url in &posts {
        for body in ["{\"a\":1}", "not json"] {
            let response = http
                .post(url)
                .header("content-type", "application/json")
                .header("idempotency-key", "secret-test")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            answers.push(format!(
                "POST {url} {body}: {status} {}",
                response.text().await.unwrap()
            ));
        }
    }
    for path in [
        "/ready",
        "/stats",
        "/metrics",
        "/",
        "/?limit=x",
        "/records?prefix=secret-te",
        "/nope",
    ] {
        let response = http.get(format!("{front}{path}")).send().await.unwrap();
        answers.push(format!("GET {path}: {}", response.text().await.unwrap()));
    }
    assert!(
        answers.iter().any(|a| a.contains(": 503 ")),
        "the broker errors were reached: {answers:#?}"
    );
    let (status, _) = receivers.interrupt(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {}",
        receivers.log()
    );

    for answer in &answers {
        assert!(
            !answer.contains(PASSWORD),
            "a response leaks the password: {answer}"
        );
    }
    let log = receivers.log();
    assert!(
        log.contains("***@127.0.0.1"),
        "the log names the brokers, redacted: {log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains(PASSWORD),
            "a log line leaks the password: {line}"
        );
    }
    let reports = every_file_under(&dir.path().join("reports"));
    assert!(!reports.is_empty(), "the reports were written");
    for file in reports {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(PASSWORD),
            "{} leaks the password",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_cannot_hold_shutdown_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (receivers, ports) = start_grpc_only(dir.path(), &["--body-read-timeout", "60s"]).await;
    let http = reqwest::Client::new();
    let entry = format!("127.0.0.1:{}", ports.grpc_entry);

    // The headers and 1 byte of a 100-byte body, then nothing; and one that stops mid-head.
    let mut stalled_body = tokio::net::TcpStream::connect(&entry).await.unwrap();
    stalled_body
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: stall-1\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut stalled_head = tokio::net::TcpStream::connect(format!("127.0.0.1:{}", ports.balancer))
        .await
        .unwrap();
    stalled_head
        .write_all(b"POST / HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    // The server has the stalled request in hand once it answers anything else.
    wait_until_listening(&http, &format!("http://{entry}/stats")).await;

    stops_in_time_with_its_reports(receivers, dir.path(), "a stalled body and a stalled head");
    drop((stalled_body, stalled_head));
}
