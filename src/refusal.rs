//! The stable error codes of the HTTP contract (DESIGN.md), shared by every stage's error enum.
//!
//! Each stage keeps its own `thiserror` enum; this module only names the code each variant maps
//! to and requires a hint, so that the edge (CLI or HTTP) can render any refusal the same way.

use serde::Serialize;

/// The codes of DESIGN.md's error table. Their spelling is part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    ParseError,
    StatementNotAllowed,
    TableNotAllowed,
    ColumnNotAllowed,
    FunctionNotAllowed,
    UnknownUser,
    Unauthorized,
    QueryFailed,
    QueryTimeout,
    DatabaseUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ParseError => "parse_error",
            ErrorCode::StatementNotAllowed => "statement_not_allowed",
            ErrorCode::TableNotAllowed => "table_not_allowed",
            ErrorCode::ColumnNotAllowed => "column_not_allowed",
            ErrorCode::FunctionNotAllowed => "function_not_allowed",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::QueryFailed => "query_failed",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every refusal offers its caller: a stable code and a hint that says how to fix the query.
/// The message itself is the error's `Display`.
pub trait Refusal: std::error::Error {
    fn code(&self) -> ErrorCode;
    fn hint(&self) -> String;
}
