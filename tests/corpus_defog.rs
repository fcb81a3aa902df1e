//! Differential test against PostgreSQL row-level security on the defog corpus (issue 6, part 3).
//!
//! For each of the 11 databases of `../shared/corpus/defog`: load its rows, add the callers of
//! `tests/corpus/callers.sql`, install `tests/corpus/defog/<db>.yaml` with `rowgate::install`,
//! and put the same rules on the base tables as row-level security policies for a second,
//! non-owner role (the caller's id in the setting `rg.caller`). Then every reference query of
//! `defog_postgres_queries.jsonl` runs for every caller twice: through rowgate (pipeline +
//! executor, as the installed serving role) and directly as the RLS role. The two must return
//! the same rows: as multisets, or in order where the query orders (see `corpus/order.rs`).
//!
//! The report (printed; `cargo test --test corpus_defog -- --nocapture` shows it) counts the
//! queries rowgate accepted, those it refused (grouped by reason) and any mismatch. Mismatches
//! and failures must be 0; the accepted count must not fall below what was measured (CORPUS.md).

mod common;
#[path = "corpus/harness.rs"]
mod harness;
#[path = "corpus/order.rs"]
mod order;

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use futures_util::{stream, StreamExt};
use harness::{corpus_path, CorpusDb, Tally, CALLERS, RLS_SETTING};
use order::{agree, Compare, Row};
use rowgate::execute::Executor;
use rowgate::parse::Limits;
use rowgate::refusal::Refusal;
use serde_json::Value;

use common::{db_message, manifest_path};

const DATABASES: [&str; 11] = [
    "academic",
    "advising",
    "atis",
    "broker",
    "car_dealership",
    "derm_treatment",
    "ewallet",
    "geography",
    "restaurants",
    "scholar",
    "yelp",
];

/// Queries accepted and agreeing for every caller, as measured (CORPUS.md). A regression below
/// it fails the test; raise it when rowgate accepts more.
const ACCEPTED_FLOOR: usize = 466;

/// Queries run at once per database (each holds one connection per arm).
const PARALLEL: usize = 3;

struct Query {
    db: String,
    sql: String,
}

fn queries() -> Vec<Query> {
    let path = corpus_path("defog/defog_postgres_queries.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON object per line");
            Query {
                db: v["db_name"].as_str().expect("db_name").to_string(),
                sql: v["sql"].as_str().expect("sql").to_string(),
            }
        })
        .collect()
}

/// What happened to one query.
enum Outcome {
    Refused(String),
    /// Accepted, and both arms agreed for every caller: how it was compared, the rows each
    /// caller got, and whether the callers' answers differ (the rules mattered).
    Agreed {
        how: String,
        rows: usize,
        callers_differ: bool,
    },
    /// Different rows: a security or correctness bug.
    Mismatch(String),
    /// rowgate accepted the query but running it failed while RLS ran it.
    RowgateFailed(String),
    /// The reference arm itself failed (the comparison could not be made).
    ReferenceFailed(String),
    /// PostgreSQL lets a query select columns that depend on a grouped primary key (`GROUP BY
    /// c.id` then `c.name`), but only over a base table; over the permission view it answers
    /// "must appear in the GROUP BY clause" (42803) unless the rewrite completed the GROUP BY.
    GroupingLimitation(String),
}

/// A float as compared: 12 significant digits. A `float8` sum or average depends on the order
/// in which the plan adds the rows (`0.011155844155844155` against `...157` was seen), and the
/// two arms' plans differ; exact types (`numeric`, integers, text) are compared exactly.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            let x = n.as_f64().expect("a JSON number is an f64");
            Value::String(format!("{x:.11e}"))
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// One result, encoded as the gateway encodes it: column names, and per row its own columns
/// and sort key as JSON text.
struct Result {
    columns: Vec<String>,
    rows: Vec<Row>,
}

