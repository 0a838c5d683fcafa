//! Benchmark: stored records per second, SQLite against PostgreSQL, side by side in one run
//! (`scripts/bench-store` runs it in release). Each round inserts RECORDS records from
//! CONCURRENCY tasks, as the consumers do, into a fresh SQLite file and a fresh database on
//! the project's PostgreSQL cluster; medians of ROUNDS rounds and the ratio are printed.
//!
//!   STORE_BENCH_POSTGRES=$(scripts/postgres url) \
//!   cargo run --release -p receivers --example store_bench -- [RECORDS] [CONCURRENCY] [ROUNDS]
//!
//! Each round's PostgreSQL database is made on that cluster and dropped after the round.

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

/// One statement on the cluster's own database (CREATE or DROP DATABASE).
async fn admin(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers at STORE_BENCH_POSTGRES (scripts/postgres up)");
    tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A fresh database on the cluster at `admin_url`: its name and URL.
async fn fresh_database(admin_url: &str, round: usize) -> (String, String) {
    let name = format!("store_bench_{}_{round}", std::process::id());
    admin(admin_url, &format!("CREATE DATABASE {name}")).await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("a URL that names a database");
    (name.clone(), format!("{base}/{name}"))
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
    let admin_url = std::env::var("STORE_BENCH_POSTGRES").expect(
        "STORE_BENCH_POSTGRES: the PostgreSQL cluster's URL, as `scripts/postgres url` prints it (scripts/bench-store sets it)",
    );
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

        let (name, url) = fresh_database(&admin_url, round).await;
        let store = store::open(&StoreLocation::Postgres(url))
            .await
            .expect("PostgreSQL opens (scripts/postgres up)");
        let rate = fill(Arc::clone(&store), records, concurrency).await;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .unwrap();
        println!("round {round}: PostgreSQL {rate:>9.0} records/s");
        postgres.push(rate);
        admin(&admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
    }
    let (s, p) = (median(sqlite), median(postgres));
    println!(
        "\n{records} records from {concurrency} tasks, medians of {rounds}: SQLite {s:.0}/s, PostgreSQL {p:.0}/s, PostgreSQL / SQLite = {:.2}",
        p / s
    );
}
