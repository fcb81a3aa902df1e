//! Limits and failures: exact `max_rows` truncation, the statement timeout, and a database that
//! is unreachable or goes away mid-run (simulated without stopping the shared PostgreSQL: a
//! closed port, a port that never answers, and terminated backends of the serving role).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use rowgate::execute::{ExecuteConfig, Executor};
use rowgate::http::AppState;
use rowgate::metrics::Metrics;
use rowgate::pipeline::RewriteCache;
use serde_json::json;

const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rows_truncation_is_exact() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.max_rows = 100;
    let router = db.router_with(&config).await;
    let visible = db
        .admin_i64("SELECT count(*) FROM invoices WHERE department IN ('HR', 'Operations')")
        .await as usize;
    assert!(visible > 100, "{visible}");
    let ask = |sql: String, max_rows: Option<usize>| {
        let router = router.clone();
        async move {
            let mut body = json!({"user_id": "bob", "sql": sql});
            if let Some(n) = max_rows {
                body["max_rows"] = json!(n);
            }
            let reply = post_query(&router, &body).await;
            let rows = reply.rows().len();
            assert_eq!(reply.ok()["row_count"], json!(rows));
            (
                rows,
                reply.ok()["truncated"]
                    .as_bool()
                    .expect("truncated is a bool"),
            )
        }
    };
    // More rows than asked for: exactly N, truncated.
    for n in [1, 2, 17, 99, 100] {
        assert_eq!(
            ask("SELECT id FROM invoices".into(), Some(n)).await,
            (n, true),
            "{n}"
        );
    }
    // Exactly N rows: not truncated; N + 1: truncated.
    for n in [1, 5, 50, 100] {
        let sql = format!("SELECT id FROM invoices ORDER BY id LIMIT {n}");
        assert_eq!(ask(sql.clone(), Some(n)).await, (n, false), "{sql}");
        assert_eq!(ask(sql.clone(), Some(n + 1)).await, (n, false), "{sql}");
        if n > 1 {
            assert_eq!(ask(sql.clone(), Some(n - 1)).await, (n - 1, true), "{sql}");
        }
        assert_eq!(ask(sql, None).await, (n, false));
    }
    // The server's cap: 100 of the table, 100 of exactly 100, and a request cannot raise it.
    assert_eq!(
        ask("SELECT id FROM invoices".into(), None).await,
        (100, true)
    );
    assert_eq!(
        ask("SELECT id FROM invoices".into(), Some(visible)).await,
        (100, true)
    );
    assert_eq!(
        ask("SELECT id FROM invoices LIMIT 100".into(), None).await,
        (100, false)
    );
    assert_eq!(
        ask("SELECT id FROM invoices LIMIT 101".into(), None).await,
        (100, true)
    );
    // Zero rows: nothing to cut.
    assert_eq!(
        ask("SELECT id FROM invoices WHERE false".into(), Some(3)).await,
        (0, false)
    );

    // A server whose cap is above what the caller sees returns everything, not truncated.
    let mut config = db.serve_config();
    config.max_rows = visible;
    let router = db.router_with(&config).await;
    let reply = query(&router, "bob", "SELECT id FROM invoices").await;
    assert_eq!(reply.rows().len(), visible);
    assert_eq!(reply.ok()["truncated"], json!(false));
    db.teardown().await;
}

