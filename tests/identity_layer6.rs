//! Layer 6 of DESIGN.md: the caller's identity cannot be widened from inside the database.
//!
//! Every test here runs as the installed serving role of a fresh demo database, directly (no
//! rewriter, no guard, no function allowlist in between: as if layers 1 to 3 had all failed),
//! inside a transaction fenced for `bob` the way `src/execute.rs` fences a request: READ ONLY,
//! the settings pinned, and the signed caller set with `set_config` from a bind parameter.
//! Single-statement attacks go through the real [`Executor`]; attacks that need several
//! statements (SET LOCAL, RESET, set_config then read) replay the fence on a direct connection.
//!
//! After each attack every permission view is read and compared, as a count and a digest of
//! its rows, with the same rows computed by the superuser from the rules written out by hand:
//! the answer is exactly bob's rows, or `28000` (no valid caller: no rows at all), and never
//! anne's. Controls prove each channel is real: the same attack with anne's *genuinely signed*
//! value (which the serving role cannot make) does show anne's rows.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rowgate::caller::IdentityKey;
use rowgate::execute::{ExecuteConfig, ExecuteError, Executor};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// The permission views of the demo policy.
const VIEWS: [&str; 9] = [
    "invoices",
    "customers",
    "transactions",
    "orders",
    "order_items",
    "folders",
    "documents",
    "blocks",
    "items",
];

/// What `src/execute.rs` sends to enter a request's transaction (checked against its source by
/// `the_replayed_fence_is_the_gateways`).
const BEGIN: &str = "BEGIN TRANSACTION READ ONLY";
const PINS: &str =
    "SET LOCAL statement_timeout = 5000; SET LOCAL search_path = pg_catalog, public; \
                    SET LOCAL standard_conforming_strings = on";
const SET_CALLER: &str = "SELECT pg_catalog.set_config('rowgate.caller', $1, true)";

/// The "no valid caller" SQLSTATE that `rowgate.caller_id()` raises.
const NO_CALLER: &str = "28000";

/// Builds one attack statement around a value.
type Setter = fn(&str) -> String;

/// Builds the query with set_config in one position around a value.
type Position = Box<dyn Fn(&str) -> String>;

/// Per view: the number of rows and an md5 of their text, sorted.
type Fingerprint = BTreeMap<String, (i64, String)>;

