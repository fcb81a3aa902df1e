//! `POST /v1/query`: the whole request path of DESIGN.md, from the API key to the JSON rows.
//! [`answer`] is the same path for a caller authenticated elsewhere (the MCP tools).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{identify, ApiError, AppState};
use crate::audit::{self, AppliedRule, Decision, Outcome};
use crate::encode;

/// A user id as applications send it: n8n and friends often use numbers.
#[derive(Deserialize, Clone, utoipa::ToSchema)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryRequest {
    /// The chat user's id, from the application (never from the model). Required unless JWT
    /// verification is on; then optional, and refused with `user_mismatch` if it is not the
    /// token's caller.
    user_id: Option<UserId>,
    /// One read-only PostgreSQL query over the tables `GET /v1/schema` lists.
    sql: String,
    /// Answer with the rewritten SQL and the rules that apply instead of running it.
    #[serde(default)]
    dry_run: bool,
    /// Fewer rows than the server's cap (ROWGATE_MAX_ROWS); more is capped.
    #[schema(minimum = 0)]
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

/// A query once its caller is known: what `/v1/query` and the MCP tools both run.
pub(crate) struct QueryInput {
    pub sql: String,
    pub dry_run: bool,
    pub max_rows: Option<usize>,
}

/// Runs one read-only query as the caller, over permission views only.
#[utoipa::path(
    post,
    path = "/v1/query",
    operation_id = "query",
    request_body = QueryRequest,
    responses(
        (status = 200, description = "The rows (or, with `dry_run`, the rewritten SQL and the rules that apply).", body = Answer),
    ),
    security(("bearer" = []), ("bearer" = [], "api_key" = [])),
)]
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let identified = identify(&state, &headers, parse_body(body), |r| {
        r.user_id.clone().map(UserId::into_string)
    })
    .map(|(user_id, request)| {
        let input = QueryInput {
            sql: request.sql,
            dry_run: request.dry_run,
            max_rows: request.max_rows,
        };
        (user_id, input)
    });
    match logged(&state, identified, "query").await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Runs a query for an already authenticated caller (the MCP tools); `endpoint` labels the
/// metrics and the log line.
pub(crate) async fn answer(
    state: &AppState,
    user_id: String,
    input: QueryInput,
    endpoint: &str,
) -> Result<Answer, ApiError> {
    logged(state, Ok((user_id, input)), endpoint).await
}

/// The request's metrics and log line around [`run`].
async fn logged(
    state: &AppState,
    identified: Result<(String, QueryInput), ApiError>,
    endpoint: &str,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut log = Log {
        request_id: &request_id,
        caller: String::new(),
        tables: String::new(),
        rows: 0,
        trail: Trail::default(),
    };
    let result = match identified {
        Ok((user_id, input)) => {
            log.caller = user_id.clone();
            if state.audit.is_on() {
                log.trail.fingerprint = audit::fingerprint(&input.sql, state.rewrites.limits());
                log.trail.dry_run = input.dry_run;
            }
            run(state, &user_id, input, &mut log, endpoint).await
        }
        Err(error) => Err(error),
    };
    let result = close_trail(state, &log, endpoint, result, started).await;
    let elapsed = started.elapsed();
    state.metrics.observe("request", elapsed.as_secs_f64());
    let (outcome, code) = match &result {
        Ok(_) => ("ok", "none".to_string()),
        Err(error) => ("refused", error.code.to_string()),
    };
    state.metrics.count(endpoint, outcome, &code);
    tracing::info!(
        request_id = %request_id,
        endpoint,
        caller = %log.caller,
        outcome,
        code = %code,
        tables = %log.tables,
        rows = log.rows,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "query"
    );
    result
}

struct Log<'a> {
    request_id: &'a str,
    caller: String,
    tables: String,
    rows: usize,
    trail: Trail,
}

/// What the audit trail needs to know, gathered as the request goes.
#[derive(Default)]
struct Trail {
    policy_version: String,
    fingerprint: Option<String>,
    dry_run: bool,
    applied: Vec<AppliedRule>,
    truncated: bool,
    /// An `allow` line was written, so the query may run and an outcome line must follow.
    allowed: bool,
}

