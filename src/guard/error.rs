//! The guard's refusals: what was not allowed, and the hint that tells the agent how to write it
//! instead.

use super::dialects::Foreign;
use super::MAX_NAME_BYTES;
use crate::refusal::{ErrorCode, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("the SQL holds {count} statements; rowgate runs exactly one query")]
    MultipleStatements { count: usize },
    #[error("{kind} statements are not allowed: rowgate runs read-only queries only")]
    NotAQuery { kind: String },
    #[error("a data-modifying statement ({kind}) inside the query is not allowed")]
    DataModifying { kind: String },
    #[error("{clause} is not allowed")]
    Clause {
        clause: &'static str,
        hint: &'static str,
    },
    #[error("{what} is not supported")]
    Unsupported { what: String },
    #[error(
        "`{word}` at line {line}, column {column} is a reserved word in PostgreSQL, not a name"
    )]
    ReservedWord {
        word: String,
        line: u64,
        column: u64,
    },
    #[error("`{quote}{name}{quote}` is not a name in PostgreSQL: only double quotes quote a name")]
    QuotedName { name: String, quote: char },
    #[error("the name `{name}...` is {bytes} bytes long; PostgreSQL keeps only {MAX_NAME_BYTES}")]
    NameTooLong { name: String, bytes: usize },
    #[error("casts to type `{name}` are not allowed")]
    Type { name: String },
    #[error("`{text}` stacks prefix operators")]
    StackedPrefixOperators { text: String },
    #[error("function `{name}` is not allowed{}", reason.map(|r| format!(": {r}")).unwrap_or_default())]
    Function {
        name: String,
        reason: Option<&'static str>,
    },
    #[error("function `{name}` does not exist in PostgreSQL{}", foreign.from.map(|d| format!(" (it comes from {d})")).unwrap_or_default())]
    ForeignFunction {
        name: String,
        foreign: &'static Foreign,
    },
}

impl Refusal for GuardError {
    fn code(&self) -> ErrorCode {
        match self {
            GuardError::Function { .. } | GuardError::ForeignFunction { .. } => {
                ErrorCode::FunctionNotAllowed
            }
            GuardError::ReservedWord { .. }
            | GuardError::QuotedName { .. }
            | GuardError::NameTooLong { .. } => ErrorCode::ParseError,
            _ => ErrorCode::StatementNotAllowed,
        }
    }

    fn hint(&self) -> String {
        match self {
            GuardError::MultipleStatements { .. } => {
                "Send a single SELECT query, without a second statement after a semicolon.".into()
            }
            GuardError::NotAQuery { .. } | GuardError::DataModifying { .. } => {
                "Write one SELECT query (WITH, UNION and VALUES are fine); rowgate never changes data or settings.".into()
            }
            GuardError::Clause { hint, .. } => (*hint).into(),
            GuardError::Unsupported { .. } => {
                "Rewrite the query with plain PostgreSQL SELECT syntax.".into()
            }
            GuardError::ReservedWord { word, .. } => format!(
                "If `{word}` is a table or column name, write it in double quotes: \"{word}\". `FROM ONLY t` is not supported: write `FROM t`."
            ),
            GuardError::QuotedName { name, .. } => format!(
                "Write names plainly or in double quotes (\"{name}\"); single quotes make a string."
            ),
            GuardError::NameTooLong { .. } => format!(
                "Use names of at most {MAX_NAME_BYTES} bytes (PostgreSQL would cut longer ones short)."
            ),
            GuardError::Type { .. } => {
                "Cast to a built-in type instead: text, integer, bigint, numeric, boolean, date, timestamp, timestamptz, interval, jsonb or uuid.".into()
            }
            GuardError::StackedPrefixOperators { .. } => {
                "Put the inner operand in parentheses: write -(-1), not - -1.".into()
            }
            GuardError::Function { reason: Some(_), .. } => {
                "This function is never available to queries; compute the answer with plain SELECT expressions.".into()
            }
            GuardError::ForeignFunction { foreign, .. } => foreign.hint(),
            GuardError::Function { .. } => {
                "Use an allowed function: aggregates (count, sum, avg, min, max, string_agg), window functions (row_number, rank, lag), math (round, abs), strings (lower, concat, substring), dates (date_trunc, extract, now) and JSON accessors are available.".into()
            }
        }
    }
}
