//! The HTTP edge: routes, the JSON error shape, and the one place where error codes become
//! HTTP statuses. Handlers live in `query`, `schema`, `ops` and `mcp` (the MCP endpoint).

pub mod mcp;
mod openapi;
mod ops;
mod query;
mod schema;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::audit::Audit;
use crate::execute::Executor;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::pipeline::RewriteCache;
use crate::refusal::{ErrorCode, Refusal};
use crate::reload::Live;

/// Largest request body accepted. The SQL cap is far smaller; this only bounds what is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct AppState {
    /// The policy in force and its catalog, replaced on reload: take one `snapshot()` per
    /// request.
    pub live: Arc<Live>,
    pub executor: Executor,
    /// Who is calling: API keys and, optionally, JWT verification.
    pub identity: Identity,
    /// The rewriter's limits and its answers for SQL seen before.
    pub rewrites: RewriteCache,
    pub max_rows: usize,
    pub metrics: Metrics,
    /// The audit trail (`Audit::off()` when not configured).
    pub audit: Audit,
}

/// Every route and its methods. The router is built from this list, so a route that is not
/// here is not served; `tests/openapi.rs` checks that each one answers and is documented.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/query", &["POST"]),
    ("/v1/schema", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    (openapi::PATH, &["GET"]),
    (mcp::PATH, &["POST"]),
];

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for (path, _) in ROUTES {
        router = match *path {
            "/v1/query" => router.route(path, post(query::handle)),
            "/v1/schema" => router.route(path, get(schema::handle)),
            "/healthz" => router.route(path, get(ops::healthz)),
            "/readyz" => router.route(path, get(ops::readyz)),
            "/metrics" => router.route(path, get(ops::metrics)),
            openapi::PATH => router.route(path, get(openapi::handle)),
            mcp::PATH => router.merge(mcp::routes(state.clone())),
            // A listed path without a handler answers 404, which tests/openapi.rs catches.
            _ => router,
        };
    }
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::ParseError => StatusCode::BAD_REQUEST,
        ErrorCode::StatementNotAllowed
        | ErrorCode::TableNotAllowed
        | ErrorCode::ColumnNotAllowed
        | ErrorCode::FunctionNotAllowed
        | ErrorCode::UnknownUser
        | ErrorCode::UserMismatch => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::QueryFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::QueryTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::DatabaseUnavailable
        | ErrorCode::AuditUnavailable
        | ErrorCode::PolicyOutOfDate => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The body of every error answer: `{"error": {"code", "message", "hint"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable; see the table in DESIGN.md.
    pub code: ErrorCode,
    /// What was wrong, in plain words.
    pub message: String,
    /// How to fix it, written so that an agent can correct its query.
    pub hint: String,
}

/// An error as the API shows it: `{"error": {"code", "message", "hint"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub hint: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl<E: Refusal> From<E> for ApiError {
    fn from(error: E) -> ApiError {
        ApiError {
            code: error.code(),
            message: error.to_string(),
            hint: error.hint(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                hint: self.hint,
            },
        };
        let status = status(self.code);
        let mut response = (status, Json(body)).into_response();
        // RFC 9110: a 401 names its scheme. Without it, MCP clients assume OAuth and never show
        // the hint.
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The caller's id, or the error to answer with. A request whose body (or query string) is
/// also bad answers with the credential error first, so an unauthenticated caller learns
/// nothing about what it sent; then the body error; then a user id the token disagrees with.
fn identify<T>(
    state: &AppState,
    headers: &HeaderMap,
    request: Result<T, ApiError>,
    claimed_user: impl FnOnce(&T) -> Option<String>,
) -> Result<(String, T), ApiError> {
    let claimed = request.as_ref().ok().and_then(claimed_user);
    let identity = state.identity.authenticate(headers, claimed.as_deref());
    match (identity, request) {
        (Err(error), _) if is_credential(&error) => Err(error.into()),
        (_, Err(error)) => Err(error),
        (Err(error), Ok(_)) => Err(error.into()),
        (Ok(user), Ok(request)) => Ok((user, request)),
    }
}

fn is_credential(error: &crate::identity::IdentityError) -> bool {
    matches!(
        error.code(),
        ErrorCode::Unauthorized | ErrorCode::InvalidToken
    )
}
