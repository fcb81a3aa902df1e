//! Per demo pattern, per caller: the rows the gateway returns equal the rows of the same query
//! run as the superuser with the permission rule written out by hand.
//!
//! Each agent query is a template in which a table reference is written `{{invoices}}` or
//! `{{invoices i}}` (also `{{public.invoices i}}`, `{{"invoices"}}`). For
//! the gateway the braces simply go away. For the reference, the reference becomes a derived
//! table, `(SELECT ... FROM public.invoices WHERE <the rule for that caller>) i`, with the rules
//! of DESIGN.md's demo written here independently of `policies/demo.yaml` and of install.
//!
//! Results are compared through one representation: the gateway's JSON rows, and the
//! superuser's rows encoded by `rowgate::encode` (the encoder the gateway uses), as multisets,
//! or in order when the query orders its result totally.

mod common;

use common::*;
use serde_json::{json, Value};

/// The template for the gateway (`agent`) and for the superuser (`reference`).
fn expand(template: &str, user: &str) -> (String, String) {
    let mut agent = String::new();
    let mut reference = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        agent.push_str(&rest[..start]);
        reference.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed {{") + start;
        let inner = rest[start + 2..end].trim();
        // `{{+ text}}`: text the reference needs and the agent does not write. The reference
        // reads subqueries, which have no primary key, so it names every grouped column.
        if let Some(only_reference) = inner.strip_prefix('+') {
            reference.push_str(only_reference);
            rest = &rest[end + 2..];
            continue;
        }
        agent.push_str(inner);
        let mut words: Vec<&str> = inner.split_whitespace().collect();
        if words.first() == Some(&"ONLY") {
            words.remove(0);
        }
        let (name, alias) = match words.as_slice() {
            [name] => (*name, None),
            [name, alias] => (*name, Some(*alias)),
            [name, "AS", alias] => (*name, Some(*alias)),
            _ => panic!("cannot read the table reference {inner:?}"),
        };
        let table = name.trim_start_matches("public.").trim_matches('"');
        let alias = alias.unwrap_or(table);
        reference.push_str(&format!("{} {alias}", reference_table(table, user)));
        rest = &rest[end + 2..];
    }
    agent.push_str(rest);
    reference.push_str(rest);
    (agent, reference)
}

/// How to compare: as multisets, or in order (the query orders its result totally).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Bag,
    Ordered,
}
use Compare::{Bag, Ordered};

