//! Operational endpoints: liveness, readiness (with the loaded and installed policy versions),
//! metrics, and the JSON 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Object, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the policy in force is the one installed there. Both
/// versions are reported either way, so an operator sees which side is behind.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    responses((status = 200, description = "The database answers and the policy in force is the one installed.", body = Object,
        example = json!({"status": "ready", "policy_version": "379a90fde8889786", "installed_policy_version": "379a90fde8889786"}))),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(error) = state.executor.ping().await {
        return ApiError::from(error).into_response();
    }
    // A fresh look at the installed version; if it cannot be read, report the last one seen.
    if let Err(error) = state.live.refresh().await {
        tracing::warn!(%error, "readyz: cannot re-check the installed policy version");
    }
    let snapshot = state.live.snapshot();
    let versions = json!({
        "policy_version": snapshot.loaded(),
        "installed_policy_version": snapshot.installed,
    });
    match snapshot.check() {
        Ok(()) => {
            let mut body = json!({"status": "ready"});
            merge(&mut body, versions);
            Json(body).into_response()
        }
        Err(out_of_step) => {
            let error = ApiError::from(out_of_step);
            let mut body = json!({"status": "policy_out_of_date", "error": {
                "code": error.code, "message": error.message, "hint": error.hint,
            }});
            merge(&mut body, versions);
            (super::status(error.code), Json(body)).into_response()
        }
    }
}

fn merge(body: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    // The counters say who is busy and what is refused: behind the key like the rest.
    if let Err(error) = state.identity.check_key(&headers) {
        return ApiError::from(error).into_response();
    }
    let text = state.metrics.render(&state.executor.pool().status());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn not_found() -> Response {
    let body = json!({"error": {
        "code": "invalid_request",
        "message": "no such endpoint",
        "hint": "Use POST /v1/query, GET /v1/schema, POST /mcp, GET /healthz, GET /readyz or GET /metrics.",
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

pub async fn method_not_allowed() -> Response {
    let body = json!({"error": {
        "code": "invalid_request",
        "message": "method not allowed on this endpoint",
        "hint": "Use POST for /v1/query and GET for /v1/schema, /healthz, /readyz and /metrics.",
    }});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
