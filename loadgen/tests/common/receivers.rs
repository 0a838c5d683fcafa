//! The real receivers (real RabbitMQ and NATS on loopback, SQLite in a temporary folder),
//! started in-process on their own runtime for the length of a test.

use std::time::Duration;

use testkit::{Names, config, require_brokers};

/// Receivers running on their own runtime for the length of a test.
pub struct Receivers {
    pub running: Option<receivers::Running>,
    names: Names,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Receivers {
    pub fn start(adjust: impl FnOnce(&mut receivers::Config)) -> Receivers {
        let receivers = Self::start_unready(adjust);
        receivers.wait_ready();
        receivers
    }

    /// Started without waiting for `/ready` (for a broker that is meant to be down).
    pub fn start_unready(adjust: impl FnOnce(&mut receivers::Config)) -> Receivers {
        require_brokers();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let names = Names::unique();
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&names, dir.path());
        adjust(&mut config);
        let running = runtime
            .block_on(receivers::start(config))
            .expect("receivers start");
        Receivers {
            running: Some(running),
            names,
            runtime,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}",
            self.running.as_ref().unwrap().addrs.balancer.unwrap()
        )
    }

    /// Every stored id that starts with `prefix`, read page by page from `/records`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let base = self.url();
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut url = format!("{base}/records?prefix={prefix}&limit=10000");
                if let Some(after) = &after {
                    url.push_str(&format!("&after={after}"));
                }
                let page: contract::RecordsPage =
                    reqwest::get(&url).await.unwrap().json().await.unwrap();
                keys.extend(page.records.into_iter().map(|r| r.id));
                match page.next {
                    Some(next) => after = Some(next),
                    None => return keys,
                }
            }
        })
    }

    /// Polls /ready with a deadline (the brokers' connections come up in the background).
    pub fn wait_ready(&self) {
        let url = format!("{}/ready", self.url());
        let ready = self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                if reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        });
        assert!(ready, "receivers not ready within 30 s");
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            let _ = self.runtime.block_on(running.wait());
        }
        self.names.remove_from_brokers();
    }
}
