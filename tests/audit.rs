//! The audit trail through the real router, against a real PostgreSQL: one JSON line per
//! decision and one per outcome, sharing a decision id; refusals recorded with their code; no
//! literal of the query and no result value in the file; fail-closed when the sink cannot be
//! written; a rotated file is reopened.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use common::*;
use rowgate::audit::AuditSink;
use rowgate::auth::ApiKeys;
use serde_json::{json, Value};

fn audit_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rowgate-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Every line of the file, each of which must be a JSON object.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the audit file exists");
    assert!(text.ends_with('\n'), "every line ends: {text:?}");
    text.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

fn decisions(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["audit"] == "decision").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_outcomes_are_json_lines_without_literals_or_rows() {
    let db = TestDb::new().await;
    let path = audit_path("trail.jsonl");
    let mut config = db.serve_config();
    config.audit = AuditSink::File(path.clone());
    let router = db.router_with(&config).await;
    let version = get(&router, "/readyz").await.ok()["policy_version"].clone();

    // Allowed and run; its literals are a salary-like amount and an e-mail address.
    let salary = "SELECT c.name, i.amount FROM invoices i JOIN customers c ON c.id = i.customer_id \
                  WHERE i.amount <> 987654.32 AND c.name <> 'zed.secret@example.com' ORDER BY i.id LIMIT 5";
    let ran = query(&router, "bob", salary).await;
    let ran_rows = ran.rows().clone();
    assert_eq!(ran_rows.len(), 5);
    // The same shape with other values: the same fingerprint.
    query(
        &router,
        "bob",
        &salary
            .replace("987654.32", "1")
            .replace("zed.secret", "other"),
    )
    .await
    .ok();
    // Refused by the policy: the hidden e-mail column, with an e-mail literal.
    query(
        &router,
        "bob",
        "SELECT email FROM customers WHERE email = 'ann.hidden@example.com'",
    )
    .await
    .error(StatusCode::FORBIDDEN, "column_not_allowed");
    // Refused before it parses: nothing about its text is kept.
    query(&router, "bob", "SELECT 'topsecret-literal' FROM (")
        .await
        .error(StatusCode::BAD_REQUEST, "parse_error");
    // Allowed, then refused by PostgreSQL at run time.
    query(
        &router,
        "anne",
        "SELECT 1 / (amount - amount) FROM invoices WHERE amount <> 424242",
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY, "query_failed");
    // A dry run is a decision too.
    post_query(
        &router,
        &json!({"user_id": "carol", "sql": "SELECT count(*) FROM orders WHERE total > 31337", "dry_run": true}),
    )
    .await
    .ok();

    let lines = lines(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    for literal in [
        "987654",
        "zed.secret",
        "ann.hidden",
        "topsecret",
        "424242",
        "31337",
    ] {
        assert!(
            !text.contains(literal),
            "`{literal}` is in the trail:\n{text}"
        );
    }
    // Customer names are the distinctive values of the answer (numbers could collide with
    // timestamps and durations).
    for row in &ran_rows {
        let name = row["name"].as_str().expect("a name");
        assert!(
            !text.contains(name),
            "result value `{name}` is in the trail"
        );
    }

    let decisions = decisions(&lines);
    assert_eq!(decisions.len(), 6, "{text}");
    let outcomes: HashMap<&str, &Value> = lines
        .iter()
        .filter(|l| l["audit"] == "outcome")
        .map(|l| (l["decision_id"].as_str().unwrap(), l))
        .collect();
    for d in &decisions {
        assert_eq!(d["policy_version"], version, "{d}");
        assert_eq!(d["endpoint"], "query", "{d}");
        assert!(d["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{d}");
        let id = d["decision_id"].as_str().expect("a decision id");
        let position = |v: &Value| lines.iter().position(|l| l == v).unwrap();
        match d["decision"].as_str() {
            // Every allowed decision has exactly one outcome, written after it.
            Some("allow") => {
                let outcome = outcomes
                    .get(id)
                    .unwrap_or_else(|| panic!("no outcome: {d}"));
                assert!(position(outcome) > position(d));
                assert!(outcome["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
                assert!(d["code"].is_null());
            }
            Some("refuse") => assert!(!outcomes.contains_key(id), "{d}"),
            other => panic!("decision {other:?}: {d}"),
        }
    }
    assert_eq!(outcomes.len(), 4);

    let [first, second, hidden, unparsed, failed, dry] = decisions[..] else {
        unreachable!()
    };
    assert_eq!(first["caller"], "bob");
    let fingerprint = first["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64);
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(second["fingerprint"], first["fingerprint"]);
    assert_ne!(failed["fingerprint"], first["fingerprint"]);
    let tables: Vec<&str> = first["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["invoices", "customers"]);
    assert!(first["tables"][0]["rule"]
        .as_str()
        .is_some_and(|r| r.contains("department")));
    let outcome = outcomes[first["decision_id"].as_str().unwrap()];
    assert_eq!(outcome["outcome"], "ok");
    assert_eq!(outcome["rows"], json!(5));
    assert_eq!(outcome["truncated"], json!(false));

    assert_eq!(hidden["decision"], "refuse");
    assert_eq!(hidden["code"], "column_not_allowed");
    assert!(hidden["fingerprint"].is_string(), "it parsed: {hidden}");
    assert_eq!(unparsed["code"], "parse_error");
    assert!(unparsed["fingerprint"].is_null(), "{unparsed}");

    assert_eq!(failed["decision"], "allow");
    assert_eq!(failed["caller"], "anne");
    let outcome = outcomes[failed["decision_id"].as_str().unwrap()];
    assert_eq!(outcome["outcome"], "error");
    assert_eq!(outcome["code"], "query_failed");
    assert_eq!(outcome["rows"], json!(0));

    assert_eq!(dry["dry_run"], json!(true));
    assert_eq!(dry["caller"], "carol");
    assert_eq!(
        outcomes[dry["decision_id"].as_str().unwrap()]["outcome"],
        "ok"
    );
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused_decisions() {
    let db = TestDb::new().await;
    let path = audit_path("unauthenticated.jsonl");
    let mut config = db.serve_config();
    config.audit = AuditSink::File(path.clone());
    config.api_keys = ApiKeys::parse("k1");
    let router = db.router_with(&config).await;
    call(
        &router,
        Method::POST,
        "/v1/query",
        &[("authorization", "Bearer wrong")],
        json!({"user_id": "bob", "sql": "SELECT id FROM invoices WHERE amount = 55555"})
            .to_string(),
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let lines = lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "refuse");
    assert_eq!(lines[0]["code"], "unauthorized");
    // Not authenticated: the body's claims are not recorded as the caller, nor its query.
    assert!(lines[0]["caller"].is_null());
    assert!(lines[0]["fingerprint"].is_null());
    let _ = std::fs::remove_file(&path);
    db.teardown().await;
}

/// A sink that cannot be written refuses every query before it runs: a query that would fail
/// in PostgreSQL answers `audit_unavailable`, not `query_failed`. Refusals keep their own code.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_trail_refuses_queries_before_they_run() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.audit = AuditSink::File("/dev/full".into());
    let router = db.router_with(&config).await;
    let reply = query(&router, "bob", "SELECT 1 / (amount - amount) FROM invoices").await;
    reply.error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    query(&router, "bob", "SELECT count(*) FROM invoices")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    query(&router, "bob", "SELECT * FROM permissions")
        .await
        .error(StatusCode::FORBIDDEN, "table_not_allowed");
    // A sink that cannot be opened stops start-up.
    config.audit = AuditSink::File("/nonexistent-dir/rowgate/audit.jsonl".into());
    let error = rowgate::server::prepare(&config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("audit"), "{error}");
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_is_reopened_and_nothing_is_lost() {
    let db = TestDb::new().await;
    let path = audit_path("rotated.jsonl");
    let mut config = db.serve_config();
    config.audit = AuditSink::File(path.clone());
    let router = db.router_with(&config).await;
    query(&router, "bob", "SELECT count(*) FROM invoices")
        .await
        .ok();
    let rotated = path.with_extension("jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    query(&router, "anne", "SELECT count(*) FROM invoices")
        .await
        .ok();
    let old = lines(&rotated);
    let new = lines(&path);
    assert_eq!((old.len(), new.len()), (2, 2), "{old:?}\n{new:?}");
    assert!(old
        .iter()
        .all(|l| l["caller"] == "bob" || l["caller"].is_null()));
    assert_eq!(new[0]["caller"], "anne");
    assert_eq!(new[0]["decision_id"], new[1]["decision_id"]);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&rotated);
    db.teardown().await;
}
