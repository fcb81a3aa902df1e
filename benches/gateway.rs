//! Load benchmark: the gateway over HTTP against the same query run directly on PostgreSQL with
//! the filter written by hand (as a superuser, no fence: the lower bound).
//!
//! Run: `cargo bench --bench gateway` (needs PostgreSQL on 127.0.0.1:5432, user postgres, trust;
//! override with ROWGATE_BENCH_DATABASE_URL). It builds the demo database `rg_bench_gateway`,
//! serves it in-process as a fresh serving role, and prints median/p99 latency at 1 client and
//! throughput at 16 clients for each arm: the same SQL text every time (as a tool with a fixed
//! query sends it: the gateway's rewrite cache and prepared statements, and the direct arm's
//! prepared statement, all apply), a new text for each request (an agent writing every query
//! afresh: neither side can reuse anything), and a request refused before the database (what
//! the gateway process costs alone). Results: BENCHMARKS.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rowgate::auth::ApiKeys;
use rowgate::caller::IdentityKey;
use rowgate::execute::ExecuteConfig;
use rowgate::install::InstallOptions;
use rowgate::parse::Limits;
use rowgate::policy::Policy;
use rowgate::server::ServeConfig;

#[path = "common/http.rs"]
mod http;
use http::Http;

const QUERIES: &[(&str, &str, &str)] = &[
    (
        "point lookup",
        "SELECT id, amount, department FROM invoices WHERE id = 42",
        "SELECT id, amount, department FROM invoices WHERE id = 42 AND department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = 'anne'))",
    ),
    (
        "aggregate",
        "SELECT department, count(*), sum(amount) FROM invoices GROUP BY 1 ORDER BY 1",
        "SELECT department, count(*), sum(amount) FROM invoices WHERE department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = 'anne')) GROUP BY 1 ORDER BY 1",
    ),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Median and p99 of the timed samples, after a warm-up of a tenth as many.
fn summarize(mut times: Vec<Duration>) -> (Duration, Duration) {
    let warm = times.len() / 11;
    times.drain(..warm);
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

const SAMPLES: usize = 2200;

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("ROWGATE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin: tokio_postgres::Config = admin_url.parse().unwrap();
    let database = "rg_bench_gateway";
    let client = rowgate::demo::create_database(&admin, database, &PathBuf::from("migrations"))
        .await
        .unwrap();
    let policy = Policy::load_dir(&PathBuf::from("policies")).unwrap();
    let key = IdentityKey::generate().unwrap();
    let options = InstallOptions {
        agent_role: "rg_bench_agent".into(),
        agent_password: Some("bench".into()),
    };
    rowgate::install::install(&client, &policy, &key, &options)
        .await
        .unwrap();

    let mut agent = admin.clone();
    agent
        .dbname(database)
        .user("rg_bench_agent")
        .password("bench");
    let config = ServeConfig {
        database: agent,
        bind: "127.0.0.1:0".parse().unwrap(),
        api_keys: ApiKeys::default(),
        policies: "policies".into(),
        key,
        max_rows: 1000,
        execute: ExecuteConfig {
            pool_size: 16,
            ..ExecuteConfig::default()
        },
        limits: Limits::default(),
        insecure: false,
        jwt: Default::default(),
        audit: Default::default(),
    };
    let state = rowgate::server::prepare(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, rowgate::http::router(state)).await });

    let mut direct_config = admin.clone();
    direct_config.dbname(database);
    println!("| query | arm | 1 client p50 | 1 client p99 | 16 clients req/s |");
    println!("|---|---|---|---|---|");
    for (name, agent_sql, direct_sql) in QUERIES {
        let body = serde_json::json!({"user_id": "anne", "sql": agent_sql}).to_string();
        let mut http = Http::connect(addr).await.unwrap();
        assert_eq!(http.post(&body).await, 200);
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let t = Instant::now();
            assert_eq!(http.post(&body).await, 200);
            times.push(t.elapsed());
        }
        let (g50, g99) = summarize(times);
        let (direct, connection) = direct_config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let statement = direct.prepare(direct_sql).await.unwrap();
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let t = Instant::now();
            direct.query(&statement, &[]).await.unwrap();
            times.push(t.elapsed());
        }
        let (d50, d99) = summarize(times);
        let gateway_rps = gateway_throughput(addr, agent_sql, Texts::Same, 200, 16).await;
        let direct_rps = direct_throughput(&direct_config, direct_sql, Texts::Same, 16).await;
        let gateway_new = gateway_throughput(addr, agent_sql, Texts::New, 200, 16).await;
        let direct_new = direct_throughput(&direct_config, direct_sql, Texts::New, 16).await;
        // The same request refused before the database (an unknown table): HTTP, JSON and the
        // parse, so what the gateway process costs without PostgreSQL.
        let unknown = agent_sql.replace("FROM invoices", "FROM invoicez");
        let refused_rps = gateway_throughput(addr, &unknown, Texts::Same, 403, 16).await;
        println!(
            "| {name} | gateway | {:.3} ms | {:.3} ms | {gateway_rps:.0} |",
            ms(g50),
            ms(g99)
        );
        println!(
            "| {name} | direct | {:.3} ms | {:.3} ms | {direct_rps:.0} |",
            ms(d50),
            ms(d99)
        );
        println!(
            "| {name} | gateway − direct | {:.3} ms added | | {:.0}% of direct |",
            ms(g50) - ms(d50),
            100.0 * gateway_rps / direct_rps
        );
        println!("| {name} | gateway, a new SQL text each request | | | {gateway_new:.0} |");
        println!("| {name} | direct, a new SQL text each request | | | {direct_new:.0} |");
        println!(
            "| {name} | gateway / direct, new texts | | | {:.0}% of direct |",
            100.0 * gateway_new / direct_new
        );
        println!("| {name} | gateway, refused before the database | | | {refused_rps:.0} |");
    }
    let (admin_client, connection) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    drop(client);
    admin_client
        .batch_execute("DROP DATABASE rg_bench_gateway WITH (FORCE)")
        .await
        .unwrap();
    admin_client
        .batch_execute("DROP ROLE rg_bench_agent; DROP ROLE IF EXISTS rg_bench_agent_owner")
        .await
        .unwrap();
}

