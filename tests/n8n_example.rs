//! The n8n examples must keep matching the API, so they cannot rot unnoticed: each workflow is
//! loaded, its wiring and the origin of the user id are checked, and then its rowgate node is
//! replayed against the real gateway, with n8n's expressions filled in as n8n would fill them:
//! the HTTP Request tool's method, URL path, headers and body go through the router, and the
//! MCP Client Tool's endpoint and credential type drive the rmcp client. Both must answer
//! "what is the total of my department's invoices?" for bob with the right number.

mod common;

use std::collections::HashMap;

use axum::http::Method;
use common::*;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use rowgate::auth::ApiKeys;
use serde_json::{json, Value};

const HTTP_WORKFLOW: &str = "examples/n8n/rowgate-agent.json";
const MCP_WORKFLOW: &str = "examples/n8n/rowgate-agent-mcp.json";
const TRIGGER: &str = "When chat message received";
/// Where the README's `rowgate serve` listens; the examples point there.
const DEFAULT_BASE: &str = "http://127.0.0.1:8080";
const KEY: &str = "n8n-example-key";
/// What the model would write for "what is the total of my department's invoices?".
const TOTAL_SQL: &str = "SELECT SUM(amount) AS total FROM invoices";

fn workflow(path: &str) -> Value {
    let text = std::fs::read_to_string(manifest_path(path)).expect("the workflow reads");
    serde_json::from_str(&text).expect("the workflow is JSON")
}

fn node<'a>(workflow: &'a Value, kind: &str) -> &'a Value {
    let nodes = workflow["nodes"].as_array().expect("nodes");
    let found: Vec<&Value> = nodes.iter().filter(|n| n["type"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} node");
    found[0]
}

