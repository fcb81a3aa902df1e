//! `/mcp` through the real router served on a random port, driven by the official MCP client
//! (rmcp over streamable HTTP) and, for what a client would never send, by raw HTTP: tools are
//! listed and each is called; refusals carry the HTTP API's code, message and hint; unknown
//! tools and malformed messages get JSON-RPC errors; credentials are checked on every request;
//! and the caller comes from the connection only, never from a tool argument.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::{HeaderName, HeaderValue};
use common::*;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServiceError, ServiceExt};
use rowgate::auth::ApiKeys;
use serde_json::{json, Value};

const KEY: &str = "mcp-test-key";

/// The gateway on a random loopback port, with an API key required.
struct Gateway {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(db: &TestDb) -> Gateway {
    let mut config = db.serve_config();
    config.api_keys = ApiKeys::parse(KEY);
    let router = db.router_with(&config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("a local address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Gateway { addr, task }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An MCP client connected with the key and `user` in `X-Rowgate-User`.
    async fn client(&self, user: &str) -> RunningService<RoleClient, ()> {
        self.try_client(Some(KEY), Some(user))
            .await
            .unwrap_or_else(|e| panic!("the MCP client connects as {user}: {e}"))
    }

    async fn try_client(
        &self,
        key: Option<&str>,
        user: Option<&str>,
    ) -> Result<RunningService<RoleClient, ()>, String> {
        self.try_client_at("/mcp", key, user).await
    }

    /// A client of `path` (which may carry `?user_id=`), with the key and the user header.
    async fn try_client_at(
        &self,
        path: &str,
        key: Option<&str>,
        user: Option<&str>,
    ) -> Result<RunningService<RoleClient, ()>, String> {
        let mut headers = HashMap::new();
        if let Some(user) = user {
            headers.insert(
                HeaderName::from_static("x-rowgate-user"),
                HeaderValue::from_str(user).expect("a header value"),
            );
        }
        let mut config =
            StreamableHttpClientTransportConfig::with_uri(self.url(path)).custom_headers(headers);
        if let Some(key) = key {
            config = config.auth_header(key);
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        tokio::time::timeout(CALL_LIMIT, ().serve(transport))
            .await
            .map_err(|_| "the MCP handshake did not finish".to_string())?
            .map_err(|e| e.to_string())
    }

    /// `POST /v1/query` over HTTP, for comparing with the tools.
    async fn http_query(&self, user: &str, sql: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.url("/v1/query"))
            .bearer_auth(KEY)
            .json(&json!({"user_id": user, "sql": sql}))
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// One raw POST to `/mcp`: what a broken or hostile client could send.
    async fn raw(&self, headers: &[(&str, &str)], body: &str) -> (u16, String, Value) {
        self.raw_at("/mcp", headers, body).await
    }

    async fn raw_at(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, Value) {
        let mut request = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(CALL_LIMIT, request.send())
            .await
            .expect("the gateway answers in time")
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await.expect("a body");
        assert_ne!(status, 500, "a 500 for {body}: {text}");
        (
            status,
            content_type,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, not {other}"),
    }
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments));
    tokio::time::timeout(CALL_LIMIT, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} did not answer in time"))
        .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
}

/// The structured answer of a successful call.
fn ok(result: &CallToolResult) -> &Value {
    assert_eq!(
        result.is_error,
        Some(false),
        "expected success: {result:#?}"
    );
    result
        .structured_content
        .as_ref()
        .expect("structured content")
}

/// The `{"code", "message", "hint"}` of a refused call, in both the structured content and the
/// text a model reads.
fn refused<'a>(result: &'a CallToolResult, code: &str) -> &'a Value {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a refusal: {result:#?}"
    );
    let error = &result
        .structured_content
        .as_ref()
        .expect("structured content")["error"];
    assert_eq!(error["code"], code, "{result:#?}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["hint"].as_str().is_some_and(|m| !m.is_empty()));
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("a text block");
    let from_text: Value = serde_json::from_str(&text).expect("the text is the JSON error");
    assert_eq!(&from_text["error"], error);
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_tools_with_schemas_and_calls_each() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let client = gateway.client("bob").await;

    let info = client.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("rowgate")
    );
    assert!(info.capabilities.tools.is_some());
    assert!(info
        .instructions
        .as_deref()
        .is_some_and(|i| i.contains("describe_schema")));

