//! `GET /openapi.json` against the real router: every route the router is built from
//! (`rowgate::http::ROUTES`) answers and is documented with its methods, nothing else is
//! documented, every `ErrorCode` is documented under the status it is answered with, every
//! `$ref` resolves, and the documented shapes are the shapes the handlers really answer with.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use rowgate::http::{status, ROUTES};
use rowgate::refusal::ErrorCode;
use serde_json::{json, Value};

fn property_names(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema} has properties"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

/// Every `$ref` in the document.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_every_route_and_error_code() {
    let db = TestDb::new().await;
    let router = db.router().await;
    let reply = get(&router, "/openapi.json").await;
    assert_eq!(content_type(&reply), "application/json");
    let doc = reply.ok().clone();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");

    // Routes → document, and each route really answers with its methods.
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for method in *methods {
            assert!(
                item.get(method.to_lowercase()).is_some(),
                "{method} {path} is not documented"
            );
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let answer = call(&router, method.clone(), path, &[], Body::empty()).await;
            assert!(
                answer.status != StatusCode::NOT_FOUND
                    && answer.status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is in ROUTES but the router does not serve it: {answer:#?}"
            );
        }
    }
    // Document → routes: nothing is documented that is not served.
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    for (path, item) in paths {
        assert!(
            routed.contains(path.as_str()),
            "{path} is documented, not routed"
        );
        let (_, methods) = ROUTES.iter().find(|(p, _)| p == path).unwrap();
        for method in item.as_object().unwrap().keys() {
            assert!(
                methods.iter().any(|m| m.eq_ignore_ascii_case(method)),
                "{method} {path} is documented, not routed"
            );
        }
    }
    // A path outside ROUTES is the JSON 404, and a method outside them a 405.
    get(&router, "/v1/nothing")
        .await
        .error(StatusCode::NOT_FOUND, "invalid_request");
    call(&router, Method::DELETE, "/v1/query", &[], Body::empty())
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request");

    // Every error code: in the ErrorCode schema, and documented under its own status.
    let spelled: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum of strings")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(spelled, all);
    for code in ErrorCode::ALL {
        let needle = format!("`{code}`");
        let mut documented = 0;
        for item in paths.values() {
            for operation in item.as_object().unwrap().values() {
                for (answer_status, response) in operation["responses"].as_object().unwrap() {
                    let description = response["description"].as_str().unwrap_or("");
                    if description.contains(&needle) {
                        assert_eq!(
                            answer_status,
                            &status(code).as_u16().to_string(),
                            "{code} is documented under the wrong status"
                        );
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody"
                        );
                        documented += 1;
                    }
                }
            }
        }
        assert!(documented > 0, "{code} is not documented on any route");
    }

    // Every reference resolves.
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {target}"
        );
    }

    // The documented shapes are the real ones.
    let request = &doc["components"]["schemas"]["QueryRequest"];
    assert_eq!(
        property_names(&doc, "QueryRequest"),
        ["dry_run", "max_rows", "sql", "user_id"]
            .map(String::from)
            .into()
    );
    assert_eq!(request["required"], json!(["sql"]));
    let ran = query(&router, "bob", "SELECT id FROM invoices LIMIT 1").await;
    assert_eq!(keys(ran.ok()), property_names(&doc, "QueryAnswer"));
    assert_eq!(
        keys(&ran.ok()["columns"][0]),
        property_names(&doc, "ColumnInfo")
    );
    let dry = post_query(
        &router,
        &json!({"user_id": "bob", "sql": "SELECT id FROM invoices", "dry_run": true}),
    )
    .await;
    assert_eq!(keys(dry.ok()), property_names(&doc, "DryRunAnswer"));
    assert_eq!(
        keys(&dry.ok()["tables"][0]),
        property_names(&doc, "TableFilter")
    );
    let schema = get(&router, "/v1/schema?user_id=bob").await;
    assert_eq!(keys(schema.ok()), property_names(&doc, "SchemaAnswer"));
    let table = &schema.ok()["tables"][0];
    assert!(keys(table).is_subset(&property_names(&doc, "TableDesc")));
    let refused = query(&router, "bob", "SELECT * FROM permissions").await;
    assert_eq!(keys(&refused.json), property_names(&doc, "ErrorBody"));
    assert_eq!(
        keys(&refused.json["error"]),
        property_names(&doc, "ErrorDetail")
    );
    db.teardown().await;
}
