//! The invariants every input must keep, in one place for the fuzz targets (`fuzz/`) and the
//! regression suite that replays what they found (`tests/fuzz_regressions.rs`).
//!
//! For any text, [`fuzz_invariant`] runs the real pipeline ([`crate::pipeline::rewrite`]) and
//! then judges the outcome:
//!
//! * a refusal must carry a message and a hint (every refusal says what is wrong and how to fix
//!   it);
//! * an accepted query's output must re-parse, print back to exactly the same text (what
//!   PostgreSQL receives is what was checked), pass the independent checker
//!   ([`crate::check::check_rewritten`]: only permission CTEs are read), and call only
//!   allowlisted functions, found by a walk of its own over the re-parsed output; and every
//!   table reference the checker accepts as a CTE name must name a CTE in scope there.
//!
//! Panics are not caught here: the fuzzer and the test harness report them. Time is not
//! measured here either: libFuzzer's `-timeout` bounds each input, and the parse caps are what
//! keep every input fast.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::check::check_rewritten;
use crate::guard::{builtin, never_allowed};
use crate::parse::Limits;
use crate::pipeline::rewrite;
use crate::policy::Policy;
use crate::refusal::{ErrorCode, Refusal};

/// What the pipeline did with an input that kept every invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten; the output passed every check.
    Accepted,
    /// Refused with this code.
    Refused(ErrorCode),
}

/// An invariant an input broke. Each one is a bug in rowgate, never in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("a refusal ({code}) without a message or a hint")]
    SilentRefusal { code: ErrorCode },
    #[error("the rewritten SQL does not re-parse: {error}\n{sql}")]
    OutputDoesNotParse { sql: String, error: String },
    #[error("printing is not a fixed point: PostgreSQL would read\n{reprinted}\nnot\n{sql}")]
    UnstablePrinting { sql: String, reprinted: String },
    #[error("the independent checker refuses the rewrite: {error}\n{sql}")]
    Checker { sql: String, error: String },
    #[error("`{name}` names a CTE that is not in scope there, so PostgreSQL reads a table\n{sql}")]
    OutOfScope { sql: String, name: String },
    #[error("the rewrite calls `{function}`, which is not allowed: {why}\n{sql}")]
    DeniedFunction {
        sql: String,
        function: String,
        why: String,
    },
}

/// Runs `sql` through the pipeline under `policy` and checks every invariant of the module docs.
pub fn fuzz_invariant(sql: &str, policy: &Policy, limits: &Limits) -> Result<Outcome, Violation> {
    let out = match rewrite(sql, policy, limits) {
        Ok(out) => out,
        Err(e) => {
            let code = e.code();
            if e.to_string().trim().is_empty() || e.hint().trim().is_empty() {
                return Err(Violation::SilentRefusal { code });
            }
            return Ok(Outcome::Refused(code));
        }
    };
    let sql = out.sql;
    // The checker's own recursion limit, so that what it accepts we can walk too.
    let statements = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(512)
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| Violation::OutputDoesNotParse {
            sql: sql.clone(),
            error: e.to_string(),
        })?;
    let reprinted = statements
        .iter()
        .map(Statement::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if reprinted != sql {
        return Err(Violation::UnstablePrinting { sql, reprinted });
    }
    if let Err(error) = check_rewritten(&sql, policy) {
        return Err(Violation::Checker { sql, error });
    }
    let mut scopes = Scopes::default();
    if let ControlFlow::Break(name) = statements.visit(&mut scopes) {
        return Err(Violation::OutOfScope { sql, name });
    }
    let mut functions = Functions { policy };
    if let ControlFlow::Break((function, why)) = statements.visit(&mut functions) {
        return Err(Violation::DeniedFunction { sql, function, why });
    }
    Ok(Outcome::Accepted)
}

/// [`fuzz_invariant`] under each policy in turn, the next one only when the input named a table
/// the previous one does not grant: the fuzz targets try the demo policy first, then a policy
/// granting the shared corpora's tables, so that real-world queries reach resolve and rewrite.
pub fn fuzz_invariant_each(
    sql: &str,
    policies: &[Policy],
    limits: &Limits,
) -> Result<Outcome, Violation> {
    let mut outcome = Outcome::Refused(ErrorCode::TableNotAllowed);
    for policy in policies {
        outcome = fuzz_invariant(sql, policy, limits)?;
        if outcome != Outcome::Refused(ErrorCode::TableNotAllowed) {
            break;
        }
    }
    Ok(outcome)
}

/// The one thing the checker deliberately leaves out (see `check`'s module docs): whether a
/// single-part table reference names a CTE that is *in scope* there. PostgreSQL's rules are
/// simple enough to restate: a query's CTEs are visible in its body, its clauses and every
/// subquery inside them; inside the WITH itself, a CTE sees the ones before it, or all of them
/// (itself included) under RECURSIVE. `check_rewritten` has already made sure every such name
/// is some CTE of the query, so a name not visible here would be read as a table.
#[derive(Default)]
struct Scopes {
    frames: Vec<Frame>,
}

/// The CTEs of one query being visited, and which of their bodies the walk is in.
struct Frame {
    names: Vec<String>,
    bodies: Vec<*const Query>,
    recursive: bool,
    inside: Option<usize>,
}