    let tools = client.list_all_tools().await.expect("tools/list answers");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, ["describe_schema", "dry_run", "query"]);
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or("");
        assert!(description.len() > 80, "{}: {description}", tool.name);
        assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
        // Undeclared arguments (a user id, say) are refused, and the schema says so.
        assert_eq!(
            tool.input_schema["additionalProperties"], false,
            "{}",
            tool.name
        );
        assert!(tool.input_schema["properties"].get("user_id").is_none());
        assert_eq!(
            tool.annotations.as_ref().and_then(|a| a.read_only_hint),
            Some(true)
        );
    }
    let query_tool = tools.iter().find(|t| t.name == "query").expect("query");
    assert_eq!(query_tool.input_schema["required"], json!(["sql"]));

    // describe_schema: bob's tables, described; never the tables that grant access.
    let schema = call(&client, "describe_schema", json!({})).await;
    let body = ok(&schema);
    let tables: Vec<&str> = body["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["name"].as_str().expect("a name"))
        .collect();
    assert!(tables.contains(&"invoices"), "{tables:?}");
    assert!(!tables.contains(&"permissions"), "{tables:?}");
    let text = schema.content[0].as_text().expect("text").text.clone();
    assert!(text.contains("TABLE invoices"), "{text}");
    assert_eq!(body["policy_version"], db_policy_version());

    // query: the same rows as /v1/query for the same caller.
    let sql = "SELECT department, sum(amount) AS total FROM invoices GROUP BY 1 ORDER BY 1";
    let result = call(&client, "query", json!({"sql": sql})).await;
    let answer = ok(&result);
    let (status, http) = gateway.http_query("bob", sql).await;
    assert_eq!(status, 200, "{http}");
    assert_eq!(answer["rows"], http["rows"]);
    assert_eq!(answer["rewritten_sql"], http["rewritten_sql"]);
    assert!(
        answer["row_count"].as_u64().is_some_and(|n| n > 0),
        "{answer}"
    );
    // The text a model reads keeps the columns in their order.
    let text = result.content[0].as_text().expect("text").text.clone();
    assert!(
        text.find("\"department\"") < text.find("\"total\""),
        "{text}"
    );

    // max_rows is honoured as on /v1/query.
    let limited = call(
        &client,
        "query",
        json!({"sql": "SELECT id FROM invoices ORDER BY id", "max_rows": 2}),
    )
    .await;
    let limited = ok(&limited);
    assert_eq!(limited["row_count"], 2);
    assert_eq!(limited["truncated"], true);

    // dry_run: the rewritten SQL and the filters, and nothing run.
    let dry = call(&client, "dry_run", json!({"sql": sql})).await;
    let dry = ok(&dry);
    assert_eq!(dry["rewritten_sql"], http["rewritten_sql"]);
    assert!(dry.get("rows").is_none(), "{dry}");
    assert_eq!(dry["tables"][0]["table"], "invoices");
    assert!(dry["attributes"]["roles"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));

    client.cancel().await.expect("the client closes");
    drop(gateway);
    db.teardown().await;
}

