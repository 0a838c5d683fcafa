//! The sent side of the delivery ledger, in about 2 bits per send: each user's keys are
//! `<run>-u<user>-<n>` with `n` counting up, so what was accepted, and by which route, is one
//! packed array of route codes per user, indexed by `n`; the rest is counters per route. A
//! soak of 10 million POSTs keeps 2.5 MB (up to twice that while the arrays grow), and
//! every lost id is named with its route.
//! A worker's keys carry the worker too, `<run>-w<worker>-u<user>-<n>`; users are numbered
//! across all workers, so the ledgers of a run's workers join without overlapping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use contract::Route;
use serde::{Deserialize, Serialize};

/// Non-overlapping half-open ranges `[start, end)` of sequence numbers, merged as they grow.
/// In a worker's `sends.json` as a list of `[start, end]` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<[u64; 2]>", into = "Vec<[u64; 2]>")]
pub struct Ranges {
    /// start -> end
    spans: BTreeMap<u64, u64>,
}

impl TryFrom<Vec<[u64; 2]>> for Ranges {
    type Error = String;

    /// Refuses empty, reversed or overlapping ranges: a ledger that says so is corrupt.
    fn try_from(pairs: Vec<[u64; 2]>) -> Result<Ranges, String> {
        let mut spans = BTreeMap::new();
        let mut last_end = None;
        let mut sorted = pairs;
        sorted.sort();
        for [start, end] in sorted {
            if start >= end || last_end.is_some_and(|e| start < e) {
                return Err(format!(
                    "range [{start}, {end}) is empty or overlaps another"
                ));
            }
            spans.insert(start, end);
            last_end = Some(end);
        }
        Ok(Ranges { spans })
    }
}

impl From<Ranges> for Vec<[u64; 2]> {
    fn from(ranges: Ranges) -> Vec<[u64; 2]> {
        ranges.spans.into_iter().map(|(s, e)| [s, e]).collect()
    }
}

impl Ranges {
    pub fn insert(&mut self, n: u64) {
        if self.contains(n) {
            return;
        }
        // Joins the range ending at n and the one starting at n + 1, when they exist.
        let before = self
            .spans
            .range(..=n)
            .next_back()
            .filter(|(_, end)| **end == n)
            .map(|(start, _)| *start);
        let after = self.spans.remove(&(n + 1));
        match before {
            Some(start) => {
                self.spans.insert(start, after.unwrap_or(n + 1));
            }
            None => {
                self.spans.insert(n, after.unwrap_or(n + 1));
            }
        }
    }

    pub fn contains(&self, n: u64) -> bool {
        self.spans
            .range(..=n)
            .next_back()
            .is_some_and(|(_, end)| n < *end)
    }

    /// How many numbers are in the set.
    pub fn len(&self) -> u64 {
        self.spans.iter().map(|(start, end)| end - start).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Ranges held: the memory this set takes grows with these, not with `len`.
    pub fn spans(&self) -> usize {
        self.spans.len()
    }
}

/// One user's sends by sequence number, 2 bits each: the route that accepted it, or 0 when
/// none did (refused, unanswered, or never sent). The route of a key is what names a lost
/// id per route: the store only knows the routes of the records it holds. In a worker's
/// `sends.json` as a hex string of the packed bytes (4 sends a byte, the lowest bits first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Accepted {
    packed: Vec<u8>,
}

impl TryFrom<String> for Accepted {
    type Error = String;

    fn try_from(hex: String) -> Result<Accepted, String> {
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "accepted sends {hex:.20}... are not an even number of hex digits"
            ));
        }
        let packed = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked hex digits"))
            .collect();
        Ok(Accepted { packed })
    }
}

