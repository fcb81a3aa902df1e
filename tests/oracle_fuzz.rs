//! A differential fuzzer for error oracles (issue 20). Filters generated from a grammar rich in
//! what PostgreSQL folds or branches on (`tests/oracle/grammar.rs`) go into WHERE, JOIN ... ON,
//! HAVING, a subquery's output, a side subquery and a correlated subquery; each query is run
//! for a caller before and after a hidden canary row is planted. Any answer that changes is a
//! leak: the caller learned something about a row they may not see.
//!
//! The same queries also run, unrewritten, under plain row-level security with the same rule
//! (the control arm): it must find differences, or the fuzzer would be proving nothing. That
//! arm shows the hole rowgate closes: PostgreSQL runs a filter it deems leakproof before an
//! expensive rule, and folding makes filters that can raise look leakproof.
//!
//! Size: `ROWGATE_ORACLE_FUZZ=<expressions per template>` (default 150), seed
//! `ROWGATE_ORACLE_SEED` (default 20). The long run of BENCHMARKS.md/SECURITY.md:
//! `ROWGATE_ORACLE_FUZZ=17000 cargo test --release --test oracle_fuzz -- --nocapture`.

mod common;
#[path = "oracle/grammar.rs"]
mod grammar;
#[path = "corpus/harness.rs"]
mod harness;

use deadpool_postgres::Pool;
use futures_util::{stream, StreamExt};
use grammar::{instantiate, Rng, KNOWN, TEMPLATES};
use harness::{CorpusDb, RLS_SETTING};
use rowgate::execute::{ExecuteError, Executor};
use rowgate::parse::Limits;

use common::{db_message, manifest_path};

/// Callers: two who see some staff, one unknown to the grant table.
const CALLERS: [&str; 3] = ["alice", "bob", "mallory"];

/// The canary: a staff member and a project in the team nobody is granted.
const CANARY: &str = "INSERT INTO staff VALUES (900, 'canary', 'vault', '1999-09-09', \
     '1980-01-01', 5000, 7, 1.00, '{\"a\": \"x\", \"b\": null}', true); \
     INSERT INTO projects VALUES (900, 900, 'canary', '2030-01-01')";

const PARALLEL: usize = 6;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Case {
    template: &'static str,
    caller: &'static str,
    sql: String,
    /// The rewrite, when rowgate accepts the query.
    rewritten: Option<String>,
}

/// An answer, as text: the rows, or the error's message and SQLSTATE.
type Answer = String;

async fn run_rowgate(executor: &Executor, version: &str, case: &Case) -> Option<Answer> {
    let sql = case.rewritten.as_ref()?;
    Some(match executor.run(case.caller, version, sql, 1000).await {
        Ok(output) => rows_text(&output.rows),
        Err(ExecuteError::QueryFailed { message, sqlstate }) => format!("{message} ({sqlstate})"),
        Err(other) => format!("gateway: {other}"),
    })
}

async fn run_rls(pool: &Pool, case: &Case) -> Answer {
    let client = pool.get().await.expect("RLS connection");
    let run = async {
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '20s'")
            .await?;
        client
            .execute(
                "SELECT set_config($1, $2, true)",
                &[&RLS_SETTING, &case.caller],
            )
            .await?;
        client.query(case.sql.as_str(), &[]).await
    };
    let answer = match run.await {
        Ok(rows) => rows_text(&rows),
        Err(e) => db_message(&e),
    };
    let _ = client.batch_execute("ROLLBACK").await;
    answer
}

fn rows_text(rows: &[tokio_postgres::Row]) -> String {
    match rowgate::encode::encode_rows(rows) {
        Ok(encoded) => serde_json::to_string(&encoded).expect("rows serialize"),
        Err(e) => format!("encode: {e}"),
    }
}

/// Both arms' answers for every case, in order.
async fn answers(
    cases: &[Case],
    executor: &Executor,
    version: &str,
    rls: &Pool,
) -> Vec<(Option<Answer>, Answer)> {
    stream::iter(cases)
        .map(|case| async move {
            (
                run_rowgate(executor, version, case).await,
                run_rls(rls, case).await,
            )
        })
        .buffered(PARALLEL)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_filter_answers_differently_once_a_hidden_row_exists() {
    let per_template = env_number("ROWGATE_ORACLE_FUZZ", 150);
    let seed = env_number("ROWGATE_ORACLE_SEED", 20);
    let db = CorpusDb::create(
        "oracle",
        &[manifest_path("tests/oracle/schema.sql")],
        &manifest_path("tests/oracle/policy.yaml"),
    )
    .await;
    db.enable_rls().await;
    db.admin
        .batch_execute(&format!(
            "GRANT SELECT ON team_grants TO {}",
            harness::quote_ident(&db.rls)
        ))
        .await
        .expect("grant the RLS role its rule's table");

    let mut rng = Rng::new(seed);
    let limits = Limits::default();
    let case = |template: &'static str, caller: &'static str, sql: String| Case {
        template,
        caller,
        rewritten: rowgate::pipeline::rewrite(&sql, &db.policy, &limits)
            .ok()
            .map(|r| r.sql),
        sql,
    };
    let mut cases = Vec::new();
    for (i, filter) in KNOWN.iter().enumerate() {
        for (template, sql, other) in TEMPLATES {
            let sql = sql
                .replace("{filter}", &filter.replace("{other}", other))
                .replace("{value}", "COALESCE('x', name)");
            cases.push(case(template, CALLERS[i % CALLERS.len()], sql));
        }
    }
    for i in 0..per_template {
        for (template, sql, other) in TEMPLATES {
            let sql = instantiate(&mut rng, sql, other);
            cases.push(case(template, CALLERS[(i as usize) % CALLERS.len()], sql));
        }
    }

    let executor = db.executor(PARALLEL);
    let rls = db.rls_pool(PARALLEL);
    let version = db.policy.version.clone();

    let before = answers(&cases, &executor, &version, &rls).await;
    db.admin
        .batch_execute(CANARY)
        .await
        .expect("plant the canary");
    let after = answers(&cases, &executor, &version, &rls).await;

    let mut leaks = Vec::new();
    let mut control_leaks = Vec::new();
    let (mut accepted, mut raised) = (0, 0);
    for ((case, (ours_before, rls_before)), (ours_after, rls_after)) in
        cases.iter().zip(&before).zip(&after)
    {
        if ours_before.is_some() {
            accepted += 1;
        }
        if ours_before.as_deref().is_some_and(|a| !a.starts_with('[')) {
            raised += 1;
        }
        if ours_before != ours_after {
            leaks.push(format!(
                "[{}] {}: {ours_before:?} became {ours_after:?}\n  {}",
                case.template, case.caller, case.sql
            ));
        }
        if rls_before != rls_after {
            control_leaks.push(&case.template);
        }
    }
    let report = format!(
        "seed {seed}: {} filters ({} known ones and {per_template} generated ones per template, \
         {} templates), \
         {accepted} accepted by rowgate and run before and after the canary ({raised} of them \
         answered an error), {} answers changed; plain row-level security: {} changed",
        cases.len(),
        KNOWN.len(),
        TEMPLATES.len(),
        leaks.len(),
        control_leaks.len()
    );
    println!("{report}");
    for (template, _, _) in TEMPLATES {
        let n = control_leaks.iter().filter(|t| **t == template).count();
        println!("  control arm, {template}: {n} changed");
    }
    db.teardown().await;
    assert!(
        leaks.is_empty(),
        "{report}\n{}",
        leaks
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !control_leaks.is_empty(),
        "{report}: the control arm found nothing, so this run could not have seen a leak"
    );
}
