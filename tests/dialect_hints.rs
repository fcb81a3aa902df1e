//! Functions from other SQL dialects (`src/guard/dialects.rs`): each is refused with a hint
//! that names the PostgreSQL replacement, and each replacement is real. For every entry:
//!
//! * its call, as an agent writes it, is refused as `function_not_allowed`, with the entry's
//!   own hint and a message saying PostgreSQL has no such function;
//! * PostgreSQL 15 indeed has no function of that name (`pg_proc`), so the message is true and
//!   the allowlist is not missing a real function;
//! * its replacement is accepted by rowgate and runs on PostgreSQL over the example columns,
//!   giving a value (not NULL).
//!
//! Nothing is created in the database: the queries run in `postgres` over a VALUES row.

mod common;

use std::path::Path;

use rowgate::guard::{EXAMPLE_COLUMNS, FOREIGN};
use rowgate::parse::Limits;
use rowgate::pipeline::rewrite;
use rowgate::policy::Policy;
use rowgate::refusal::Refusal;

use common::{admin_config, connect, db_message};

/// One row of the example columns the entries are written over.
fn from_example() -> String {
    format!(
        "FROM (VALUES (date '2024-03-05', date '2024-04-01', timestamp '2024-03-05 14:30:15', \
         text 'a,b', 7, 2)) AS t({EXAMPLE_COLUMNS})"
    )
}

fn policy() -> Policy {
    Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("the demo policy loads")
}

#[test]
fn every_foreign_call_is_refused_with_its_replacement_in_the_hint() {
    let policy = policy();
    let mut wrong = Vec::new();
    for f in FOREIGN {
        let sql = format!("SELECT {} AS v {}", f.call, from_example());
        match rewrite(&sql, &policy, &Limits::default()) {
            Ok(_) => wrong.push(format!("{sql}: accepted")),
            Err(e) => {
                let (code, message, hint) = (e.code().as_str(), e.to_string(), e.hint());
                if code != "function_not_allowed"
                    || !message.contains(&format!("`{}` does not exist in PostgreSQL", f.name))
                    || hint != f.hint()
                {
                    wrong.push(format!("{sql}\n  got {code}: {message}\n  hint: {hint}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_hint_reads_as_a_fix() {
    let sql = "SELECT year(issued_on), sum(amount) FROM invoices GROUP BY 1";
    let e = rewrite(sql, &policy(), &Limits::default()).expect_err("year() is refused");
    assert_eq!(
        e.to_string(),
        "function `year` does not exist in PostgreSQL (it comes from MySQL and SQL Server)"
    );
    assert_eq!(
        e.hint(),
        "PostgreSQL has no `year` function: instead of `year(d)`, write `EXTRACT(YEAR FROM d)`."
    );
}

#[test]
fn a_schema_other_than_pg_catalog_keeps_the_plain_refusal() {
    // `dbo.len` is somebody's own function, not SQL Server's `len`: no replacement is offered.
    let e = rewrite(
        "SELECT dbo.len(name) FROM customers",
        &policy(),
        &Limits::default(),
    )
    .expect_err("an unknown schema's function is refused");
    assert_eq!(e.code().as_str(), "function_not_allowed");
    assert!(!e.hint().contains("length("), "{}", e.hint());
    let e = rewrite(
        "SELECT pg_catalog.len(name) FROM customers",
        &policy(),
        &Limits::default(),
    )
    .expect_err("len is refused");
    assert!(e.hint().contains("`length(s)`"), "{}", e.hint());
}

#[tokio::test]
async fn postgresql_has_none_of_them_and_every_replacement_runs() {
    let client = connect(&admin_config("postgres")).await;
    let policy = policy();
    let mut wrong = Vec::new();
    for f in FOREIGN {
        let exists: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_proc WHERE proname = $1",
                &[&f.name],
            )
            .await
            .expect("pg_proc is readable")
            .get(0);
        if exists != 0 {
            wrong.push(format!("PostgreSQL has a function named {}", f.name));
        }
        let sql = format!("SELECT ({})::text AS v {}", f.instead, from_example());
        let rewritten = match rewrite(&sql, &policy, &Limits::default()) {
            Ok(r) => r.sql,
            Err(e) => {
                wrong.push(format!("{sql}: refused by rowgate: {e}"));
                continue;
            }
        };
        match client.query_one(rewritten.as_str(), &[]).await {
            Ok(row) => {
                let v: Option<String> = row.get(0);
                if v.is_none() {
                    wrong.push(format!("{sql}: NULL"));
                }
            }
            Err(e) => wrong.push(format!("{sql}: PostgreSQL says {}", db_message(&e))),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