/// Request bodies: the same every time, or a new SQL text for each request.
#[derive(Clone, Copy)]
enum Texts {
    Same,
    New,
}

/// A condition true of every invoice, different for each `n`: a new SQL text that runs the
/// same plan, so neither the gateway's caches nor PostgreSQL's prepared statements help.
fn variant(sql: &str, n: u64) -> String {
    if sql.contains(" WHERE ") {
        sql.replacen(" WHERE ", &format!(" WHERE id > -{n} AND "), 1)
    } else {
        sql.replacen(" GROUP BY", &format!(" WHERE id > -{n} GROUP BY"), 1)
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Requests a second over 5 s from `clients` keep-alive connections, each answered `status`.
async fn gateway_throughput(
    addr: SocketAddr,
    sql: &str,
    texts: Texts,
    status: u16,
    clients: usize,
) -> f64 {
    let run = Duration::from_secs(5);
    let deadline = Instant::now() + run;
    let same = serde_json::json!({"user_id": "anne", "sql": sql}).to_string();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (sql, same) = (sql.to_string(), same.clone());
            tokio::spawn(async move {
                let mut http = Http::connect(addr).await.unwrap();
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let body = match texts {
                        Texts::Same => same.clone(),
                        Texts::New => {
                            let sql = variant(&sql, NEXT.fetch_add(1, Ordering::Relaxed));
                            serde_json::json!({"user_id": "anne", "sql": sql}).to_string()
                        }
                    };
                    assert_eq!(http.post(&body).await, status);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / run.as_secs_f64()
}

/// The same over tokio-postgres: one prepared statement per connection for the same text, a
/// new text each time otherwise (prepared and run: two round trips, as the gateway's).
async fn direct_throughput(
    config: &tokio_postgres::Config,
    sql: &str,
    texts: Texts,
    clients: usize,
) -> f64 {
    let run = Duration::from_secs(5);
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let sql = sql.to_string();
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(&sql).await.unwrap();
            let mut done = 0u64;
            while Instant::now() < deadline {
                match texts {
                    Texts::Same => client.query(&statement, &[]).await.unwrap(),
                    Texts::New => {
                        let sql = variant(&sql, NEXT.fetch_add(1, Ordering::Relaxed));
                        client.query(sql.as_str(), &[]).await.unwrap()
                    }
                };
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / run.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
