//! `/mcp`: the Model Context Protocol endpoint (streamable HTTP, stateless, JSON answers), for
//! agents that speak MCP instead of calling `/v1/query` themselves.
//!
//! Three tools, `query`, `dry_run` and `describe_schema`, run the very code of `/v1/query` and
//! `/v1/schema` (`query::answer`, `schema::describe`), so limits, refusals and audit are the
//! same. Who the caller is comes from each HTTP request's credentials, checked by
//! [`authenticate`] before rmcp sees the message: the API key and the `X-Rowgate-User` header
//! (or `?user_id=` on the endpoint URL), or a verified token. A tool argument can never name the caller: tools refuse arguments they
//! do not declare, `user_id` included. A refusal is a tool result with `isError` carrying the
//! API's `{"error": {"code", "message", "hint"}}`; an unknown tool is a JSON-RPC error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientJsonRpcMessage, ContentBlock,
    CustomRequest, CustomResult, ErrorCode, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};

use super::query::{self, QueryInput};
use super::{schema, ApiError, AppState, MAX_BODY_BYTES};
use crate::identity::USER_HEADER;

/// The path the endpoint is served at.
pub const PATH: &str = "/mcp";

/// The caller of one MCP request, as [`authenticate`] established it.
#[derive(Debug, Clone)]
struct Caller(String);

/// The caller's id from the request's credentials alone. The one place `/mcp` decides who is
/// calling; it asks the same function as every other endpoint. The application names the user
/// in the `X-Rowgate-User` header or, for clients whose headers are fixed per credential (n8n's
/// MCP Client Tool), in the endpoint URL's `?user_id=`; both are set by the application, never
/// by the model. With a verified token, either one is optional and must match the token.
pub fn caller(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<String, ApiError> {
    // Named twice is refused rather than resolved (first or last wins): a URL built by pasting
    // an unescaped id (`x&user_id=victim`), or a proxy that appends the header instead of
    // replacing it, would otherwise choose the caller.
    let twice = |place: String| {
        ApiError::invalid(
            format!("the user is named more than once in {place}"),
            format!(
                "Name the user once: one {USER_HEADER} header or one ?user_id= on the endpoint URL, \
                 with the id URL-encoded."
            ),
        )
    };
    let mut header_values = headers.get_all(USER_HEADER).iter();
    let from_header = match (header_values.next(), header_values.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(twice(format!("the {USER_HEADER} header"))),
        (Some(value), None) => Some(value.to_str().map_err(|_| {
            ApiError::invalid(
                format!("the {USER_HEADER} header is not valid text"),
                format!("Send the chat user's id as plain text in {USER_HEADER}."),
            )
        })?),
    };
    let params = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| {
        ApiError::invalid(
            format!("the query string of /mcp cannot be read: {e}"),
            "Use /mcp or /mcp?user_id=<id>.",
        )
    })?;
    let mut named = params.0.iter().filter(|(name, _)| name == "user_id");
    let from_query = match (named.next(), named.next()) {
        (Some(_), Some(_)) => return Err(twice("the URL's ?user_id=".to_string())),
        (first, _) => first.map(|(_, value)| value.as_str()),
    };
    let claimed = match (from_header, from_query) {
        (Some(header), Some(query)) if header != query => {
            return Err(ApiError::invalid(
                format!(
                    "{USER_HEADER} (`{header}`) and ?user_id= (`{query}`) name different users"
                ),
                format!(
                "Name the user once: the {USER_HEADER} header or ?user_id= on the endpoint URL."
            ),
            ))
        }
        (header, query) => header.or(query),
    };
    state
        .identity
        .authenticate(headers, claimed)
        .map_err(ApiError::from)
}

