//! Reconciliation: after the run, ask the receivers what they stored of this run's sends
//! (by Idempotency-Key prefix) and build the per-route delivery ledger: accepted, stored,
//! lost, duplicates, rejected, plus the run's own ingress/hop/e2e latency histograms.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use contract::{RecordsPage, Route, RouteStats, Stage, StatsSnapshot};
use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The routes the receivers run, by name, in report order.
pub const ROUTES: [&str; 3] = [
    Route::Grpc.name(),
    Route::Rabbitmq.name(),
    Route::Nats.name(),
];
/// Lost ids listed per route at most; the count is always exact.
pub const LOST_IDS_LISTED: usize = 100;

/// One POST as the ledger needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub key: String,
    /// The route named in the answer, if any (the receivers name it in 201s and errors).
    pub route: Option<String>,
    pub accepted: bool,
}

/// The delivery section of `loadgen.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub receivers: String,
    /// Whether in-flight reached zero before the drain timeout.
    pub drained: bool,
    pub drain_secs: f64,
    /// Per route; `all` sums them.
    pub routes: BTreeMap<String, RouteLedger>,
    /// Refusals whose answer named no route (the front door with every path down).
    pub unrouted_rejected: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteLedger {
    /// 2xx answers naming this route.
    pub accepted: u64,
    /// Accepted sends found in the store.
    pub stored: u64,
    /// Accepted sends not in the store: the promise broken.
    pub lost: u64,
    /// Duplicate inserts the store absorbed for this run's ids (resends, redeliveries).
    pub duplicates: u64,
    /// Inserts of a stored id with another body during the run, as the receivers count them
    /// (their counter at the end minus at the start).
    #[serde(default)]
    pub conflicts: u64,
    /// Records the receivers dead-lettered during the run (counter at the end minus the start).
    #[serde(default)]
    pub dead_lettered: u64,
    /// Non-2xx answers naming this route.
    pub rejected: u64,
    /// Accepted per second over the run.
    pub throughput: f64,
    /// Up to `LOST_IDS_LISTED` lost ids.
    pub lost_ids: Vec<String>,
    /// Per stage (`ingress`, `hop`, `e2e`), this run's latency as the receivers measured it.
    pub latency: BTreeMap<String, StageLatency>,
}

/// Milliseconds; `distribution` is (percentile, ms) points for a percentile plot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageLatency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub distribution: Vec<[f64; 2]>,
}

/// The receivers' HTTP API, as far as reconciliation needs it.
pub struct Receivers {
    base: url::Url,
    http: reqwest::Client,
}

impl Receivers {
    pub fn new(base: url::Url) -> Receivers {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        Receivers { base, http }
    }

