//! Scale benchmark: plan parity of rowgate against PostgreSQL row-level security and against
//! hand-written SQL, on the demo schema at a scale factor (issue 4). Results: BENCHMARKS.md.
//!
//! Run: `cargo bench --bench scale -- --scale 1` (`--scale 10` for about 10^6 invoices;
//! `--load` adds the HTTP load mode, `--gateway-pool N` sets the gateway's pool there (16);
//! `--user bob` for the small caller; `--only Q12,Q13`; `--keep` leaves the database for
//! inspection and `--reuse` skips generating it again;
//! `--hand-arrays` writes the hand arm's filters as install writes the rules, `= ANY (ARRAY(
//! SELECT ...))` instead of `IN (SELECT ...)`, to tell the rule's form from the fence's cost).
//! Needs PostgreSQL on 127.0.0.1:5432, user postgres, trust (or ROWGATE_BENCH_DATABASE_URL).
//!
//! It builds database `rg_bench_scale` (migrations/001 schema, `benches/scale/generate.sql`
//! data, VACUUM ANALYZE), installs rowgate's views and serving role, adds RLS policies with the
//! same rules (`benches/scale/rls.sql`), then for each question of `benches/scale/questions.rs`
//! times three arms with `EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)`, median of
//! "Planning Time" + "Execution Time" over several runs (server-side time only), and of
//! "Execution Time" alone (a cached plan's cost, as the gateway's prepared statements run):
//! * rowgate: `pipeline::rewrite` of the agent's SQL, run through `execute::Executor` as the
//!   serving role, inside the gateway's fence (READ ONLY, signed caller, caller check);
//! * RLS: the agent's SQL unchanged, as a non-owner role with RLS, `app.user_id` set;
//! * hand: the filter inlined by hand, as the superuser (the lower bound).

#[path = "common/http.rs"]
mod http;
#[path = "scale/layer5.rs"]
mod layer5;
#[path = "scale/load.rs"]
mod load;
#[path = "scale/questions.rs"]
mod questions;

use std::path::PathBuf;
use std::time::Duration;

use rowgate::caller::IdentityKey;
use rowgate::execute::{ExecuteConfig, Executor};
use rowgate::install::InstallOptions;
use rowgate::parse::Limits;
use rowgate::policy::Policy;
use serde_json::Value;

pub const DATABASE: &str = "rg_bench_scale";
pub const AGENT: &str = "rg_bench_scale_agent";
pub const AGENT_PASSWORD: &str = "bench";
const RLS_ROLE: &str = "rg_bench_scale_rls";

struct Args {
    scale: u32,
    load: bool,
    user: String,
    only: Option<Vec<String>>,
    keep: bool,
    reuse: bool,
    membership: questions::Membership,
    gateway_pool: usize,
}

fn args() -> Args {
    let mut args = Args {
        scale: 1,
        load: false,
        user: "anne".into(),
        only: None,
        keep: false,
        reuse: false,
        membership: questions::Membership::In,
        gateway_pool: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scale" => args.scale = it.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--load" => args.load = true,
            "--keep" => args.keep = true,
            "--reuse" => args.reuse = true,
            "--hand-arrays" => args.membership = questions::Membership::Array,
            "--gateway-pool" => {
                args.gateway_pool = it.next().and_then(|s| s.parse().ok()).unwrap_or(16)
            }
            "--user" => args.user = it.next().unwrap_or_else(|| "anne".into()),
            "--only" => {
                args.only = it
                    .next()
                    .map(|s| s.split(',').map(str::to_string).collect())
            }
            // cargo bench passes --bench; ignore anything else.
            _ => {}
        }
    }
    args
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Creates (or, with `--reuse`, keeps) the benchmark database; returns a superuser client on it.
async fn build(admin: &tokio_postgres::Config, scale: u32, reuse: bool) -> tokio_postgres::Client {
    let server = connect(admin).await;
    let exists = !server
        .query(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND shobj_description(oid, 'pg_database') = $2",
            &[&DATABASE, &format!("scale {scale}")],
        )
        .await
        .unwrap()
        .is_empty();
    let mut config = admin.clone();
    config.dbname(DATABASE);
    if reuse && exists {
        println!("reusing database {DATABASE} at scale {scale}");
        return connect(&config).await;
    }
    // One statement per call: DROP/CREATE DATABASE cannot run in a (implicit) transaction.
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        server.batch_execute(&sql).await.unwrap();
    }
    let client = connect(&config).await;
    let started = std::time::Instant::now();
    let schema = std::fs::read_to_string("migrations/001_demo_schema.sql").unwrap();
    client.batch_execute(&schema).await.unwrap();
    let data = std::fs::read_to_string("benches/scale/generate.sql")
        .unwrap()
        .replace("{{SCALE}}", &scale.to_string());
    client.batch_execute(&data).await.unwrap();
    let generated = started.elapsed();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {DATABASE} IS 'scale {scale}'"
        ))
        .await
        .unwrap();
    let size: String = client
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "generated scale {scale} in {:.1} s (+ VACUUM ANALYZE: {:.1} s total), database size {size}",
        generated.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    client
}

