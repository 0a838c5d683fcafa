//! How users replay the records: which record each POST / sends, the Idempotency-Key it
//! carries, and the Goose scenario (POST / and GET /, equal weight) that drives it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use goose::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::arrival::Schedule;
use crate::connections::Connections;
use crate::ledger::sent::{self, SentLedger};
use crate::model::Worker;
use crate::record::intervals::{Recorder, Sample};
use crate::record::progress::Live;
use crate::throttle::Throttle;
use tokio_util::sync::CancellationToken;

pub use crate::model::Mode;

/// Everything the users share: one parsed copy of the records and the run's identity.
#[derive(Debug)]
pub struct Replay {
    pub records: Vec<Bytes>,
    pub mode: Mode,
    pub users: usize,
    pub seed: Option<u64>,
    pub run_id: String,
    pub live: Arc<Live>,
    /// Which POSTs were accepted, by which route: the sent side of the delivery ledger,
    /// bounded by the users. Locked only to book a send, never across an await.
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
    /// Sends so far by this user; part of the Idempotency-Key.
    sent: u64,
    /// Set once a shared-mode user has nothing left, so its last GET is skipped too.
    spent: bool,
    rng: StdRng,
    /// `/` on the target, parsed once: Goose's `get_request_builder` joins the path to the
    /// host, prints the URL and has reqwest parse it again, for every request, and that
    /// costs requests per CPU-second (docs/performance-notes.md).
    target: Option<url::Url>,
}

/// The request names as Goose's reports and the gate rules know them.
pub const POST_NAME: &str = "POST /";
pub const GET_NAME: &str = "GET /";

impl Replay {
    /// How many scenario iterations (one POST + one GET each) a user runs before it stops;
    /// `None` runs until the run time ends.
    pub fn iterations(&self) -> Option<usize> {
        let records = self.records.len();
        match self.mode {
            Mode::PerUser => Some(records),
            Mode::Shared => Some(records.div_ceil(self.users)),
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
            rng,
            target: None,
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
            self.live.users_finished.fetch_add(1, Ordering::Relaxed);
        }
        Some(index)
    }

    /// The Goose scenario: POST / then GET / (unless `post_only`), each followed by a wait.
    pub fn scenario(
        self: &Arc<Self>,
        wait: (Duration, Duration),
        post_only: bool,
    ) -> Result<Scenario, GooseError> {
        let post = Arc::clone(self);
        let post: TransactionFunction =
            Arc::new(move |user| Box::pin(post_record(Arc::clone(&post), user)));
        let get = Arc::clone(self);
        let get: TransactionFunction =
            Arc::new(move |user| Box::pin(get_root(Arc::clone(&get), user)));
        let scenario = scenario!("Replay")
            .set_wait_time(wait.0, wait.1)?
            .register_transaction(Transaction::new(post).set_name(POST_NAME));
        Ok(if post_only {
            scenario
        } else {
            scenario.register_transaction(Transaction::new(get).set_name(GET_NAME))
        })
    }