/// An n8n parameter with its `{{ … }}` expressions evaluated as n8n would for `user` and a
/// model that wrote `sql`. Any other expression fails the test: the examples use only these.
fn render(template: &str, user: &str, sql: &str) -> String {
    let body = template
        .strip_prefix('=')
        .expect("an n8n expression starts with =");
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a closed expression") + start;
        let expression = rest[start + 2..end].trim();
        out.push_str(&evaluate(expression, user, sql));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn evaluate(expression: &str, user: &str, sql: &str) -> String {
    let user_id = format!("$('{TRIGGER}').item.json.metadata.userId");
    let value = if expression.contains(&user_id) {
        // The user comes from the chat session, and the model has no say in it.
        assert!(!expression.contains("$fromAI"), "{expression}");
        user
    } else if expression.contains("$fromAI('sql'") {
        sql
    } else {
        panic!("an expression the test does not know: {expression}")
    };
    if expression.starts_with("JSON.stringify(") {
        serde_json::to_string(value).expect("a JSON string")
    } else if expression.starts_with("encodeURIComponent(") {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    } else {
        panic!("the value must be encoded for where it goes: {expression}")
    }
}

/// The chat trigger feeds the agent, the model and the tool are the agent's, and the trigger
/// is an embedded chat (whose page passes `metadata.userId`) open to the application's origin
/// only.
fn check_wiring(workflow: &Value, tool: &str) {
    let connections = &workflow["connections"];
    assert_eq!(connections[TRIGGER]["main"][0][0]["node"], "AI Agent");
    assert_eq!(
        connections["OpenAI Chat Model"]["ai_languageModel"][0][0]["node"],
        "AI Agent"
    );
    assert_eq!(connections[tool]["ai_tool"][0][0]["node"], "AI Agent");
    let trigger = node(workflow, "@n8n/n8n-nodes-langchain.chatTrigger");
    assert_eq!(trigger["name"], TRIGGER);
    assert_eq!(trigger["parameters"]["mode"], "webhook");
    let origins = trigger["parameters"]["options"]["allowedOrigins"]
        .as_str()
        .unwrap_or("*");
    assert_ne!(origins, "*", "any web page could name any user");
    node(workflow, "@n8n/n8n-nodes-langchain.agent");
    node(workflow, "@n8n/n8n-nodes-langchain.lmChatOpenAi");
}

/// What bob's total must be, computed by the superuser from the policy's own rule.
async fn expected_total(db: &TestDb, user: &str) -> Value {
    let rows = db
        .admin_rows(&format!(
            "SELECT SUM(amount) AS total FROM invoices WHERE department IN \
             (SELECT department FROM permissions WHERE allowed_role IN \
              (SELECT role FROM user_roles WHERE user_id = {}))",
            lit(user)
        ))
        .await;
    assert!(!rows[0]["total"].is_null(), "the user needs invoices");
    json!(rows)
}

#[test]
fn the_user_id_comes_from_the_chat_session_never_from_the_model() {
    let http = workflow(HTTP_WORKFLOW);
    check_wiring(&http, "query_database");
    let tool = node(&http, "n8n-nodes-base.httpRequestTool");
    let body = tool["parameters"]["jsonBody"]
        .as_str()
        .expect("a JSON body");
    // Only the SQL is the model's.
    assert_eq!(body.matches("$fromAI(").count(), 1, "{body}");
    assert!(body.contains("$fromAI('sql'"), "{body}");
    let user_line = body
        .lines()
        .find(|l| l.contains("\"user_id\""))
        .expect("user_id");
    assert!(
        user_line.contains(&format!("$('{TRIGGER}')")),
        "{user_line}"
    );
    assert!(!user_line.contains("$fromAI"), "{user_line}");
    assert!(tool["parameters"]["toolDescription"]
        .as_str()
        .is_some_and(|d| d.len() > 40));

    let mcp = workflow(MCP_WORKFLOW);
    check_wiring(&mcp, "rowgate");
    let tool = node(&mcp, "@n8n/n8n-nodes-langchain.mcpClientTool");
    let endpoint = tool["parameters"]["endpointUrl"]
        .as_str()
        .expect("endpoint");
    assert!(!endpoint.contains("$fromAI"), "{endpoint}");
    assert!(endpoint.contains(&format!("$('{TRIGGER}')")), "{endpoint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_tool_node_is_a_valid_query_request() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.api_keys = ApiKeys::parse(KEY);
    let router = db.router_with(&config).await;

    let workflow = workflow(HTTP_WORKFLOW);
    let p = &node(&workflow, "n8n-nodes-base.httpRequestTool")["parameters"];
    let method: Method = p["method"]
        .as_str()
        .expect("a method")
        .parse()
        .expect("a method");
    let url = p["url"].as_str().expect("a URL");
    let path = url
        .strip_prefix(DEFAULT_BASE)
        .expect("the README's address");
    assert_eq!(p["sendHeaders"], true);
    assert_eq!(p["sendBody"], true);
    assert_eq!(p["specifyBody"], "json");
    let headers: Vec<(String, String)> = p["headerParameters"]["parameters"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            let value = h["value"].as_str().expect("a header value");
            // The placeholder stands for one of ROWGATE_API_KEYS.
            let value = value.replace("REPLACE_WITH_A_KEY_FROM_ROWGATE_API_KEYS", KEY);
            (
                h["name"].as_str().expect("a header name").to_string(),
                value,
            )
        })
        .collect();
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // n8n sends a JSON body with this content type.
    headers.push(("content-type", "application/json"));
    let body = render(p["jsonBody"].as_str().expect("a body"), "bob", TOTAL_SQL);

    let reply = call(&router, method.clone(), path, &headers, body.clone()).await;
    assert_eq!(
        reply.ok()["rows"],
        expected_total(&db, "bob").await,
        "{body}"
    );
    // And without the key the example's request is refused: the header is what lets it in.
    let keyless: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
        .collect();
    call(&router, method, path, &keyless, body)
        .await
        .error(axum::http::StatusCode::UNAUTHORIZED, "unauthorized");
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_client_node_connects_and_answers() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.api_keys = ApiKeys::parse(KEY);
    let router = db.router_with(&config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let workflow = workflow(MCP_WORKFLOW);
    let tool = node(&workflow, "@n8n/n8n-nodes-langchain.mcpClientTool");
    let p = &tool["parameters"];
    assert_eq!(p["serverTransport"], "httpStreamable");
    assert_eq!(p["include"], "all");
    // Bearer auth sends `Authorization: Bearer <key>`, what rowgate checks.
    assert_eq!(p["authentication"], "bearerAuth");
    assert!(tool["credentials"]["httpBearerAuth"].is_object());
    let endpoint = render(p["endpointUrl"].as_str().expect("an endpoint"), "bob", "");
    let path = endpoint
        .strip_prefix(DEFAULT_BASE)
        .expect("the README's address");
    assert!(path.starts_with("/mcp?user_id="), "{path}");

    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}{path}"))
        .auth_header(KEY)
        .custom_headers(HashMap::new());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("the example's endpoint and credentials connect");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "query"));
    let arguments = json!({"sql": TOTAL_SQL});
    let result = client
        .call_tool(
            CallToolRequestParams::new("query")
                .with_arguments(arguments.as_object().expect("an object").clone()),
        )
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let answer = result.structured_content.expect("structured content");
    assert_eq!(answer["rows"], expected_total(&db, "bob").await);
    client.cancel().await.expect("the client closes");
    server.abort();
    db.teardown().await;
}

#[test]
fn expressions_render_as_n8n_would() {
    assert_eq!(
        render(
            &format!(
                "={{\"u\": {{{{ JSON.stringify($('{TRIGGER}').item.json.metadata.userId) }}}}}}"
            ),
            "a\"b",
            ""
        ),
        "{\"u\": \"a\\\"b\"}"
    );
    assert_eq!(
        render(
            &format!(
                "=x?user_id={{{{ encodeURIComponent($('{TRIGGER}').item.json.metadata.userId) }}}}"
            ),
            "o'neil&co",
            ""
        ),
        "x?user_id=o%27neil%26co"
    );
}
