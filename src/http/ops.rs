//! Operational endpoints: liveness, readiness, metrics, and the JSON 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.executor.ping().await {
        Ok(()) => {
            Json(json!({"status": "ready", "policy_version": state.policy.version})).into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.executor.pool().status());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn not_found() -> Response {
    let body = json!({"error": {
        "code": "invalid_request",
        "message": "no such endpoint",
        "hint": "Use POST /v1/query, GET /v1/schema, GET /healthz, GET /readyz or GET /metrics.",
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
