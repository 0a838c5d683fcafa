//! How users replay the scenario: which record each record request sends, the
//! Idempotency-Key it carries, and the Goose scenarios (one per flow, one transaction per
//! request) that drive it. Without `--scenario` the flow is the seed's: POST / then GET /.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use goose::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::arrival::Schedule;
use crate::connections::Connections;
use crate::ledger::sent::{self, SentLedger};
use crate::model::Worker;
use crate::record::intervals::{Recorder, Sample};
use crate::record::progress::Live;
use crate::scenario::{Body, Scenarios, Step};
use crate::throttle::Throttle;
use tokio_util::sync::CancellationToken;

pub use crate::model::Mode;
pub use crate::scenario::{GET_NAME, POST_NAME};

/// Everything the users share: one parsed copy of the records, the flows, and the run's
/// identity.
#[derive(Debug)]
pub struct Replay {
    pub records: Vec<Bytes>,
    pub mode: Mode,
    pub users: usize,
    pub seed: Option<u64>,
    pub run_id: String,
    pub live: Arc<Live>,
    /// Which record requests were accepted, by which route: the sent side of the delivery
    /// ledger, bounded by the users. Locked only to book a send, never across an await.
    pub sent: SentLedger,
    /// Every request's latency, per request name, route and interval.
    pub recorder: Recorder,
    /// This process's share when it is one worker of several; `users` is then the run's.
    pub worker: Option<Worker>,
    /// The open model's tickets; `None` in the closed model, where users wait a think time.
    pub schedule: Option<Arc<Schedule>>,
    /// `--max-rps` in the closed model: each send waits for its turn before its clock starts.
    pub throttle: Option<Throttle>,
    /// The one pool every user sends through, and its `--max-connections` slots.
    pub connections: Connections,
    /// Cancelled once `--graceful-stop` has passed after `--run-time`: requests still in
    /// flight then end as interrupted, which is the run's doing, not the target's.
    pub interrupt: CancellationToken,
    /// The flows the users follow.
    pub scenarios: Scenarios,
    /// Each flow's requests' URLs, joined under `--host` once: Goose's
    /// `get_request_builder` joins the path to the host, prints the URL and has reqwest
    /// parse it again, for every request, and that costs requests per CPU-second
    /// (docs/performance-notes.md).
    pub urls: Vec<Vec<url::Url>>,
}

/// When a request went out, and in the open model when it was meant to.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    intended: Option<Instant>,
}

/// One user's place in the replay: indices into the shared records, not a copy of them.
#[derive(Debug, Clone)]
struct UserPlan {
    order: Vec<u32>,
    next: usize,
    /// Record sends so far by this user; part of the Idempotency-Key.
    sent: u64,
    /// Set once a user has no record left, so the rest of its flow is skipped too.
    spent: bool,
    /// Set once the user is counted out of the running users (its records spent, or it
    /// left as the users plan fell), so it is counted once.
    out: bool,
    rng: StdRng,
}

/// How one request ended, as the recorder books it.
struct Answer {
    status: u16,
    success: bool,
    route: Option<contract::Route>,
    /// Why no HTTP answer came.
    no_answer: Option<String>,
    /// Why an answered request failed its check.
    check: Option<String>,
}

impl Replay {
    /// How many passes through its flow a user runs before it stops; `None` runs until the
    /// run time ends. A pass sends as many records as its flow has record requests, so the
    /// count covers the flow that spends a user's records slowest; a user whose records are
    /// spent skips the rest.
    pub fn iterations(&self) -> Option<usize> {
        let per_pass = self.scenarios.fewest_records_per_pass()?;
        let records = self.records.len();
        match self.mode {
            Mode::PerUser => Some(records.div_ceil(per_pass)),
            Mode::Shared => Some(records.div_ceil(self.users).div_ceil(per_pass)),
            Mode::Loop => None,
        }
    }

    /// The Idempotency-Key of a user's n-th send: unique per (run, worker, user, send).
    pub fn idempotency_key(&self, user: usize, sent: u64) -> String {
        sent::key(&self.run_id, self.worker.map(|w| w.index), user, sent)
    }