/// A cross join of what bob sees (blocks × invoices × transactions, about 10^8 rows) runs for
/// many seconds (measured: ~17 s on the superuser's tables with bob's departments).
const SLOW: &str = "SELECT count(*) FROM blocks a, invoices b, transactions c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_statement_timeout_is_query_timeout_and_the_connection_recovers() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.execute = ExecuteConfig {
        statement_timeout: Duration::from_millis(300),
        pool_wait: Duration::from_secs(5),
        pool_size: 1,
    };
    let router = db.router_with(&config).await;
    // Warm the only connection.
    assert_eq!(
        rows(&router, "bob", "SELECT 1 AS one").await,
        vec![json!({"one": 1})]
    );
    for _ in 0..2 {
        let started = Instant::now();
        let reply = query(&router, "bob", SLOW).await;
        let elapsed = started.elapsed();
        reply.error(StatusCode::GATEWAY_TIMEOUT, "query_timeout");
        // The server cancelled it, not the gateway's fallback two seconds later.
        assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        // The same (only) connection serves the next query, correctly.
        let count = rows(&router, "bob", "SELECT count(*) AS n FROM invoices").await;
        let expected = db
            .admin_rows(
                "SELECT count(*) AS n FROM invoices WHERE department IN ('HR', 'Operations')",
            )
            .await;
        assert_eq!(count, expected);
    }
    // Another caller on the same connection sees only their own rows (no leftover identity).
    let anne = rows(&router, "anne", "SELECT count(*) AS n FROM invoices").await;
    let expected = db
        .admin_rows(
            "SELECT count(*) AS n FROM invoices WHERE department IN ('HR', 'Sales', 'Operations')",
        )
        .await;
    assert_eq!(anne, expected);
    db.teardown().await;
}

/// The same state as `prepare` builds, but with the executor pointed at `database`.
async fn state_against(
    db: &TestDb,
    database: tokio_postgres::Config,
    execute: ExecuteConfig,
) -> Arc<AppState> {
    let good = db.state_with(&db.serve_config()).await;
    let executor = Executor::new(database, db.key.clone(), execute).expect("the pool builds");
    Arc::new(AppState {
        live: good.live.clone(),
        executor,
        identity: good.identity.clone(),
        rewrites: RewriteCache::new(*good.rewrites.limits()),
        max_rows: good.max_rows,
        metrics: Metrics::new().unwrap(),
        audit: good.audit.clone(),
    })
}

