//! A store whose disk is full: the consumers back off instead of redelivering in a hot
//! loop, `/ready` says the store cannot write, and once there is room again every accepted
//! record is stored. The disk is a real one: a 4 MiB tmpfs mounted for this test (root,
//! as scripts/test runs), filled with a file until the kernel says ENOSPC.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Harness, eventually, stored_rows};
use receivers::Route;
use serde_json::Value;

/// The tmpfs, unmounted when the test ends however it ends.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a 4 MiB tmpfs at {} failed; this test needs root (scripts/test runs as root in CI)",
            at.display()
        );
        SmallDisk {
            path: at.to_path_buf(),
        }
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write_all(&block).and_then(|()| file.sync_all()) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
                Err(error) => panic!("filling the disk: {error}"),
            }
        }
        // Any last pages too.
        let mut byte = 0;
        while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() && byte < 1 << 20 {
            byte += 1;
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn failures(stats: &Value) -> u64 {
    Route::ALL
        .iter()
        .map(|r| {
            stats["routes"][r.name()]["store_failures"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_consumers_back_off_and_ready_say_so() {
    let outer = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&outer.path().join("disk"));
    let store = disk.path.join("store.db");
    let store_in_config = store.clone();
    let mut h = Harness::start_with(|c| {
        c.paths = vec![Route::Rabbitmq, Route::Nats];
        c.store = receivers::store::StoreLocation::Sqlite(store_in_config);
    })
    .await;
    // One record each before the disk fills, so the store's files exist at full size.
    for route in [Route::Rabbitmq, Route::Nats] {
        let (status, _) = h
            .post(&h.entry(route), &format!("before-{route}"), "{\"n\":0}")
            .await;
        assert_eq!(status, 201);
    }
    eventually(Duration::from_secs(30), "the first records stored", || {
        stored_rows(&store).len() == 2
    })
    .await;

    let filler = disk.fill();
    for route in [Route::Rabbitmq, Route::Nats] {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(8000));
        let (status, answer) = h
            .post(&h.entry(route), &format!("full-{route}"), &body)
            .await;
        assert_eq!(
            status, 201,
            "the broker takes it while the store cannot: {answer}"
        );
    }
    let ready_url = format!("{}/ready", h.balancer());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let response = h.http.get(&ready_url).send().await.unwrap();
        let status = response.status().as_u16();
        let ready: Value = response.json().await.unwrap();
        if status == 503 && ready["checks"]["store_writes"] == false {
            break ready;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never reported the failing store: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready["checks"]["rabbitmq"], true, "{ready}");

    // Over a window of 3 s, the two records are retried a handful of times, not thousands.
    let before = failures(&h.get_json("/stats").await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = failures(&h.get_json("/stats").await);
    assert!(before >= 1, "the store failed at least once");
    assert!(
        after - before <= 20,
        "{} store attempts in 3 s: the consumers redeliver in a hot loop",
        after - before
    );

    std::fs::remove_file(&filler).unwrap();
    eventually(
        Duration::from_secs(60),
        "every accepted record stored once there is room",
        || stored_rows(&store).len() == 4,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !h
        .http
        .get(&ready_url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
    drop(disk);
}