/// Drops what the run created: the database first (it holds the roles' privileges).
pub async fn drop_all(admin: &tokio_postgres::Config) {
    let client = connect(admin).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {AGENT}"),
        format!("DROP ROLE IF EXISTS {AGENT}_owner"),
        format!("DROP ROLE IF EXISTS {RLS_ROLE}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
}

/// One timed arm of one question.
#[derive(Default, Clone)]
struct Timing {
    median_ms: f64,
    /// Execution alone: what a request costs once its plan is cached, as the gateway's
    /// prepared statements are (a query without parameters gets its generic plan at once).
    median_exec_ms: f64,
    rows: u64,
    shape: String,
    materialized_cte: bool,
    error: Option<String>,
}

/// The plan's shape: which scans read which relation, and any CTE Scan or Materialize.
fn shape(plan: &Value, out: &mut Vec<String>, cte: &mut bool) {
    let node = plan["Node Type"].as_str().unwrap_or("");
    let relation = plan["Relation Name"].as_str().unwrap_or("");
    let item = match node {
        "Seq Scan" => Some(format!("Seq {relation}")),
        "Index Scan" | "Index Only Scan" => Some(format!(
            "{} {}",
            if node == "Index Scan" {
                "Idx"
            } else {
                "IdxOnly"
            },
            plan["Index Name"].as_str().unwrap_or("")
        )),
        "Bitmap Index Scan" => Some(format!(
            "Bitmap {}",
            plan["Index Name"].as_str().unwrap_or("")
        )),
        "CTE Scan" => {
            *cte = true;
            Some(format!(
                "**CTE Scan {}**",
                plan["CTE Name"].as_str().unwrap_or("")
            ))
        }
        "Materialize" => Some("Materialize".into()),
        "Function Scan" => None,
        _ => None,
    };
    if let Some(item) = item {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            shape(child, out, cte);
        }
    }
}

/// Planning + execution time, execution time alone, and the plan of one EXPLAIN ANALYZE answer.
fn read_explain(json: &Value) -> (f64, f64, u64, String, bool) {
    let top = &json[0];
    let execution = top["Execution Time"].as_f64().unwrap_or(0.0);
    let ms = top["Planning Time"].as_f64().unwrap_or(0.0) + execution;
    let rows = top["Plan"]["Actual Rows"].as_u64().unwrap_or(0);
    let mut items = Vec::new();
    let mut cte = false;
    shape(&top["Plan"], &mut items, &mut cte);
    (ms, execution, rows, items.join(", "), cte)
}

/// Queries faster than this get [`FAST_RUNS`] runs.
const FAST_MS: f64 = 5.0;
const FAST_RUNS: usize = 41;

/// Runs `explain` until `runs` answers (fewer for slow queries, more for fast ones) and takes
/// the median.
/// The rowgate arm: `sql` (a rewrite) explained through the gateway's executor, as the serving
/// role inside the gateway's fence.
async fn timed_rowgate(
    executor: &Executor,
    user: &str,
    version: &str,
    sql: &str,
    runs: usize,
) -> Timing {
    let sql = format!("{EXPLAIN}{sql}");
    timed(
        || async {
            let out = executor
                .run(user, version, &sql, 10)
                .await
                .map_err(|e| e.to_string())?;
            let row = out.rows.first().ok_or("no EXPLAIN output")?;
            Ok(row.get::<_, Value>(0))
        },
        runs,
    )
    .await
}