    /// The run-wide index of Goose's `local`-th user in this process: a worker's users
    /// are `index`, `index + count`, ..., so plans, seeds and keys are those of one process
    /// running every user.
    fn global_user(&self, local: usize) -> usize {
        self.worker.map_or(local, |w| w.user(local))
    }

    fn plan_for(&self, user: usize) -> UserPlan {
        let mut rng = match self.seed {
            // Distinct but reproducible per user: the same seed replays the same orders.
            Some(seed) => {
                StdRng::seed_from_u64(seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let count = self.records.len() as u32;
        let mut order: Vec<u32> = match self.mode {
            Mode::PerUser | Mode::Loop => (0..count).collect(),
            // Users split the records by index, so together they send each exactly once.
            Mode::Shared => (user as u32..count).step_by(self.users).collect(),
        };
        order.shuffle(&mut rng);
        UserPlan {
            order,
            next: 0,
            sent: 0,
            spent: false,
            out: false,
            rng,
        }
    }

    /// Counts the user out of the running users, once.
    fn count_out(&self, plan: &mut UserPlan) {
        if !plan.out {
            plan.out = true;
            self.live.users_finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The next record for this user, or `None` once its share is spent.
    fn next_record(&self, plan: &mut UserPlan) -> Option<u32> {
        if plan.next == plan.order.len() {
            if self.mode != Mode::Loop || plan.order.is_empty() {
                return None;
            }
            plan.order.shuffle(&mut plan.rng);
            plan.next = 0;
        }
        let index = plan.order[plan.next];
        plan.next += 1;
        if plan.next == plan.order.len() && self.mode != Mode::Loop {
            self.count_out(plan);
        }
        Some(index)
    }

    /// One Goose scenario per flow of weight 1 or more: its requests in order, each
    /// followed by the flow's wait (`wait` when the flow names none).
    pub fn goose_scenarios(
        self: &Arc<Self>,
        wait: (Duration, Duration),
    ) -> Result<Vec<Scenario>, GooseError> {
        let mut scenarios = Vec::new();
        for (f, flow) in self.scenarios.flows.iter().enumerate() {
            if flow.weight == 0 {
                continue;
            }
            // In the open model users wait for tickets, not a think time.
            let (min, max) = if self.schedule.is_some() {
                (Duration::ZERO, Duration::ZERO)
            } else {
                flow.wait.unwrap_or(wait)
            };
            let mut scenario = Scenario::new(&flow.name)
                .set_weight(flow.weight)?
                .set_wait_time(min, max)?;
            for (s, step) in flow.steps.iter().enumerate() {
                let replay = Arc::clone(self);
                let send: TransactionFunction =
                    Arc::new(move |user| Box::pin(send(Arc::clone(&replay), (f, s), user)));
                scenario =
                    scenario.register_transaction(Transaction::new(send).set_name(&step.name));
            }
            let replay = Arc::clone(self);
            let leave: TransactionFunction =
                Arc::new(move |user| Box::pin(leave(Arc::clone(&replay), user)));
            scenario = scenario.register_transaction(Transaction::new(leave).set_on_stop());
            scenarios.push(scenario);
        }
        Ok(scenarios)
    }

    /// Makes sure the user has a plan, counting it as started the first time.
    fn plan<'u>(&self, user: &'u mut GooseUser) -> &'u mut UserPlan {
        if user.get_session_data::<UserPlan>().is_none() {
            let mut plan = self.plan_for(self.global_user(user.weighted_users_index));
            self.live.users_started.fetch_add(1, Ordering::Relaxed);
            if let Some(schedule) = &self.schedule {
                schedule.join();
            }
            if plan.order.is_empty() && self.mode != Mode::Loop {
                self.count_out(&mut plan);
            }
            user.set_session_data(plan);
            // The pool Goose gave the user has no cap; a clone of this client shares the
            // capped one. Goose documents replacing a user's client (`set_client_builder`).
            user.client = self.connections.client().clone();
        }
        user.get_session_data_unchecked_mut::<UserPlan>()
    }

    /// `answered`, unless `--graceful-stop` runs out first: then the request is dropped,
    /// counted as interrupted (not a failure, and not in the latencies), and `None`.
    async fn unless_interrupted<T>(&self, answered: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            answer = answered => Some(answer),
            _ = self.interrupt.cancelled() => {
                self.live.interrupted.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Books a finished request in the live counters and the histograms: in the open
    /// model its response time from the ticket's intended time, its service time from the
    /// send, and the lag between them.
    fn count(&self, request: &str, answer: &Answer, sent: Sent) {
        let service = sent.at.elapsed();
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        if !answer.success {
            self.live.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(cause) = &answer.no_answer {
            self.live.no_answer(cause);
        }
        let (response, lag) = match sent.intended {
            Some(intended) => (
                intended.elapsed(),
                Some(sent.at.saturating_duration_since(intended)),
            ),
            None => (service, None),
        };
        self.recorder.record(Sample {
            request,
            route: answer.route.map(|r| r.name()),
            status: answer.status,
            success: answer.success,
            response,
            service,
            lag,
            error: answer.no_answer.as_deref().or(answer.check.as_deref()),
        });
    }

    /// In the open model, waits for this request's ticket; `None` once the plan is over
    /// (the user then idles until the run time ends the run). In the closed model, now.
    async fn send_time(&self) -> Option<Sent> {
        let intended = match &self.schedule {
            None => {
                if let Some(throttle) = &self.throttle {
                    throttle.turn().await;
                }
                None
            }
            Some(schedule) => match schedule.take().await {
                Some(ticket) => Some(ticket),
                // The plan is over: idle a little and end the transaction, so Goose sees
                // the run time's end between transactions and stops the user.
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return None;
                }
            },
        };
        self.live.sent.fetch_add(1, Ordering::Relaxed);
        let at = Instant::now();
        if let (Some(schedule), Some(ticket)) = (&self.schedule, intended) {
            schedule.sent(ticket, at);
        }
        Some(Sent {
            at,
            intended: intended.map(|t| t.intended),
        })
    }

    /// What the user sends now: `None` once its records are spent, when it idles out the
    /// rest of its passes; otherwise the record (its index and the user's send number)
    /// when the request sends one.
    fn turn(&self, step: &Step, user: &mut GooseUser) -> Option<Option<(u32, u64)>> {
        let plan = self.plan(user);
        if plan.spent {
            return None;
        }
        if !matches!(step.body, Body::Record) {
            return Some(None);
        }
        let Some(index) = self.next_record(plan) else {
            plan.spent = true;
            return None;
        };
        plan.sent += 1;
        Some(Some((index, plan.sent - 1)))
    }

    /// A request's own think time, from the user's seeded generator; the run's end cuts it.
    async fn think(&self, user: &mut GooseUser, (min, max): (Duration, Duration)) {
        let pause = self.plan(user).rng.random_range(min..=max);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = self.interrupt.cancelled() => {}
        }
    }

    /// The request `step` makes, on the user's client (the capped pool), with its URL
    /// joined once; a record request carries the record and its key.
    fn request(
        &self,
        user: &GooseUser,
        at: (usize, usize),
        record: Option<(u32, &str)>,
    ) -> reqwest::RequestBuilder {
        let step = &self.scenarios.flows[at.0].steps[at.1];
        let mut request = user
            .client
            .request(step.method.clone(), self.urls[at.0][at.1].clone());
        if !step.headers.is_empty() {
            request = request.headers(step.headers.clone());
        }
        match (&step.body, record) {
            (Body::Record, Some((index, key))) => request
                .header("idempotency-key", key)
                .body(self.records[index as usize].clone()),
            (Body::Fixed(bytes), _) => request.body(bytes.clone()),
            _ => request,
        }
    }
}

/// One request of a flow: the next record if it sends one, the send, the answer read to
/// its end and judged, the ledger, then the request's own think time.
async fn send(replay: Arc<Replay>, at: (usize, usize), user: &mut GooseUser) -> TransactionResult {
    let step = &replay.scenarios.flows[at.0].steps[at.1];
    let user_index = replay.global_user(user.weighted_users_index);
    let Some(record) = replay.turn(step, user) else {
        return Ok(());
    };
    let key = record.map(|(_, n)| replay.idempotency_key(user_index, n));
    let builder = replay.request(
        user,
        at,
        record.zip(key.as_deref()).map(|((i, _), k)| (i, k)),
    );
    let request = GooseRequest::builder()
        .method(goose_method(&step.method))
        .path(step.path.as_str())
        .set_request_builder(builder)
        .build();
    let Some(sent_at) = replay.send_time().await else {
        return Ok(());
    };
    // Held until the body is read, when the connection goes back to the pool.
    let slot = replay.connections.slot(&replay.live).await;
    let answered = async {
        let goose = user.request(request).await?;
        let (body, no_answer) = match goose.response {
            // Reading the body to its end also lets the connection go back to the pool.
            Ok(response) => (response.bytes().await.ok(), None),
            Err(error) => (None, Some(no_answer_cause(&error))),
        };
        Ok::<_, Box<TransactionError>>((goose.request.status_code, body, no_answer))
    };
    let Some(answer) = replay.unless_interrupted(answered).await else {
        return Ok(());
    };
    let (status, body, no_answer) = answer?;
    drop(slot);
    let answer = judge(step, status, body.as_deref(), no_answer, record.is_some());
    // Timed to the answer's last byte: what a client of the target waits for.
    replay.count(&step.name, &answer, sent_at);
    if let Some((_, n)) = record {
        replay
            .sent
            .record(user_index, n, answer.route, (200..300).contains(&status));
    }
    if let Some(think) = step.think {
        replay.think(user, think).await;
    }
    Ok(())
}

/// Whether an answer is a success: no answer fails with its cause; an unexpected status
/// fails by its code; then the check, if any, judges the body. Record requests read the
/// route the receivers name in every answer (201 or error) for the ledger.
fn judge(
    step: &Step,
    status: u16,
    body: Option<&[u8]>,
    no_answer: Option<String>,
    record: bool,
) -> Answer {
    let route = body.filter(|_| record).and_then(route_named);
    let expected = no_answer.is_none() && step.expect.accepts(status);
    let check = match (&step.check, expected) {
        (Some(check), true) => check.judge(body.unwrap_or_default()),
        _ => None,
    };
    Answer {
        status,
        success: expected && check.is_none(),
        route,
        no_answer,
        check,
    }
}

/// Goose's name for a method, for its request metric (off, but required).
fn goose_method(method: &reqwest::Method) -> GooseMethod {
    match *method {
        reqwest::Method::POST => GooseMethod::Post,
        reqwest::Method::PUT => GooseMethod::Put,
        reqwest::Method::PATCH => GooseMethod::Patch,
        reqwest::Method::DELETE => GooseMethod::Delete,
        reqwest::Method::HEAD => GooseMethod::Head,
        _ => GooseMethod::Get,
    }
}

/// A user leaving before the run's end (the users plan fell) is counted out of the
/// running users; at the end every user stops, and the last second still shows them.
async fn leave(replay: Arc<Replay>, user: &mut GooseUser) -> TransactionResult {
    if goose::is_killswitch_triggered() || user.get_session_data::<UserPlan>().is_none() {
        return Ok(());
    }
    let plan = user.get_session_data_unchecked_mut::<UserPlan>();
    replay.count_out(plan);
    Ok(())
}

/// Why a request got no HTTP answer: the innermost error of the chain, which names the
/// cause ("Connection refused (os error 111)", "Too many open files (os error 24)"), where
/// reqwest's own message is "error sending request for url (...)" whatever it was.
fn no_answer_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The route a receivers' answer (201 or error) names, if it names one.
fn route_named(body: &[u8]) -> Option<contract::Route> {
    let named: contract::answers::NamedRoute = serde_json::from_slice(body).ok()?;
    named.route
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(mode: Mode, records: usize, users: usize) -> Replay {
        Replay {
            records: (0..records)
                .map(|i| Bytes::from(format!("{{\"i\":{i}}}")))
                .collect(),
            mode,
            users,
            seed: Some(7),
            run_id: "run".into(),
            live: Arc::default(),
            sent: SentLedger::default(),
            recorder: Recorder::new(std::time::Instant::now(), Duration::from_secs(1)),
            worker: None,
            schedule: None,
            throttle: None,
            connections: Connections::new(4, Duration::from_secs(60)).unwrap(),
            interrupt: CancellationToken::new(),
            scenarios: Scenarios::seed(false),
            urls: vec![vec![
                url::Url::parse("http://127.0.0.1:9/prefix/").unwrap();
                2
            ]],
        }
    }

    /// A seed request goes where its step says, with the record, its key and the
    /// content type, on the user's capped client.
    #[test]
    fn a_record_request_carries_the_record_its_key_and_the_content_type() {
        let replay = replay(Mode::Loop, 3, 1);
        let host = url::Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        let mut user =
            GooseUser::single(host, &goose::config::GooseConfiguration::default()).unwrap();
        replay.plan(&mut user);
        let post = replay
            .request(&user, (0, 0), Some((2, "run-u0-0")))
            .build()
            .unwrap();
        assert_eq!(post.method(), reqwest::Method::POST);
        assert_eq!(post.url().as_str(), "http://127.0.0.1:9/prefix/");
        assert_eq!(post.headers()["idempotency-key"], "run-u0-0");
        assert_eq!(post.headers()["content-type"], "application/json");
        assert_eq!(post.body().unwrap().as_bytes().unwrap(), b"{\"i\":2}");
        let get = replay.request(&user, (0, 1), None).build().unwrap();
        assert_eq!(get.method(), reqwest::Method::GET);
        assert!(get.body().is_none() && get.headers().is_empty());
    }

    fn drain(replay: &Replay, user: usize) -> Vec<u32> {
        let mut plan = replay.plan_for(user);
        std::iter::from_fn(|| replay.next_record(&mut plan)).collect()
    }

    #[test]
    fn per_user_sends_every_record_once_in_random_order() {
        let replay = replay(Mode::PerUser, 50, 3);
        let first = drain(&replay, 0);
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(first, sorted, "the order should be shuffled");
        assert_ne!(first, drain(&replay, 1), "users should differ");
        assert_eq!(replay.iterations(), Some(50));
    }

    #[test]
    fn shared_splits_records_exactly_once_across_users() {
        let replay = replay(Mode::Shared, 10, 4);
        let mut all: Vec<u32> = (0..4).flat_map(|user| drain(&replay, user)).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(replay.iterations(), Some(3));
    }

    #[test]
    fn loop_mode_never_runs_dry() {
        let replay = replay(Mode::Loop, 3, 1);
        let mut plan = replay.plan_for(0);
        let sent: Vec<u32> = (0..9)
            .map(|_| replay.next_record(&mut plan).unwrap())
            .collect();
        for pass in sent.chunks(3) {
            let mut pass = pass.to_vec();
            pass.sort();
            assert_eq!(pass, vec![0, 1, 2]);
        }
        assert_eq!(replay.iterations(), None);
    }

    #[test]
    fn the_same_seed_replays_the_same_order() {
        let a = replay(Mode::PerUser, 20, 2);
        let b = replay(Mode::PerUser, 20, 2);
        assert_eq!(drain(&a, 1), drain(&b, 1));
    }

    #[test]
    fn answers_name_their_route() {
        assert_eq!(
            route_named(br#"{"id":"a","route":"nats","duplicate":false}"#),
            Some(contract::Route::Nats)
        );
        assert_eq!(route_named(br#"{"error":"x"}"#), None);
        assert_eq!(route_named(b"ok"), None);
    }

    #[test]
    fn workers_split_the_users_and_shared_mode_still_sends_each_record_once() {
        let mut sent = Vec::new();
        for index in 0..3 {
            let mut replay = replay(Mode::Shared, 20, 7);
            let worker = Worker { index, count: 3 };
            replay.worker = Some(worker);
            for local in 0..worker.share(7) {
                let user = replay.global_user(local);
                assert_eq!(user % 3, index);
                sent.extend(drain(&replay, user));
                assert!(
                    replay
                        .idempotency_key(user, 0)
                        .starts_with(&format!("run-w{index}-u{user}-"))
                );
            }
        }
        sent.sort();
        assert_eq!(sent, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn keys_are_unique_per_user_and_send() {
        let replay = replay(Mode::PerUser, 1, 1);
        assert_eq!(replay.idempotency_key(3, 9), "run-u3-9");
        assert_ne!(replay.idempotency_key(1, 23), replay.idempotency_key(12, 3));
    }
}
