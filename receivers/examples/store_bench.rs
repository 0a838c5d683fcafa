//! Benchmark: stored records per second, SQLite against PostgreSQL, side by side in one run
//! (`scripts/bench-store` runs it in release). Each round inserts RECORDS records from
//! CONCURRENCY tasks, as the consumers do, into a fresh SQLite file and a fresh database on
//! the project's PostgreSQL cluster; medians of ROUNDS rounds and the ratio are printed.
//!
//!   cargo run --release -p receivers --example store_bench -- [RECORDS] [CONCURRENCY] [ROUNDS]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use receivers::Route;
use receivers::record::Record;
use receivers::store::{self, Store, StoreLocation};

async fn fill(store: Arc<dyn Store>, records: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for n in (task..records).step_by(concurrency) {
                let record = Record {
                    id: format!("bench-u{task}-{n}"),
                    payload: Bytes::from(format!("{{\"name\":\"Graeme\",\"msg\":\"record {n}\"}}")),
                    accepted_at_us: 1,
                };
                store
                    .insert(Route::ALL[n % 3], record)
                    .await
                    .expect("the insert commits");
            }
        }));
    }
    for task in tasks {
        task.await.expect("an inserting task");
    }
    records as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let (records, concurrency, rounds) = (arg(1, 50_000), arg(2, 256), arg(3, 3));
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for round in 1..=rounds {
        let dir = tempfile::tempdir().expect("a temp dir");
        let location = StoreLocation::Sqlite(dir.path().join("bench.db"));
        let store = store::open(&location).await.expect("SQLite opens");
        let rate = fill(Arc::clone(&store), records, concurrency).await;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .unwrap();
        println!("round {round}: SQLite     {rate:>9.0} records/s");
        sqlite.push(rate);

        let db = testkit::TestDatabase::create();
        let store = store::open(&StoreLocation::Postgres(db.url.clone()))
            .await
            .expect("PostgreSQL opens (scripts/postgres up)");
        let rate = fill(Arc::clone(&store), records, concurrency).await;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .unwrap();
        println!("round {round}: PostgreSQL {rate:>9.0} records/s");
        postgres.push(rate);
    }
    let (s, p) = (median(sqlite), median(postgres));
    println!(
        "\n{records} records from {concurrency} tasks, medians of {rounds}: SQLite {s:.0}/s, PostgreSQL {p:.0}/s, PostgreSQL / SQLite = {:.2}",
        p / s
    );
}
