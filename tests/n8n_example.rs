//! The n8n example must keep matching the HTTP API, so it cannot rot unnoticed.

use serde_json::Value;

fn workflow() -> Value {
    let text = std::fs::read_to_string("examples/n8n/rowgate-agent.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn http_tool_posts_the_query_contract() {
    let workflow = workflow();
    let nodes = workflow["nodes"].as_array().unwrap();
    let tool = nodes
        .iter()
        .find(|n| n["type"] == "n8n-nodes-base.httpRequestTool")
        .expect("an HTTP Request tool node");
    let p = &tool["parameters"];
    assert_eq!(p["method"], "POST");
    assert!(p["url"].as_str().unwrap().ends_with("/v1/query"));
    let headers = p["headerParameters"]["parameters"].as_array().unwrap();
    assert!(headers.iter().any(
        |h| h["name"] == "Authorization" && h["value"].as_str().unwrap().starts_with("Bearer ")
    ));
    let body = p["jsonBody"].as_str().unwrap();
    // The user id comes from the chat trigger (the logged-in session), never from the model.
    let user_line = body.lines().find(|l| l.contains("\"user_id\"")).unwrap();
    assert!(
        user_line.contains("$('When chat message received')"),
        "{user_line}"
    );
    assert!(!user_line.contains("$fromAI"), "{user_line}");
    let sql_line = body.lines().find(|l| l.contains("\"sql\"")).unwrap();
    assert!(sql_line.contains("$fromAI('sql'"), "{sql_line}");
    // Nothing else is sent: the API refuses unknown fields.
    let fields: Vec<&str> = body
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
        .collect();
    assert_eq!(fields.len(), 2, "{body}");
}

#[test]
fn tool_is_wired_to_the_agent() {
    let workflow = workflow();
    let tool_links = &workflow["connections"]["query_database"]["ai_tool"][0][0];
    assert_eq!(tool_links["node"], "AI Agent");
    let trigger = &workflow["connections"]["When chat message received"]["main"][0][0];
    assert_eq!(trigger["node"], "AI Agent");
}
