//! The execute stage's fence, attacked below the guard: SQL handed straight to the executor (as
//! if the guard had been bypassed) must not change what the next request on the same connection
//! runs under, and a request that does not finish cleanly must not hand its connection on.

mod common;

use std::time::Duration;

use common::*;
use rowgate::execute::{ExecuteConfig, ExecuteError, Executor};

/// An executor for the test database's serving role, with one connection, so that every
/// request after the first meets what the one before left behind.
fn one_connection(db: &TestDb, pg: tokio_postgres::Config, timeout: Duration) -> Executor {
    let config = ExecuteConfig {
        statement_timeout: timeout,
        pool_wait: Duration::from_secs(10),
        pool_size: 1,
    };
    Executor::new(pg, db.key.clone(), config).expect("the pool builds")
}

/// The backend pid and the settings the fence pins, as one request sees them.
const SETTINGS: &str = "SELECT pg_backend_pid()::text, current_setting('statement_timeout'), \
     current_setting('search_path'), current_setting('standard_conforming_strings'), \
     current_setting('transaction_read_only'), current_setting('default_transaction_read_only'), \
     current_setting('work_mem')";

async fn settings(executor: &Executor) -> Vec<String> {
    let output = executor
        .run("bob", &policy().version, SETTINGS, 10)
        .await
        .expect("the settings query runs");
    let row = &output.rows[0];
    (0..7).map(|i| row.get::<_, String>(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_changed_inside_a_request_do_not_outlive_it() {
    let db = TestDb::new().await;
    let executor = one_connection(&db, db.agent_config(), Duration::from_millis(1500));
    let before = settings(&executor).await;
    assert_eq!(
        before[1..6],
        ["1500ms", "pg_catalog,public", "on", "on", "on"]
    );
    // Session-wide changes (is_local = false), which would outlive a committed transaction.
    let attack = "SELECT set_config('statement_timeout', '0', false), \
         set_config('search_path', 'public, pg_catalog', false), \
         set_config('standard_conforming_strings', 'off', false), \
         set_config('default_transaction_read_only', 'off', false), \
         set_config('work_mem', '64kB', false), \
         set_config('rowgate.caller', 'someone', false), current_setting('work_mem')";
    let output = executor
        .run("bob", &policy().version, attack, 10)
        .await
        .expect("the attack itself runs");
    // The change took effect inside the request (so the check below is not vacuous).
    assert_eq!(output.rows[0].get::<_, String>(6), "64kB");
    let after = settings(&executor).await;
    // Same connection (same backend), every setting as before.
    assert_eq!(after, before);
    // Back in the pool, the connection is outside any transaction.
    let state = db
        .admin
        .query_one(
            "SELECT state FROM pg_stat_activity WHERE pid = $1::text::int",
            &[&after[0]],
        )
        .await
        .unwrap();
    assert_eq!(state.get::<_, String>(0), "idle");
    // And the next caller is who the gateway says, not what the attack left behind.
    let visible = executor
        .run(
            "anne",
            &policy().version,
            "SELECT count(*) FROM rowgate.invoices",
            10,
        )
        .await
        .expect("anne's count runs");
    let expected = db
        .admin_i64(
            "SELECT count(*) FROM invoices WHERE department IN ('HR', 'Sales', 'Operations')",
        )
        .await;
    assert_eq!(visible.rows[0].get::<_, i64>(0), expected);
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_startup_options_are_kept_but_cannot_loosen_the_pins() {
    let db = TestDb::new().await;
    let mut pg = db.agent_config();
    pg.options("-c work_mem=7MB -c statement_timeout=0 -c default_transaction_read_only=off");
    let executor = one_connection(&db, pg, Duration::from_secs(3));
    let seen = settings(&executor).await;
    assert_eq!(seen[1], "3s");
    assert_eq!(seen[5], "on");
    assert_eq!(seen[6], "7MB");
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_mid_query_closes_its_connection() {
    let db = TestDb::new().await;
    let executor = one_connection(&db, db.agent_config(), Duration::from_secs(5));
    let first = settings(&executor).await;
    // The HTTP client went away: axum drops the handler's future mid-query.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        executor.run("anne", &policy().version, "SELECT pg_sleep(3)", 10),
    )
    .await;
    assert!(abandoned.is_err(), "the sleep should still be running");
    // The only connection was closed, not handed on mid-transaction: the next request gets a
    // fresh backend, in a transaction of its own.
    let next = settings(&executor).await;
    assert_ne!(next[0], first[0], "the abandoned connection was reused");
    let bob = executor
        .run(
            "bob",
            &policy().version,
            "SELECT count(*) FROM rowgate.invoices",
            10,
        )
        .await
        .expect("bob's count runs");
    let expected = db
        .admin_i64("SELECT count(*) FROM invoices WHERE department IN ('HR', 'Operations')")
        .await;
    assert_eq!(bob.rows[0].get::<_, i64>(0), expected);
    db.teardown().await;
}

/// The installed policy version is read in the request's own transaction: a query rewritten
/// under one policy never runs against views installed for another, not even in the seconds
/// before the gateway's reload poll would notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_never_runs_against_views_of_another_policy() {
    let db = TestDb::new().await;
    let executor = one_connection(&db, db.agent_config(), Duration::from_secs(5));
    let version = policy().version;
    let count = "SELECT count(*) FROM rowgate.invoices";
    executor
        .run("bob", &version, count, 10)
        .await
        .expect("runs under the installed policy");
    fn out_of_step<T>(result: Result<T, ExecuteError>, installed: Option<&str>) {
        match result {
            Err(ExecuteError::OutOfStep(e)) => assert_eq!(e.installed.as_deref(), installed),
            Err(other) => panic!("expected out of step, got {other}"),
            Ok(_) => panic!("expected out of step, got an answer"),
        }
    }
    out_of_step(
        executor.run("bob", "0123456789abcdef", count, 10).await,
        Some(version.as_str()),
    );
    out_of_step(
        executor.attributes("bob", "0123456789abcdef").await,
        Some(version.as_str()),
    );
    // Another install lands (here: its stamp), and the very next request sees it.
    db.admin
        .batch_execute("COMMENT ON SCHEMA rowgate IS 'rowgate policy fedcba9876543210'")
        .await
        .unwrap();
    out_of_step(
        executor.run("bob", &version, count, 10).await,
        Some("fedcba9876543210"),
    );
    db.admin
        .batch_execute("COMMENT ON SCHEMA rowgate IS NULL")
        .await
        .unwrap();
    out_of_step(executor.run("bob", &version, count, 10).await, None);
    db.teardown().await;
}

/// A statement the connection has prepared before is sent in the same round trip as the caller
/// check; the check's verdict must still win, and nothing of the query reach the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_checks_win_whether_or_not_the_statement_is_cached() {
    let db = TestDb::new().await;
    let executor = one_connection(&db, db.agent_config(), Duration::from_secs(5));
    let version = policy().version;
    let sql = "SELECT id FROM rowgate.invoices ORDER BY id";
    let bad = "SELECT no_such_column FROM rowgate.invoices";
    for round in ["first (prepared now)", "second (cached)"] {
        let bob = executor.run("bob", &version, sql, 5).await;
        assert_eq!(bob.expect(round).rows.len(), 5, "{round}");
        match executor.run("mallory", &version, sql, 5).await {
            Err(ExecuteError::UnknownUser) => {}
            other => panic!(
                "{round}: expected unknown_user, got {:?}",
                other.map(|o| o.rows)
            ),
        }
        match executor.run("bob", "0123456789abcdef", sql, 5).await {
            Err(ExecuteError::OutOfStep(_)) => {}
            other => panic!(
                "{round}: expected out of step, got {:?}",
                other.map(|o| o.rows)
            ),
        }
        // A query PostgreSQL refuses: the unknown caller still hears only that.
        match executor.run("mallory", &version, bad, 5).await {
            Err(ExecuteError::UnknownUser) => {}
            other => panic!(
                "{round}: expected unknown_user, got {:?}",
                other.map(|o| o.rows)
            ),
        }
        match executor.run("bob", &version, bad, 5).await {
            Err(ExecuteError::QueryFailed { sqlstate, .. }) => assert_eq!(sqlstate, "42703"),
            other => panic!(
                "{round}: expected query_failed, got {:?}",
                other.map(|o| o.rows)
            ),
        }
    }
    db.teardown().await;
}
