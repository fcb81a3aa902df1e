//! `GET /v1/schema`: what the caller may query, as JSON or as prompt-ready text.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{identify, ApiError, AppState};

#[derive(Deserialize)]
pub struct SchemaParams {
    user_id: Option<String>,
    format: Option<String>,
}

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
    // Only known callers learn the schema; this also proves the database is reachable.
    state.executor.attributes(&user_id).await?;
    match params.format.as_deref() {
        Some("text") => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            state.catalog.to_text(),
        )
            .into_response()),
        None | Some("json") => {
            let tables: Vec<_> = state.catalog.tables.values().collect();
            Ok(
                Json(json!({"tables": tables, "policy_version": state.policy.version}))
                    .into_response(),
            )
        }
        Some(other) => Err(ApiError::invalid(
            format!("unknown format `{other}`"),
            "Use format=text or format=json.",
        )),
    }
}
