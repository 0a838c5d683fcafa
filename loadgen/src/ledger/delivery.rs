//! Reconciliation: after the run, page through what the receivers stored of this run's
//! keys (by Idempotency-Key prefix) until every accepted key is there or the drain timeout
//! passes, and build the per-route delivery ledger: accepted, stored, lost, duplicates,
//! rejected, plus the run's own ingress/hop/e2e latency histograms. Neither side is a list
//! of every id: the sent side is 2 bits per send (`sent::Accepted`), the stored side ranges
//! per user (`sent::Ranges`). Several
//! receivers processes (one per path, sharing a store) are read as one.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use contract::{LedgerRow, RecordsPage, Route, RouteStats, Stage, StatsSnapshot};
use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;

use crate::ledger::sent::{self, Accepted, Ranges, SentSnapshot};
pub use crate::model::{Delivery, RouteLedger, StageLatency};

pub use crate::model::ROUTES;
/// Lost ids listed per route at most; the count is always exact.
pub const LOST_IDS_LISTED: usize = 100;

/// The receivers' HTTP API, as far as reconciliation needs it: one process, or several
/// (one per path) that share a store.
pub struct Receivers {
    bases: Vec<url::Url>,
    http: reqwest::Client,
}

/// What the store holds of this run's accepted keys: per user the sequence numbers found,
/// and per route the records and the duplicate inserts they absorbed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub by_user: HashMap<usize, Ranges>,
    pub routes: BTreeMap<Route, (u64, u64)>,
}

impl Stored {
    /// Books one stored row, if its key is one this run had accepted.
    pub fn add(&mut self, run_id: &str, sent: &SentSnapshot, row: &LedgerRow) {
        let Some((user, n)) = sent::parse_key(run_id, &row.id) else {
            return;
        };
        if !sent.accepted.get(&user).is_some_and(|r| r.contains(n)) {
            return;
        }
        self.by_user.entry(user).or_default().insert(n);
        let route = self.routes.entry(row.route).or_default();
        route.0 += 1;
        route.1 += row.duplicates;
    }
}

impl Receivers {
    pub fn new(bases: Vec<url::Url>) -> Receivers {
        assert!(!bases.is_empty(), "at least one receivers URL");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        Receivers { bases, http }
    }