async fn timed<F, Fut>(mut explain: F, runs: usize) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let mut times = Vec::new();
    let mut exec_times = Vec::new();
    let mut last = None;
    // One warm-up run, not counted.
    if let Err(e) = explain().await {
        return Timing {
            error: Some(e),
            ..Timing::default()
        };
    }
    let mut budget = runs;
    while times.len() < budget {
        match explain().await {
            Ok(json) => {
                let (ms, exec_ms, rows, shape, cte) = read_explain(&json);
                if ms > 1000.0 {
                    budget = budget.min(3);
                } else if ms < FAST_MS {
                    // A sub-millisecond median of five moved by a third between runs: more
                    // samples cost nothing here.
                    budget = budget.max(FAST_RUNS);
                }
                times.push(ms);
                exec_times.push(exec_ms);
                last = Some((rows, shape, cte));
            }
            Err(e) => {
                return Timing {
                    error: Some(e),
                    ..Timing::default()
                }
            }
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    exec_times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (rows, shape, materialized_cte) = last.unwrap_or_default();
    Timing {
        median_ms: times[times.len() / 2],
        median_exec_ms: exec_times[exec_times.len() / 2],
        rows,
        shape,
        materialized_cte,
        error: None,
    }
}

const EXPLAIN: &str = "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ";

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let args = args();
    let admin_url = std::env::var("ROWGATE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin: tokio_postgres::Config = admin_url.parse().unwrap();
    println!("load average before: {}", uptime());
    let client = build(&admin, args.scale, args.reuse).await;

    let policy = Policy::load_dir(&PathBuf::from("policies")).unwrap();
    let key = IdentityKey::generate().unwrap();
    let options = InstallOptions {
        agent_role: AGENT.into(),
        agent_password: Some(AGENT_PASSWORD.into()),
    };
    rowgate::install::install(&client, &policy, &key, &options)
        .await
        .unwrap();
    client
        .batch_execute(&std::fs::read_to_string("benches/scale/rls.sql").unwrap())
        .await
        .unwrap();

    let mut agent = admin.clone();
    agent.dbname(DATABASE).user(AGENT).password(AGENT_PASSWORD);
    let executor = Executor::new(
        agent.clone(),
        key.clone(),
        ExecuteConfig {
            statement_timeout: Duration::from_secs(120),
            pool_size: 2,
            ..ExecuteConfig::default()
        },
    )
    .unwrap();
    let mut db = admin.clone();
    db.dbname(DATABASE);
    let rls = connect(&db).await;
    rls.batch_execute(&format!(
        "SET ROLE {RLS_ROLE}; SET app.user_id = '{}'",
        args.user.replace('\'', "''")
    ))
    .await
    .unwrap();
    let hand = connect(&db).await;

    let limits = Limits::default();
    let runs = if args.scale >= 10 { 5 } else { 9 };
    let all = questions::questions(&args.user, args.membership);
    let chosen: Vec<_> = all
        .iter()
        .filter(|q| {
            args.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|x| x == q.id))
        })
        .collect();
    println!(
        "\nscale {}, caller {}, median of {runs} runs (3 when a run exceeds 1 s, {FAST_RUNS} under {FAST_MS} ms), EXPLAIN (ANALYZE, TIMING OFF) planning + execution, hand filters as {}, load average {}\n",
        args.scale,
        args.user,
        match args.membership {
            questions::Membership::In => "IN (SELECT ...)",
            questions::Membership::Array => "= ANY (ARRAY(SELECT ...)), as install writes rules",
        },
        uptime()
    );
    println!(
        "| # | question | rowgate ms | RLS ms | hand ms | rowgate/hand | rowgate/RLS | execution only: rowgate / RLS / hand ms | rowgate/hand | rowgate/RLS | rows |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut plans = Vec::new();
    let mut ab = Vec::new();
    for q in &chosen {
        let rewritten = match rowgate::pipeline::rewrite(&q.agent, &policy, &limits) {
            Ok(r) => {
                if let Some(bare) = layer5::unwrapped(&r.query) {
                    ab.push((q.id, r.sql.clone(), bare));
                }
                r.sql
            }
            Err(e) => {
                println!("| {} | {} | refused: {e} | | | | | | | | |", q.id, q.what);
                continue;
            }
        };
        let rg = timed_rowgate(&executor, &args.user, &policy.version, &rewritten, runs).await;
        let rls_sql = format!("{EXPLAIN}{}", q.agent);
        let rl = timed(
            || async {
                let row = rls
                    .query_one(&rls_sql, &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.get::<_, Value>(0))
            },
            runs,
        )
        .await;
        let hand_sql = format!("{EXPLAIN}{}", q.hand);
        let hd = timed(
            || async {
                let row = hand
                    .query_one(&hand_sql, &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.get::<_, Value>(0))
            },
            runs,
        )
        .await;
        let cell = |t: &Timing| match &t.error {
            Some(e) => format!("error: {e}"),
            None => format!("{:.2}", t.median_ms),
        };
        let ratio_of = |a: &Timing, b: &Timing, ms: fn(&Timing) -> f64| {
            if a.error.is_some() || b.error.is_some() || ms(b) == 0.0 {
                "-".to_string()
            } else {
                let r = ms(a) / ms(b);
                if r > 1.3 {
                    format!("**{r:.2}**")
                } else {
                    format!("{r:.2}")
                }
            }
        };
        let rows = if rg.rows == rl.rows && rl.rows == hd.rows {
            rg.rows.to_string()
        } else {
            format!("**differ: {} / {} / {}**", rg.rows, rl.rows, hd.rows)
        };
        let ratio = |a: &Timing, b: &Timing| ratio_of(a, b, |t| t.median_ms);
        let exec_ratio = |a: &Timing, b: &Timing| ratio_of(a, b, |t| t.median_exec_ms);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} | {} |",
            q.id,
            q.what,
            cell(&rg),
            cell(&rl),
            cell(&hd),
            ratio(&rg, &hd),
            ratio(&rg, &rl),
            rg.median_exec_ms,
            rl.median_exec_ms,
            hd.median_exec_ms,
            exec_ratio(&rg, &hd),
            exec_ratio(&rg, &rl),
            rows
        );
        plans.push((q.id, rg, rl, hd));
    }
    println!("\nPlan shapes (scans and their indexes; a CTE Scan means a materialized CTE):\n");
    println!("| # | rowgate | RLS | hand |");
    println!("|---|---|---|---|");
    for (id, rg, rl, hd) in &plans {
        println!("| {id} | {} | {} | {} |", rg.shape, rl.shape, hd.shape);
    }
    let materialized: Vec<_> = plans
        .iter()
        .filter(|p| p.1.materialized_cte)
        .map(|p| p.0)
        .collect();
    println!(
        "\nrowgate plans with a materialized CTE: {}",
        if materialized.is_empty() {
            "none".to_string()
        } else {
            materialized.join(", ")
        }
    );
    if !ab.is_empty() {
        println!("\nLayer 5 A/B: the fenced rewrite against the same with its wrapped conjuncts bare (alternating, same run):\n");
        println!("| # | fenced ms | bare ms | fenced/bare | fenced plan | bare plan |");
        println!("|---|---:|---:|---:|---|---|");
    }
    for (id, fenced, bare) in &ab {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let (mut with_shape, mut without_shape) = (String::new(), String::new());
        for _ in 0..3 {
            for (sql, out, shape) in [
                (fenced, &mut with, &mut with_shape),
                (bare, &mut without, &mut without_shape),
            ] {
                let t = timed_rowgate(&executor, &args.user, &policy.version, sql, runs).await;
                out.push(t.median_ms);
                *shape = t.shape;
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (f, b) = (median(&mut with), median(&mut without));
        println!(
            "| {id} | {f:.2} | {b:.2} | {:.2} | {with_shape} | {without_shape} |",
            f / b
        );
    }
    println!("load average after: {}", uptime());

    if args.load {
        load::run(&agent, &key, &policy, &args.user, args.gateway_pool).await;
    }
    drop(executor);
    drop(client);
    drop(rls);
    drop(hand);
    if !args.keep {
        drop_all(&admin).await;
    }
}
