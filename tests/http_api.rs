//! The HTTP contract of DESIGN.md through the real router, against a real PostgreSQL: every
//! endpoint, every field, every error code, and bad input of every kind. No answer may be a 500
//! (checked by `common::call` on every request).

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use rowgate::auth::ApiKeys;
use serde_json::{json, Value};

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;

fn names(values: &[Value], key: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| v[key].as_str().expect("a string").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// POST /v1/query: running
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_columns_rows_row_count_truncated_and_rewritten_sql() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = query(
        &router,
        "bob",
        "SELECT id, amount, issued_on, department, customer_id FROM invoices \
         WHERE id IN (1, 2, 3, 4, 5, 6, 2001) ORDER BY id",
    )
    .await;
    let body = reply.ok();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["columns", "rewritten_sql", "row_count", "rows", "truncated"]
    );
    assert_eq!(
        body["columns"],
        json!([
            {"name": "id", "type": "int4"},
            {"name": "amount", "type": "numeric"},
            {"name": "issued_on", "type": "date"},
            {"name": "department", "type": "text"},
            {"name": "customer_id", "type": "int4"},
        ])
    );
    // The same rows as the superuser sees with bob's departments (HR, Operations), 2001 hidden.
    let expected = db
        .admin_rows(
            "SELECT id, amount, issued_on, department, customer_id FROM invoices \
             WHERE id IN (1, 2, 3, 4, 5, 6, 2001) AND department IN ('HR', 'Operations') ORDER BY id",
        )
        .await;
    assert!(!expected.is_empty());
    assert_eq!(body["rows"], Value::Array(expected.clone()));
    assert_eq!(body["row_count"], json!(expected.len()));
    assert_eq!(body["truncated"], json!(false));
    // numeric is exact text, dates ISO.
    assert!(body["rows"][0]["amount"].is_string());
    assert!(body["rows"][0]["issued_on"]
        .as_str()
        .unwrap()
        .starts_with("202"));
    let sql = body["rewritten_sql"].as_str().unwrap();
    assert!(sql.contains("rowgate.invoices"), "{sql}");
    assert!(!sql.contains("FROM invoices"), "{sql}");

    // The rewritten SQL of a run is the dry run's.
    let dry = post_query(
        &router,
        &json!({"user_id": "bob", "dry_run": true, "sql":
            "SELECT id, amount, issued_on, department, customer_id FROM invoices \
             WHERE id IN (1, 2, 3, 4, 5, 6, 2001) ORDER BY id"}),
    )
    .await;
    assert_eq!(dry.ok()["rewritten_sql"], body["rewritten_sql"]);

    // Explicit dry_run false runs; no rows is an empty array, not null.
    let none = post_query(
        &router,
        &json!({"user_id": "bob", "sql": "SELECT id FROM invoices WHERE id = 2001", "dry_run": false}),
    )
    .await;
    assert_eq!(none.ok()["rows"], json!([]));
    assert_eq!(none.ok()["row_count"], json!(0));
    assert_eq!(none.ok()["truncated"], json!(false));
    assert_eq!(
        none.ok()["columns"],
        json!([{"name": "id", "type": "int4"}])
    );
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_types_and_names_of_columns() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = query(
        &router,
        "bob",
        "SELECT o.id, o.total, o.placed_at, o.metadata, o.status, count(*) AS n, \
                1 AS n_2, 2 AS n, o.total::float8 AS f, NULL::text AS nothing \
         FROM orders o JOIN order_items i ON i.order_id = o.id \
         GROUP BY o.id, o.total, o.placed_at, o.metadata, o.status ORDER BY o.id LIMIT 1",
    )
    .await;
    let body = reply.ok();
    assert_eq!(
        body["columns"],
        json!([
            {"name": "id", "type": "int4"},
            {"name": "total", "type": "numeric"},
            {"name": "placed_at", "type": "timestamptz"},
            {"name": "metadata", "type": "jsonb"},
            {"name": "status", "type": "text"},
            {"name": "n", "type": "int8"},
            {"name": "n_2", "type": "int4"},
            {"name": "n_3", "type": "int4"},
            {"name": "f", "type": "float8"},
            {"name": "nothing", "type": "text"},
        ])
    );
    let row = &body["rows"][0];
    assert!(row["metadata"].is_object(), "jsonb is embedded JSON: {row}");
    assert!(row["placed_at"].as_str().unwrap().ends_with('Z'), "{row}");
    assert_eq!(row["n_2"], json!(1));
    assert_eq!(row["n_3"], json!(2));
    assert!(row["f"].is_number());
    assert_eq!(row["nothing"], Value::Null);
    let owner = db
        .admin_rows("SELECT user_id FROM orders WHERE id = (SELECT min(id) FROM orders WHERE user_id = 'bob')")
        .await;
    assert_eq!(owner, vec![json!({"user_id": "bob"})]);
    db.teardown().await;
}