impl Scopes {
    fn visible(&self, name: &str) -> bool {
        self.frames.iter().rev().any(|frame| {
            let seen = match frame.inside {
                Some(i) if !frame.recursive => &frame.names[..i],
                _ => &frame.names[..],
            };
            seen.iter().any(|n| n == name)
        })
    }
}

impl Visitor for Scopes {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Some(frame) = self.frames.last_mut() {
            if let Some(i) = frame.bodies.iter().position(|b| std::ptr::eq(*b, query)) {
                frame.inside = Some(i);
            }
        }
        let (names, bodies, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|c| fold(&c.alias.name))
                    .collect(),
                with.cte_tables
                    .iter()
                    .map(|c| &*c.query as *const Query)
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), Vec::new(), false),
        };
        self.frames.push(Frame {
            names,
            bodies,
            recursive,
            inside: None,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        self.frames.pop();
        if let Some(frame) = self.frames.last_mut() {
            if frame.bodies.iter().any(|b| std::ptr::eq(*b, query)) {
                frame.inside = None;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
                let folded = fold(ident);
                if !self.visible(&folded) {
                    return ControlFlow::Break(folded);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL's folding on a UTF-8 database: ASCII letters only.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Every function called anywhere in the output, judged by name alone. The guard walks the
/// agent's tree with its own rules; this walks the tree PostgreSQL will get, and folds names
/// itself (ASCII only, as PostgreSQL does on a UTF-8 database).
struct Functions<'a> {
    policy: &'a Policy,
}

impl Functions<'_> {
    fn judge(&self, name: &ObjectName) -> ControlFlow<(String, String)> {
        let parts: Option<Vec<String>> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => Some(fold(ident)),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        let Some(parts) = parts else {
            return ControlFlow::Break((name.to_string(), "not a plain name".into()));
        };
        let written = parts.join(".");
        if let Some(why) = parts.iter().find_map(|p| never_allowed(p)) {
            return ControlFlow::Break((written, format!("never allowed: {why}")));
        }
        if self.policy.extra_functions.contains(&written) {
            return ControlFlow::Continue(());
        }
        let allowed = match parts.as_slice() {
            [name] => builtin(name),
            [schema, name] => schema == "pg_catalog" && builtin(name),
            _ => false,
        };
        if allowed {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break((written, "not on the allowlist".into()))
        }
    }
}

impl Visitor for Functions<'_> {
    type Break = (String, String);

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Self::Break> {
        match expr {
            Expr::Function(function) => self.judge(&function.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Self::Break> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.judge(name),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn called(sql: &str) -> ControlFlow<(String, String)> {
        let policy = Policy::from_yaml("t.yaml", "tables: {}\nfunctions: [public.cosine]\n")
            .expect("policy");
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        statements.visit(&mut Functions { policy: &policy })
    }

    fn out_of_scope(sql: &str) -> Option<String> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        match statements.visit(&mut Scopes::default()) {
            ControlFlow::Break(name) => Some(name),
            ControlFlow::Continue(()) => None,
        }
    }

    #[test]
    fn the_scope_walk_follows_postgresql() {
        for sql in [
            "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b, a",
            "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
            "WITH a AS (SELECT 1) SELECT * FROM (SELECT * FROM a) s WHERE EXISTS (SELECT * FROM a)",
            "WITH a AS (SELECT 1) SELECT 1 ORDER BY (SELECT count(*) FROM a)",
            "WITH a AS (SELECT 1) (WITH b AS (SELECT * FROM a) SELECT * FROM b) UNION SELECT * FROM a",
        ] {
            assert_eq!(out_of_scope(sql), None, "{sql}");
        }
        for (sql, name) in [
            ("SELECT * FROM invoices", "invoices"),
            (
                "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
                "b",
            ),
            ("WITH a AS (SELECT * FROM a) SELECT * FROM a", "a"),
            ("SELECT * FROM (WITH a AS (SELECT 1) SELECT 1) s, a", "a"),
            (
                "(WITH a AS (SELECT 1) SELECT * FROM a) UNION SELECT * FROM a",
                "a",
            ),
            (
                "WITH x AS (WITH a AS (SELECT 1) SELECT 1) SELECT * FROM a",
                "a",
            ),
            ("WITH \"A\" AS (SELECT 1) SELECT * FROM a", "a"),
        ] {
            assert_eq!(out_of_scope(sql).as_deref(), Some(name), "{sql}");
        }
    }

    #[test]
    fn the_function_walk_finds_calls_everywhere() {
        for sql in [
            "SELECT count(*), pg_catalog.lower('A'), public.cosine(1) FROM t",
            "SELECT * FROM generate_series(1, 2) g",
        ] {
            assert_eq!(called(sql), ControlFlow::Continue(()), "{sql}");
        }
        for (sql, function) in [
            ("SELECT PG_SLEEP(1)", "pg_sleep"),
            (
                "SELECT 1 FROM t ORDER BY (SELECT set_config('a', 'b', true))",
                "set_config",
            ),
            ("SELECT row_number() OVER (ORDER BY version())", "version"),
            (
                "SELECT * FROM pg_catalog.pg_ls_dir('.')",
                "pg_catalog.pg_ls_dir",
            ),
            ("SELECT \"LOWER\"('a')", "LOWER"),
            ("SELECT public.count(1)", "public.count"),
        ] {
            match called(sql) {
                ControlFlow::Break((name, _)) => assert_eq!(name, function, "{sql}"),
                ControlFlow::Continue(()) => panic!("not found: {sql}"),
            }
        }
    }
}
