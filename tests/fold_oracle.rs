//! Error oracles that PostgreSQL's constant folding opens (issue 20): an agent expression that
//! names a column but folds to a constant (`COALESCE('x', c.name)::date`) is deemed leakproof
//! by the planner, which may then run it on a row before the permission rule. Each probe is
//! asked before and after a hidden canary row is planted: the answers must be the same.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::Value;

/// A customer in a department no role is granted: hidden from every caller.
const CANARY: &str = "INSERT INTO customers (id, name, email, department, active, created_at) \
                      VALUES (99001, 'canary', 'c@x', 'Vault', true, now())";

/// The probes: `{id}` is the canary's id. Each raised on the canary, and only there, before
/// the fence decided by shape rather than by spelling.
const PROBES: &[&str] = &[
    // The probe, and the other spellings that fold the same way.
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN COALESCE('x', c.name)::date END IS NULL",
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN (CASE WHEN false THEN c.name ELSE 'x' END)::date END IS NULL",
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN (CASE WHEN c.name IS NULL OR true THEN 'x' END)::date END IS NULL",
    // A subquery's output that folds to a constant, cast in the parent's filter.
    "SELECT count(*) FROM (SELECT id, department, CASE WHEN false THEN name ELSE 'x' END AS k \
     FROM customers) s WHERE s.id = {id} AND CASE WHEN s.department = 'Vault' THEN s.k::date END IS NULL",
    "SELECT count(*) FROM customers c, (SELECT COALESCE('x', name) AS k FROM customers WHERE id = 1) s \
     WHERE c.id = {id} AND CASE WHEN c.department = 'Vault' THEN s.k::date END IS NULL",
    // JOIN ... ON and HAVING.
    "SELECT count(*) FROM invoices i JOIN customers c ON c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN COALESCE('x', c.name)::date END IS NULL",
    "SELECT c.id FROM customers c WHERE c.id = {id} GROUP BY c.id, c.department, c.name \
     HAVING CASE WHEN c.department = 'Vault' THEN COALESCE('x', c.name)::date END IS NULL",
    // Other folds: NULLIF, GREATEST, a boolean constant in AND, an integer and a json cast.
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN GREATEST('x', 'x', COALESCE('x', c.name))::date END IS NULL",
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND (c.department = 'Vault' AND (c.name IS NOT NULL OR true) AND COALESCE('y', c.name)::int = 1)",
    "SELECT count(*) FROM customers c WHERE c.id = {id} \
     AND CASE WHEN c.department = 'Vault' THEN COALESCE('{', c.email)::jsonb END IS NULL",
    // A column of an outer query is a parameter of the inner one, a constant to the planner.
    "SELECT (SELECT count(*) FROM customers h WHERE h.id = {id} \
     AND CASE WHEN h.department = 'Vault' THEN v.name::date END IS NULL) FROM customers v WHERE v.id = 2",
    "SELECT (SELECT count(*) FROM customers h WHERE h.id = {id} AND h.department = 'Vault' \
     AND h.created_at::date = v.name::date) FROM customers v WHERE v.id = 2",
    // Whole rows of two outer ranges (`record = record` raises on rows of unlike shapes), and
    // `s.f`, PostgreSQL's notation for the call `f(s)` (hash_record raises on a json field).
    "SELECT (SELECT count(*) FROM customers h WHERE h.id = {id} AND h.department = 'Vault' \
     AND (h.id = 0 OR a = b)) FROM customers a, invoices b WHERE a.id = 2 AND b.id = 2",
    "SELECT count(*) FROM customers h, (SELECT COALESCE('{}'::json, NULL) AS j FROM customers \
     WHERE id = 2) s WHERE h.id = {id} AND h.department = 'Vault' AND h.id = s.hash_record",
];