    /// Makes sure the user has a plan, counting it as started the first time.
    fn plan<'u>(&self, user: &'u mut GooseUser) -> &'u mut UserPlan {
        if user.get_session_data::<UserPlan>().is_none() {
            let mut plan = self.plan_for(self.global_user(user.weighted_users_index));
            plan.target = user.base_url.join("/").ok();
            self.live.users_started.fetch_add(1, Ordering::Relaxed);
            if let Some(schedule) = &self.schedule {
                schedule.join();
            }
            if plan.order.is_empty() && self.mode != Mode::Loop {
                self.live.users_finished.fetch_add(1, Ordering::Relaxed);
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
    fn count(
        &self,
        request: &str,
        route: Option<contract::Route>,
        goose: &goose::metrics::GooseRequestMetric,
        sent: Sent,
        error: Option<&str>,
    ) {
        let service = sent.at.elapsed();
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        if !goose.success {
            self.live.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(cause) = error {
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
            route: route.map(|r| r.name()),
            status: goose.status_code,
            success: goose.success,
            response,
            service,
            lag,
            error,
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
}

async fn post_record(replay: Arc<Replay>, user: &mut GooseUser) -> TransactionResult {
    let user_index = replay.global_user(user.weighted_users_index);
    let plan = replay.plan(user);
    // A shared-mode user whose share is spent idles out its last iteration.
    let Some(index) = replay.next_record(plan) else {
        plan.spent = true;
        return Ok(());
    };
    let n = plan.sent;
    let key = replay.idempotency_key(user_index, n);
    plan.sent += 1;
    let body = replay.records[index as usize].clone();
    let request_builder = request_builder(user, GooseMethod::Post)?
        .header("content-type", "application/json")
        .header("idempotency-key", key.as_str())
        .body(body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/")
        .set_request_builder(request_builder)
        .build();
    let Some(sent_at) = replay.send_time().await else {
        return Ok(());
    };
    // Held until the body is read, when the connection goes back to the pool.
    let _slot = replay.connections.slot(&replay.live).await;
    let answered = async {
        let goose = user.request(request).await?;
        let cause = goose.response.as_ref().err().map(no_answer_cause);
        // The receivers name the route in every answer; reading the body also lets the
        // connection go back to the pool.
        let route = match goose.response {
            Ok(response) => response
                .bytes()
                .await
                .ok()
                .and_then(|body| route_named(&body)),
            Err(_) => None,
        };
        Ok::<_, Box<TransactionError>>((goose.request, cause, route))
    };
    let Some(answer) = replay.unless_interrupted(answered).await else {
        return Ok(());
    };
    let (metric, cause, route) = answer?;
    let accepted = (200..300).contains(&metric.status_code);
    // Timed to the answer's last byte: what a client of the target waits for.
    replay.count(POST_NAME, route, &metric, sent_at, cause.as_deref());
    replay.sent.record(user_index, n, route, accepted);
    Ok(())
}

/// A request to `/` on the target from the user's own client (the capped pool), with the
/// URL its plan parsed once; Goose's own builder if the plan has none.
fn request_builder(
    user: &GooseUser,
    method: GooseMethod,
) -> Result<reqwest::RequestBuilder, Box<TransactionError>> {
    let Some(url) = user
        .get_session_data::<UserPlan>()
        .and_then(|plan| plan.target.clone())
    else {
        return user.get_request_builder(&method, "/");
    };
    Ok(match method {
        GooseMethod::Post => user.client.post(url),
        GooseMethod::Get => user.client.get(url),
        other => return user.get_request_builder(&other, "/"),
    })
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

async fn get_root(replay: Arc<Replay>, user: &mut GooseUser) -> TransactionResult {
    let plan = replay.plan(user);
    // In shared mode a user with nothing left to send stops reading too.
    if plan.spent {
        return Ok(());
    }
    let Some(sent_at) = replay.send_time().await else {
        return Ok(());
    };
    let _slot = replay.connections.slot(&replay.live).await;
    let request = GooseRequest::builder()
        .method(GooseMethod::Get)
        .path("/")
        .set_request_builder(request_builder(user, GooseMethod::Get)?)
        .build();
    let answered = async {
        let response = user.request(request).await?;
        let cause = match response.response {
            Ok(body) => {
                let _ = body.bytes().await;
                None
            }
            Err(error) => Some(no_answer_cause(&error)),
        };
        Ok::<_, Box<TransactionError>>((response.request, cause))
    };
    let Some(answer) = replay.unless_interrupted(answered).await else {
        return Ok(());
    };
    let (metric, cause) = answer?;
    replay.count(GET_NAME, None, &metric, sent_at, cause.as_deref());
    Ok(())
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
        }
    }

    /// The URL a user's plan parses once is the one Goose's builder would make for `/`
    /// (a path on the host is replaced, as `Url::join` does), with each method.
    #[test]
    fn a_users_requests_go_to_the_same_url_as_gooses_builder_makes() {
        let replay = replay(Mode::Loop, 3, 1);
        let host = url::Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        let mut user =
            GooseUser::single(host, &goose::config::GooseConfiguration::default()).unwrap();
        replay.plan(&mut user);
        assert!(
            user.get_session_data::<UserPlan>()
                .unwrap()
                .target
                .is_some()
        );
        for method in [GooseMethod::Post, GooseMethod::Get] {
            let ours = request_builder(&user, method).unwrap().build().unwrap();
            let gooses = user
                .get_request_builder(&method, "/")
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(ours.url().as_str(), "http://127.0.0.1:9/");
            assert_eq!(ours.url(), gooses.url());
            assert_eq!(ours.method(), gooses.method());
        }
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