fn db_policy_version() -> String {
    policy().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_tool_errors_with_the_http_apis_code_message_and_hint() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let client = gateway.client("bob").await;
    for (sql, code) in [
        ("SELECT * FROM permissions", "table_not_allowed"),
        ("DELETE FROM invoices", "statement_not_allowed"),
        ("SELECT pg_sleep(1)", "function_not_allowed"),
        ("SELEC 1", "parse_error"),
        ("SELECT email FROM customers", "column_not_allowed"),
        ("SELECT 1/0", "query_failed"),
    ] {
        let result = call(&client, "query", json!({"sql": sql})).await;
        let error = refused(&result, code).clone();
        let (_, http) = gateway.http_query("bob", sql).await;
        assert_eq!(error, http["error"], "{sql}");
        if code != "query_failed" {
            let dry = call(&client, "dry_run", json!({"sql": sql})).await;
            assert_eq!(refused(&dry, code), &http["error"], "{sql}");
        }
    }
    // Arguments of the wrong shape are the tool's invalid_request, as a bad body is.
    let result = call(&client, "query", json!({})).await;
    refused(&result, "invalid_request");
    let result = call(&client, "query", json!({"sql": 42})).await;
    refused(&result, "invalid_request");
    let result = call(&client, "query", json!({"sql": "SELECT 1", "max_rows": -1})).await;
    refused(&result, "invalid_request");
    let result = call(
        &client,
        "dry_run",
        json!({"sql": "SELECT 1", "max_rows": 1}),
    )
    .await;
    refused(&result, "invalid_request");

    // A user the database does not know: the header names them, the database refuses them.
    let stranger = gateway.client("mallory").await;
    let result = call(&stranger, "query", json!({"sql": "SELECT 1"})).await;
    refused(&result, "unknown_user");
    let result = call(&stranger, "describe_schema", json!({})).await;
    refused(&result, "unknown_user");

    client.cancel().await.expect("the client closes");
    stranger.cancel().await.expect("the client closes");
    drop(gateway);
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_comes_from_the_connection_never_from_an_argument() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let sql = "SELECT count(*) AS n FROM invoices";
    let (_, bob_http) = gateway.http_query("bob", sql).await;
    let (_, carol_http) = gateway.http_query("carol", sql).await;
    assert_ne!(
        bob_http["rows"], carol_http["rows"],
        "the test needs callers who differ"
    );

    let carol = gateway.client("carol").await;
    let answer = call(&carol, "query", json!({"sql": sql})).await;
    assert_eq!(ok(&answer)["rows"], carol_http["rows"]);
    for (tool, arguments) in [
        ("query", json!({"sql": sql, "user_id": "bob"})),
        ("dry_run", json!({"sql": sql, "user_id": "bob"})),
        ("describe_schema", json!({"user_id": "bob"})),
        ("query", json!({"sql": sql, "userId": "bob"})),
    ] {
        let result = call(&carol, tool, arguments.clone()).await;
        let error = refused(&result, "invalid_request");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("fixed by the connection")),
            "{tool} {arguments}: {error}"
        );
    }
    // Any other undeclared argument is refused too, naming what the tool takes.
    let result = call(&carol, "query", json!({"sql": sql, "as": "bob"})).await;
    let error = refused(&result, "invalid_request");
    assert!(error["hint"].as_str().is_some_and(|h| h.contains("sql")));
    carol.cancel().await.expect("the client closes");
    drop(gateway);
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_are_json_rpc_errors() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let client = gateway.client("bob").await;
    let params = CallToolRequestParams::new("drop_everything").with_arguments(JsonObject::new());
    match client.call_tool(params).await {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -32602, "{error:?}");
            assert!(error.message.contains("drop_everything"), "{error:?}");
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    // The connection is still usable afterwards.
    let result = call(&client, "query", json!({"sql": "SELECT 1 AS one"})).await;
    assert_eq!(ok(&result)["rows"], json!([{"one": 1}]));
    client.cancel().await.expect("the client closes");
    drop(gateway);
    db.teardown().await;
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_json_rpc_errors_never_a_500() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str()), ("x-rowgate-user", "bob")];
    // The raw handshake works, so what follows fails for the message alone.
    let (status, _, body) = gateway.raw(&headers, INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "rowgate");

    for (message, expected) in [
        ("{not json", -32700),
        ("", -32700),
        (r#"{"hello": "world"}"#, -32600),
        (r#"[1, 2, 3]"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"no/such/method"}"#,
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"query","arguments":"SELECT 1"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
            -32602,
        ),
    ] {
        let (status, content_type, body) = gateway.raw(&headers, message).await;
        assert!(
            (200..500).contains(&status),
            "{message}: {status} {content_type} {body}"
        );
        let code = body["error"]["code"].as_i64();
        assert_eq!(code, Some(expected), "{message}: {status} {body}");
    }
    drop(gateway);
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_on_every_request() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let good_key = format!("Bearer {KEY}");
    for (headers, status, code) in [
        (vec![("x-rowgate-user", "bob")], 401, "unauthorized"),
        (
            vec![("authorization", "Bearer wrong"), ("x-rowgate-user", "bob")],
            401,
            "unauthorized",
        ),
        (
            vec![("authorization", good_key.as_str())],
            400,
            "invalid_request",
        ),
        (
            vec![("authorization", good_key.as_str()), ("x-rowgate-user", "")],
            400,
            "invalid_request",
        ),
    ] {
        let (got, _, body) = gateway.raw(&headers, INITIALIZE).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{headers:?}: {body}"
        );
        assert!(body["error"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()));
    }
    // The official client cannot even connect without them.
    assert!(gateway.try_client(None, Some("bob")).await.is_err());
    assert!(gateway
        .try_client(Some("wrong"), Some("bob"))
        .await
        .is_err());
    assert!(gateway.try_client(Some(KEY), None).await.is_err());
    // Credentials are checked per message, not once per connection: a tools/call without them
    // is refused even though an initialize with them just succeeded.
    let (status, _, _) = gateway
        .raw(
            &[
                ("authorization", good_key.as_str()),
                ("x-rowgate-user", "bob"),
            ],
            INITIALIZE,
        )
        .await;
    assert_eq!(status, 200);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT 1"}}}"#;
    let (status, _, body) = gateway.raw(&[("x-rowgate-user", "bob")], call).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    drop(gateway);
    db.teardown().await;
}