/// Writes the request's last audit line: the outcome of an allowed query, or the decision that
/// refused it. Fail-closed: an answer with data does not leave without its outcome line.
async fn close_trail(
    state: &AppState,
    log: &Log<'_>,
    endpoint: &str,
    result: Result<Answer, ApiError>,
    started: Instant,
) -> Result<Answer, ApiError> {
    if !state.audit.is_on() {
        return result;
    }
    let code = result.as_ref().err().map(|e| e.code);
    if log.trail.allowed {
        let outcome = Outcome {
            audit: "outcome",
            decision_id: log.request_id,
            time: audit::now(),
            outcome: if code.is_none() { "ok" } else { "error" },
            code,
            rows: log.rows,
            truncated: log.trail.truncated,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        return match (state.audit.record(&outcome).await, result) {
            (Err(error), Ok(_)) => Err(error.into()),
            (_, result) => result,
        };
    }
    let version = match log.trail.policy_version.as_str() {
        "" => state.live.snapshot().policy.version.clone(),
        known => known.to_string(),
    };
    let decision = Decision {
        audit: "decision",
        decision_id: log.request_id,
        time: audit::now(),
        endpoint,
        caller: Some(log.caller.as_str()).filter(|c| !c.is_empty()),
        policy_version: &version,
        fingerprint: log.trail.fingerprint.as_deref(),
        dry_run: log.trail.dry_run,
        tables: &log.trail.applied,
        decision: "refuse",
        code,
    };
    // Already a refusal: a trail that cannot be written is logged by the writer, and the
    // caller still learns why its query was refused.
    let _ = state.audit.record(&decision).await;
    result
}

/// Writes the `allow` line before anything runs; an unwritable trail refuses the query.
async fn allow(state: &AppState, log: &mut Log<'_>, endpoint: &str) -> Result<(), ApiError> {
    if !state.audit.is_on() {
        return Ok(());
    }
    let decision = Decision {
        audit: "decision",
        decision_id: log.request_id,
        time: audit::now(),
        endpoint,
        caller: Some(log.caller.as_str()),
        policy_version: &log.trail.policy_version,
        fingerprint: log.trail.fingerprint.as_deref(),
        dry_run: log.trail.dry_run,
        tables: &log.trail.applied,
        decision: "allow",
        code: None,
    };
    state.audit.record(&decision).await?;
    log.trail.allowed = true;
    Ok(())
}

async fn run(
    state: &AppState,
    user_id: &str,
    request: QueryInput,
    log: &mut Log<'_>,
    endpoint: &str,
) -> Result<Answer, ApiError> {
    tracing::debug!(request_id = log.request_id, sql = %request.sql, "agent sql");
    // One snapshot decides the whole request, and only while the database has its views.
    let snapshot = state.live.snapshot();
    snapshot.check()?;
    let policy = &*snapshot.policy;
    log.trail.policy_version = policy.version.clone();

    let stage = std::time::Instant::now();
    let (rewritten, cached) = state.rewrites.rewrite(&request.sql, &snapshot.policy)?;
    state
        .metrics
        .observe("rewrite", stage.elapsed().as_secs_f64());
    state.metrics.rewrite_cache(cached);
    log.tables = rewritten
        .plan
        .ctes
        .iter()
        .map(|c| c.table.as_str())
        .collect::<Vec<_>>()
        .join(",");
    tracing::debug!(request_id = log.request_id, sql = %rewritten.sql, "rewritten sql");
    log.trail.applied = rewritten
        .plan
        .ctes
        .iter()
        .filter_map(|cte| policy.table(&cte.table))
        .map(|t| AppliedRule {
            table: t.name.clone(),
            rule: t.rule.describe(),
        })
        .collect();
    allow(state, log, endpoint).await?;

    if request.dry_run {
        let attributes = state.executor.attributes(user_id, &policy.version).await?;
        let tables = rewritten
            .plan
            .ctes
            .iter()
            .filter_map(|cte| policy.table(&cte.table))
            .map(|t| TableFilter {
                table: t.name.clone(),
                filter: t.rule.describe(),
            })
            .collect();
        return Ok(Answer::DryRun(DryRunAnswer {
            rewritten_sql: rewritten.sql.clone(),
            tables,
            attributes,
            plan: rewritten.plan.clone(),
            policy_version: policy.version.clone(),
        }));
    }

    let max_rows = request
        .max_rows
        .unwrap_or(state.max_rows)
        .min(state.max_rows);
    let stage = std::time::Instant::now();
    let output = state
        .executor
        .run(user_id, &policy.version, &rewritten.sql, max_rows)
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
    log.trail.truncated = output.truncated;
    Ok(Answer::Rows(QueryAnswer {
        columns,
        row_count: rows.len(),
        rows,
        truncated: output.truncated,
        rewritten_sql: rewritten.sql.clone(),
    }))
}

/// A run's answer. A struct rather than `json!` so that rows keep their column order.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct QueryAnswer {
    columns: Vec<encode::ColumnInfo>,
    /// One object per row, keyed by column name, in column order.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<encode::EncodedRow>,
    row_count: usize,
    truncated: bool,
    rewritten_sql: String,
}

/// A dry run's answer: what would run, and why.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DryRunAnswer {
    rewritten_sql: String,
    /// The rule that filters each table the query reads.
    tables: Vec<TableFilter>,
    /// The caller's attribute values, as the policy's subject queries find them.
    #[schema(value_type = Object)]
    attributes: Value,
    /// Which reference became which permission CTE.
    #[schema(value_type = Object)]
    plan: crate::rewrite::Plan,
    policy_version: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TableFilter {
    table: String,
    filter: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Answer {
    Rows(QueryAnswer),
    DryRun(DryRunAnswer),
}