/// Refuses a request without valid credentials before any MCP message is read, with the API's
/// error shape and status (401 for a key or token, 400 for a missing user header); then
/// answers a POST whose body is not a JSON-RPC message with a JSON-RPC error, where rmcp would
/// answer plain text.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match caller(&state, request.headers(), request.uri()) {
        Ok(user) => {
            request.extensions_mut().insert(Caller(user));
        }
        Err(error) => {
            state.metrics.count("mcp", "refused", error.code.as_str());
            return error.into_response();
        }
    }
    if request.method() != Method::POST || !is_json(request.headers()) {
        // rmcp answers these itself (405, 406, 415), never with a 500.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                INVALID_REQUEST,
                format!("cannot read the message (at most {MAX_BODY_BYTES} bytes): {error}"),
            )
        }
    };
    if let Some(response) = check_message(&bytes) {
        state.metrics.count("mcp", "refused", "invalid_message");
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// `None` when rmcp can read the body as one JSON-RPC message; otherwise the JSON-RPC error to
/// answer with (MCP: an HTTP 400 whose body is a JSON-RPC error).
fn check_message(bytes: &[u8]) -> Option<Response> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            return Some(rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                format!("the message is not JSON: {e}"),
            ))
        }
    };
    let error = serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).err()?;
    let id = value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    let method = value.get("method").and_then(Value::as_str);
    let (code, message) = match method {
        // A method rmcp knows whose params it cannot read.
        Some(method) if value.get("jsonrpc") == Some(&json!("2.0")) && !id.is_null() => (
            INVALID_PARAMS,
            format!("invalid params for `{method}`: {error}"),
        ),
        _ => (
            INVALID_REQUEST,
            format!("the message is not a JSON-RPC 2.0 request or notification: {error}"),
        ),
    };
    Some(rpc_error(StatusCode::BAD_REQUEST, id, code, message))
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}

/// The `/mcp` route, to merge into the main router.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let handler = Server {
        state: state.clone(),
    };
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    if state.identity.is_required() {
        // rmcp checks `Host` against loopback names to stop DNS rebinding from reaching an
        // open local server. Every request here must carry a key or token, which a rebinding
        // page does not have, and a real deployment is reached under its own host name.
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .route_layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// The requests of MCP's client side, as rmcp would read them with well-formed params.
const STANDARD_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

#[derive(Clone)]
struct Server {
    state: Arc<AppState>,
}

const INSTRUCTIONS: &str = "rowgate answers questions from the signed-in user's PostgreSQL data. \
Call describe_schema first to learn the tables and columns, then query with one read-only SELECT. \
Every table is already limited to the rows this user may see: never add a filter for the user. \
When a tool answers with isError, read error.hint, fix the query and call again.";

const QUERY_DESCRIPTION: &str = "Run ONE read-only PostgreSQL query (SELECT, WITH ... SELECT, VALUES, \
UNION/INTERSECT/EXCEPT) and get the rows as JSON: {columns: [{name, type}], rows: [{column: value}], \
row_count, truncated, rewritten_sql}. Use only the tables and columns describe_schema lists; rows are \
already limited to what the signed-in user may see, so do not filter by user. No writes, no DDL, no \
SET, no several statements, no system catalogs; ordinary SQL functions (aggregates, date/time, text, \
math) are allowed. At most max_rows rows come back and truncated says whether more existed: prefer \
aggregates (SUM, COUNT, GROUP BY) and LIMIT. Numeric values come as exact decimal strings. On a \
refusal the result is {error: {code, message, hint}}: follow the hint and call again.";

const DRY_RUN_DESCRIPTION: &str = "Check a query without running it: answers with the SQL that \
would run (every table replaced by the user's permission view), the row filter applied to each \
table, and the user's attributes; or with the same {error: {code, message, hint}} that query would \
give. Use it to understand a refusal; use query to get data.";

const SCHEMA_DESCRIPTION: &str = "List the tables and columns the signed-in user may query, with \
their types and descriptions. Call it before writing SQL; any table or column not listed here is \
refused. Takes no arguments.";

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn read_only(mut tool: Tool) -> Tool {
    tool.annotations = Some(ToolAnnotations::new().read_only(true).idempotent(true));
    tool
}

fn sql_schema(with_max_rows: bool) -> Arc<JsonObject> {
    let mut properties = json!({
        "sql": {
            "type": "string",
            "description": "One PostgreSQL query, e.g. SELECT department, SUM(amount) FROM invoices GROUP BY department",
        }
    });
    if with_max_rows {
        properties["max_rows"] = json!({
            "type": "integer",
            "minimum": 0,
            "description": "Return at most this many rows (the server's own limit still applies).",
        });
    }
    object(json!({
        "type": "object",
        "properties": properties,
        "required": ["sql"],
        "additionalProperties": false,
    }))
}

fn tools() -> Vec<Tool> {
    vec![
        read_only(Tool::new("query", QUERY_DESCRIPTION, sql_schema(true))),
        read_only(Tool::new("dry_run", DRY_RUN_DESCRIPTION, sql_schema(false))),
        read_only(Tool::new(
            "describe_schema",
            SCHEMA_DESCRIPTION,
            object(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )),
    ]
}

/// The arguments of a query tool, checked as strictly as `/v1/query` checks its body.
fn query_input(arguments: Option<&JsonObject>, dry_run: bool) -> Result<QueryInput, ApiError> {
    let empty = JsonObject::new();
    let arguments = arguments.unwrap_or(&empty);
    let allowed: &[&str] = if dry_run {
        &["sql"]
    } else {
        &["sql", "max_rows"]
    };
    refuse_unknown(arguments, allowed)?;
    let sql = match arguments.get("sql") {
        Some(Value::String(sql)) => sql.clone(),
        _ => {
            return Err(ApiError::invalid(
                "the argument `sql` is missing or not a string",
                "Call the tool with {\"sql\": \"SELECT ...\"}.",
            ))
        }
    };
    let max_rows = match arguments.get("max_rows") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "the argument `max_rows` is not a non-negative integer",
                        "Pass max_rows as a whole number, e.g. 100, or leave it out.",
                    )
                })?,
        ),
    };
    Ok(QueryInput {
        sql,
        dry_run,
        max_rows,
    })
}