fn encode(
    statement: &tokio_postgres::Statement,
    rows: &[tokio_postgres::Row],
    compare: &Compare,
) -> Result {
    let (width, keys) = match compare {
        Compare::Ordered { width, keys, .. } => (*width, keys.clone()),
        _ => (statement.columns().len(), Vec::new()),
    };
    let encoded = rowgate::encode::encode_rows(rows).expect("rows encode");
    Result {
        columns: statement.columns()[..width]
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        rows: encoded
            .iter()
            .map(|row| {
                let values: Vec<Value> = row.fields().iter().map(|(_, v)| canonical(v)).collect();
                Row {
                    own: serde_json::to_string(&values[..width]).expect("json"),
                    key: serde_json::to_string(
                        &keys.iter().map(|&k| &values[k]).collect::<Vec<_>>(),
                    )
                    .expect("json"),
                }
            })
            .collect(),
    }
}

/// The reference arm: `sql` as the RLS role, with the caller in [`RLS_SETTING`].
async fn run_rls(
    pool: &Pool,
    caller: &str,
    sql: &str,
    compare: &Compare,
) -> std::result::Result<Result, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let run = async {
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '20s'")
            .await?;
        client
            .execute("SELECT set_config($1, $2, true)", &[&RLS_SETTING, &caller])
            .await?;
        let statement = client.prepare(sql).await?;
        let rows = client.query(&statement, &[]).await?;
        Ok::<_, tokio_postgres::Error>(encode(&statement, &rows, compare))
    };
    let result = run.await.map_err(|e| db_message(&e));
    let _ = client.batch_execute("ROLLBACK").await;
    result
}

/// How the gateway reports the same failure: PostgreSQL's message and SQLSTATE.
fn gateway_message(e: &rowgate::execute::ExecuteError) -> Option<String> {
    match e {
        rowgate::execute::ExecuteError::QueryFailed { message, sqlstate } => {
            Some(format!("{message} ({sqlstate})"))
        }
        _ => None,
    }
}

/// The output column names of `sql` for the RLS role (nothing is run).
async fn column_names(pool: &Pool, sql: &str) -> std::result::Result<Vec<String>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let statement = client.prepare(sql).await.map_err(|e| db_message(&e))?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect())
}

async fn check_query(db: &CorpusDb, executor: &Executor, rls: &Pool, sql: &str) -> Outcome {
    let limits = Limits::default();
    if let Err(e) = rowgate::pipeline::rewrite(sql, &db.policy, &limits) {
        return Outcome::Refused(format!("{}: {e}", e.code()));
    }
    let names = match column_names(rls, sql).await {
        Ok(names) => names,
        Err(e) => return Outcome::ReferenceFailed(format!("{e}\n  {sql}")),
    };
    let compare = order::plan(sql, &names);
    let run_sql = match &compare {
        Compare::Ordered { sql, .. } => sql.clone(),
        _ => sql.to_string(),
    };
    let rewritten = match rowgate::pipeline::rewrite(&run_sql, &db.policy, &limits) {
        Ok(r) => r.sql,
        Err(e) => {
            return Outcome::RowgateFailed(format!(
                "the query with its sort keys as columns is refused ({e})\n  {run_sql}"
            ))
        }
    };
    let mut answers = Vec::new();
    let mut rows = 0;
    let mut same_errors = 0;
    for caller in CALLERS {
        let theirs = run_rls(rls, caller, &run_sql, &compare).await;
        let ours = executor
            .run(caller, &db.policy.version, &rewritten, 1_000_000)
            .await;
        let (ours, theirs) = match (ours, theirs) {
            (Ok(output), Ok(theirs)) => (encode(&output.statement, &output.rows, &compare), theirs),
            // The same error for the same caller (a division by a sum that is zero over the
            // rows this caller sees) is the same answer.
            (Err(e), Err(reference))
                if gateway_message(&e).as_deref() == Some(reference.as_str()) =>
            {
                same_errors += 1;
                answers.push(vec![Row {
                    key: String::new(),
                    own: reference,
                }]);
                continue;
            }
            (Err(e), Ok(_)) if gateway_message(&e).is_some_and(|m| m.ends_with("(42803)")) => {
                return Outcome::GroupingLimitation(format!("{caller}: {e}\n  {sql}"))
            }
            (Err(e), Ok(_)) => {
                return Outcome::RowgateFailed(format!(
                    "{caller}: {e}\n  {sql}\n  rewritten: {rewritten}"
                ))
            }
            (_, Err(e)) => return Outcome::ReferenceFailed(format!("{caller}: {e}\n  {run_sql}")),
        };
        if ours.columns != theirs.columns {
            return Outcome::Mismatch(format!(
                "{caller}: columns {:?} against {:?}\n  {sql}",
                ours.columns, theirs.columns
            ));
        }
        if let Err(how) = agree(&compare, &ours.rows, &theirs.rows) {
            return Outcome::Mismatch(format!(
                "{caller}: {how}\n  {sql}\n  rewritten: {rewritten}\n  rowgate: {:.800}\n  rls:     {:.800}",
                rows_text(&ours.rows),
                rows_text(&theirs.rows)
            ));
        }
        rows += ours.rows.len();
        answers.push(ours.rows);
    }
    let mut how = match compare {
        Compare::Bag => "as multisets".to_string(),
        Compare::Ordered { limit: true, .. } => "in sort-key order, under a LIMIT".to_string(),
        Compare::Ordered { .. } => "in sort-key order".to_string(),
        Compare::CountOnly(why) => format!("row counts only ({why})"),
    };
    if same_errors > 0 {
        how.push_str(&format!(", the same error for {same_errors} caller(s)"));
    }
    Outcome::Agreed {
        how,
        rows,
        callers_differ: answers.windows(2).any(|w| w[0] != w[1]),
    }
}