/// At least 30 agent queries over the four patterns.
const QUERIES: &[(Compare, &str)] = &[
    // --- department roles: aggregates
    (Bag, "SELECT count(*) AS n FROM {{invoices}}"),
    (Bag, "SELECT department, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi \
           FROM {{invoices}} GROUP BY department"),
    (Bag, "SELECT count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM {{transactions}}"),
    (Bag, "SELECT * FROM {{customers}}"),
    (Bag, "SELECT department, count(*) FILTER (WHERE active) AS active, count(*) AS all_customers \
           FROM {{customers}} GROUP BY department HAVING count(*) > 1"),
    (Bag, "SELECT date_trunc('month', issued_on) AS month, count(*) AS n, sum(amount) AS total \
           FROM {{invoices}} WHERE issued_on >= '2024-01-01' GROUP BY 1"),
    (Bag, "SELECT DISTINCT department FROM {{transactions}}"),
    (Bag, "SELECT count(*) AS hidden FROM {{invoices}} WHERE amount = 777.77"),
    // --- joins, within and across patterns
    (Bag, "SELECT c.name, sum(i.amount) AS total FROM {{public.invoices i}} JOIN {{customers c}} \
           ON c.id = i.customer_id GROUP BY c.name"),
    (Bag, "SELECT i.id, i.amount, sum(t.amount) AS paid FROM {{invoices i}} JOIN {{transactions t}} \
           ON t.invoice_id = i.id GROUP BY i.id, i.amount HAVING sum(t.amount) > i.amount"),
    (Bag, "SELECT count(*) AS unpaid FROM {{invoices i}} LEFT JOIN {{transactions t}} \
           ON t.invoice_id = i.id WHERE t.id IS NULL"),
    (Bag, "SELECT c.department, count(DISTINCT c.id) AS customers, count(t.id) AS payments \
           FROM {{customers c}} JOIN {{invoices i}} ON i.customer_id = c.id \
           LEFT JOIN {{transactions t}} ON t.invoice_id = i.id GROUP BY c.department"),
    (Bag, "SELECT o.id, count(oi.id) AS lines, sum(oi.quantity * oi.unit_price) AS total, o.total AS stored \
           FROM {{orders o}} JOIN {{order_items oi}} ON oi.order_id = o.id GROUP BY o.id, o.total"),
    (Bag, "SELECT f.name, count(d.id) AS documents FROM {{folders f}} LEFT JOIN {{documents d}} \
           ON d.folder_id = f.id GROUP BY f.name"),
    (Bag, "SELECT (SELECT count(*) FROM {{invoices}}) AS invoices, (SELECT count(*) FROM {{orders}}) AS orders, \
                  (SELECT count(*) FROM {{items}}) AS items, (SELECT count(*) FROM {{blocks}}) AS blocks, \
                  (SELECT count(*) FROM {{order_items}}) AS lines"),
    (Bag, "SELECT o.status, count(*) AS n FROM {{orders o}} CROSS JOIN {{folders f}} GROUP BY o.status"),
    // --- subqueries, EXISTS, LATERAL
    (Bag, "SELECT id, amount FROM {{invoices}} WHERE amount > (SELECT avg(amount) * 1.8 FROM {{invoices}})"),
    (Bag, "SELECT c.id, c.name FROM {{customers c}} WHERE EXISTS \
           (SELECT 1 FROM {{invoices i}} WHERE i.customer_id = c.id AND i.amount > 900)"),
    (Bag, "SELECT c.id FROM {{customers c}} WHERE NOT EXISTS \
           (SELECT 1 FROM {{invoices i}} WHERE i.customer_id = c.id)"),
    (Bag, "SELECT count(*) AS n FROM {{transactions}} WHERE invoice_id IN \
           (SELECT id FROM {{invoices}} WHERE department = 'HR')"),
    (Bag, "SELECT c.id, x.total FROM {{customers c}} CROSS JOIN LATERAL \
           (SELECT sum(i.amount) AS total FROM {{invoices i}} WHERE i.customer_id = c.id) x"),
    (Bag, "SELECT id, title FROM {{documents}} WHERE id IN (SELECT document_id FROM {{blocks}} WHERE content LIKE '%receipts%')"),
    // --- window functions
    (Bag, "SELECT * FROM (SELECT id, department, amount, \
           rank() OVER (PARTITION BY department ORDER BY amount DESC, id) AS r FROM {{invoices}}) ranked WHERE r <= 3"),
    (Ordered, "SELECT id, amount, sum(amount) OVER (ORDER BY id) AS running, \
               row_number() OVER (ORDER BY id) AS n FROM {{invoices}} ORDER BY id LIMIT 40"),
    (Bag, "SELECT user_id, status, count(*) OVER (PARTITION BY status) AS same_status FROM {{orders}}"),
    // --- top-k by <=>
    (Ordered, "SELECT id, content FROM {{blocks}} ORDER BY embedding <=> '[0.1,0.2,0.3,0.4]' LIMIT 5"),
    (Ordered, "SELECT b.id, d.title, f.name, b.embedding <=> '[0.4, 0.3, 0.2, 0.1]' AS distance \
               FROM {{blocks b}} JOIN {{documents d}} ON d.id = b.document_id JOIN {{folders f}} ON f.id = d.folder_id \
               ORDER BY b.embedding <=> '[0.4, 0.3, 0.2, 0.1]', b.id LIMIT 10"),
    (Ordered, "SELECT id FROM {{blocks}} WHERE document_id IN (SELECT id FROM {{documents}} WHERE title LIKE 'Security%') \
               ORDER BY embedding <=> ARRAY[1, 0, 0, 0]::float8[], id LIMIT 3"),
    // --- self-joins
    (Bag, "SELECT a.customer_id, count(*) AS pairs FROM {{invoices a}} JOIN {{invoices b}} \
           ON a.customer_id = b.customer_id AND a.id < b.id GROUP BY a.customer_id"),
    (Bag, "SELECT a.id AS first, b.id AS second FROM {{orders a}} JOIN {{orders b}} \
           ON a.user_id = b.user_id AND a.placed_at < b.placed_at AND b.placed_at < a.placed_at + interval '3 days'"),
    // --- CTEs
    (Bag, "WITH big AS (SELECT * FROM {{invoices}} WHERE amount > 500) \
           SELECT department, count(*) AS n FROM big GROUP BY department"),
    (Bag, "WITH paid AS (SELECT invoice_id, sum(amount) AS paid FROM {{transactions}} GROUP BY invoice_id), \
                open AS (SELECT i.id, i.amount - coalesce(p.paid, 0) AS due FROM {{invoices i}} LEFT JOIN paid p ON p.invoice_id = i.id) \
           SELECT count(*) AS n, sum(due) AS due FROM open WHERE due > 0"),
    // An agent CTE named like a table shadows it outside its own body only.
    (Bag, "WITH invoices AS (SELECT * FROM {{invoices}} WHERE department = 'Operations') \
           SELECT count(*) AS n, sum(amount) AS total FROM invoices"),
    // --- set operations
    (Bag, "SELECT department FROM {{invoices}} UNION SELECT department FROM {{customers}}"),
    (Bag, "SELECT 'order' AS kind, id FROM {{orders}} UNION ALL SELECT 'item', id FROM {{items}} \
           UNION ALL SELECT 'folder', id FROM {{folders}}"),
    (Bag, "SELECT customer_id FROM {{invoices}} INTERSECT SELECT id FROM {{customers}}"),
    (Bag, "SELECT id FROM {{invoices}} EXCEPT SELECT invoice_id FROM {{transactions}}"),
    // --- ownership and tenants
    (Bag, "SELECT status, count(*) AS n, sum(total) AS total FROM {{orders}} GROUP BY status"),
    (Bag, "SELECT metadata->>'channel' AS channel, count(*) AS n FROM {{orders}} \
           WHERE (metadata->>'gift')::boolean GROUP BY 1"),
    (Bag, "SELECT product, sum(quantity) AS quantity FROM {{order_items}} GROUP BY product"),
    (Bag, "SELECT id, name, tags, archived, created_at FROM {{items}}"),
    (Bag, "SELECT id, name FROM {{items}} WHERE 'urgent' = ANY (tags) AND NOT archived"),
    (Bag, "SELECT * FROM {{items}} WHERE tenant_id <> 1 OR id = 1"),
    (Ordered, "SELECT * FROM {{\"transactions\" t}} WHERE happened_at >= '2024-01-01' ORDER BY t.id LIMIT 20"),
    (Bag, "SELECT uid, title, created_at FROM {{documents}}"),
    (Bag, "SELECT document_id, count(*) AS n, array_agg(id ORDER BY id) AS ids FROM {{blocks}} GROUP BY document_id"),
    // --- GROUP BY a primary key, then the table's other columns (valid on the base tables)
    (Bag, "SELECT c.id, c.name, count(*) AS n, sum(i.amount) AS total FROM {{customers c}} \
           JOIN {{invoices i}} ON i.customer_id = c.id GROUP BY c.id{{+, c.name}}"),
    (Bag, "SELECT i.*, sum(t.amount) AS paid FROM {{invoices i}} JOIN {{transactions t}} \
           ON t.invoice_id = i.id WHERE i.issued_on >= '2024-06-01' GROUP BY i.id{{+, i.amount, i.issued_on, i.department, i.customer_id}}"),
    (Ordered, "SELECT o.id, status, total, count(*) AS lines FROM {{orders o}} \
           JOIN {{order_items oi}} ON oi.order_id = o.id GROUP BY 1{{+, o.status, o.total, o.placed_at}} \
           HAVING count(*) > 1 OR total > 100 ORDER BY o.placed_at, o.id"),
];