/// Refuses arguments a tool does not declare. `user_id` gets its own words: the caller is the
/// connection's, and a model must learn that it cannot choose it.
fn refuse_unknown(arguments: &JsonObject, allowed: &[&str]) -> Result<(), ApiError> {
    for name in arguments.keys() {
        if allowed.contains(&name.as_str()) {
            continue;
        }
        if name.eq_ignore_ascii_case("user_id") || name.eq_ignore_ascii_case("userid") {
            return Err(ApiError::invalid(
                format!(
                    "the argument `{name}` is not accepted: the user is fixed by the connection"
                ),
                "Leave the user out; the query already runs as the signed-in user.",
            ));
        }
        return Err(ApiError::invalid(
            format!("unknown argument `{name}`"),
            format!("This tool takes only: {}.", allowed.join(", ")),
        ));
    }
    Ok(())
}

fn error_result(error: ApiError) -> CallToolResult {
    CallToolResult::structured_error(json!({"error": {
        "code": error.code,
        "message": error.message,
        "hint": error.hint,
    }}))
}

impl Server {
    async fn run_tool(
        &self,
        name: &str,
        user: String,
        arguments: Option<&JsonObject>,
    ) -> Result<CallToolResult, ApiError> {
        match name {
            "query" | "dry_run" => {
                let input = query_input(arguments, name == "dry_run")?;
                let answer = query::answer(&self.state, user, input, "mcp").await?;
                let value = serde_json::to_value(&answer).map_err(|e| {
                    ApiError::invalid(format!("cannot encode the answer: {e}"), "Try again.")
                })?;
                // The text keeps the columns' order, which the JSON object may not.
                let text = serde_json::to_string(&answer).unwrap_or_else(|_| value.to_string());
                let mut result = CallToolResult::structured(value);
                result.content = vec![ContentBlock::text(text)];
                Ok(result)
            }
            _ => {
                refuse_unknown(arguments.unwrap_or(&JsonObject::new()), &[])?;
                let schema = schema::describe(&self.state, &user).await?;
                let mut result = CallToolResult::structured(schema.json);
                result.content = vec![ContentBlock::text(schema.text)];
                Ok(result)
            }
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rowgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    /// rmcp reads a standard request whose params have the wrong shape as a custom one; say
    /// so (-32602) instead of calling a method everyone knows "not found".
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method;
        if STANDARD_METHODS.contains(&method.as_str()) {
            Err(ErrorData::invalid_params(
                format!("the params of `{method}` do not have the shape MCP defines"),
                None,
            ))
        } else {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("unknown method `{method}`"),
                None,
            ))
        }
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.get_tool(&request.name).is_none() {
            // MCP: an unknown tool is a protocol error (-32602), not a tool result.
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{}`; the tools are query, dry_run and describe_schema",
                    request.name
                ),
                None,
            ));
        }
        let user = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .map(|caller| caller.0.clone());
        let Some(user) = user else {
            // `authenticate` runs before every request reaches rmcp; without it, nothing runs.
            return Err(ErrorData::internal_error(
                "the request carries no authenticated caller",
                None,
            ));
        };
        let result = self
            .run_tool(&request.name, user, request.arguments.as_ref())
            .await
            .unwrap_or_else(error_result);
        Ok(result.into())
    }
}