/// encode.rs: "Key order is column order ... Serialize it directly; converting it to a
/// `serde_json::Value` first would sort the keys." An agent reading the JSON (and a human) sees
/// the columns in the order it asked for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_keep_column_order_on_the_wire() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = query(
        &router,
        "bob",
        "SELECT issued_on, id, amount AS zz, department AS aa FROM invoices ORDER BY id LIMIT 1",
    )
    .await;
    let body = reply.ok();
    assert_eq!(
        names(body["columns"].as_array().unwrap(), "name"),
        ["issued_on", "id", "zz", "aa"]
    );
    let start = reply.text.find("\"rows\":[{").expect("rows in the body");
    let first_row = &reply.text[start..];
    let end = first_row.find('}').unwrap();
    let first_row = &first_row[..end];
    let positions: Vec<usize> = ["\"issued_on\"", "\"id\"", "\"zz\"", "\"aa\""]
        .iter()
        .map(|k| {
            first_row
                .find(k)
                .unwrap_or_else(|| panic!("{k} in {first_row}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "row keys are not in column order: {first_row}"
    );
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// POST /v1/query: dry run
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_answers_rewritten_sql_tables_and_attributes_without_running() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let sql = "SELECT c.name, SUM(i.amount) FROM public.invoices i JOIN customers c \
               ON c.id = i.customer_id GROUP BY 1";
    let reply = post_query(
        &router,
        &json!({"user_id": "bob", "sql": sql, "dry_run": true}),
    )
    .await;
    let body = reply.ok();
    for key in ["rewritten_sql", "tables", "attributes"] {
        assert!(body.get(key).is_some(), "dry run lacks {key}: {body:#}");
    }
    for key in ["rows", "columns", "row_count"] {
        assert!(body.get(key).is_none(), "a dry run has no {key}: {body:#}");
    }
    let rewritten = body["rewritten_sql"].as_str().unwrap();
    assert!(rewritten.contains("rowgate.invoices"), "{rewritten}");
    assert!(rewritten.contains("rowgate.customers"), "{rewritten}");
    assert!(!rewritten.contains("email"), "{rewritten}");
    let tables = body["tables"].as_array().unwrap();
    let mut listed = names(tables, "table");
    listed.sort();
    assert_eq!(listed, ["customers", "invoices"]);
    for table in tables {
        let filter = table["filter"].as_str().expect("the filter is text");
        assert!(filter.contains("permissions"), "{table}");
    }
    assert_eq!(body["attributes"]["roles"], json!(["HR Manager"]));
    assert_eq!(body["attributes"]["tenant_id"], json!([1]));

    // anne's two roles; carol has none.
    let anne = post_query(
        &router,
        &json!({"user_id": "anne", "sql": "SELECT 1 FROM orders", "dry_run": true}),
    )
    .await;
    let mut roles: Vec<String> = anne.ok()["attributes"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    roles.sort();
    assert_eq!(roles, ["HR Manager", "Sales Manager"]);
    let tables = anne.ok()["tables"].as_array().unwrap();
    assert_eq!(names(tables, "table"), ["orders"]);
    assert!(tables[0]["filter"].as_str().unwrap().contains("user_id"));
    let carol = post_query(
        &router,
        &json!({"user_id": "carol", "sql": "SELECT 1", "dry_run": true}),
    )
    .await;
    assert_eq!(carol.ok()["attributes"]["roles"], json!([]));
    assert_eq!(carol.ok()["tables"], json!([]));

    // Not executed: a query that fails when run is fine as a dry run.
    let failing = "SELECT 1 / (amount - amount) FROM invoices";
    query(&router, "bob", failing)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "query_failed");
    let dry = post_query(
        &router,
        &json!({"user_id": "bob", "sql": failing, "dry_run": true}),
    )
    .await;
    assert!(dry.ok()["rewritten_sql"]
        .as_str()
        .unwrap()
        .contains("rowgate.invoices"));

    // A dry run still refuses what a run refuses, and unknown callers.
    post_query(
        &router,
        &json!({"user_id": "bob", "sql": "SELECT * FROM permissions", "dry_run": true}),
    )
    .await
    .error(FORBIDDEN, "table_not_allowed");
    post_query(
        &router,
        &json!({"user_id": "mallory", "sql": "SELECT 1 FROM invoices", "dry_run": true}),
    )
    .await
    .error(FORBIDDEN, "unknown_user");
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// max_rows in the request
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rows_in_the_request_is_exact_and_capped_by_the_server() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.max_rows = 50;
    let router = db.router_with(&config).await;
    let visible = db
        .admin_i64("SELECT count(*) FROM invoices WHERE department IN ('HR', 'Operations')")
        .await as usize;
    assert!(visible > 50);
    let sql = "SELECT id FROM invoices ORDER BY id";
    let ask = |max_rows: Value| {
        let router = router.clone();
        async move {
            post_query(
                &router,
                &json!({"user_id": "bob", "sql": sql, "max_rows": max_rows}),
            )
            .await
        }
    };
    // Smaller than the server's: exactly that many, truncated.
    let ten = ask(json!(10)).await;
    assert_eq!(ten.rows().len(), 10);
    assert_eq!(ten.ok()["row_count"], json!(10));
    assert_eq!(ten.ok()["truncated"], json!(true));
    // The first ten in order.
    let first: Vec<Value> = db
        .admin_rows(
            "SELECT id FROM invoices WHERE department IN ('HR', 'Operations') ORDER BY id LIMIT 10",
        )
        .await;
    assert_eq!(ten.rows(), &first);
    // Larger than the server's: the server's cap.
    let many = ask(json!(100_000)).await;
    assert_eq!(many.rows().len(), 50);
    assert_eq!(many.ok()["truncated"], json!(true));
    // None: the server's cap.
    let default = query(&router, "bob", sql).await;
    assert_eq!(default.rows().len(), 50);
    assert_eq!(default.ok()["truncated"], json!(true));
    // Exactly what there is: not truncated.
    let exact = post_query(
        &router,
        &json!({"user_id": "bob", "sql": "SELECT id FROM invoices ORDER BY id LIMIT 7", "max_rows": 7}),
    )
    .await;
    assert_eq!(exact.rows().len(), 7);
    assert_eq!(exact.ok()["truncated"], json!(false));
    let one_short = post_query(
        &router,
        &json!({"user_id": "bob", "sql": "SELECT id FROM invoices ORDER BY id LIMIT 7", "max_rows": 6}),
    )
    .await;
    assert_eq!(one_short.rows().len(), 6);
    assert_eq!(one_short.ok()["truncated"], json!(true));
    // Not a count: refused as invalid.
    for bad in [json!(-1), json!("10"), json!(1.5), json!(true)] {
        ask(bad.clone()).await.error(BAD, "invalid_request");
    }
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// GET /v1/schema
// ---------------------------------------------------------------------------------------------

const POLICY_TABLES: [&str; 9] = [
    "blocks",
    "customers",
    "documents",
    "folders",
    "invoices",
    "items",
    "order_items",
    "orders",
    "transactions",
];

const GRANTING_TABLES: [&str; 5] = [
    "permissions",
    "user_roles",
    "app_users",
    "folder_access",
    "item_users",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_lists_only_policy_tables_allowed_columns_and_descriptions() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = get(&router, "/v1/schema?user_id=bob").await;
    let body = reply.ok();
    assert!(
        content_type(&reply).starts_with("application/json"),
        "{reply:?}"
    );
    let tables = body["tables"].as_array().expect("tables");
    let mut listed = names(tables, "name");
    listed.sort();
    assert_eq!(listed, POLICY_TABLES);
    let table = |name: &str| tables.iter().find(|t| t["name"] == name).unwrap().clone();
    let customers = table("customers");
    let columns = customers["columns"].as_array().unwrap();
    assert_eq!(
        names(columns, "name"),
        ["id", "name", "department", "active", "created_at"]
    );
    assert!(!reply.text.contains("email"), "{}", reply.text);
    for column in columns {
        assert!(column["type"].is_string(), "{column}");
    }
    assert!(customers["description"]
        .as_str()
        .unwrap()
        .contains("Customers looked after by each department"));
    // Column descriptions come from the database's comments.
    let active = columns.iter().find(|c| c["name"] == "active").unwrap();
    assert_eq!(
        active["description"],
        json!("False once the customer relationship has ended.")
    );
    let invoices = table("invoices");
    let amount = invoices["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "amount")
        .unwrap()
        .clone();
    assert_eq!(amount["type"], json!("numeric(12,2)"));
    assert_eq!(invoices["primary_key"], json!(["id"]));
    let blocks = table("blocks");
    assert!(blocks["description"].as_str().unwrap().contains("<=>"));
    for hidden in GRANTING_TABLES {
        assert!(
            !reply.text.contains(&format!("\"{hidden}\"")),
            "{hidden} is listed: {}",
            reply.text
        );
    }

    // format=json is the same; format=text is prompt-ready text.
    let json_again = get(&router, "/v1/schema?user_id=bob&format=json").await;
    assert_eq!(json_again.ok()["tables"], body["tables"]);
    let text = get(&router, "/v1/schema?user_id=bob&format=text").await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(content_type(&text).starts_with("text/plain"), "{text:?}");
    for name in POLICY_TABLES {
        assert!(
            text.text.contains(&format!("TABLE {name}")),
            "{}",
            text.text
        );
    }
    assert!(text.text.contains("amount numeric(12,2)"), "{}", text.text);
    // The key an agent joins and groups on.
    assert!(
        text.text.contains("TABLE customers")
            && text
                .text
                .contains("created_at timestamp with time zone\n  PRIMARY KEY (id)\n"),
        "{}",
        text.text
    );
    assert!(text.text.contains("Invoices issued by each department"));
    // How to write for PostgreSQL, ahead of the refusals that would otherwise teach it.
    assert!(
        text.text.contains("Write PostgreSQL SQL:") && text.text.contains("EXTRACT(YEAR FROM d)"),
        "{}",
        text.text
    );
    assert!(!text.text.contains("email"), "{}", text.text);
    for hidden in GRANTING_TABLES {
        assert!(
            !text.text.contains(&format!("TABLE {hidden}")),
            "{}",
            text.text
        );
    }

    // Only known callers learn the schema; the caller id is required and checked.
    get(&router, "/v1/schema?user_id=mallory")
        .await
        .error(FORBIDDEN, "unknown_user");
    get(&router, "/v1/schema?user_id=mallory&format=text")
        .await
        .error(FORBIDDEN, "unknown_user");
    get(&router, "/v1/schema")
        .await
        .error(BAD, "invalid_request");
    get(&router, "/v1/schema?user_id=")
        .await
        .error(BAD, "invalid_request");
    get(&router, "/v1/schema?user_id=bob%0Aeve")
        .await
        .error(BAD, "invalid_request");
    get(&router, "/v1/schema?user_id=bob&format=xml")
        .await
        .error(BAD, "invalid_request");
    // Percent-encoded ids are decoded.
    get(&router, "/v1/schema?user_id=%62ob").await.ok();
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// /healthz, /readyz, /metrics, unknown routes
// ---------------------------------------------------------------------------------------------

/// The rewrite cache is shared by every caller: what it keeps must not depend on who asked.
/// The same text for bob, anne and bob again (two hits) answers each caller what the same
/// query answers them when it is rewritten afresh (a trailing space is another text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_query_is_rewritten_once_and_still_answers_each_caller_their_own_rows() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let sql = "SELECT id, amount FROM invoices ORDER BY id";
    let bob = rows(&router, "bob", sql).await;
    let anne = rows(&router, "anne", sql).await;
    let bob_again = rows(&router, "bob", sql).await;
    assert_ne!(bob, anne, "the demo gives bob and anne different invoices");
    assert_eq!(bob, bob_again);
    let fresh = format!("{sql} ");
    assert_eq!(anne, rows(&router, "anne", &fresh).await);
    assert_eq!(bob, rows(&router, "bob", &fresh).await);

    let metrics = get(&router, "/metrics").await;
    let count = |result: &str| {
        metrics
            .text
            .lines()
            .find(|l| {
                l.starts_with("rowgate_rewrite_cache_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {result} count:\n{}", metrics.text))
            .to_string()
    };
    assert_eq!(count("miss"), "2");
    assert_eq!(count("hit"), "3");
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let health = get(&router, "/healthz").await;
    assert_eq!(health.ok()["status"], json!("ok"));
    let ready = get(&router, "/readyz").await;
    assert_eq!(ready.ok()["status"], json!("ready"));

    // A few requests of each outcome, then the metrics.
    rows(&router, "bob", "SELECT count(*) FROM invoices").await;
    rows(&router, "anne", "SELECT count(*) FROM orders").await;
    query(&router, "bob", "SELECT * FROM permissions")
        .await
        .error(FORBIDDEN, "table_not_allowed");
    query(&router, "nobody", "SELECT 1")
        .await
        .error(FORBIDDEN, "unknown_user");
    get(&router, "/v1/schema?user_id=bob").await.ok();

    let metrics = get(&router, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        content_type(&metrics).starts_with("text/plain"),
        "{metrics:?}"
    );
    let text = &metrics.text;
    for needle in [
        "# TYPE rowgate_requests_total counter",
        "# TYPE rowgate_stage_seconds histogram",
        "rowgate_pool_connections",
        "code=\"table_not_allowed\"",
        "code=\"unknown_user\"",
        "outcome=\"ok\"",
        "stage=\"rewrite\"",
        "stage=\"execute\"",
        "state=\"size\"",
        "state=\"available\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let ok_queries = text
        .lines()
        .find(|l| {
            l.starts_with("rowgate_requests_total")
                && l.contains("endpoint=\"query\"")
                && l.contains("outcome=\"ok\"")
        })
        .unwrap_or_else(|| panic!("no ok query counter:\n{text}"));
    assert!(ok_queries.ends_with(" 2"), "{ok_queries}");
    // The pool has opened at least one connection by now.
    let size = text
        .lines()
        .find(|l| l.starts_with("rowgate_pool_connections") && l.contains("state=\"size\""))
        .unwrap();
    let size: i64 = size.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(size >= 1, "{text}");

    // Unknown routes answer JSON.
    let missing = get(&router, "/v2/anything").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), Some("invalid_request"));
    db.teardown().await;
}

/// DESIGN.md: "All bodies are JSON. Every error is {"error": {"code", "message", "hint"}}".
/// A wrong method is an error too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_answers_a_json_error() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = call(&router, Method::GET, "/v1/query", &[], Body::empty()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    reply.error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    let reply = call(&router, Method::DELETE, "/v1/schema", &[], Body::empty()).await;
    reply.error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

async fn raw(router: &axum::Router, body: impl Into<Body>) -> Reply {
    call(
        router,
        Method::POST,
        "/v1/query",
        &[("content-type", "application/json")],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_invalid_requests() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", b"".to_vec()),
        ("not JSON", b"SELECT 1".to_vec()),
        (
            "truncated JSON",
            br#"{"user_id": "bob", "sql": "SELECT 1""#.to_vec(),
        ),
        (
            "a JSON array",
            br#"[{"user_id": "bob", "sql": "SELECT 1"}]"#.to_vec(),
        ),
        ("a JSON string", br#""SELECT 1""#.to_vec()),
        ("JSON null", b"null".to_vec()),
        (
            "user_id: true",
            br#"{"user_id": true, "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id: null",
            br#"{"user_id": null, "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id: 1.5",
            br#"{"user_id": 1.5, "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id: object",
            br#"{"user_id": {"id": "bob"}, "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id: array",
            br#"{"user_id": ["bob"], "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id beyond i64",
            br#"{"user_id": 99999999999999999999999, "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id empty",
            br#"{"user_id": "", "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id control char",
            br#"{"user_id": "bob\u0000", "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id newline",
            br#"{"user_id": "bob\nalice", "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "user_id too long",
            format!(r#"{{"user_id": "{}", "sql": "SELECT 1"}}"#, "b".repeat(257)).into_bytes(),
        ),
        ("sql: 5", br#"{"user_id": "bob", "sql": 5}"#.to_vec()),
        ("sql: null", br#"{"user_id": "bob", "sql": null}"#.to_vec()),
        (
            "sql: array",
            br#"{"user_id": "bob", "sql": ["SELECT 1"]}"#.to_vec(),
        ),
        (
            "dry_run: \"yes\"",
            br#"{"user_id": "bob", "sql": "SELECT 1", "dry_run": "yes"}"#.to_vec(),
        ),
        (
            "dry_run: 1",
            br#"{"user_id": "bob", "sql": "SELECT 1", "dry_run": 1}"#.to_vec(),
        ),
        ("missing sql", br#"{"user_id": "bob"}"#.to_vec()),
        ("missing user_id", br#"{"sql": "SELECT 1"}"#.to_vec()),
        ("empty object", b"{}".to_vec()),
        (
            "unknown field",
            br#"{"user_id": "bob", "sql": "SELECT 1", "role": "admin"}"#.to_vec(),
        ),
        (
            "duplicate field",
            br#"{"user_id": "bob", "user_id": "anne", "sql": "SELECT 1"}"#.to_vec(),
        ),
        (
            "invalid UTF-8 bytes",
            b"{\"user_id\": \"bob\", \"sql\": \"SELECT '\xff\xfe'\"}".to_vec(),
        ),
        ("invalid UTF-8 outside strings", b"\xff\xfe\xfd".to_vec()),
        (
            "lone surrogate escape",
            br#"{"user_id": "bob", "sql": "SELECT '\ud800'"}"#.to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"user_id": "bob", "sql": "SELECT 1"} x"#.to_vec(),
        ),
    ];
    for (what, body) in bodies {
        let reply = raw(&router, body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (BAD, Some("invalid_request")),
            "{what}: {reply:#?}"
        );
        reply.error(BAD, "invalid_request");
    }
    // A JSON body without a content type is still read (n8n and curl -d differ here).
    let plain = call(
        &router,
        Method::POST,
        "/v1/query",
        &[],
        json!({"user_id": "bob", "sql": "SELECT 1 AS one"}).to_string(),
    )
    .await;
    assert_eq!(plain.ok()["rows"], json!([{"one": 1}]));
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_sql_are_invalid_requests() {
    let db = TestDb::new().await;
    let router = db.router().await;
    // 2 MiB body: over the body limit.
    let comment = "x".repeat(2 * 1024 * 1024);
    let big = json!({"user_id": "bob", "sql": format!("SELECT 1 -- {comment}")}).to_string();
    raw(&router, big).await.error(BAD, "invalid_request");
    // 2 MiB of padding that is not even JSON.
    raw(&router, vec![b' '; 2 * 1024 * 1024])
        .await
        .error(BAD, "invalid_request");
    // Within the body limit but over the SQL cap (64 KiB by default).
    let sql = format!("SELECT 1 -- {}", "y".repeat(100 * 1024));
    let reply = query(&router, "bob", &sql).await;
    reply.error(BAD, "invalid_request");
    assert!(reply.message().contains("limit"), "{reply:#?}");
    // A query that is deep rather than long.
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let reply = query(&router, "bob", &deep).await;
    assert_eq!(reply.status, BAD, "{reply:#?}");
    // The server is still fine.
    assert_eq!(
        rows(&router, "bob", "SELECT 1 AS one").await,
        vec![json!({"one": 1})]
    );
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_numeric_user_ids() {
    let db = TestDb::new().await;
    let router = db.router().await;
    for user in [
        "mallory",
        "Bob",
        "bob ",
        "bob' OR '1'='1",
        "' OR true --",
        "😀",
    ] {
        let reply = query(&router, user, "SELECT count(*) FROM invoices").await;
        reply.error(FORBIDDEN, "unknown_user");
    }
    // Numbers are ids too: 123 is "123", which is nobody here...
    let reply = post_query(&router, &json!({"user_id": 123, "sql": "SELECT 1"})).await;
    reply.error(FORBIDDEN, "unknown_user");
    let reply = post_query(&router, &json!({"user_id": -7, "sql": "SELECT 1"})).await;
    reply.error(FORBIDDEN, "unknown_user");
    // ...until there is a user "123".
    db.admin
        .batch_execute(
            "INSERT INTO app_users (id, tenant_id, display_name) VALUES ('123', 1, 'Numeric');
             INSERT INTO user_roles (user_id, role) VALUES ('123', 'HR Manager');",
        )
        .await
        .unwrap();
    let as_number = post_query(
        &router,
        &json!({"user_id": 123, "sql": "SELECT count(*) AS n FROM invoices"}),
    )
    .await;
    let as_text = post_query(
        &router,
        &json!({"user_id": "123", "sql": "SELECT count(*) AS n FROM invoices"}),
    )
    .await;
    let bob = query(&router, "bob", "SELECT count(*) AS n FROM invoices").await;
    assert_eq!(as_number.ok()["rows"], bob.ok()["rows"]);
    assert_eq!(as_text.ok()["rows"], bob.ok()["rows"]);
    // A revoked caller is refused at once: the check runs in the query's transaction.
    db.admin
        .batch_execute(
            "DELETE FROM user_roles WHERE user_id = '123'; DELETE FROM app_users WHERE id = '123'",
        )
        .await
        .unwrap();
    post_query(&router, &json!({"user_id": 123, "sql": "SELECT 1"}))
        .await
        .error(FORBIDDEN, "unknown_user");
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_required_when_configured() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.api_keys = ApiKeys::parse("k1,k2");
    let router = db.router_with(&config).await;
    let body = json!({"user_id": "bob", "sql": "SELECT 1 AS one"}).to_string();
    let post = |auth: Option<&'static str>, body: String| {
        let router = router.clone();
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            call(&router, Method::POST, "/v1/query", &headers, body).await
        }
    };
    let schema = |auth: Option<&'static str>| {
        let router = router.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            call(
                &router,
                Method::GET,
                "/v1/schema?user_id=bob",
                &headers,
                Body::empty(),
            )
            .await
        }
    };
    let unauthorized = StatusCode::UNAUTHORIZED;
    for auth in [
        None,
        Some("Bearer k3"),
        Some("Bearer "),
        Some("Bearer"),
        Some("Basic k1"),
        Some("k1"),
        Some("bearer k1"),
        Some("Bearer k1k2"),
        Some("Bearer k1,k2"),
    ] {
        for reply in [post(auth, body.clone()).await, schema(auth).await] {
            let error = reply.error(unauthorized, "unauthorized");
            // The scheme is named (RFC 9110), or MCP clients assume OAuth and hide the hint.
            assert_eq!(reply.headers["www-authenticate"], "Bearer", "{auth:?}");
            // A key sent without `Bearer ` is told so, not that no key came.
            if auth.is_some_and(|a| !a.starts_with("Bearer")) {
                assert!(error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Bearer")));
            }
        }
    }
    // The key is checked before anything else: a bad body or an unknown user without a key
    // says unauthorized, not what is wrong with the request.
    post(None, "not json".into())
        .await
        .error(unauthorized, "unauthorized");
    post(
        Some("Bearer nope"),
        json!({"user_id": "mallory", "sql": "SELECT 1"}).to_string(),
    )
    .await
    .error(unauthorized, "unauthorized");
    // Either configured key works.
    for auth in ["Bearer k1", "Bearer k2"] {
        assert_eq!(
            post(Some(auth), body.clone()).await.ok()["rows"],
            json!([{"one": 1}])
        );
        schema(Some(auth)).await.ok();
    }
    // Liveness needs no key.
    get(&router, "/healthz").await.ok();
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// Refusals from the pipeline
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_refusals_have_their_codes_and_hints() {
    let db = TestDb::new().await;
    let router = db.router().await;

    let reply = query(&router, "bob", "SELEC id FROM invoices").await;
    reply.error(BAD, "parse_error");
    assert!(reply.message().contains("Line: 1, Column: 1"), "{reply:#?}");
    let reply = query(&router, "bob", "SELECT id FROM invoices WHERE").await;
    reply.error(BAD, "parse_error");
    query(&router, "bob", "").await.error(BAD, "parse_error");
    query(&router, "bob", "   -- nothing\n")
        .await
        .error(BAD, "parse_error");

    for sql in [
        "DELETE FROM invoices",
        "UPDATE invoices SET amount = 0",
        "INSERT INTO invoices (id) VALUES (1)",
        "SELECT 1; SELECT 2",
        "SELECT id FROM invoices; DROP TABLE invoices",
        "SET rowgate.caller = 'x'",
        "WITH d AS (DELETE FROM invoices RETURNING *) SELECT * FROM d",
        "SELECT * INTO stolen FROM invoices",
        "SELECT * FROM invoices FOR UPDATE",
        "EXPLAIN ANALYZE SELECT * FROM invoices",
        "COPY invoices TO STDOUT",
        "BEGIN",
        "CREATE TABLE x (a int)",
        "GRANT SELECT ON permissions TO PUBLIC",
        "PREPARE p AS SELECT 1",
        "CALL p()",
    ] {
        let reply = query(&router, "bob", sql).await;
        assert_eq!(
            (reply.status, reply.code()),
            (FORBIDDEN, Some("statement_not_allowed")),
            "{sql}: {reply:#?}"
        );
        reply.error(FORBIDDEN, "statement_not_allowed");
    }

    for sql in [
        "SELECT * FROM permissions",
        "SELECT * FROM user_roles",
        "SELECT * FROM public.app_users",
        "SELECT id FROM invoices WHERE department IN (SELECT department FROM permissions)",
        "SELECT * FROM rowgate.invoices",
        "SELECT * FROM rowgate_private.identity_key",
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pg_user",
    ] {
        let reply = query(&router, "bob", sql).await;
        reply.error(FORBIDDEN, "table_not_allowed");
        let hint = reply.hint();
        for table in POLICY_TABLES {
            assert!(
                hint.contains(table),
                "{sql}: the hint lists {table}: {hint}"
            );
        }
        for table in GRANTING_TABLES {
            assert!(
                !hint.contains(table),
                "{sql}: the hint lists {table}: {hint}"
            );
        }
    }

    for sql in [
        "SELECT email FROM customers",
        "SELECT c.email FROM customers c",
        "SELECT name FROM customers WHERE email LIKE '%@example.com'",
        "SELECT count(*) FROM customers GROUP BY email",
        "SELECT customers.email FROM public.customers",
    ] {
        let reply = query(&router, "bob", sql).await;
        reply.error(FORBIDDEN, "column_not_allowed");
        assert!(reply.hint().contains("created_at"), "{sql}: {reply:#?}");
        assert!(!reply.hint().contains("email,"), "{sql}: {reply:#?}");
    }

    for sql in [
        "SELECT pg_sleep(10)",
        "SELECT set_config('rowgate.caller', 'x', true)",
        "SELECT current_setting('rowgate.caller')",
        "SELECT query_to_xml('SELECT * FROM permissions', true, true, '')",
        "SELECT id FROM invoices WHERE pg_sleep(1) IS NULL",
        "SELECT * FROM dblink('x', 'y') AS t(a int)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT pg_advisory_lock(1)",
        "SELECT nextval('s')",
        "SELECT rowgate.caller_attributes()",
        "SELECT no_such_function(1)",
    ] {
        let reply = query(&router, "bob", sql).await;
        assert_eq!(
            (reply.status, reply.code()),
            (FORBIDDEN, Some("function_not_allowed")),
            "{sql}: {reply:#?}"
        );
        reply.error(FORBIDDEN, "function_not_allowed");
    }
    db.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// query_failed
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusals_are_query_failed_without_hidden_data() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;

    // A column a policy table does not have is refused before the database, with the columns
    // it does have; one the gateway cannot know about is PostgreSQL's to refuse.
    let reply = query(&router, "bob", "SELECT no_such_column FROM invoices").await;
    reply.error(FORBIDDEN, "column_not_allowed");
    assert!(reply.hint().contains("issued_on"), "{reply:#?}");
    let reply = query(
        &router,
        "bob",
        "SELECT x.no_such_column FROM (SELECT id FROM invoices) x",
    )
    .await;
    reply.error(unprocessable, "query_failed");
    assert!(reply.message().contains("no_such_column"), "{reply:#?}");
    let reply = query(&router, "bob", "SELECT lower(amount) FROM invoices").await;
    reply.error(unprocessable, "query_failed");
    assert!(reply.message().contains("does not exist"), "{reply:#?}");
    assert!(reply.hint().contains("column::numeric"), "{reply:#?}");

    // The errors models meet most get a hint that says how to fix them (by SQLSTATE).
    for (sql, fix) in [
        (
            "SELECT id FROM invoices i JOIN customers c ON c.id = i.customer_id",
            "Qualify the column",
        ),
        ("SELECT x.amount FROM invoices i", "alias the query uses"),
        (
            "SELECT department, amount FROM invoices GROUP BY department",
            "must be in GROUP BY",
        ),
        (
            "SELECT 1 FROM invoices WHERE issued_on = 'May 2024'",
            "'YYYY-MM-DD'",
        ),
        ("SELECT count(*) / 0 FROM invoices", "NULLIF(y, 0)"),
    ] {
        let reply = query(&router, "bob", sql).await;
        reply.error(unprocessable, "query_failed");
        assert!(reply.hint().contains(fix), "{sql}: {reply:#?}");
    }

    let reply = query(&router, "bob", "SELECT amount + 'abc' FROM invoices").await;
    reply.error(unprocessable, "query_failed");

    // Division by zero on a row bob sees is his query's own error.
    let reply = query(
        &router,
        "bob",
        "SELECT 1 / (amount - amount) FROM invoices WHERE department = 'HR'",
    )
    .await;
    reply.error(unprocessable, "query_failed");
    assert!(reply.message().contains("division by zero"), "{reply:#?}");

    // A conversion error quotes the value it failed on: only ever a visible one.
    let reply = query(
        &router,
        "bob",
        "SELECT department::int FROM invoices ORDER BY department DESC",
    )
    .await;
    reply.error(unprocessable, "query_failed");
    for hidden in ["Executive", "Legal", "Finance", "Sales\""] {
        assert!(!reply.text.contains(hidden), "{hidden} leaked: {reply:#?}");
    }
    let reply = query(&router, "bob", "SELECT name::int FROM customers").await;
    reply.error(unprocessable, "query_failed");

    // Types the encoder does not know: a query_failed the agent can fix by casting.
    let reply = query(&router, "bob", "SELECT '(1,2)'::point AS p").await;
    if reply.status != StatusCode::OK {
        reply.error(unprocessable, "query_failed");
        assert!(reply.hint().contains("::text"), "{reply:#?}");
    }

    // The server still answers afterwards.
    assert_eq!(
        rows(&router, "bob", "SELECT 1 AS one").await,
        vec![json!({"one": 1})]
    );
    db.teardown().await;
}

/// `/metrics` says who is busy and what is refused: with API keys set it wants one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_want_the_api_key_when_keys_are_set() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.api_keys = ApiKeys::parse("k1,k2");
    let router = db.router_with(&config).await;
    let metrics = |auth: Option<&'static str>| {
        let router = router.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            call(&router, Method::GET, "/metrics", &headers, Body::empty()).await
        }
    };
    for auth in [None, Some("Bearer nope"), Some("k1")] {
        metrics(auth)
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let reply = metrics(Some("Bearer k2")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.text.contains("rowgate_"), "{}", reply.text);
    db.teardown().await;
}

/// PostgreSQL's protocol cannot carry a NUL character: refused with a 400 before the database
/// (it used to fail the pooled connection and answer 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_the_sql_is_a_bad_request() {
    let db = TestDb::new().await;
    let router = db.router().await;
    for sql in ["SELECT 'a\u{0}b'", "SELECT $$a\u{0}b$$", "SELECT 1\n\u{0}"] {
        let reply = query(&router, "bob", sql).await;
        let error = reply.error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("NUL")),
            "{error}"
        );
    }
    // The pool is intact: the next request runs.
    rows(&router, "bob", "SELECT 1 AS one").await;
    db.teardown().await;
}

/// `TABLE name` is `SELECT * FROM name`, wherever a query may start (agents write it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_name_reads_like_select_star() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let star = rows(&router, "bob", "SELECT * FROM customers ORDER BY id").await;
    assert!(!star.is_empty());
    for sql in [
        "SELECT * FROM (TABLE customers) c ORDER BY id",
        "WITH c AS (TABLE customers) SELECT * FROM c ORDER BY id",
        "SELECT * FROM (TABLE customers UNION ALL TABLE customers) c ORDER BY id LIMIT 1000",
    ] {
        let got = rows(&router, "bob", sql).await;
        let expected: Vec<Value> = if sql.contains("UNION") {
            star.iter()
                .flat_map(|r| [r.clone(), r.clone()])
                .take(1000)
                .collect()
        } else {
            star.clone()
        };
        assert_eq!(got, expected, "{sql}");
    }
    assert_eq!(
        rows(&router, "bob", "TABLE customers").await.len(),
        star.len()
    );
    assert_eq!(
        rows(
            &router,
            "bob",
            "WITH c AS (SELECT id FROM customers) TABLE c"
        )
        .await
        .len(),
        star.len()
    );
    // Still only the policy's tables.
    query(&router, "bob", "TABLE permissions")
        .await
        .error(StatusCode::FORBIDDEN, "table_not_allowed");
    db.teardown().await;
}