    pub fn url(&self) -> String {
        self.bases
            .iter()
            .map(url::Url::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn get<T: DeserializeOwned>(&self, base: &url::Url, path: &str) -> Result<T, String> {
        let url = base.join(path).map_err(|e| e.to_string())?;
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

    /// `GET /stats` of every receivers process, merged into one (counters summed,
    /// histograms added); a server that is not the receivers fails here, with what did not
    /// match.
    pub async fn stats(&self) -> Result<StatsSnapshot, String> {
        let mut snapshots = Vec::with_capacity(self.bases.len());
        for base in &self.bases {
            snapshots.push(self.get::<StatsSnapshot>(base, "stats").await?);
        }
        StatsSnapshot::merge(snapshots)
    }

    /// Pages through the stored records of this run, keeping only those of accepted keys.
    /// The processes share one store, so the first answers for all.
    pub async fn stored(&self, run_id: &str, sent: &SentSnapshot) -> Result<Stored, String> {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut stored = Stored::default();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("records?prefix={}", encode(&format!("{run_id}-")));
            if let Some(after) = &after {
                path.push_str(&format!("&after={}", encode(after)));
            }
            let page: RecordsPage = self.get(&self.bases[0], &path).await?;
            for row in &page.records {
                stored.add(run_id, sent, row);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(stored),
            }
        }
    }

    /// Polls the store until every accepted key of this run is there, or `limit` passes:
    /// waits on the run's own keys, not on a process-wide in-flight counter.
    pub async fn drain(
        &self,
        run_id: &str,
        sent: &SentSnapshot,
        limit: Duration,
    ) -> Result<(Stored, bool, f64), String> {
        let started = Instant::now();
        let accepted: u64 = sent.accepted.values().map(Accepted::len).sum();
        loop {
            let stored = self.stored(run_id, sent).await?;
            let found: u64 = stored.by_user.values().map(Ranges::len).sum();
            if found >= accepted {
                return Ok((stored, true, started.elapsed().as_secs_f64()));
            }
            if started.elapsed() >= limit {
                return Ok((stored, false, started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// After the run: wait for the receivers to drain, fetch this run's stored ids, and build
/// the ledger and this run's latency. Returns the delivery section, and the texts of
/// `receivers-stats.json` and the `.hgrm` files by name, for `output` to write.
pub async fn reconcile(
    receivers: &Receivers,
    run_id: &str,
    sent: &SentSnapshot,
    start: Option<&StatsSnapshot>,
    drain_timeout: Duration,
    duration_secs: f64,
) -> Result<(Delivery, Vec<(String, String)>), String> {
    eprintln!(
        "loadgen: reconciling {} sends with the receivers at {} (waiting up to {:?} for accepted records to be stored)",
        sent.sends(),
        receivers.url(),
        drain_timeout
    );
    let (stored, drained, drain_secs) = receivers.drain(run_id, sent, drain_timeout).await?;
    let end = receivers.stats().await?;
    let (mut routes, unrouted_rejected) = ledger(run_id, sent, &stored, duration_secs);
    // Counters and histograms count since each process started: the difference is this
    // run's only if the same processes answered before and after.
    let restarted = start.is_some_and(|s| s.instance_id != end.instance_id);
    let histograms = if restarted {
        eprintln!(
            "loadgen: the receivers restarted during the run (instance {} before, {} after): their latency and store-side counts for this run cannot be told apart and are left out",
            start.map(|s| s.instance_id.as_str()).unwrap_or_default(),
            end.instance_id
        );
        BTreeMap::new()
    } else {
        add_store_side_counts(&mut routes, start, &end);
        run_histograms(start, &end)
    };
    for ((route, stage), h) in &histograms {
        if let Some(row) = routes.get_mut(route) {
            row.latency.insert(stage.clone(), stage_latency(h));
        }
    }
    // The receivers' own figures go into the run folder beside the report (run.rs writes
    // them): their /stats at the end, and a percentile file per route and stage.
    let mut files = vec![(
        "receivers-stats.json".to_string(),
        serde_json::to_string_pretty(&end).unwrap_or_default(),
    )];
    files.extend(
        histograms
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|((route, stage), h)| {
                (
                    format!("receivers-{route}-{stage}.hgrm"),
                    hdr::percentile_distribution(h),
                )
            }),
    );
    let delivery = Delivery {
        receivers: receivers.url(),
        drained,
        drain_secs,
        routes,
        unrouted_rejected,
        receivers_restarted: restarted,
    };
    Ok((delivery, files))
}

/// The ledger of the run so far, for judging rules while it goes on: what was sent, and the
/// receivers' counters and histograms now against the start. Nothing is drained or looked
/// up in the store, so `stored` and `lost` mean nothing here.
pub fn provisional(
    receivers: String,
    run_id: &str,
    sent: &SentSnapshot,
    start: Option<&StatsSnapshot>,
    now: Option<&StatsSnapshot>,
    duration_secs: f64,
) -> Delivery {
    let (mut routes, unrouted_rejected) = ledger(run_id, sent, &Stored::default(), duration_secs);
    let restarted = match (start, now) {
        (Some(start), Some(now)) => start.instance_id != now.instance_id,
        _ => false,
    };
    if let (Some(now), false) = (now, restarted) {
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
        receivers_restarted: restarted,
    }
}

/// The ledger from what was sent and what is stored (pure, so it is unit-tested).
pub fn ledger(
    run_id: &str,
    sent: &SentSnapshot,
    stored: &Stored,
    duration_secs: f64,
) -> (BTreeMap<String, RouteLedger>, u64) {
    let mut routes: BTreeMap<String, RouteLedger> = ROUTES
        .iter()
        .chain(["all"].iter())
        .map(|r| (r.to_string(), RouteLedger::default()))
        .collect();
    for route in Route::ALL {
        let counts = sent.routes.get(&route).copied().unwrap_or_default();
        let (found, duplicates) = stored.routes.get(&route).copied().unwrap_or_default();
        for name in [route.name(), "all"] {
            let row = routes.get_mut(name).expect("a known route");
            row.accepted += counts.accepted;
            row.rejected += counts.rejected;
            row.stored += found;
            row.duplicates += duplicates;
        }
    }
    // Lost: accepted keys the store does not hold, each with the route that accepted it.
    let empty = Ranges::default();
    let mut users: Vec<&usize> = sent.accepted.keys().collect();
    users.sort_unstable();
    for user in users {
        let found = stored.by_user.get(user).unwrap_or(&empty);
        for (n, route) in sent.accepted[user].missing_from(found) {
            for name in [route.name(), "all"] {
                let row = routes.get_mut(name).expect("a known route");
                row.lost += 1;
                if row.lost_ids.len() < LOST_IDS_LISTED {
                    row.lost_ids.push(sent.key(run_id, *user, n));
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
    (routes, sent.unrouted_rejected)
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ledger::sent::SentLedger;

    #[test]
    fn each_lost_id_is_listed_under_the_route_that_accepted_it() {
        let sent = SentLedger::default();
        for n in 0..9 {
            sent.record(n as usize % 2, n, Some(Route::ALL[n as usize % 3]), true);
        }
        let sent = sent.snapshot();
        // Stored: every gRPC send; the RabbitMQ and NATS ones are lost, on two routes.
        let mut stored = Stored::default();
        for n in [0, 3, 6] {
            let row = LedgerRow {
                id: format!("r-u{}-{n}", n % 2),
                route: Route::Grpc,
                duplicates: 0,
            };
            stored.add("r", &sent, &row);
        }
        let (routes, _) = ledger("r", &sent, &stored, 1.0);
        let lost = |name: &str| (routes[name].lost, routes[name].lost_ids.clone());
        assert_eq!(lost("grpc"), (0, vec![]));
        assert_eq!(
            lost("rabbitmq"),
            (3, vec!["r-u0-4".into(), "r-u1-1".into(), "r-u1-7".into()])
        );
        assert_eq!(
            lost("nats"),
            (3, vec!["r-u0-2".into(), "r-u0-8".into(), "r-u1-5".into()])
        );
        assert_eq!(routes["all"].lost, 6);
        assert_eq!(routes["all"].lost_ids.len(), 6);
    }

    #[test]
    fn only_the_first_lost_ids_are_listed_and_every_one_is_counted() {
        let sent = SentLedger::default();
        for n in 0..250 {
            sent.record(3, n, Some(Route::Nats), true);
        }
        let (routes, _) = ledger("r", &sent.snapshot(), &Stored::default(), 1.0);
        assert_eq!(routes["nats"].lost, 250);
        assert_eq!(routes["nats"].lost_ids.len(), LOST_IDS_LISTED);
        assert_eq!(routes["nats"].lost_ids[0], "r-u3-0");
        assert_eq!(routes["all"].lost_ids.len(), LOST_IDS_LISTED);
    }

    #[test]
    fn the_ledger_counts_lost_duplicates_and_rejections_per_route() {
        let sent = SentLedger::default();
        for (n, route, accepted) in [
            (0, Some(Route::Nats), true),
            (1, Some(Route::Nats), true),
            (2, Some(Route::Grpc), false),
            (3, Some(Route::Grpc), true),
            (4, Some(Route::Rabbitmq), true),
            (5, None, false),
        ] {
            sent.record(0, n, route, accepted);
        }
        let sent = sent.snapshot();
        let mut stored = Stored::default();
        for (id, route, duplicates) in [
            ("r-u0-0", Route::Nats, 2),
            ("r-u0-3", Route::Grpc, 0),
            ("r-u0-4", Route::Rabbitmq, 0),
            ("r-u0-2", Route::Grpc, 0), // refused, yet stored: not this run's to count
            ("r-u1-0", Route::Grpc, 0), // never sent
        ] {
            let row = LedgerRow {
                id: id.into(),
                route,
                duplicates,
            };
            stored.add("r", &sent, &row);
        }
        let (routes, unrouted) = ledger("r", &sent, &stored, 2.0);
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
        assert_eq!(all.lost_ids, vec!["r-u0-1"]);
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
        let (mut routes, _) = ledger("r", &SentSnapshot::default(), &Stored::default(), 1.0);
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
    fn a_receivers_restart_leaves_the_latency_and_store_side_counts_out() {
        let start = snapshot(vec![(Route::Nats, route_stats(2, 0, &[100_000]))]);
        let mut end = snapshot(vec![(Route::Nats, route_stats(1, 0, &[1_000, 2_000]))]);
        end.instance_id = "receivers-after-restart".into();
        let sent = SentSnapshot::default();
        let delivery = provisional("u".into(), "r", &sent, Some(&start), Some(&end), 1.0);
        assert!(delivery.receivers_restarted);
        assert!(delivery.routes["nats"].latency.is_empty());
        assert_eq!(delivery.routes["nats"].conflicts, 0);
        let same = provisional("u".into(), "r", &sent, Some(&start), Some(&start), 1.0);
        assert!(!same.receivers_restarted);
        assert_eq!(same.routes["nats"].latency["e2e"].count, 0);
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
