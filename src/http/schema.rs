//! `GET /v1/schema`: what the caller may query, as JSON or as prompt-ready text. [`describe`]
//! is shared with the MCP `describe_schema` tool.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{identify, ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchemaParams {
    /// The chat user's id (optional with JWT verification, which names the caller).
    user_id: Option<String>,
    /// `json` (the default) or `text`, ready to paste into a system prompt.
    format: Option<String>,
}

/// The tables and columns the caller may query.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SchemaAnswer<'a> {
    tables: Vec<&'a crate::catalog::TableDesc>,
    policy_version: &'a str,
}

/// What the caller may query, as JSON or as prompt-ready text.
#[utoipa::path(
    get,
    path = "/v1/schema",
    operation_id = "schema",
    params(SchemaParams),
    responses(
        (status = 200, description = "The tables and columns the caller may query, with descriptions.", content(
            (SchemaAnswer = "application/json"),
            (String = "text/plain"),
        )),
    ),
    security(("bearer" = []), ("bearer" = [], "api_key" = [])),
)]
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<SchemaParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = run(&state, &headers, params).await;
    let code = result
        .as_ref()
        .err()
        .map(|e| e.code.to_string())
        .unwrap_or_else(|| "none".into());
    state.metrics.count(
        "schema",
        if result.is_ok() { "ok" } else { "refused" },
        &code,
    );
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Query<SchemaParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params.map(|Query(p)| p).map_err(|e| {
        ApiError::invalid(
            e.to_string(),
            "Use GET /v1/schema?user_id=<id>[&format=text].",
        )
    });
    let (user_id, params) = identify(state, headers, params, |p| p.user_id.clone())?;
    let schema = describe(state, &user_id).await?;
    match params.format.as_deref() {
        Some("text") => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            schema.text,
        )
            .into_response()),
        None | Some("json") => Ok(Json(schema.json).into_response()),
        Some(other) => Err(ApiError::invalid(
            format!("unknown format `{other}`"),
            "Use format=text or format=json.",
        )),
    }
}

/// What a caller may query, in both forms: `/v1/schema` picks one, the MCP tool sends both.
pub(crate) struct Described {
    pub json: serde_json::Value,
    pub text: String,
}

/// The schema for an authenticated caller: `/v1/schema` and the MCP `describe_schema` tool.
pub(crate) async fn describe(state: &AppState, user_id: &str) -> Result<Described, ApiError> {
    let snapshot = state.live.snapshot();
    // A catalog read from other views than the policy's would describe the wrong tables.
    snapshot.check()?;
    // Only known callers learn the schema; this also proves the database is reachable.
    state
        .executor
        .attributes(user_id, snapshot.loaded())
        .await?;
    let tables: Vec<_> = snapshot.catalog.tables.values().collect();
    Ok(Described {
        json: serde_json::to_value(SchemaAnswer {
            tables,
            policy_version: &snapshot.policy.version,
        })
        .map_err(|e| ApiError::invalid(e.to_string(), "Retry; this is a bug if it persists."))?,
        text: snapshot.catalog.to_text(),
    })
}
