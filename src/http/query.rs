//! `POST /v1/query`: the whole request path of DESIGN.md, from the API key to the JSON rows.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{identify, ApiError, AppState};
use crate::{encode, pipeline};

/// A user id as applications send it: n8n and friends often use numbers.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum UserId {
    Text(String),
    Number(i64),
}

impl UserId {
    pub fn into_string(self) -> String {
        match self {
            UserId::Text(text) => text,
            UserId::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    /// Required unless the caller's id comes from a verified token.
    user_id: Option<UserId>,
    sql: String,
    #[serde(default)]
    dry_run: bool,
    max_rows: Option<usize>,
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<QueryRequest, ApiError> {
    let body = body.map_err(|e| {
        ApiError::invalid(
            format!("cannot read the request body: {e}"),
            format!(
                "Send a JSON body of at most {} bytes.",
                super::MAX_BODY_BYTES
            ),
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            format!("the body is not a valid query request: {e}"),
            "Send JSON like {\"user_id\": \"bob\", \"sql\": \"SELECT ...\"}; optional: \"dry_run\": true, \"max_rows\": 100.",
        )
    })
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut log = Log {
        request_id: &request_id,
        caller: String::new(),
        tables: String::new(),
        rows: 0,
    };
    let result = run(&state, &headers, body, &mut log).await;
    let elapsed = started.elapsed();
    state.metrics.observe("request", elapsed.as_secs_f64());
    let (outcome, code) = match &result {
        Ok(_) => ("ok", "none".to_string()),
        Err(error) => ("refused", error.code.to_string()),
    };
    state.metrics.count("query", outcome, &code);
    tracing::info!(
        request_id = %request_id,
        caller = %log.caller,
        outcome,
        code = %code,
        tables = %log.tables,
        rows = log.rows,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "query"
    );
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

struct Log<'a> {
    request_id: &'a str,
    caller: String,
    tables: String,
    rows: usize,
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    log: &mut Log<'_>,
) -> Result<Answer, ApiError> {
    let (user_id, request) = identify(state, headers, parse_body(body), |r| {
        r.user_id.clone().map(UserId::into_string)
    })?;
    log.caller = user_id.clone();
    tracing::debug!(request_id = log.request_id, sql = %request.sql, "agent sql");

    let stage = std::time::Instant::now();
    let rewritten = pipeline::rewrite(&request.sql, &state.policy, &state.limits)?;
    state
        .metrics
        .observe("rewrite", stage.elapsed().as_secs_f64());
    log.tables = rewritten
        .plan
        .ctes
        .iter()
        .map(|c| c.table.as_str())
        .collect::<Vec<_>>()
        .join(",");
    tracing::debug!(request_id = log.request_id, sql = %rewritten.sql, "rewritten sql");

    if request.dry_run {
        let attributes = state.executor.attributes(&user_id).await?;
        let tables: Vec<Value> = rewritten
            .plan
            .ctes
            .iter()
            .filter_map(|cte| state.policy.table(&cte.table))
            .map(|t| json!({"table": t.name, "filter": t.rule.describe()}))
            .collect();
        return Ok(Answer::DryRun(json!({
            "rewritten_sql": rewritten.sql,
            "tables": tables,
            "attributes": attributes,
            "plan": rewritten.plan,
            "policy_version": state.policy.version,
        })));
    }

    let max_rows = request
        .max_rows
        .unwrap_or(state.max_rows)
        .min(state.max_rows);
    let stage = std::time::Instant::now();
    let output = state
        .executor
        .run(&user_id, &rewritten.sql, max_rows)
        .await?;
    state
        .metrics
        .observe("execute", stage.elapsed().as_secs_f64());

    let stage = std::time::Instant::now();
    let columns = encode::columns(output.statement.columns());
    let rows = encode::encode_rows(&output.rows)?;
    state
        .metrics
        .observe("encode", stage.elapsed().as_secs_f64());
    log.rows = rows.len();
    Ok(Answer::Rows(QueryAnswer {
        columns,
        row_count: rows.len(),
        rows,
        truncated: output.truncated,
        rewritten_sql: rewritten.sql,
    }))
}

/// A run's answer. A struct rather than `json!` so that rows keep their column order.
#[derive(Serialize)]
struct QueryAnswer {
    columns: Vec<encode::ColumnInfo>,
    rows: Vec<encode::EncodedRow>,
    row_count: usize,
    truncated: bool,
    rewritten_sql: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Rows(QueryAnswer),
    DryRun(Value),
}
