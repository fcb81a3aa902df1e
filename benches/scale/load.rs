//! Load mode of the scale benchmark (`-- --load`): `rowgate serve`, built from this crate and run
//! as a child process, under 1, 16 and 64 concurrent HTTP clients (pool of 16 unless
//! `--gateway-pool` says otherwise), against the same rewritten SQL sent straight to PostgreSQL
//! with tokio-postgres as the serving role, inside the same fence (READ ONLY, signed caller,
//! caller check) over a pool of 16 connections.
//! Prints p50/p99 latency, throughput, errors, and the gateway's peak RSS (VmHWM).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::Http;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rowgate::caller::IdentityKey;
use rowgate::parse::Limits;
use rowgate::policy::Policy;

/// Fast questions: the load mode measures what the gateway adds, not the database's work.
const LOAD_QUESTIONS: &[(&str, &str)] = &[
    (
        "Q01 invoice by key",
        "SELECT id, amount, department FROM invoices WHERE id = 13000",
    ),
    (
        "Q17 my latest orders",
        "SELECT id, total, status FROM orders ORDER BY placed_at DESC LIMIT 20",
    ),
    (
        "Q11 payments of one invoice",
        "SELECT sum(amount) FROM transactions WHERE invoice_id = 13000",
    ),
];

const CLIENTS: [usize; 3] = [1, 16, 64];
const RUN: Duration = Duration::from_secs(5);

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

fn report(label: &str, clients: usize, outcome: &Outcome) {
    let mut l = outcome.latencies.clone();
    l.sort();
    let p = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "| {label} | {clients} | {:.3} | {:.3} | {:.0} | {} |",
        p(0.5),
        p(0.99),
        l.len() as f64 / RUN.as_secs_f64(),
        outcome.errors
    );
}

async fn gateway(addr: SocketAddr, body: &str, clients: usize) -> Outcome {
    let deadline = Instant::now() + RUN;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let body = body.to_string();
            tokio::spawn(async move {
                let mut out = Outcome {
                    latencies: Vec::new(),
                    errors: 0,
                };
                let Ok(mut http) = Http::connect(addr).await else {
                    out.errors += 1;
                    return out;
                };
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if http.post(&body).await == 200 {
                        out.latencies.push(t.elapsed());
                    } else {
                        out.errors += 1;
                        if let Ok(h) = Http::connect(addr).await {
                            http = h;
                        }
                    }
                }
                out
            })
        })
        .collect();
    merge(tasks).await
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut all = Outcome {
        latencies: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let o = t.await.unwrap();
        all.latencies.extend(o.latencies);
        all.errors += o.errors;
    }
    all
}

const ENTER: &str =
    "SELECT pg_catalog.set_config('rowgate.caller', $1, true), rowgate.caller_exists()";

/// The direct arm: a pool of 16 connections as the serving role (as the gateway has), shared
/// by the clients, so 64 clients also wait for a connection here.
async fn direct(pool: &Pool, signed: &str, sql: &str, clients: usize) -> Outcome {
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (pool, sql, signed) = (pool.clone(), sql.to_string(), signed.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome {
                latencies: Vec::new(),
                errors: 0,
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                let Ok(client) = pool.get().await else {
                    out.errors += 1;
                    continue;
                };
                let (Ok(enter), Ok(statement)) = (
                    client.prepare_cached(ENTER).await,
                    client.prepare_cached(&sql).await,
                ) else {
                    out.errors += 1;
                    continue;
                };
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&signed];
                // Pipelined like the gateway's executor: one round trip.
                let (a, b, c, d) = tokio::join!(
                    client.batch_execute("BEGIN TRANSACTION READ ONLY"),
                    client.query(&enter, &params),
                    client.query(&statement, &[]),
                    client.batch_execute("ROLLBACK"),
                );
                if a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() {
                    out.latencies.push(t.elapsed());
                } else {
                    out.errors += 1;
                }
            }
            out
        }));
    }
    merge(tasks).await
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn vm_hwm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(
    agent: &tokio_postgres::Config,
    key: &IdentityKey,
    policy: &Policy,
    user: &str,
    gateway_pool: usize,
) {
    let key_file = std::env::temp_dir().join(format!("rg_bench_scale_{}.key", std::process::id()));
    std::fs::write(&key_file, key.to_hex()).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!(
        "postgres://{}:{}@127.0.0.1:5432/{}",
        super::AGENT,
        super::AGENT_PASSWORD,
        super::DATABASE
    );
    let child = Command::new(env!("CARGO_BIN_EXE_rowgate"))
        .args(["serve", "--database-url", &url, "--bind", &addr.to_string()])
        .arg("--key-file")
        .arg(&key_file)
        .args(["--pool-size", &gateway_pool.to_string()])
        .args(["--audit", "off", "--policies", "policies"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _gateway = Gateway(child);
    let first = serde_json::json!({"user_id": user, "sql": LOAD_QUESTIONS[0].1}).to_string();
    let started = Instant::now();
    loop {
        if let Ok(mut h) = Http::connect(addr).await {
            if h.post(&first).await == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rowgate serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("\nLoad: `rowgate serve` (pid {pid}, pool {gateway_pool}) vs direct tokio-postgres, {} s per cell, caller {user}, load average {}\n", RUN.as_secs(), super::uptime());
    println!("| question | clients | p50 ms | p99 ms | req/s | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let signed = key.sign(user);
    let manager = Manager::from_config(
        agent.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(16).build().unwrap();
    for (label, sql) in LOAD_QUESTIONS {
        let body = serde_json::json!({"user_id": user, "sql": sql}).to_string();
        let rewritten = rowgate::pipeline::rewrite(sql, policy, &Limits::default())
            .unwrap()
            .sql;
        for clients in CLIENTS {
            let g = gateway(addr, &body, clients).await;
            report(&format!("{label}: gateway"), clients, &g);
            let d = direct(&pool, &signed, &rewritten, clients).await;
            report(&format!("{label}: direct"), clients, &d);
        }
    }
    println!(
        "\ngateway peak RSS (VmHWM): {}; load average {}",
        vm_hwm(pid),
        super::uptime()
    );
    let _ = std::fs::remove_file(&key_file);
}