async fn assert_unavailable(router: &axum::Router, within: Duration) {
    let requests = [
        json!({"user_id": "bob", "sql": "SELECT count(*) FROM invoices"}),
        json!({"user_id": "bob", "sql": "SELECT count(*) FROM invoices", "dry_run": true}),
        json!({"user_id": "mallory", "sql": "SELECT 1"}),
    ];
    for body in requests {
        let started = Instant::now();
        post_query(router, &body)
            .await
            .error(UNAVAILABLE, "database_unavailable");
        assert!(
            started.elapsed() < within,
            "{body}: {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    get(router, "/readyz")
        .await
        .error(UNAVAILABLE, "database_unavailable");
    get(router, "/v1/schema?user_id=bob")
        .await
        .error(UNAVAILABLE, "database_unavailable");
    assert!(started.elapsed() < within * 2, "{:?}", started.elapsed());
    // Liveness is not readiness; metrics still render.
    get(router, "/healthz").await.ok();
    let metrics = get(router, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains("code=\"database_unavailable\""),
        "{}",
        metrics.text
    );
    // Refusals that need no database still come first.
    query(router, "bob", "SELECT * FROM permissions")
        .await
        .error(StatusCode::FORBIDDEN, "table_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_database_unavailable_quickly() {
    let db = TestDb::new().await;
    let closed = db.agent_config_at(1);
    let execute = ExecuteConfig {
        statement_timeout: Duration::from_secs(5),
        pool_wait: Duration::from_millis(500),
        pool_size: 2,
    };
    // `prepare` refuses to start against it, with a message, instead of hanging.
    let mut config = db.serve_config();
    config.database = closed.clone();
    config.execute = execute.clone();
    let started = Instant::now();
    let refused = rowgate::server::prepare(&config).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    match refused {
        Err(rowgate::server::ServeError::Database(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("unexpected refusal: {other}"),
        Ok(_) => panic!("prepare succeeded against a closed port"),
    }
    // A running gateway whose database went away answers 503 quickly.
    let router = rowgate::http::router(state_against(&db, closed, execute).await);
    assert_unavailable(&router, Duration::from_secs(2)).await;
    db.teardown().await;
}

/// A server that accepts connections and never answers: the pool's wait bounds the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answers_is_database_unavailable_not_a_hang() {
    let db = TestDb::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let black_hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut silent = db.agent_config_at(port);
    silent.connect_timeout(Duration::from_secs(30));
    let execute = ExecuteConfig {
        statement_timeout: Duration::from_secs(5),
        pool_wait: Duration::from_millis(500),
        pool_size: 2,
    };
    let router = rowgate::http::router(state_against(&db, silent, execute).await);
    assert_unavailable(&router, Duration::from_secs(3)).await;
    black_hole.abort();
    db.teardown().await;
}

async fn terminate_agent_backends(db: &TestDb) -> i64 {
    let rows = db
        .admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&db.role],
        )
        .await
        .unwrap();
    rows.len() as i64
}

/// The database "restarts" between requests: the serving role's connections are killed. The
/// next request may be told database_unavailable (never a 500), and the gateway recovers by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_recovers_when_its_connections_are_killed_between_requests() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.execute.pool_size = 1;
    config.execute.pool_wait = Duration::from_secs(2);
    let router = db.router_with(&config).await;
    let sql = "SELECT count(*) AS n FROM invoices";
    let expected = rows(&router, "bob", sql).await;
    for round in 0..3 {
        assert!(terminate_agent_backends(&db).await >= 1, "round {round}");
        let first = query(&router, "bob", sql).await;
        if first.status != StatusCode::OK {
            first.error(UNAVAILABLE, "database_unavailable");
        } else {
            assert_eq!(first.rows(), &expected);
        }
        assert_eq!(rows(&router, "bob", sql).await, expected, "round {round}");
    }
    get(&router, "/readyz").await.ok();

    // With several pooled connections, each dead one costs at most one request.
    let mut config = db.serve_config();
    config.execute.pool_size = 4;
    let router = db.router_with(&config).await;
    let mut warm = Vec::new();
    for _ in 0..4 {
        let router = router.clone();
        warm.push(tokio::spawn(async move {
            query(
                &router,
                "bob",
                "SELECT count(*) AS n FROM invoices a, invoices b WHERE a.id < 200",
            )
            .await
        }));
    }
    for task in warm {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
    terminate_agent_backends(&db).await;
    let mut failures = 0;
    let mut recovered = false;
    for _ in 0..6 {
        let reply = query(&router, "bob", sql).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.rows(), &expected);
            recovered = true;
            break;
        }
        reply.error(UNAVAILABLE, "database_unavailable");
        failures += 1;
    }
    assert!(recovered && failures <= 4, "{failures} failures");
    db.teardown().await;
}

/// The database goes away while a query runs: the answer is database_unavailable (the server
/// said "terminating connection due to administrator command", which is what a shutdown says
/// too), not a query_failed that blames the agent's SQL; and the next request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_query_is_database_unavailable_and_the_gateway_recovers() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.execute.pool_size = 1;
    config.execute.statement_timeout = Duration::from_secs(20);
    let router = db.router_with(&config).await;
    let expected = rows(&router, "bob", "SELECT count(*) AS n FROM invoices").await;
    let running = {
        let router = router.clone();
        tokio::spawn(async move { query(&router, "bob", SLOW).await })
    };
    // Wait until the query is running, then kill it.
    let started = Instant::now();
    loop {
        let active = db
            .admin_i64(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}' AND state = 'active'",
                db.role
            ))
            .await;
        if active > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slow query never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(terminate_agent_backends(&db).await >= 1);
    let reply = running.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    reply.error(UNAVAILABLE, "database_unavailable");
    // Recovery: at most one more failure, then the right answer.
    let next = query(&router, "bob", "SELECT count(*) AS n FROM invoices").await;
    if next.status != StatusCode::OK {
        next.error(UNAVAILABLE, "database_unavailable");
    }
    assert_eq!(
        rows(&router, "bob", "SELECT count(*) AS n FROM invoices").await,
        expected
    );
    db.teardown().await;
}