/// n8n's MCP Client Tool sends fixed credential headers, so the workflow names the user in the
/// endpoint URL instead (an expression over the chat trigger's metadata, as the n8n example
/// does). The key is still required, and the URL and the header cannot disagree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_may_be_named_in_the_endpoint_url() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let sql = "SELECT count(*) AS n FROM invoices";
    let (_, carol_http) = gateway.http_query("carol", sql).await;
    let (_, bob_http) = gateway.http_query("bob", sql).await;
    assert_ne!(carol_http["rows"], bob_http["rows"]);

    let carol = gateway
        .try_client_at("/mcp?user_id=carol", Some(KEY), None)
        .await
        .expect("the client connects with ?user_id=");
    let answer = call(&carol, "query", json!({"sql": sql})).await;
    assert_eq!(ok(&answer)["rows"], carol_http["rows"]);
    carol.cancel().await.expect("the client closes");

    // The same name twice is fine; two different names are refused before anything runs.
    let same = gateway
        .try_client_at("/mcp?user_id=bob", Some(KEY), Some("bob"))
        .await
        .expect("header and URL agree");
    let answer = call(&same, "query", json!({"sql": sql})).await;
    assert_eq!(ok(&answer)["rows"], bob_http["rows"]);
    same.cancel().await.expect("the client closes");
    let auth = format!("Bearer {KEY}");
    let (status, _, body) = gateway
        .raw_at(
            "/mcp?user_id=bob",
            &[
                ("authorization", auth.as_str()),
                ("x-rowgate-user", "carol"),
            ],
            INITIALIZE,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // A user named twice in the URL or in two headers is refused, not resolved: a URL built
    // by pasting an unescaped id (`x&user_id=bob`), or a proxy that appends the header rather
    // than replacing it, would otherwise decide who is calling.
    for (path, users) in [
        ("/mcp?user_id=carol&user_id=bob", &[][..]),
        ("/mcp?user_id=bob&user_id=bob", &[][..]),
        ("/mcp?user_id=carol&user_id=bob", &["bob"][..]),
        ("/mcp", &["carol", "bob"][..]),
        ("/mcp?user_id=bob", &["bob", "bob"][..]),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(users.iter().map(|user| ("x-rowgate-user", *user)));
        let (status, _, body) = gateway.raw_at(path, &headers, INITIALIZE).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{path} {users:?}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("more than once"), "{message}");
    }
    // The URL does not replace the key.
    let (status, _, body) = gateway.raw_at("/mcp?user_id=bob", &[], INITIALIZE).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    drop(gateway);
    db.teardown().await;
}

/// Issue 20's probe through MCP: a filter that folds to a cast of a constant answers the same
/// before and after a hidden canary row exists (the MCP tool runs the same rewrite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folded_filter_tells_nothing_of_a_hidden_row_through_mcp() {
    let db = TestDb::new().await;
    let gateway = start(&db).await;
    let client = gateway.client("bob").await;
    let sql = "SELECT count(*) FROM customers c WHERE c.id = 99001 \
               AND CASE WHEN c.department = 'Vault' THEN COALESCE('x', c.name)::date END IS NULL";
    let answer = |result: CallToolResult| (result.is_error, result.structured_content);
    let before = answer(call(&client, "query", json!({"sql": sql})).await);
    db.admin
        .batch_execute(
            "INSERT INTO customers (id, name, email, department, active, created_at) \
             VALUES (99001, 'canary', 'c@x', 'Vault', true, now())",
        )
        .await
        .expect("canary");
    let after = answer(call(&client, "query", json!({"sql": sql})).await);
    assert_eq!(before, after);
    assert_eq!(before.0, Some(false), "{before:?}");
    client.cancel().await.expect("the client closes");
    db.teardown().await;
}