/// One row per view, `(view, n, digest)`, over `FROM <source> t`.
fn fingerprint_sql(source: impl Fn(&str) -> String) -> String {
    VIEWS
        .iter()
        .map(|v| {
            format!(
                "SELECT '{v}'::text AS view, count(*)::bigint AS n, \
                 coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS h FROM {} t",
                source(v)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The fingerprint query over the permission views, as the serving role reads them.
fn views_sql() -> String {
    fingerprint_sql(|v| format!("rowgate.{v}"))
}

fn to_fingerprint(rows: &[tokio_postgres::Row]) -> Fingerprint {
    rows.iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
        .collect()
}

/// What `user` may see, computed by the superuser from the rules above.
async fn expected(db: &TestDb, user: &str) -> Fingerprint {
    let sql = fingerprint_sql(|v| reference_table(v, user));
    let rows = db
        .admin
        .query(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("reference for {user}: {}", db_message(&e)));
    to_fingerprint(&rows)
}

/// bob's and anne's fingerprints; anne must differ from bob where the demo says so, or the
/// comparisons below could not tell them apart.
async fn bob_and_anne(db: &TestDb) -> (Fingerprint, Fingerprint) {
    let bob = expected(db, "bob").await;
    let anne = expected(db, "anne").await;
    assert_eq!(bob.len(), VIEWS.len());
    for view in [
        "invoices",
        "customers",
        "transactions",
        "orders",
        "order_items",
    ] {
        assert_ne!(bob[view], anne[view], "anne and bob see the same {view}");
        assert!(
            bob[view].0 > 0,
            "bob sees no {view}: the test would prove little"
        );
    }
    (bob, anne)
}

/// Enters a request-like transaction for the value `signed`, as the gateway does: BEGIN READ
/// ONLY, the pinned settings, then `set_config` with the value as a bind parameter.
async fn enter(client: &Client, signed: &str) {
    client
        .batch_execute(&format!("{BEGIN}; {PINS}"))
        .await
        .unwrap_or_else(|e| panic!("fence: {}", db_message(&e)));
    client
        .query_typed(SET_CALLER, &[(&signed, Type::TEXT)])
        .await
        .unwrap_or_else(|e| panic!("set caller: {}", db_message(&e)));
}

/// Reads every view in the current transaction: `Ok` with the fingerprint, or the SQLSTATE.
async fn read_views(client: &Client) -> Result<Fingerprint, String> {
    match client.query(&views_sql(), &[]).await {
        Ok(rows) => Ok(to_fingerprint(&rows)),
        Err(e) => Err(format!("{} {}", sqlstate(&e), db_message(&e))),
    }
}

/// No valid caller: the views raise 28000.
fn none(outcome: &Result<Fingerprint, String>, what: &str) {
    match outcome {
        Ok(seen) => panic!("{what}: the views answered {seen:?}"),
        Err(e) => assert!(e.starts_with(NO_CALLER), "{what}: unexpected error {e}"),
    }
}

/// Values that are not anne's genuine signature but try to pass for it, given bob's genuine one.
fn forgeries(key: &IdentityKey) -> Vec<(&'static str, String)> {
    let bob = key.sign("bob");
    let (bob_payload, bob_digest) = bob.split_once('.').expect("signed values hold a dot");
    let anne = key.sign("anne");
    let (anne_payload, anne_digest) = anne.split_once('.').expect("signed values hold a dot");
    let wrong_key = IdentityKey([0x42; rowgate::caller::KEY_BYTES]);
    vec![
        ("anne's id in clear", "anne".to_string()),
        ("anne's payload, no digest", anne_payload.to_string()),
        (
            "anne's payload with bob's digest",
            format!("{anne_payload}.{bob_digest}"),
        ),
        ("anne signed with another key", wrong_key.sign("anne")),
        (
            "anne signed with an all-zero key",
            IdentityKey([0; 32]).sign("anne"),
        ),
        (
            "anne's payload, zero digest",
            format!("{anne_payload}.{}", "0".repeat(64)),
        ),
        (
            "anne's payload, bob's digest upper-cased",
            format!("{anne_payload}.{}", bob_digest.to_uppercase()),
        ),
        (
            "bob's value upper-cased (another spelling of a valid value)",
            bob.to_uppercase(),
        ),
        (
            "anne's payload upper-cased, anne's real digest",
            format!("{}.{anne_digest}", anne_payload.to_uppercase()),
        ),
        (
            "bob's value with anne's payload appended",
            format!("{bob_payload}{anne_payload}.{bob_digest}"),
        ),
        (
            "bob's digest truncated",
            format!("{anne_payload}.{}", &bob_digest[..32]),
        ),
        ("bob's value twice", format!("{bob}.{bob}")),
        (
            "anne's value after bob's",
            format!("{bob}\n{anne_payload}.{bob_digest}"),
        ),
        (
            "a trailing newline",
            format!("{anne_payload}.{bob_digest}\n"),
        ),
        (
            "surrounding spaces",
            format!(" {anne_payload}.{bob_digest} "),
        ),
        (
            "anne's payload with an odd hex digit",
            format!("{anne_payload}0.{bob_digest}"),
        ),
        (
            "the SQL-escaped quote",
            format!("{anne_payload}'.{bob_digest}"),
        ),
        ("empty", String::new()),
        ("a dot", ".".to_string()),
    ]
}

fn executor(db: &TestDb) -> Executor {
    Executor::new(
        db.agent_config(),
        db.key.clone(),
        ExecuteConfig {
            statement_timeout: Duration::from_secs(5),
            pool_wait: Duration::from_secs(5),
            // One connection: consecutive requests share it, as they share pooled ones.
            pool_size: 1,
        },
    )
    .expect("executor builds")
}

/// Runs one statement for bob through the gateway's executor (the real fence).
async fn run_as_bob(exec: &Executor, sql: &str) -> Result<Fingerprint, String> {
    match exec.run("bob", &policy().version, sql, 1000).await {
        Ok(output) => Ok(to_fingerprint(&output.rows)),
        Err(ExecuteError::QueryFailed { message, sqlstate }) => {
            Err(format!("{sqlstate} {message}"))
        }
        Err(other) => Err(format!("other error: {other}")),
    }
}

#[test]
fn the_replayed_fence_is_the_gateways() {
    // The direct-connection attacks replay the fence; if execute.rs changes how it carries
    // the caller, this fails so that the replay is brought back in step.
    let source = include_str!("../src/execute.rs");
    assert!(
        source.contains("set_config('rowgate.caller', $1, true)"),
        "execute.rs no longer sets the caller with set_config($1)"
    );
    assert!(source.contains("BEGIN TRANSACTION READ ONLY"));
    assert!(source.contains("Type::TEXT"));
    assert!(source.contains("query_typed"));
}

/// The positive control of every other test: the fence gives bob exactly his rows, and anne's
/// genuine value (made with the key the serving role cannot read) gives hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_gives_exactly_the_callers_rows() {
    let db = TestDb::new().await;
    let (bob, anne) = bob_and_anne(&db).await;
    let agent = db.agent().await;
    enter(&agent, &db.key.sign("bob")).await;
    assert_eq!(read_views(&agent).await, Ok(bob.clone()));
    agent.batch_execute("ROLLBACK").await.unwrap();
    enter(&agent, &db.key.sign("anne")).await;
    assert_eq!(read_views(&agent).await, Ok(anne.clone()));
    agent.batch_execute("ROLLBACK").await.unwrap();
    let exec = executor(&db);
    assert_eq!(run_as_bob(&exec, &views_sql()).await, Ok(bob));
    db.teardown().await;
}

/// set_config, SET LOCAL, SET, RESET and SET ... TO DEFAULT on `rowgate.caller`, run as
/// separate statements inside bob's transaction, with every forged value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_the_transaction_cannot_change_the_caller() {
    let db = TestDb::new().await;
    let (bob, anne) = bob_and_anne(&db).await;
    let agent = db.agent().await;
    let bob_signed = db.key.sign("bob");
    let anne_signed = db.key.sign("anne");

    // Control: each way of setting it does take effect when the value is genuine.
    let setters: [(&str, Setter); 4] = [
        ("set_config local", |v| {
            format!("SELECT set_config('rowgate.caller', {}, true)", lit(v))
        }),
        ("set_config session", |v| {
            format!("SELECT set_config('rowgate.caller', {}, false)", lit(v))
        }),
        ("SET LOCAL", |v| {
            format!("SET LOCAL rowgate.caller = {}", lit(v))
        }),
        ("SET", |v| format!("SET rowgate.caller = {}", lit(v))),
    ];
    for (how, setter) in setters {
        enter(&agent, &bob_signed).await;
        agent.batch_execute(&setter(&anne_signed)).await.unwrap();
        assert_eq!(read_views(&agent).await, Ok(anne.clone()), "control: {how}");
        agent.batch_execute("ROLLBACK").await.unwrap();
    }

    for (what, forged) in forgeries(&db.key) {
        for (how, setter) in setters {
            enter(&agent, &bob_signed).await;
            match agent.batch_execute(&setter(&forged)).await {
                Ok(()) => {
                    let outcome = read_views(&agent).await;
                    none(&outcome, &format!("{how} to {what} ({forged:?})"));
                }
                // A value PostgreSQL will not take at all (none here, but say so if it does).
                Err(e) => panic!("{how} {forged:?}: {}", db_message(&e)),
            }
            agent.batch_execute("ROLLBACK").await.unwrap();
        }
        // The same with the value as a bind parameter (how the gateway itself sends it).
        enter(&agent, &bob_signed).await;
        agent
            .query_typed(SET_CALLER, &[(&forged.as_str(), Type::TEXT)])
            .await
            .unwrap();
        none(&read_views(&agent).await, &format!("bound {what}"));
        agent.batch_execute("ROLLBACK").await.unwrap();
    }

    // NULL, RESET and DEFAULT: the setting falls back to the session's (none) and the views
    // answer nothing, rather than everything.
    for reset in [
        "SELECT set_config('rowgate.caller', NULL, true)",
        "SELECT set_config('rowgate.caller', NULL, false)",
        "RESET rowgate.caller",
        "SET LOCAL rowgate.caller TO DEFAULT",
        "SET rowgate.caller TO DEFAULT",
        "RESET ALL",
        "SELECT set_config('rowgate.caller', '', true)",
    ] {
        enter(&agent, &bob_signed).await;
        agent
            .batch_execute(reset)
            .await
            .unwrap_or_else(|e| panic!("{reset}: {}", db_message(&e)));
        none(&read_views(&agent).await, reset);
        agent.batch_execute("ROLLBACK").await.unwrap();
    }

    // A session-wide forged value set before the transaction is overridden by the fence; one
    // set inside the transaction is rolled back with it.
    agent
        .batch_execute(&format!(
            "SET rowgate.caller = {}",
            lit(&format!("{}.{}", hex::encode("anne"), "0".repeat(64)))
        ))
        .await
        .unwrap();
    enter(&agent, &bob_signed).await;
    assert_eq!(
        read_views(&agent).await,
        Ok(bob.clone()),
        "session value before the fence"
    );
    agent
        .batch_execute("SELECT set_config('rowgate.caller', 'anne', false)")
        .await
        .unwrap();
    none(
        &read_views(&agent).await,
        "session value inside the transaction",
    );
    agent
        .batch_execute("ROLLBACK; RESET rowgate.caller")
        .await
        .unwrap();
    enter(&agent, &bob_signed).await;
    assert_eq!(
        read_views(&agent).await,
        Ok(bob.clone()),
        "after the rollback"
    );
    agent.batch_execute("ROLLBACK").await.unwrap();

    // Savepoints cannot undo the fence's own set_config: it came first.
    enter(&agent, &bob_signed).await;
    agent
        .batch_execute("SAVEPOINT a; SELECT set_config('rowgate.caller', 'anne', true); ROLLBACK TO SAVEPOINT a")
        .await
        .unwrap();
    assert_eq!(
        read_views(&agent).await,
        Ok(bob.clone()),
        "rolled back to a savepoint"
    );
    agent
        .batch_execute("RELEASE SAVEPOINT a; ROLLBACK")
        .await
        .unwrap();
    db.teardown().await;
}

/// The set_config hidden inside the one statement that reads the views, in positions that
/// PostgreSQL evaluates before the views' scans, through the gateway's own executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_hidden_in_the_query_cannot_change_the_caller() {
    let db = TestDb::new().await;
    let (bob, anne) = bob_and_anne(&db).await;
    let exec = executor(&db);
    let views = views_sql();
    let positions: Vec<(&str, Position)> = vec![
        (
            "a WHERE clause (a one-time filter, evaluated before the scan)",
            Box::new(move |v: &str| {
                format!(
                    "SELECT * FROM ({}) f WHERE (SELECT set_config('rowgate.caller', {}, true)) IS NOT NULL",
                    views_sql(),
                    lit(v)
                )
            }),
        ),
        (
            "a materialized CTE read first by a lateral join",
            Box::new(move |v: &str| {
                format!(
                    "WITH s AS MATERIALIZED (SELECT set_config('rowgate.caller', {}, true) AS v) \
                     SELECT f.* FROM s CROSS JOIN LATERAL (SELECT * FROM ({}) g WHERE s.v IS NOT NULL) f",
                    lit(v),
                    views_sql()
                )
            }),
        ),
        (
            "a function in FROM, joined laterally",
            Box::new(move |v: &str| {
                format!(
                    "SELECT f.* FROM set_config('rowgate.caller', {}, true) AS s(v) \
                     CROSS JOIN LATERAL (SELECT * FROM ({}) g WHERE s.v IS NOT NULL) f",
                    lit(v),
                    views_sql()
                )
            }),
        ),
        (
            "a scalar subquery in the view's own WHERE",
            Box::new(move |v: &str| {
                crate::fingerprint_sql(|view| {
                    format!(
                        "(SELECT * FROM rowgate.{view} WHERE (SELECT set_config('rowgate.caller', {}, true)) IS NOT NULL)",
                        lit(v)
                    )
                })
            }),
        ),
        (
            "a scalar subquery in the select list, left of the views",
            Box::new(move |v: &str| {
                format!(
                    "SELECT g.* FROM (SELECT (SELECT set_config('rowgate.caller', {}, true)) AS s OFFSET 0) x \
                     CROSS JOIN LATERAL (SELECT * FROM ({}) f WHERE x.s IS NOT NULL) g",
                    lit(v),
                    views_sql()
                )
            }),
        ),
    ];
    assert!(!views.is_empty());
    let anne_signed = db.key.sign("anne");
    for (position, attack) in &positions {
        // Control: with anne's genuine value the position does run before the scans.
        let control = run_as_bob(&exec, &attack(&anne_signed)).await;
        assert_eq!(
            control,
            Ok(anne.clone()),
            "control, set_config in {position}"
        );
        for (what, forged) in forgeries(&db.key) {
            let outcome = run_as_bob(&exec, &attack(&forged)).await;
            none(&outcome, &format!("{what} ({forged:?}) in {position}"));
        }
        // NULL resets to the session value: nothing.
        let sql = attack("x").replace("'x'", "NULL");
        none(
            &run_as_bob(&exec, &sql).await,
            &format!("NULL in {position}"),
        );
        // is_local = false, also rolled back with the request.
        let sql = attack("anne").replace("'anne', true", "'anne', false");
        assert!(sql.contains("'anne', false"));
        none(
            &run_as_bob(&exec, &sql).await,
            &format!("session-wide in {position}"),
        );
    }
    // Every request after those (on the same pooled connection) is bob's again.
    assert_eq!(run_as_bob(&exec, &views).await, Ok(bob.clone()));
    let _ = anne;
    db.teardown().await;
}

/// The key, the identity functions and the private schema are out of the serving role's
/// reach, and the functions cannot be altered into something weaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_and_the_identity_functions_are_out_of_reach() {
    let db = TestDb::new().await;
    let (bob, _) = bob_and_anne(&db).await;
    let agent = db.agent().await;
    let bob_signed = db.key.sign("bob");

    // Nothing in rowgate_private: no USAGE, and no table or routine there is accessible but
    // the whole views' gate, `SELECT true` (the serving role's EXECUTE is what it checks).
    let row = agent
        .query_one(
            "SELECT has_schema_privilege('rowgate_private', 'USAGE'), \
                    has_schema_privilege('rowgate_private', 'CREATE'), \
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'rowgate_private' \
                        AND (has_table_privilege(c.oid, 'SELECT') OR has_table_privilege(c.oid, 'INSERT') \
                             OR has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE'))), \
                    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                      WHERE n.nspname = 'rowgate_private' AND has_function_privilege(p.oid, 'EXECUTE') \
                        AND p.proname <> 'whole_gate'), \
                    (SELECT has_function_privilege(p.oid, 'EXECUTE') FROM pg_proc p \
                      WHERE p.proname = 'whole_gate' \
                        AND p.pronamespace = 'rowgate_private'::regnamespace), \
                    (SELECT prosrc FROM pg_proc WHERE proname = 'whole_gate')",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "USAGE on rowgate_private");
    assert!(!row.get::<_, bool>(1), "CREATE on rowgate_private");
    assert_eq!(
        row.get::<_, i64>(2),
        0,
        "a readable table in rowgate_private"
    );
    assert_eq!(
        row.get::<_, i64>(3),
        0,
        "an executable routine in rowgate_private"
    );
    assert!(
        row.get::<_, bool>(4),
        "the serving role passes the whole views' gate"
    );
    assert_eq!(row.get::<_, &str>(5), "SELECT true");

    enter(&agent, &bob_signed).await;
    for sql in [
        "SELECT * FROM rowgate_private.identity_key",
        "TABLE rowgate_private.identity_key",
        "SELECT encode(key, 'hex') FROM rowgate_private.identity_key",
        "SELECT count(*) FROM rowgate_private.installed",
        "COPY rowgate_private.identity_key TO STDOUT",
    ] {
        let e = agent
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} answered"));
        assert_eq!(sqlstate(&e), "42501", "{sql}: {}", db_message(&e));
        agent.batch_execute("ROLLBACK").await.unwrap();
        enter(&agent, &bob_signed).await;
    }
    agent.batch_execute("ROLLBACK").await.unwrap();

    // The functions' definitions are readable (pg_proc is public), and hold no key.
    let key_hex = db.key.to_hex();
    let sources: Vec<String> = agent
        .query(
            "SELECT coalesce(p.prosrc, '') || coalesce(array_to_string(p.proconfig, ','), '') \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'rowgate'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sources.len(),
        4,
        "rowgate holds exactly the four identity functions"
    );
    for source in &sources {
        assert!(
            !source.to_lowercase().contains(&key_hex),
            "a function's text holds the key"
        );
    }

    // What makes them safe, as installed: SECURITY DEFINER with a pinned search_path, owned by
    // someone else, not LEAKPROOF (a leakproof function may be evaluated by the planner below a
    // security_barrier view's filter), and not in a schema the serving role can create in.
    let rows = agent
        .query(
            "SELECT p.proname::text, p.prosecdef, p.proleakproof, \
                    coalesce(array_to_string(p.proconfig, ','), ''), \
                    pg_get_userbyid(p.proowner) = current_user, \
                    has_schema_privilege('rowgate', 'CREATE') \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'rowgate' \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    for row in &rows {
        let name: String = row.get(0);
        assert!(row.get::<_, bool>(1), "{name}: not SECURITY DEFINER");
        assert!(!row.get::<_, bool>(2), "{name} is LEAKPROOF");
        let config: String = row.get(3);
        assert!(
            config.starts_with("search_path=pg_catalog"),
            "{name}: {config}"
        );
        assert!(!row.get::<_, bool>(4), "the serving role owns {name}");
        assert!(
            !row.get::<_, bool>(5),
            "the serving role can create in schema rowgate"
        );
    }

    // None of them can be altered, replaced, dropped or re-granted by the serving role.
    for function in [
        "rowgate.caller_id()",
        "rowgate.caller_exists()",
        "rowgate.caller_attributes()",
        "rowgate.fenced_caller(regclass)",
    ] {
        for sql in [
            format!("ALTER FUNCTION {function} LEAKPROOF"),
            format!("ALTER FUNCTION {function} SECURITY INVOKER"),
            format!("ALTER FUNCTION {function} SET search_path = public"),
            format!("ALTER FUNCTION {function} RESET ALL"),
            format!("ALTER FUNCTION {function} VOLATILE"),
            format!("ALTER FUNCTION {function} OWNER TO CURRENT_USER"),
            format!("ALTER FUNCTION {function} RENAME TO f"),
            format!("DROP FUNCTION {function}"),
            format!("COMMENT ON FUNCTION {function} IS 'x'"),
            format!("GRANT EXECUTE ON FUNCTION {function} TO PUBLIC"),
        ] {
            let result = agent.batch_execute(&sql).await;
            match result {
                Err(e) => assert_eq!(sqlstate(&e), "42501", "{sql}: {}", db_message(&e)),
                Ok(()) => {
                    // GRANT without the grant option only warns; it must change nothing.
                    assert!(sql.starts_with("GRANT"), "{sql} succeeded");
                }
            }
        }
        let sql = format!(
            "CREATE OR REPLACE FUNCTION {function} RETURNS text LANGUAGE sql AS $$SELECT 'anne'$$"
        );
        let e = agent
            .batch_execute(&sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"));
        assert!(
            ["42501", "42P13"].contains(&sqlstate(&e).as_str()),
            "{sql}: {}",
            db_message(&e)
        );
    }
    let grants: i64 = db
        .admin_i64(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE n.nspname = 'rowgate' AND a.grantee = 0",
        )
        .await;
    assert_eq!(grants, 0, "PUBLIC may execute an identity function");

    // caller_id() answers bob's id to bob's transaction, and nothing else: it takes no
    // argument, so no value of another row or caller can be passed through it.
    enter(&agent, &bob_signed).await;
    let id: String = agent
        .query_one("SELECT rowgate.caller_id()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, "bob");
    assert_eq!(read_views(&agent).await, Ok(bob));
    agent.batch_execute("ROLLBACK").await.unwrap();
    db.teardown().await;
}

/// The signed value never appears where another session of the serving role could copy it:
/// the query text in pg_stat_activity carries `$1`, not the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_value_is_not_visible_to_other_sessions() {
    let db = TestDb::new().await;
    let victim = db.agent().await;
    let spy = db.agent().await;
    let anne_signed = db.key.sign("anne");
    let (_, digest) = anne_signed.split_once('.').unwrap();
    // anne's request, left open (idle in transaction) right after the caller is set.
    enter(&victim, &anne_signed).await;
    let rows = spy
        .query(
            "SELECT coalesce(query, '') FROM pg_stat_activity \
             WHERE usename = current_user AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let texts: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // The channel exists (the spy reads the other session's last statement) ...
    assert!(
        texts
            .iter()
            .any(|t| t.contains("set_config('rowgate.caller', $1")),
        "the spy cannot see the other session's query: {texts:?}"
    );
    // ... and carries no value.
    for text in &texts {
        assert!(!text.contains(digest), "the signed value leaked: {text}");
    }
    // Settings of other sessions are not readable at all.
    let own: Option<String> = spy
        .query_one("SELECT current_setting('rowgate.caller', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(own.as_deref().unwrap_or("").is_empty(), "{own:?}");
    victim.batch_execute("ROLLBACK").await.unwrap();
    db.teardown().await;
}

/// Objects the serving role can make in its own session (temporary tables, functions and
/// operators in pg_temp) do not change what the identity functions or the views read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_objects_cannot_shadow_what_the_identity_functions_read() {
    let db = TestDb::new().await;
    let (bob, _) = bob_and_anne(&db).await;
    let agent = db.agent().await;
    // PUBLIC's TEMPORARY privilege on a database is PostgreSQL's default; the serving role has
    // it unless the administrator revoked it.
    let temp: bool = agent
        .query_one(
            "SELECT has_database_privilege(current_database(), 'TEMPORARY')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        temp,
        "the premise: the serving role can create temporary objects here"
    );
    // Every relation a policy fragment or an identity function names, as a temp table that
    // grants everything to everyone and lists an unknown caller.
    agent
        .batch_execute(
            "CREATE TEMP TABLE app_users (id text, tenant_id int, display_name text); \
             INSERT INTO app_users VALUES ('mallory', 1, 'M'), ('bob', 2, 'B'); \
             CREATE TEMP TABLE user_roles (user_id text, role text); \
             INSERT INTO user_roles VALUES ('bob', 'Sales Manager'), ('mallory', 'Sales Manager'); \
             CREATE TEMP TABLE permissions (department text, allowed_role text); \
             INSERT INTO permissions SELECT d, 'HR Manager' FROM unnest(ARRAY['HR','Sales','Operations','Executive','Engineering','Finance']) d; \
             CREATE TEMP TABLE folder_access (folder_id int, role text); \
             CREATE TEMP TABLE item_users (item_id int, user_id text); \
             CREATE TEMP TABLE orders (id int, user_id text); \
             CREATE TEMP TABLE documents (id int, folder_id int); \
             CREATE TEMP TABLE identity_key (key bytea); \
             INSERT INTO identity_key VALUES (decode(repeat('00', 32), 'hex')); \
             CREATE FUNCTION pg_temp.current_setting(text, boolean) RETURNS text \
                 LANGUAGE sql AS $$SELECT '616e6e65.' || repeat('0', 64)$$; \
             CREATE FUNCTION pg_temp.caller_id() RETURNS text LANGUAGE sql AS $$SELECT 'anne'$$",
        )
        .await
        .unwrap_or_else(|e| panic!("temporary objects: {}", db_message(&e)));
    let bob_signed = db.key.sign("bob");
    enter(&agent, &bob_signed).await;
    assert_eq!(
        read_views(&agent).await,
        Ok(bob.clone()),
        "views with shadowing temp tables"
    );
    let row = agent
        .query_one("SELECT rowgate.caller_id(), rowgate.caller_exists(), rowgate.caller_attributes()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("identity functions: {}", db_message(&e)));
    assert_eq!(row.get::<_, String>(0), "bob");
    assert!(row.get::<_, bool>(1));
    let attributes: String = row.get(2);
    assert!(
        attributes.contains("HR Manager") && !attributes.contains("Sales"),
        "{attributes}"
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    // A value signed with the temp table's all-zero key is still refused, and an id that only
    // the temp app_users lists does not exist.
    let zero = IdentityKey([0; 32]);
    enter(&agent, &zero.sign("anne")).await;
    none(
        &read_views(&agent).await,
        "signed with the temp table's key",
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    enter(&agent, &db.key.sign("mallory")).await;
    let exists: bool = agent
        .query_one("SELECT rowgate.caller_exists()", &[])
        .await
        .unwrap_or_else(|e| panic!("caller_exists: {}", db_message(&e)))
        .get(0);
    assert!(
        !exists,
        "caller_exists() read the session's temporary app_users"
    );
    agent.batch_execute("ROLLBACK").await.unwrap();
    db.teardown().await;
}
