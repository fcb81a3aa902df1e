//! The offline part of a request, in order: parse → guard → resolve → rewrite → print.
//! A dry run, `rowgate rewrite`, and the server's query path all go through [`rewrite`]; the
//! server's through [`RewriteCache`], which keeps the answers for SQL it has seen before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// What the server needs of a rewrite, shared by every request that sends the same SQL.
#[derive(Debug)]
pub struct Prepared {
    pub sql: String,
    pub plan: Plan,
}

/// Queries longer than this are rewritten every time: agents' long queries rarely repeat, and
/// the cache's memory stays small (at most [`CACHE_ENTRIES`] × about twice this).
pub const CACHE_MAX_SQL_BYTES: usize = 8 * 1024;

/// The cache is emptied when it would hold more entries than this.
pub const CACHE_ENTRIES: usize = 512;

/// Rewrites of SQL seen before, under one policy. The rewrite depends on the SQL text, the
/// policy and the limits only, never on the caller (the views read the caller's id when the
/// query runs), so two requests with the same text under the same policy get the same
/// rewritten SQL; a tool that sends templated SQL, a retry, a dashboard then skip parsing,
/// guarding, resolving and printing (measured in BENCHMARKS.md). Only successful rewrites are
/// kept. A different policy object (a reload, or install completing the columns) empties it,
/// so an entry is never used under a policy it was not made with.
pub struct RewriteCache {
    limits: Limits,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    policy: Option<Arc<Policy>>,
    entries: HashMap<String, Arc<Prepared>>,
}

/// Whether a rewrite came from the cache, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    Hit,
    Miss,
    /// Too long to keep.
    Skipped,
}

impl RewriteCache {
    pub fn new(limits: Limits) -> RewriteCache {
        RewriteCache {
            limits,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The limits every rewrite here is made under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// [`rewrite`] under `policy`, or the answer it gave before for the same text.
    pub fn rewrite(
        &self,
        sql: &str,
        policy: &Arc<Policy>,
    ) -> Result<(Arc<Prepared>, Cached), PipelineError> {
        if sql.len() > CACHE_MAX_SQL_BYTES {
            return Ok((Self::fresh(sql, policy, &self.limits)?, Cached::Skipped));
        }
        if let Some(found) = self.lock().lookup(sql, policy) {
            return Ok((found, Cached::Hit));
        }
        // Rewritten outside the lock: a slow rewrite does not hold up other requests.
        let prepared = Self::fresh(sql, policy, &self.limits)?;
        self.lock().insert(sql, policy, prepared.clone());
        Ok((prepared, Cached::Miss))
    }

    fn fresh(sql: &str, policy: &Policy, limits: &Limits) -> Result<Arc<Prepared>, PipelineError> {
        let rewritten = rewrite(sql, policy, limits)?;
        Ok(Arc::new(Prepared {
            sql: rewritten.sql,
            plan: rewritten.plan,
        }))
    }

    /// A panic while the lock was held cannot leave the map half-written (each change is one
    /// call), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CacheInner {
    /// Whether the entries were made under this very policy object.
    fn made_under(&self, policy: &Arc<Policy>) -> bool {
        self.policy.as_ref().is_some_and(|p| Arc::ptr_eq(p, policy))
    }

    fn lookup(&mut self, sql: &str, policy: &Arc<Policy>) -> Option<Arc<Prepared>> {
        if !self.made_under(policy) {
            self.entries.clear();
            self.policy = Some(policy.clone());
            return None;
        }
        self.entries.get(sql).cloned()
    }

    fn insert(&mut self, sql: &str, policy: &Arc<Policy>, prepared: Arc<Prepared>) {
        // The policy may have changed while this one was being rewritten.
        if !self.made_under(policy) {
            return;
        }
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(sql.to_string(), prepared);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn demo() -> Arc<Policy> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        Arc::new(Policy::load_dir(&dir).unwrap())
    }

    const SQL: &str = "SELECT id, amount FROM invoices WHERE id = 42";

    #[test]
    fn the_same_text_under_the_same_policy_is_rewritten_once() {
        let cache = RewriteCache::new(Limits::default());
        let policy = demo();
        let (first, how) = cache.rewrite(SQL, &policy).unwrap();
        assert_eq!(how, Cached::Miss);
        let (second, how) = cache.rewrite(SQL, &policy).unwrap();
        assert_eq!(how, Cached::Hit);
        assert!(Arc::ptr_eq(&first, &second));
        let fresh = rewrite(SQL, &policy, &Limits::default()).unwrap();
        assert_eq!(second.sql, fresh.sql);
        assert_eq!(second.plan, fresh.plan);
        // One byte different is another query.
        let (other, how) = cache.rewrite(&SQL.replace("42", "43"), &policy).unwrap();
        assert_eq!(how, Cached::Miss);
        assert!(other.sql.contains("43"), "{}", other.sql);
    }

    #[test]
    fn another_policy_object_never_sees_the_old_answers() {
        let cache = RewriteCache::new(Limits::default());
        let old = demo();
        cache.rewrite(SQL, &old).unwrap();
        // Same files, but a new object (what a reload makes): rewritten again, not reused.
        let reloaded = demo();
        assert_eq!(cache.rewrite(SQL, &reloaded).unwrap().1, Cached::Miss);
        assert_eq!(cache.rewrite(SQL, &reloaded).unwrap().1, Cached::Hit);
        // And the old policy's entries are gone, not kept beside the new ones.
        assert_eq!(cache.rewrite(SQL, &old).unwrap().1, Cached::Miss);
        let mut narrower = (*old).clone();
        narrower.tables.remove("invoices");
        let narrower = Arc::new(narrower);
        let refused = cache.rewrite(SQL, &narrower).unwrap_err();
        assert!(matches!(refused, PipelineError::Resolve(_)), "{refused}");
    }

    #[test]
    fn refusals_are_not_kept_and_long_queries_are_not_cached() {
        let cache = RewriteCache::new(Limits::default());
        let policy = demo();
        for _ in 0..2 {
            assert!(cache.rewrite("DELETE FROM invoices", &policy).is_err());
        }
        assert!(cache.lock().entries.is_empty());
        let list: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        let long = format!("SELECT id FROM invoices WHERE id IN ({})", list.join(", "));
        assert!(long.len() > CACHE_MAX_SQL_BYTES);
        assert_eq!(cache.rewrite(&long, &policy).unwrap().1, Cached::Skipped);
        assert_eq!(cache.rewrite(&long, &policy).unwrap().1, Cached::Skipped);
        assert!(cache.lock().entries.is_empty());
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let cache = RewriteCache::new(Limits::default());
        let policy = demo();
        for id in 0..CACHE_ENTRIES + 10 {
            let sql = format!("SELECT id FROM invoices WHERE id = {id}");
            cache.rewrite(&sql, &policy).unwrap();
            assert!(cache.lock().entries.len() <= CACHE_ENTRIES);
        }
        assert_eq!(cache.lock().entries.len(), 10);
    }
}