impl From<Accepted> for String {
    fn from(accepted: Accepted) -> String {
        accepted
            .packed
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

impl Accepted {
    /// Books send `n` as accepted by `route`; booking it twice counts once.
    pub fn insert(&mut self, n: u64, route: Route) {
        let (byte, shift) = slot(n);
        if byte >= self.packed.len() {
            self.packed.resize(byte + 1, 0);
        }
        self.packed[byte] = self.packed[byte] & !(0b11 << shift) | code(route) << shift;
    }

    /// The route that accepted send `n`, if one did.
    pub fn route(&self, n: u64) -> Option<Route> {
        let (byte, shift) = slot(n);
        let code = self.packed.get(byte)? >> shift & 0b11;
        Route::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    pub fn contains(&self, n: u64) -> bool {
        self.route(n).is_some()
    }

    /// How many sends were accepted: a count over the array, read once a drain poll.
    pub fn len(&self) -> u64 {
        let slots = |byte: &u8| (0..4).filter(|slot| byte >> (slot * 2) & 0b11 != 0).count();
        self.packed.iter().map(slots).sum::<usize>() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.packed.iter().all(|byte| *byte == 0)
    }

    /// Bytes held: a quarter of the highest sequence number, whatever was accepted.
    pub fn bytes(&self) -> usize {
        self.packed.len()
    }

    /// The accepted sends not in `stored`, in order, each with the route that accepted it.
    pub fn missing_from<'a>(
        &'a self,
        stored: &'a Ranges,
    ) -> impl Iterator<Item = (u64, Route)> + 'a {
        (0..self.packed.len() as u64 * 4)
            .filter_map(|n| self.route(n).map(|route| (n, route)))
            .filter(move |(n, _)| !stored.contains(*n))
    }
}

/// Byte and bit shift of send `n` in the packed array.
fn slot(n: u64) -> (usize, u32) {
    let byte = usize::try_from(n / 4).expect("a send's number fits in memory");
    (byte, (n % 4) as u32 * 2)
}

/// A route's 2-bit code: 1, 2 or 3, in the order of `Route::ALL` (0 is "not accepted").
fn code(route: Route) -> u8 {
    let index = Route::ALL
        .iter()
        .position(|r| *r == route)
        .expect("every route is in Route::ALL");
    index as u8 + 1
}

/// Counts per route of the answers loadgen saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    pub accepted: u64,
    pub rejected: u64,
}

/// A copy of the sent ledger at one moment; a worker writes its last one as `sends.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentSnapshot {
    /// Per user, the sequence numbers of accepted POSTs and the route that took each.
    pub accepted: HashMap<usize, Accepted>,
    pub routes: BTreeMap<Route, RouteCounts>,
    /// Refusals whose answer named no route (the front door with every path down).
    pub unrouted_rejected: u64,
    /// 2xx answers that named no route (a target that is not the receivers).
    pub unrouted_accepted: u64,
    /// How many workers the run had (user `u` was worker `u % workers`'s); `None` for a
    /// run of one process. It puts the worker back into a key rebuilt from (user, n).
    #[serde(default)]
    pub workers: Option<usize>,
}

impl SentSnapshot {
    pub fn sends(&self) -> u64 {
        self.routes
            .values()
            .map(|c| c.accepted + c.rejected)
            .sum::<u64>()
            + self.unrouted_rejected
            + self.unrouted_accepted
    }

    pub fn accepted_total(&self) -> u64 {
        self.routes.values().map(|c| c.accepted).sum()
    }

    /// The key that user `user` sent as its POST number `n`.
    pub fn key(&self, run_id: &str, user: usize, n: u64) -> String {
        key(run_id, self.workers.map(|w| user % w.max(1)), user, n)
    }

    /// Adds another worker's ledger; a user booked by both means the folders overlap.
    pub fn join(&mut self, other: SentSnapshot) -> Result<(), String> {
        for (user, sends) in other.accepted {
            if self.accepted.insert(user, sends).is_some() {
                return Err(format!("user {user} is in two workers' ledgers"));
            }
        }
        for (route, counts) in other.routes {
            let mine = self.routes.entry(route).or_default();
            mine.accepted += counts.accepted;
            mine.rejected += counts.rejected;
        }
        self.unrouted_rejected += other.unrouted_rejected;
        self.unrouted_accepted += other.unrouted_accepted;
        Ok(())
    }
}

/// Written by every user after each POST; read once a second (live gate) and at the end.
#[derive(Debug, Default)]
pub struct SentLedger {
    inner: Mutex<SentSnapshot>,
}

impl SentLedger {
    /// An empty ledger for a run of `workers` workers (`None`: one process).
    pub fn for_workers(workers: Option<usize>) -> SentLedger {
        SentLedger {
            inner: Mutex::new(SentSnapshot {
                workers,
                ..SentSnapshot::default()
            }),
        }
    }

    /// Books POST number `n` of `user`: accepted or not, by the route its answer named.
    pub fn record(&self, user: usize, n: u64, route: Option<Route>, accepted: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match (route, accepted) {
            (Some(route), true) => {
                inner.routes.entry(route).or_default().accepted += 1;
                inner.accepted.entry(user).or_default().insert(n, route);
            }
            (Some(route), false) => inner.routes.entry(route).or_default().rejected += 1,
            (None, true) => inner.unrouted_accepted += 1,
            (None, false) => inner.unrouted_rejected += 1,
        }
    }