/// A row's canonical text (keys sorted: `serde_json::Map` sorts them).
fn canonical(row: &Value) -> String {
    row.to_string()
}

/// Runs every query for `user` both ways and compares. Returns the total number of rows seen.
async fn check_caller(user: &str) -> usize {
    assert!(QUERIES.len() >= 30);
    let db = TestDb::new().await;
    let router = db.router().await;
    let mut total = 0;
    let mut failures = Vec::new();
    for (compare, template) in QUERIES {
        let (agent_sql, reference_sql) = expand(template, user);
        let reply = query(&router, user, &agent_sql).await;
        if reply.status != axum::http::StatusCode::OK {
            failures.push(format!(
                "{agent_sql}\n  gateway answered {}: {}",
                reply.status, reply.text
            ));
            continue;
        }
        assert_eq!(reply.json["truncated"], json!(false), "{agent_sql}");
        let got = reply.rows().clone();
        let want = db.admin_rows(&reference_sql).await;
        // The columns' names too.
        let columns: Vec<String> = reply.json["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        if let Some(first) = want.first() {
            let mut expected: Vec<String> = first.as_object().unwrap().keys().cloned().collect();
            let mut actual = columns.clone();
            expected.sort();
            actual.sort();
            assert_eq!(actual, expected, "{agent_sql}");
        }
        let (mut g, mut w): (Vec<String>, Vec<String>) = (
            got.iter().map(canonical).collect(),
            want.iter().map(canonical).collect(),
        );
        if *compare == Bag {
            g.sort();
            w.sort();
        }
        if g != w {
            failures.push(format!(
                "{agent_sql}\n  reference: {reference_sql}\n  gateway {} rows, reference {} rows\n  gateway:   {:.600}\n  reference: {:.600}",
                g.len(),
                w.len(),
                g.join(" "),
                w.join(" "),
            ));
        }
        total += g.len();
    }
    assert!(
        failures.is_empty(),
        "{user}: {} of {} queries differ:\n{}",
        failures.len(),
        QUERIES.len(),
        failures.join("\n\n")
    );
    db.teardown().await;
    println!("{user}: {total} rows over {} queries", QUERIES.len());
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_sees_what_his_rules_allow() {
    assert!(check_caller("bob").await > 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anne_sees_what_her_rules_allow() {
    assert!(check_caller("anne").await > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carol_sees_what_her_rules_allow() {
    // No role: no department, no folder; her own orders and her items only.
    assert!(check_caller("carol").await > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dave_sees_what_his_rules_allow() {
    assert!(check_caller("dave").await > 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erin_sees_what_her_rules_allow() {
    assert!(check_caller("erin").await > 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frank_sees_what_his_rules_allow() {
    assert!(check_caller("frank").await > 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_sees_what_her_rules_allow() {
    assert!(check_caller("grace").await > 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heidi_sees_what_her_rules_allow() {
    assert!(check_caller("heidi").await > 150);
}

/// The template expansion itself, so that a mistake there cannot make both sides agree.
#[test]
fn templates_expand_to_the_gateway_and_the_reference_forms() {
    let (agent, reference) = expand(
        "SELECT * FROM {{public.invoices i}} JOIN {{customers}} ON true, {{ONLY \"orders\" AS o}}",
        "o'brien",
    );
    assert_eq!(
        agent,
        "SELECT * FROM public.invoices i JOIN customers ON true, ONLY \"orders\" AS o"
    );
    assert!(
        reference.starts_with("SELECT * FROM (SELECT * FROM public.invoices WHERE department IN")
    );
    assert!(reference.contains("user_id = 'o''brien'"));
    assert!(reference.contains(
        ") i JOIN (SELECT id, name, department, active, created_at FROM public.customers WHERE"
    ));
    assert!(reference.contains(
        ") customers ON true, (SELECT * FROM public.orders WHERE user_id = 'o''brien') o"
    ));
}

/// Operations is granted to both of anne's roles: each visible row counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anne_sum_over_a_department_granted_to_both_roles_is_not_doubled() {
    let db = TestDb::new().await;
    let router = db.router().await;
    // The premise: Operations is granted to both of anne's roles.
    assert_eq!(
        db.admin_i64(
            "SELECT count(*) FROM permissions p JOIN user_roles r ON r.role = p.allowed_role \
             WHERE r.user_id = 'anne' AND p.department = 'Operations'"
        )
        .await,
        2
    );
    for (table, column) in [("invoices", "amount"), ("transactions", "amount")] {
        let sql = format!(
            "SELECT count(*) AS n, sum({column}) AS total FROM {table} WHERE department = 'Operations'"
        );
        let got = rows(&router, "anne", &sql).await;
        let base = db.admin_rows(&sql).await;
        assert_eq!(got, base, "{table}");
        assert_ne!(base[0]["n"], json!(0));
        // bob (one role granting Operations) and erin see the same.
        assert_eq!(rows(&router, "bob", &sql).await, base, "{table}, bob");
        assert_eq!(rows(&router, "erin", &sql).await, base, "{table}, erin");
    }
    let sql = "SELECT count(*) AS n FROM customers WHERE department = 'Operations'";
    assert_eq!(rows(&router, "anne", sql).await, db.admin_rows(sql).await);
    // Over everything anne sees: the sum of her three departments, each once.
    let all = rows(
        &router,
        "anne",
        "SELECT count(*) AS n, sum(amount) AS total FROM invoices",
    )
    .await;
    let base = db
        .admin_rows(
            "SELECT count(*) AS n, sum(amount) AS total FROM invoices \
             WHERE department IN ('HR', 'Sales', 'Operations')",
        )
        .await;
    assert_eq!(all, base);
    // No duplicate ids either.
    let dup = rows(
        &router,
        "anne",
        "SELECT count(*) - count(DISTINCT id) AS duplicates FROM invoices",
    )
    .await;
    assert_eq!(dup, vec![json!({"duplicates": 0})]);
    // The Company Handbook folder reaches anne through both roles too (folder_access), and
    // grace's Finance through both of hers.
    let sql = "SELECT count(*) AS n FROM documents WHERE folder_id = 1";
    assert_eq!(rows(&router, "anne", sql).await, db.admin_rows(sql).await);
    let sql = "SELECT count(*) AS n FROM blocks b JOIN documents d ON d.id = b.document_id WHERE d.folder_id = 1";
    assert_eq!(rows(&router, "anne", sql).await, db.admin_rows(sql).await);
    let sql =
        "SELECT count(*) AS n, sum(amount) AS total FROM invoices WHERE department = 'Finance'";
    assert_eq!(rows(&router, "grace", sql).await, db.admin_rows(sql).await);
    db.teardown().await;
}
