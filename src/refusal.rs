//! The stable error codes of the HTTP contract (DESIGN.md), shared by every stage's error enum.
//!
//! Each stage keeps its own `thiserror` enum; this module only names the code each variant maps
//! to and requires a hint, so that the edge (CLI or HTTP) can render any refusal the same way.

use serde::Serialize;

/// The codes of DESIGN.md's error table. Their spelling is part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
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
    InvalidToken,
    UserMismatch,
    AuditUnavailable,
    PolicyOutOfDate,
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
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::UserMismatch => "user_mismatch",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::PolicyOutOfDate => "policy_out_of_date",
        }
    }

    /// Every code, for documents and tests that must cover them all (the OpenAPI test). The
    /// unit test below fails to compile when a variant is added without being listed here.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidRequest,
        ErrorCode::ParseError,
        ErrorCode::StatementNotAllowed,
        ErrorCode::TableNotAllowed,
        ErrorCode::ColumnNotAllowed,
        ErrorCode::FunctionNotAllowed,
        ErrorCode::UnknownUser,
        ErrorCode::Unauthorized,
        ErrorCode::QueryFailed,
        ErrorCode::QueryTimeout,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::InvalidToken,
        ErrorCode::UserMismatch,
        ErrorCode::AuditUnavailable,
        ErrorCode::PolicyOutOfDate,
    ];
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

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// Maps each variant to its index in `ALL`: a new variant breaks this match (no wildcard),
    /// and a wrong index or a duplicate fails the assertion.
    fn position(code: ErrorCode) -> usize {
        match code {
            ErrorCode::InvalidRequest => 0,
            ErrorCode::ParseError => 1,
            ErrorCode::StatementNotAllowed => 2,
            ErrorCode::TableNotAllowed => 3,
            ErrorCode::ColumnNotAllowed => 4,
            ErrorCode::FunctionNotAllowed => 5,
            ErrorCode::UnknownUser => 6,
            ErrorCode::Unauthorized => 7,
            ErrorCode::QueryFailed => 8,
            ErrorCode::QueryTimeout => 9,
            ErrorCode::DatabaseUnavailable => 10,
            ErrorCode::InvalidToken => 11,
            ErrorCode::UserMismatch => 12,
            ErrorCode::AuditUnavailable => 13,
            ErrorCode::PolicyOutOfDate => 14,
        }
    }

    #[test]
    fn all_lists_every_code_once_with_its_serde_spelling() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(position(*code), i, "{code} is listed at the wrong place");
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::json!(code.as_str()));
        }
    }
}