fn rows_text(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| r.own.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default)]
struct Report {
    queries: usize,
    accepted: usize,
    refused: Tally,
    compared: Tally,
    rows: usize,
    callers_differ: usize,
    mismatches: Vec<String>,
    failures: Vec<String>,
    grouping: Vec<String>,
    per_db: Vec<String>,
    /// Caller → (rows visible, rows in all tables), over every table of every database.
    visible: BTreeMap<&'static str, (i64, i64)>,
}

async fn check_database(name: &str, queries: &[&Query], report: &mut Report) {
    let db = CorpusDb::create(
        &format!("defog/{name}"),
        &[corpus_path(&format!("defog/databases/{name}.sql"))],
        &manifest_path(&format!("tests/corpus/defog/{name}.yaml")),
    )
    .await;
    db.assert_policy_covers_every_table().await;
    db.enable_rls().await;
    let executor = db.executor(PARALLEL);
    let rls = db.rls_pool(PARALLEL);

    // How much each caller sees: the rules must hide a real share (and both arms agree here too).
    for table in db.policy.tables.values() {
        let count = format!(
            "SELECT count(*) AS n FROM {}",
            harness::quote_ident(&table.name)
        );
        let all: i64 = db
            .admin
            .query_one(&format!("SELECT count(*) FROM {}", table.source), &[])
            .await
            .expect("count")
            .get(0);
        let rewritten = rowgate::pipeline::rewrite(&count, &db.policy, &Limits::default())
            .expect("count(*) is accepted")
            .sql;
        for caller in CALLERS {
            let output = executor
                .run(caller, &db.policy.version, &rewritten, 10)
                .await
                .expect("count runs");
            let seen: i64 = output.rows[0].get(0);
            let reference = run_rls(
                &rls,
                caller,
                &count.replace(
                    &harness::quote_ident(&table.name),
                    &table.source.to_string(),
                ),
                &Compare::Bag,
            )
            .await
            .expect("count runs under RLS");
            assert_eq!(
                reference.rows[0].own,
                format!("[{seen}]"),
                "{name}.{}: {caller}",
                table.name
            );
            let entry = report.visible.entry(caller).or_default();
            entry.0 += seen;
            entry.1 += all;
        }
    }

    let outcomes: Vec<(String, Outcome)> = stream::iter(queries.iter())
        .map(|q| {
            let (db, executor, rls) = (&db, &executor, &rls);
            async move { (q.sql.clone(), check_query(db, executor, rls, &q.sql).await) }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let (mut accepted, mut refused) = (0, 0);
    for (_, outcome) in outcomes {
        report.queries += 1;
        match outcome {
            Outcome::Refused(reason) => {
                refused += 1;
                report.refused.add(reason);
            }
            Outcome::Agreed {
                how,
                rows,
                callers_differ,
            } => {
                accepted += 1;
                report.compared.add(how);
                report.rows += rows;
                report.callers_differ += usize::from(callers_differ);
            }
            Outcome::Mismatch(m) => report.mismatches.push(format!("{name}: {m}")),
            Outcome::RowgateFailed(m) => {
                report.failures.push(format!("{name}: rowgate failed: {m}"))
            }
            Outcome::ReferenceFailed(m) => {
                report.failures.push(format!("{name}: RLS arm failed: {m}"))
            }
            Outcome::GroupingLimitation(m) => report.grouping.push(format!("{name}: {m}")),
        }
    }
    report.accepted += accepted;
    report.per_db.push(format!(
        "  {name:<15} {:>3} queries, {accepted:>3} accepted, {refused:>3} refused, {} tables",
        queries.len(),
        db.policy.tables.len()
    ));
    rls.close();
    drop(executor);
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rowgate_returns_what_row_level_security_returns_on_the_defog_corpus() {
    let all = queries();
    assert_eq!(all.len(), 466, "the corpus has 466 reference queries");
    let mut report = Report::default();
    for name in DATABASES {
        let mine: Vec<&Query> = all.iter().filter(|q| q.db == name).collect();
        assert!(!mine.is_empty(), "no queries for {name}");
        check_database(name, &mine, &mut report).await;
    }
    assert_eq!(
        report.queries,
        all.len(),
        "every query belongs to one of the databases"
    );

    let mut text = String::new();
    text.push_str(&format!(
        "defog corpus: {} queries, {} callers each ({})\n",
        report.queries,
        CALLERS.len(),
        CALLERS.join(", ")
    ));
    text.push_str(&format!(
        "  accepted and equal to RLS for every caller: {} ({:.1}%)\n",
        report.accepted,
        100.0 * report.accepted as f64 / report.queries as f64
    ));
    text.push_str(&format!("  refused: {}\n", report.refused.total()));
    text.push_str(&format!("  mismatches: {}\n", report.mismatches.len()));
    text.push_str(&format!("  failures: {}\n", report.failures.len()));
    text.push_str(&format!(
        "  accepted, but PostgreSQL refuses them over the permission views (GROUP BY a primary key, selecting other columns of its table): {}\n",
        report.grouping.len()
    ));
    text.push_str(&format!(
        "  rows compared: {} (over accepted queries and callers); queries whose answer differs between callers: {}\n",
        report.rows, report.callers_differ
    ));
    text.push_str("per database:\n");
    for line in &report.per_db {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("share of all rows each caller sees:\n");
    for (caller, (seen, all)) in &report.visible {
        text.push_str(&format!(
            "  {caller:<6} {seen:>5} of {all} ({:.0}%)\n",
            100.0 * *seen as f64 / *all as f64
        ));
    }
    text.push_str("how accepted queries were compared:\n");
    text.push_str(&report.compared.lines("  "));
    text.push_str("refusals, by reason:\n");
    text.push_str(&report.refused.lines("  "));
    for m in report
        .mismatches
        .iter()
        .chain(&report.failures)
        .chain(&report.grouping)
    {
        text.push_str(&format!("\n{m}\n"));
    }
    println!("{text}");

    for (caller, (seen, all)) in &report.visible {
        assert!(
            seen < all,
            "{caller} sees every row: the rules hide nothing"
        );
    }
    assert!(report.visible["alice"].0 > 0 && report.visible["dave"].0 > 0);
    assert!(
        report.callers_differ * 2 > report.accepted,
        "most accepted queries should answer differently for different callers"
    );
    assert!(
        report.mismatches.is_empty(),
        "{} mismatches",
        report.mismatches.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} failures",
        report.failures.len()
    );
    assert!(
        report.grouping.is_empty(),
        "{} queries hit the GROUP BY limitation (the rewrite should complete their GROUP BY):\n{:#?}",
        report.grouping.len(),
        report.grouping
    );
    assert!(
        report.accepted >= ACCEPTED_FLOOR,
        "accepted {} < the measured {ACCEPTED_FLOOR}",
        report.accepted
    );
}