    pub fn snapshot(&self) -> SentSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts only (no ranges): cheap enough to take every second.
    pub fn counts(&self) -> SentSnapshot {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        SentSnapshot {
            accepted: HashMap::new(),
            routes: inner.routes.clone(),
            unrouted_rejected: inner.unrouted_rejected,
            unrouted_accepted: inner.unrouted_accepted,
            workers: inner.workers,
        }
    }
}

/// The user and sequence number of a key `<run_id>-u<user>-<n>` or, from a worker,
/// `<run_id>-w<worker>-u<user>-<n>` (users are numbered across workers).
pub fn parse_key(run_id: &str, key: &str) -> Option<(usize, u64)> {
    let mut rest = key.strip_prefix(run_id)?;
    if let Some(worker) = rest.strip_prefix("-w") {
        let (index, after) = worker.split_once('-')?;
        index.parse::<usize>().ok()?;
        rest = after.strip_prefix('u')?;
    } else {
        rest = rest.strip_prefix("-u")?;
    }
    let (user, n) = rest.split_once('-')?;
    Some((user.parse().ok()?, n.parse().ok()?))
}

/// The key of POST number `n` of `user`, sent by `worker` when the run has workers.
pub fn key(run_id: &str, worker: Option<usize>, user: usize, n: u64) -> String {
    match worker {
        Some(w) => format!("{run_id}-w{w}-u{user}-{n}"),
        None => format!("{run_id}-u{user}-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_as_they_grow_in_any_order() {
        let mut r = Ranges::default();
        for n in [0, 1, 2, 5, 4, 3, 9] {
            r.insert(n);
        }
        assert_eq!(r.spans(), 2, "{r:?}");
        assert_eq!(r.len(), 7);
        assert!(r.contains(5) && !r.contains(6) && r.contains(9));
        r.insert(2);
        assert_eq!(r.len(), 7, "inserting twice counts once");
    }

    #[test]
    fn a_million_sends_of_one_user_take_2_bits_each_and_keep_their_routes() {
        let ledger = SentLedger::default();
        for n in 0..1_000_000 {
            ledger.record(7, n, Some(Route::ALL[n as usize % 3]), true);
        }
        ledger.record(7, 1_000_000, Some(Route::Grpc), false);
        let snapshot = ledger.snapshot();
        let sends = &snapshot.accepted[&7];
        assert_eq!(sends.bytes(), 250_000);
        assert_eq!(sends.len(), 1_000_000);
        assert_eq!(sends.route(999_997), Some(Route::Rabbitmq));
        assert_eq!(sends.route(1_000_000), None, "refused: no route");
        assert_eq!(snapshot.routes[&Route::Grpc].rejected, 1);
        assert_eq!(snapshot.sends(), 1_000_001);
    }

    #[test]
    fn accepted_sends_round_trip_through_hex_and_name_their_routes_when_missing() {
        let mut sends = Accepted::default();
        for (n, route) in [
            (0, Route::Grpc),
            (1, Route::Nats),
            (5, Route::Rabbitmq),
            (6, Route::Nats),
        ] {
            sends.insert(n, route);
        }
        sends.insert(1, Route::Nats);
        assert_eq!(sends.len(), 4, "booking twice counts once");
        let text = serde_json::to_string(&sends).unwrap();
        assert_eq!(text, "\"0d38\"", "sends 0 and 1, then 5 and 6, 2 bits each");
        let back: Accepted = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sends);
        let mut stored = Ranges::default();
        stored.insert(0);
        stored.insert(6);
        assert_eq!(
            sends.missing_from(&stored).collect::<Vec<_>>(),
            [(1, Route::Nats), (5, Route::Rabbitmq)]
        );
        assert!(serde_json::from_str::<Accepted>("\"0g\"").is_err());
        assert!(serde_json::from_str::<Accepted>("\"abc\"").is_err());
    }

    #[test]
    fn keys_round_trip() {
        let run = "20261127-063015-ab12";
        assert_eq!(parse_key(run, &key(run, None, 17, 4999)), Some((17, 4999)));
        assert_eq!(key(run, Some(1), 17, 4), format!("{run}-w1-u17-4"));
        assert_eq!(parse_key(run, &key(run, Some(1), 17, 4)), Some((17, 4)));
        assert_eq!(parse_key(run, &format!("{run}-wx-u17-4")), None);
        assert_eq!(parse_key(run, "20261127-063015-ab13-u1-2"), None);
        assert_eq!(parse_key(run, &format!("{run}-u1-x")), None);
    }
}