async fn answers(router: &axum::Router, user: &str) -> Vec<(StatusCode, Option<String>, Value)> {
    let mut out = Vec::new();
    for probe in PROBES {
        let reply = query(router, user, &probe.replace("{id}", "99001")).await;
        out.push((
            reply.status,
            reply.code().map(str::to_string),
            reply.json["rows"].clone(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_expressions_answer_the_same_whether_or_not_a_hidden_row_exists() {
    let db = TestDb::new().await;
    let router = db.router().await;
    // bob is known, `nobody` is not: both must learn nothing.
    let users = ["bob", "anne", "nobody"];
    let mut before = Vec::new();
    for user in users {
        before.push(answers(&router, user).await);
    }
    db.admin.batch_execute(CANARY).await.expect("canary");
    let mut leaks = Vec::new();
    for (user, before) in users.iter().zip(before) {
        let after = answers(&router, user).await;
        for ((probe, b), a) in PROBES.iter().zip(&before).zip(&after) {
            if b != a {
                leaks.push(format!("{user}: {b:?} became {a:?} for\n  {probe}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "the canary changed {} answers:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // The fenced expressions still run on rows the caller sees: the same cast raises there.
    let reply = query(
        &router,
        "bob",
        "SELECT count(*) FROM customers c WHERE c.department = 'HR' \
         AND COALESCE('x', c.name)::date IS NULL",
    )
    .await;
    reply.error(StatusCode::UNPROCESSABLE_ENTITY, "query_failed");
    db.teardown().await;
}

/// The shapes the fence rewrites still run, and answer what PostgreSQL answers for the same
/// rows: bob sees departments HR and Operations, so each query is checked against the
/// superuser's copy with that filter written in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_shapes_run_and_answer_the_same_rows() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let bob = "department IN ('HR', 'Operations')";
    let cases = [
        // An output wrapped in a subquery, repeated in a DISTINCT's ORDER BY or DISTINCT ON.
        "SELECT * FROM (SELECT DISTINCT upper(name) AS u FROM customers WHERE {bob} \
         ORDER BY upper(name)) s ORDER BY 1",
        "SELECT * FROM (SELECT DISTINCT ON (upper(department)) upper(department), id \
         FROM customers WHERE {bob} ORDER BY upper(department), id) s ORDER BY 1",
        // Grouped by a wrapped output, by position and by expression.
        "SELECT * FROM (SELECT date_trunc('month', issued_on) AS m, count(*) AS n FROM invoices \
         WHERE {bob} GROUP BY 1) s ORDER BY m",
        "SELECT * FROM (SELECT department || '!' AS d, sum(amount) AS total FROM invoices \
         WHERE {bob} GROUP BY department || '!') s WHERE s.total > 0 ORDER BY d",
        // A window's output filtered outside, a UNION of wrapped outputs, a CTE over `*`.
        "SELECT * FROM (SELECT id, rank() OVER (PARTITION BY department ORDER BY amount DESC, id) \
         AS r FROM invoices WHERE {bob}) s WHERE r <= 2 ORDER BY id",
        "SELECT * FROM (SELECT lower(name) AS n FROM customers WHERE {bob} AND id < 20 \
         UNION SELECT upper(name) FROM customers WHERE {bob} AND id < 20) s ORDER BY n",
        "WITH w AS (SELECT * FROM invoices WHERE {bob}) SELECT c.id, count(*) FROM customers c \
         JOIN w ON w.customer_id = c.id WHERE c.{bob} GROUP BY c.id ORDER BY c.id LIMIT 5",
        // Filters wrapped whole: casts, functions, CASE, arithmetic of another level.
        "SELECT count(*) FROM customers c WHERE c.{bob} AND upper(c.name) LIKE 'A%' \
         AND CASE WHEN c.active THEN c.created_at::date > '2000-01-01' ELSE true END",
        "SELECT c.id, (SELECT count(*) FROM invoices i WHERE i.{bob} AND i.customer_id = c.id \
         AND i.amount > c.id * 0) FROM customers c WHERE c.{bob} ORDER BY c.id LIMIT 5",
    ];
    for case in cases {
        let ours = rows(&router, "bob", &case.replace("{bob}", "id IS NOT NULL")).await;
        let reference = db.admin_rows(&case.replace("{bob}", bob)).await;
        assert_eq!(ours, reference, "{case}");
    }
    db.teardown().await;
}