    pub fn url(&self) -> String {
        self.base.to_string()
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = self.base.join(path).map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|e| format!("GET {url}: not the receivers' answer ({e})"))
    }

    /// `GET /stats`; a server that is not the receivers (or another version of them) fails
    /// here, with what did not match.
    pub async fn stats(&self) -> Result<StatsSnapshot, String> {
        self.get("stats").await
    }

    /// Polls `/stats` until nothing is in flight or `limit` passes; returns the last snapshot.
    pub async fn drain(&self, limit: Duration) -> Result<(StatsSnapshot, bool, f64), String> {
        let started = Instant::now();
        loop {
            let stats = self.stats().await?;
            let in_flight: u64 = stats.routes.values().map(|r| r.in_flight).sum();
            if in_flight == 0 {
                return Ok((stats, true, started.elapsed().as_secs_f64()));
            }
            if started.elapsed() >= limit {
                return Ok((stats, false, started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The stored records of this run: id -> (route, duplicates).
    pub async fn stored(&self, run_id: &str) -> Result<HashMap<String, (String, u64)>, String> {
        let mut stored = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let mut path = format!("records?prefix={}", encode(&format!("{run_id}-")));
            if let Some(after) = &after {
                path.push_str(&format!("&after={}", encode(after)));
            }
            let page: RecordsPage = self.get(&path).await?;
            for r in page.records {
                stored.insert(r.id, (r.route.name().to_string(), r.duplicates));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(stored),
            }
        }
    }
}

/// After the run: wait for the receivers to drain, fetch this run's stored ids, and build
/// the ledger and this run's latency; writes `receivers-stats.json` and the `.hgrm` files
/// into `dir` and returns their names beside the delivery section.
pub async fn reconcile(
    receivers: &Receivers,
    run_id: &str,
    sends: &[Send],
    start: Option<&StatsSnapshot>,
    drain_timeout: Duration,
    duration_secs: f64,
    dir: &Path,
) -> Result<(Delivery, Vec<String>), String> {
    eprintln!(
        "loadgen: reconciling {} sends with the receivers at {} (waiting up to {:?} for in-flight records)",
        sends.len(),
        receivers.url(),
        drain_timeout
    );
    let (end, drained, drain_secs) = receivers.drain(drain_timeout).await?;
    let stored = receivers.stored(run_id).await?;
    let (mut routes, unrouted_rejected) = ledger(sends, &stored, duration_secs);
    add_store_side_counts(&mut routes, start, &end);
    let histograms = run_histograms(start, &end);
    for ((route, stage), h) in &histograms {
        if let Some(row) = routes.get_mut(route) {
            row.latency.insert(stage.clone(), stage_latency(h));
        }
    }
    let io = |e: std::io::Error| format!("writing receivers' figures into {}: {e}", dir.display());
    let mut files = vec!["receivers-stats.json".to_string()];
    std::fs::write(
        dir.join(&files[0]),
        serde_json::to_vec_pretty(&end).unwrap_or_default(),
    )
    .map_err(io)?;
    files.extend(write_hgrm(dir, &histograms).map_err(io)?);
    let delivery = Delivery {
        receivers: receivers.url(),
        drained,
        drain_secs,
        routes,
        unrouted_rejected,
    };
    Ok((delivery, files))
}

/// The ledger of the run so far, for judging rules while it goes on: what was sent, and the
/// receivers' counters and histograms now against the start. Nothing is drained or looked
/// up in the store, so `stored` and `lost` mean nothing here.
pub fn provisional(
    receivers: String,
    sends: &[Send],
    start: Option<&StatsSnapshot>,
    now: Option<&StatsSnapshot>,
    duration_secs: f64,
) -> Delivery {
    let (mut routes, unrouted_rejected) = ledger(sends, &HashMap::new(), duration_secs);
    if let Some(now) = now {
        add_store_side_counts(&mut routes, start, now);
        for ((route, stage), h) in &run_histograms(start, now) {
            if let Some(row) = routes.get_mut(route) {
                row.latency.insert(stage.clone(), stage_latency(h));
            }
        }
    }
    Delivery {
        receivers,
        drained: false,
        drain_secs: 0.0,
        routes,
        unrouted_rejected,
    }
}

/// The ledger from what was sent and what is stored (pure, so it is unit-tested).
pub fn ledger(
    sends: &[Send],
    stored: &HashMap<String, (String, u64)>,
    duration_secs: f64,
) -> (BTreeMap<String, RouteLedger>, u64) {
    let mut routes: BTreeMap<String, RouteLedger> = ROUTES
        .iter()
        .chain(["all"].iter())
        .map(|r| (r.to_string(), RouteLedger::default()))
        .collect();
    let mut unrouted_rejected = 0;
    let mut counted: BTreeSet<&str> = BTreeSet::new();
    for send in sends {
        let Some(route) = send.route.as_deref().filter(|r| routes.contains_key(*r)) else {
            if !send.accepted {
                unrouted_rejected += 1;
            }
            continue;
        };
        if !send.accepted {
            for name in [route, "all"] {
                routes.get_mut(name).expect("known route").rejected += 1;
            }
            continue;
        }
        // A key's duplicates are counted once, however often it was accepted.
        let first = counted.insert(send.key.as_str());
        for name in [route, "all"] {
            let row = routes.get_mut(name).expect("known route");
            row.accepted += 1;
            match stored.get(&send.key) {
                Some((_, duplicates)) => {
                    row.stored += 1;
                    if first {
                        row.duplicates += duplicates;
                    }
                }
                None => {
                    row.lost += 1;
                    if row.lost_ids.len() < LOST_IDS_LISTED {
                        row.lost_ids.push(send.key.clone());
                    }
                }
            }
        }
    }
    for row in routes.values_mut() {
        row.throughput = if duration_secs > 0.0 {
            row.accepted as f64 / duration_secs
        } else {
            0.0
        };
    }
    (routes, unrouted_rejected)
}

/// Conflicts and dead-lettered records happen on the store side, past what loadgen can see
/// of a send; the receivers count them: this run's share is the end count minus the start.
pub fn add_store_side_counts(
    routes: &mut BTreeMap<String, RouteLedger>,
    start: Option<&StatsSnapshot>,
    end: &StatsSnapshot,
) {
    for (route, now) in &end.routes {
        let before = start.and_then(|s| s.routes.get(route));
        let during =
            |field: fn(&RouteStats) -> u64| field(now).saturating_sub(before.map_or(0, field));
        let (conflicts, dead_lettered) = (during(|r| r.conflicts), during(|r| r.dead_lettered));
        for name in [route.name(), "all"] {
            if let Some(row) = routes.get_mut(name) {
                row.conflicts += conflicts;
                row.dead_lettered += dead_lettered;
            }
        }
    }
}

/// Decodes one route's and stage's histogram of a `/stats` snapshot.
fn histogram(stats: &StatsSnapshot, route: Route, stage: Stage) -> Option<Histogram<u64>> {
    hdr::decode(&stats.routes.get(&route)?.latency.get(&stage)?.histogram).ok()
}

/// This run's histograms: the end snapshot minus the start one (the receivers count since
/// they started, across runs). Includes `all`, the routes merged.
pub fn run_histograms(
    start: Option<&StatsSnapshot>,
    end: &StatsSnapshot,
) -> BTreeMap<(String, String), Histogram<u64>> {
    let mut out = BTreeMap::new();
    for stage in Stage::ALL {
        let mut all: Option<Histogram<u64>> = None;
        for route in Route::ALL {
            let Some(mut h) = histogram(end, route, stage) else {
                continue;
            };
            if let Some(before) = start.and_then(|s| histogram(s, route, stage)) {
                // Subtraction fails only if the receivers restarted mid-run (fewer counts at the
                // end); the end snapshot alone is then this run's, which is what it holds.
                let _ = h.subtract(&before);
            }
            match &mut all {
                None => all = Some(h.clone()),
                Some(total) => {
                    let _ = total.add(&h);
                }
            }
            out.insert((route.name().to_string(), stage.name().to_string()), h);
        }
        if let Some(all) = all {
            out.insert(("all".to_string(), stage.name().to_string()), all);
        }
    }
    out
}

/// The delivery ledger as a terminal table.
pub fn table(delivery: &Delivery) -> String {
    let mut out = format!(
        "Delivery (receivers at {}{}):\n{:<10} {:>9} {:>9} {:>6} {:>10} {:>9} {:>13} {:>9} {:>10} {:>10}\n",
        delivery.receivers,
        if delivery.drained {
            ""
        } else {
            ", NOT drained"
        },
        "route",
        "accepted",
        "stored",
        "lost",
        "duplicates",
        "conflicts",
        "dead-lettered",
        "rejected",
        "e2e p50",
        "e2e p99"
    );
    for route in ROUTES.iter().chain(["all"].iter()) {
        let r = &delivery.routes[*route];
        let e2e = r.latency.get("e2e").cloned().unwrap_or_default();
        out.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>6} {:>10} {:>9} {:>13} {:>9} {:>10} {:>10}\n",
            route,
            r.accepted,
            r.stored,
            r.lost,
            r.duplicates,
            r.conflicts,
            r.dead_lettered,
            r.rejected,
            crate::duration::format_ms(e2e.p50),
            crate::duration::format_ms(e2e.p99)
        ));
    }
    if delivery.unrouted_rejected > 0 {
        out.push_str(&format!(
            "refused with no route named: {}\n",
            delivery.unrouted_rejected
        ));
    }
    out.push('\n');
    out
}

