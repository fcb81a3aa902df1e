//! The offline part of a request, in order: parse → guard → resolve → rewrite → print.
//! A dry run, `rowgate rewrite`, and the server's query path all go through [`rewrite`].

use sqlparser::ast::Query;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::guard::{self, Allowlist, GuardError};
use crate::parse::{self, Limits, ParseError};
use crate::policy::Policy;
use crate::refusal::{ErrorCode, Refusal};
use crate::resolve::{self, ResolveError};
use crate::rewrite::Plan;
use crate::sql::DIALECT;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The printed SQL would not be read back as the tree it was printed from.
    #[error("the rewritten query cannot be printed safely: {0}")]
    Printing(&'static str),
}

impl Refusal for PipelineError {
    fn code(&self) -> ErrorCode {
        match self {
            PipelineError::Parse(e) => e.code(),
            PipelineError::Guard(e) => e.code(),
            PipelineError::Resolve(e) => e.code(),
            PipelineError::Printing(_) => ErrorCode::StatementNotAllowed,
        }
    }

    fn hint(&self) -> String {
        match self {
            PipelineError::Parse(e) => e.hint(),
            PipelineError::Guard(e) => e.hint(),
            PipelineError::Resolve(e) => e.hint(),
            PipelineError::Printing(_) => {
                "Write the query more plainly: put parentheses around nested operators.".into()
            }
        }
    }
}

/// The agent's query, rewritten to read permission CTEs only.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub sql: String,
    pub plan: Plan,
    pub query: Box<Query>,
}

pub fn rewrite(sql: &str, policy: &Policy, limits: &Limits) -> Result<Rewritten, PipelineError> {
    let statements = parse::parse(sql, limits)?;
    let mut query = guard::guard(
        statements,
        Allowlist {
            extra: &policy.extra_functions,
        },
    )?;
    let resolution = resolve::resolve(&query, policy)?;
    let plan = Plan::new(resolution, policy);
    plan.apply(&mut query);
    let sql = query.to_string();
    if !printed_sql_is_plain(&sql) {
        return Err(PipelineError::Printing(
            "the printed SQL holds a comment, so PostgreSQL would not read what was checked",
        ));
    }
    Ok(Rewritten { sql, plan, query })
}

/// Whether printed SQL tokenizes without comments. Printing an AST never produces a comment on
/// purpose; one that appears means two tokens ran together (`- -1` printed as `--1`), and the
/// database would read something other than the tree rowgate checked.
pub fn printed_sql_is_plain(sql: &str) -> bool {
    // Every comment starts with one of these; most queries hold neither, and tokenizing costs
    // about half as much as parsing.
    if !sql.contains("--") && !sql.contains("/*") {
        return true;
    }
    match Tokenizer::new(&DIALECT, sql).tokenize() {
        Ok(tokens) => !tokens.iter().any(|t| {
            matches!(
                t,
                Token::Whitespace(
                    Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
                )
            )
        }),
        Err(_) => false,
    }
}
