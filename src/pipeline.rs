//! The offline part of a request, in order: parse → guard → resolve → rewrite → print.
//! A dry run, `rowgate rewrite`, and the server's query path all go through [`rewrite`].

use sqlparser::ast::Query;

use crate::guard::{self, Allowlist, GuardError};
use crate::parse::{self, Limits, ParseError};
use crate::policy::Policy;
use crate::refusal::{ErrorCode, Refusal};
use crate::resolve::{self, ResolveError};
use crate::rewrite::Plan;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl Refusal for PipelineError {
    fn code(&self) -> ErrorCode {
        match self {
            PipelineError::Parse(e) => e.code(),
            PipelineError::Guard(e) => e.code(),
            PipelineError::Resolve(e) => e.code(),
        }
    }

    fn hint(&self) -> String {
        match self {
            PipelineError::Parse(e) => e.hint(),
            PipelineError::Guard(e) => e.hint(),
            PipelineError::Resolve(e) => e.hint(),
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
    Ok(Rewritten {
        sql: query.to_string(),
        plan,
        query,
    })
}