/// Percentiles and plot points of a microsecond histogram, in milliseconds.
pub fn stage_latency(h: &Histogram<u64>) -> StageLatency {
    if h.is_empty() {
        return StageLatency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mut distribution: Vec<[f64; 2]> = Vec::new();
    for v in h.iter_quantiles(2) {
        let point = [
            v.quantile_iterated_to() * 100.0,
            ms(h.highest_equivalent(v.value_iterated_to())),
        ];
        if distribution.last() != Some(&point) {
            distribution.push(point);
        }
    }
    StageLatency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        distribution,
    }
}

/// Writes `receivers-<route>-<stage>.hgrm` for every histogram with samples; returns the names.
pub fn write_hgrm(
    dir: &Path,
    histograms: &BTreeMap<(String, String), Histogram<u64>>,
) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for ((route, stage), h) in histograms {
        if h.is_empty() {
            continue;
        }
        let name = format!("receivers-{route}-{stage}.hgrm");
        std::fs::write(dir.join(&name), hdr::percentile_distribution(h))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(key: &str, route: Option<&str>, accepted: bool) -> Send {
        Send {
            key: key.into(),
            route: route.map(str::to_string),
            accepted,
        }
    }

    #[test]
    fn the_ledger_counts_lost_duplicates_and_rejections_per_route() {
        let sends = vec![
            send("r-u0-0", Some("nats"), true),
            send("r-u0-1", Some("nats"), true),
            send("r-u0-2", Some("grpc"), false),
            send("r-u0-2", Some("grpc"), true), // resent after the 503
            send("r-u0-3", Some("rabbitmq"), true),
            send("r-u0-4", None, false),
        ];
        let stored: HashMap<String, (String, u64)> = [
            ("r-u0-0".to_string(), ("nats".to_string(), 2)),
            ("r-u0-2".to_string(), ("grpc".to_string(), 0)),
            ("r-u0-3".to_string(), ("rabbitmq".to_string(), 0)),
        ]
        .into_iter()
        .collect();
        let (routes, unrouted) = ledger(&sends, &stored, 2.0);
        let nats = &routes["nats"];
        assert_eq!(
            (nats.accepted, nats.stored, nats.lost, nats.duplicates),
            (2, 1, 1, 2)
        );
        assert_eq!(nats.lost_ids, vec!["r-u0-1"]);
        assert_eq!(nats.throughput, 1.0);
        let grpc = &routes["grpc"];
        assert_eq!(
            (grpc.accepted, grpc.stored, grpc.rejected, grpc.lost),
            (1, 1, 1, 0)
        );
        let all = &routes["all"];
        assert_eq!(
            (
                all.accepted,
                all.stored,
                all.lost,
                all.rejected,
                all.duplicates
            ),
            (4, 3, 1, 1, 2)
        );
        assert_eq!(unrouted, 1);
    }

    /// A route's `/stats` with these store-side counts and e2e samples (microseconds).
    fn route_stats(conflicts: u64, dead_lettered: u64, e2e: &[u64]) -> RouteStats {
        let mut samples = hdr::new_histogram();
        for v in e2e {
            samples.record(*v).unwrap();
        }
        let empty = hdr::new_histogram();
        RouteStats {
            enabled: true,
            accepted: 0,
            stored: 0,
            duplicates: 0,
            conflicts,
            dead_lettered,
            store_failures: 0,
            rejected: 0,
            in_flight: 0,
            latency: Stage::ALL
                .into_iter()
                .map(|s| {
                    let h = if s == Stage::E2e { &samples } else { &empty };
                    (s, contract::StageStats::of(h))
                })
                .collect(),
        }
    }

    fn snapshot(routes: Vec<(Route, RouteStats)>) -> StatsSnapshot {
        StatsSnapshot {
            schema_version: contract::SCHEMA_VERSION,
            instance_id: "receivers-test".into(),
            started_at: "2026-11-27T00:00:00Z".into(),
            uptime_secs: 1.0,
            routes: routes.into_iter().collect(),
        }
    }

    #[test]
    fn conflicts_and_dead_letters_are_this_runs_share_of_the_receivers_counts() {
        let (mut routes, _) = ledger(&[], &HashMap::new(), 1.0);
        let start = snapshot(vec![(Route::Nats, route_stats(2, 1, &[]))]);
        let end = snapshot(vec![
            (Route::Nats, route_stats(5, 1, &[])),
            (Route::Grpc, route_stats(1, 4, &[])),
        ]);
        add_store_side_counts(&mut routes, Some(&start), &end);
        assert_eq!(
            (routes["nats"].conflicts, routes["nats"].dead_lettered),
            (3, 0)
        );
        assert_eq!(
            (routes["grpc"].conflicts, routes["grpc"].dead_lettered),
            (1, 4)
        );
        assert_eq!(
            (routes["all"].conflicts, routes["all"].dead_lettered),
            (4, 4)
        );
    }

    #[test]
    fn run_histograms_subtract_what_the_receivers_had_before() {
        let before = snapshot(vec![(Route::Nats, route_stats(0, 0, &[100_000, 100_000]))]);
        let after = snapshot(vec![(
            Route::Nats,
            route_stats(0, 0, &[100_000, 100_000, 1_000, 2_000]),
        )]);
        let run = run_histograms(Some(&before), &after);
        let nats = &run[&("nats".to_string(), "e2e".to_string())];
        assert_eq!(nats.len(), 2, "only this run's samples remain");
        assert!(nats.max() < 3_000);
        let latency = stage_latency(nats);
        assert_eq!(latency.count, 2);
        assert!(latency.distribution.last().unwrap()[0] >= 99.0);
        assert!(hdr::percentile_distribution(nats).contains("Total count    =            2"));
        assert_eq!(run[&("all".to_string(), "e2e".to_string())].len(), 2);
    }
}
