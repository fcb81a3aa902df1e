//! An independent checker of rewritten SQL, for tests and fuzzing.
//!
//! [`check_rewritten`] re-parses the SQL the rewriter printed and confirms the shape DESIGN.md
//! promises (layer 1):
//!
//! * the text is exactly one statement, and that statement is a query (no data-modifying CTE,
//!   no `TABLE name`, no nested statement);
//! * the top-level `WITH` begins with the permission CTEs: each `NOT MATERIALIZED`, each body
//!   exactly `SELECT <columns or *> FROM rowgate.<table>` for a policy table (no `WHERE`, no
//!   join, nothing else), selecting the policy's column list in table order (or `*` when the
//!   policy has none), one CTE per table, and no permission CTE name reused by any other CTE
//!   in the query;
//! * outside those bodies, every table reference is either a single-part name equal to the
//!   name of a permission CTE or of a CTE the query defines, or a table function call, and no
//!   relation names the schema `rowgate` or a policy table's source.
//!
//! It shares no code with `resolve` or `rewrite` (nor with `sql`, not even identifier folding),
//! so a mistake there is not repeated here.
//!
//! # Deliberately scope-insensitive
//!
//! The checker collects the names of *all* CTEs defined anywhere in the query and accepts a
//! single-part table reference that equals any of them, without asking whether that CTE is in
//! scope where the reference stands. Resolving scopes is exactly what `resolve` does; doing it
//! again here would mean writing a second resolver with the same subtle rules, and the two could
//! share a misunderstanding. The weaker rule is still a sound test oracle for what it claims:
//!
//! * every name it accepts is a CTE of the query, whose body the checker also inspects (the
//!   visitor walks every CTE body, nested or not), so the only tables any accepted query can
//!   read are the `rowgate.*` permission views named in the permission CTEs;
//! * the one thing it cannot see is a reference that names a CTE *out of its scope*, which
//!   PostgreSQL would resolve as a table instead. That needs a CTE named like a real table
//!   (say an agent CTE called `invoices`) and a reference outside it. Those cases are covered
//!   by reviewed snapshots (`tests/core_snapshots.rs`) rather than by this oracle, and the
//!   database itself refuses them (layer 4: the role can read only the `rowgate` views).
//!
//! Identifiers are folded as PostgreSQL does on a UTF-8 database: unquoted names lose their
//! ASCII upper case only (`KELVIN SIGN` stays what it is), quoted names are kept.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    CteAsMaterialized, Expr, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr,
    Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::policy::Policy;

/// The schema of the permission views. Spelled out here rather than imported from `rewrite`,
/// so that the checker keeps its own idea of what the rewrite must produce.
const PERMISSION_SCHEMA: &str = "rowgate";

/// Re-parses `sql` and checks that it only reads permission views (see the module docs).
pub fn check_rewritten(sql: &str, policy: &Policy) -> Result<(), String> {
    let statements = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(512)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| format!("the rewritten SQL does not parse: {e}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "expected exactly one statement, found {}",
            statements.len()
        ));
    };
    let Statement::Query(query) = statement else {
        return Err(format!("the statement is not a query: {statement}"));
    };

    // Split off the permission CTEs: the leading CTEs of the top-level WITH that read `rowgate.*`.
    let mut rest: Query = (**query).clone();
    let mut permission_names: Vec<String> = Vec::new();
    let mut permission_tables: BTreeSet<String> = BTreeSet::new();
    if let Some(with) = &mut rest.with {
        let leading = with
            .cte_tables
            .iter()
            .take_while(|cte| reads_permission_schema(&cte.query))
            .count();
        for cte in with.cte_tables.drain(..leading) {
            let name = fold(&cte.alias.name);
            let table = check_permission_cte(&name, &cte, policy)?;
            if !permission_tables.insert(table.clone()) {
                return Err(format!("two permission CTEs read rowgate.{table}"));
            }
            if permission_names.contains(&name) {
                return Err(format!("two permission CTEs are named `{name}`"));
            }
            permission_names.push(name);
        }
    }

    // Every CTE name defined anywhere else in the query (scope-insensitive, see module docs).
    let mut collector = CteNames::default();
    let _ = rest.visit(&mut collector);
    for name in &permission_names {
        if collector.names.contains(name) {
            return Err(format!(
                "the permission CTE name `{name}` is also used by another CTE"
            ));
        }
    }
    let mut known: HashSet<String> = collector.names;
    known.extend(permission_names);

    let mut sources: Vec<(String, String)> = Vec::new();
    for table in policy.tables.values() {
        sources.push((table.source.schema.clone(), table.source.name.clone()));
    }
    let mut references = References {
        known: &known,
        sources: &sources,
    };
    match rest.visit(&mut references) {
        ControlFlow::Break(message) => Err(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// PostgreSQL's folding on a UTF-8 database: ASCII letters only.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

fn fold_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// Whether a CTE body's FROM names something in schema `rowgate`: such a CTE claims to be a
/// permission CTE and is held to that form.
fn reads_permission_schema(query: &Query) -> bool {
    let SetExpr::Select(select) = &*query.body else {
        return false;
    };
    select.from.iter().any(|from| match &from.relation {
        TableFactor::Table { name, .. } => fold_parts(name)
            .is_some_and(|parts| parts.first().is_some_and(|s| s == PERMISSION_SCHEMA)),
        _ => false,
    })
}

/// Checks one permission CTE and returns the policy table it reads.
fn check_permission_cte(
    name: &str,
    cte: &sqlparser::ast::Cte,
    policy: &Policy,
) -> Result<String, String> {
    if cte.materialized != Some(CteAsMaterialized::NotMaterialized) {
        return Err(format!("permission CTE `{name}` is not NOT MATERIALIZED"));
    }
    if !cte.alias.columns.is_empty() || cte.from.is_some() {
        return Err(format!("permission CTE `{name}` has a column list or FROM"));
    }
    let query = &cte.query;
    let SetExpr::Select(select) = &*query.body else {
        return Err(format!("permission CTE `{name}` is not a plain SELECT"));
    };
    let [from] = select.from.as_slice() else {
        return Err(format!(
            "permission CTE `{name}` must read exactly one relation"
        ));
    };
    let TableFactor::Table {
        name: relation,
        args: None,
        alias: None,
        ..
    } = &from.relation
    else {
        return Err(format!(
            "permission CTE `{name}` must read one view, without alias or join"
        ));
    };
    if !from.joins.is_empty() {
        return Err(format!(
            "permission CTE `{name}` must read one view, without alias or join"
        ));
    }
    let parts = fold_parts(relation).unwrap_or_default();
    let [schema, table] = parts.as_slice() else {
        return Err(format!(
            "permission CTE `{name}` reads `{relation}`, not rowgate.<table>"
        ));
    };
    if schema != PERMISSION_SCHEMA {
        return Err(format!("permission CTE `{name}` reads schema `{schema}`"));
    }
    let Some(table_policy) = policy.tables.get(table) else {
        return Err(format!(
            "permission CTE `{name}` reads rowgate.{table}, which is not a policy table"
        ));
    };
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(column)) => {
                let column_name = fold(column);
                let allowed = table_policy
                    .columns
                    .as_ref()
                    .is_none_or(|cols| cols.contains(&column_name));
                if !allowed {
                    return Err(format!(
                        "permission CTE `{name}` selects column `{column_name}`, hidden by the policy of {table}"
                    ));
                }
                if !seen.insert(column_name.clone()) {
                    return Err(format!(
                        "permission CTE `{name}` selects `{column_name}` twice"
                    ));
                }
                items.push(column.to_string());
            }
            SelectItem::Wildcard(_) => items.push("*".to_string()),
            other => {
                return Err(format!(
                    "permission CTE `{name}` selects `{other}`, not a plain column"
                ))
            }
        }
    }
    if items.is_empty() {
        return Err(format!("permission CTE `{name}` selects nothing"));
    }
    if items.len() > 1 && items.iter().any(|i| i == "*") {
        return Err(format!("permission CTE `{name}` mixes * and columns"));
    }
    // A policy with a column list is read column by column, all of them, in table order;
    // without one, the view's own columns (`*`) are the allowed ones.
    let selected: Vec<String> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(column)) => fold(column),
            _ => "*".to_string(),
        })
        .collect();
    let wanted = match &table_policy.columns {
        Some(columns) => columns.clone(),
        None => vec!["*".to_string()],
    };
    if selected != wanted {
        return Err(format!(
            "permission CTE `{name}` selects {}, the policy of {table} allows {}",
            selected.join(", "),
            wanted.join(", ")
        ));
    }
    // Nothing else at all: compare with the canonical text of the allowed shape.
    let expected = format!("SELECT {} FROM {relation}", items.join(", "));
    let actual = query.to_string();
    if actual != expected {
        return Err(format!(
            "permission CTE `{name}` is `{actual}`, expected exactly `{expected}`"
        ));
    }
    Ok(table.clone())
}

#[derive(Default)]
struct CteNames {
    names: HashSet<String>,
}

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.names.insert(fold(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

struct References<'a> {
    known: &'a HashSet<String>,
    sources: &'a [(String, String)],
}

impl References<'_> {
    fn forbidden_relation(&self, parts: &[String]) -> Option<String> {
        if parts.iter().any(|p| p == PERMISSION_SCHEMA) && parts.len() > 1 {
            return Some("names schema rowgate outside the permission CTEs".into());
        }
        if let [.., schema, name] = parts {
            if self.sources.iter().any(|(s, n)| s == schema && n == name) {
                return Some("names a policy table's source".into());
            }
        }
        None
    }
}

fn body_is_plain(body: &SetExpr) -> Result<(), String> {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => Ok(()),
        SetExpr::SetOperation { left, right, .. } => {
            body_is_plain(left)?;
            body_is_plain(right)
        }
        other => Err(format!("a query body that is not a plain query: {other}")),
    }
}

impl Visitor for References<'_> {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        ControlFlow::Break(format!("a statement nested in the query: {statement}"))
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Err(message) = body_is_plain(&query.body) {
            return ControlFlow::Break(message);
        }
        if !query.locks.is_empty() {
            return ControlFlow::Break("a locking clause (FOR UPDATE / FOR SHARE)".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break("SELECT INTO".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        let message = match factor {
            TableFactor::Table { name, args, .. } => {
                let Some(parts) = fold_parts(name) else {
                    return ControlFlow::Break(format!("the relation `{name}` is not a name"));
                };
                if let Some(why) = self.forbidden_relation(&parts) {
                    Some(format!("the relation `{name}` {why}"))
                } else if args.is_some() {
                    None // a table function call; the guard judged the function
                } else {
                    match parts.as_slice() {
                        [single] if self.known.contains(single) => None,
                        _ => Some(format!(
                            "the table reference `{name}` is neither a permission CTE nor a CTE of the query"
                        )),
                    }
                }
            }
            TableFactor::Function { name, .. } => {
                let parts = fold_parts(name).unwrap_or_default();
                self.forbidden_relation(&parts)
                    .map(|why| format!("the function `{name}` {why}"))
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => None,
            other => Some(format!("an unexpected FROM item: {other}")),
        };
        match message {
            Some(message) => ControlFlow::Break(message),
            None => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_yaml(
            "test.yaml",
            "tables:\n  invoices:\n    rows: \"true\"\n  customers:\n    rows: \"true\"\n    columns: [id, name]\n",
        )
        .unwrap()
    }

    fn check(sql: &str) -> Result<(), String> {
        check_rewritten(sql, &policy())
    }

    const PERM: &str = "WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices)";

    #[test]
    fn accepts_well_formed_rewrites() {
        for sql in [
            "SELECT 1".to_string(),
            "SELECT * FROM generate_series(1, 3) AS g".to_string(),
            format!("{PERM} SELECT amount FROM rg_invoices AS invoices"),
            format!("{PERM}, rg_customers AS NOT MATERIALIZED (SELECT id, name FROM rowgate.customers) SELECT * FROM rg_invoices i JOIN rg_customers c ON c.id = i.customer_id"),
            format!("{PERM}, invoices AS (SELECT * FROM rg_invoices AS invoices WHERE amount > 1) SELECT * FROM invoices"),
            format!("{PERM} SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) AS s, LATERAL (SELECT * FROM rg_invoices) AS l"),
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r".to_string(),
        ] {
            assert_eq!(check(&sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn refuses_what_the_rewrite_must_never_produce() {
        let cases = [
            // Base tables, anywhere.
            ("SELECT * FROM invoices", "neither a permission CTE"),
            ("SELECT * FROM public.invoices", "source"),
            (&format!("{PERM} SELECT * FROM rg_invoices WHERE id IN (SELECT id FROM invoices)"), "neither"),
            (&format!("{PERM} SELECT (SELECT max(amount) FROM public.invoices) FROM rg_invoices"), "source"),
            (&format!("{PERM} SELECT * FROM rg_invoices UNION SELECT * FROM pg_catalog.pg_user"), "neither"),
            (&format!("{PERM} SELECT * FROM rowgate.invoices"), "rowgate"),
            (&format!("{PERM}, x AS (SELECT * FROM rowgate.customers) SELECT * FROM x"), "NOT MATERIALIZED"),
            (&format!("{PERM}, x AS (SELECT 1), y AS NOT MATERIALIZED (SELECT * FROM rowgate.customers) SELECT * FROM x, y"), "rowgate"),
            ("SELECT * FROM rowgate.invoices()", "rowgate"),
            ("SELECT * FROM \"ONLY\" invoices", "neither"),
            // Permission CTEs of the wrong shape.
            ("WITH rg_invoices AS (SELECT * FROM rowgate.invoices) SELECT * FROM rg_invoices", "NOT MATERIALIZED"),
            ("WITH rg_invoices AS MATERIALIZED (SELECT * FROM rowgate.invoices) SELECT * FROM rg_invoices", "NOT MATERIALIZED"),
            ("WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices WHERE true) SELECT * FROM rg_invoices", "expected exactly"),
            ("WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices LIMIT 1) SELECT * FROM rg_invoices", "expected exactly"),
            ("WITH rg_invoices AS NOT MATERIALIZED (SELECT DISTINCT * FROM rowgate.invoices) SELECT * FROM rg_invoices", "expected exactly"),
            ("WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices JOIN invoices ON true) SELECT * FROM rg_invoices", "one view"),
            ("WITH rg_c AS NOT MATERIALIZED (SELECT id, email FROM rowgate.customers) SELECT * FROM rg_c", "hidden"),
            ("WITH rg_c AS NOT MATERIALIZED (SELECT * FROM rowgate.customers) SELECT * FROM rg_c", "allows id, name"),
            ("WITH rg_c AS NOT MATERIALIZED (SELECT name, id FROM rowgate.customers) SELECT * FROM rg_c", "allows id, name"),
            ("WITH rg_c AS NOT MATERIALIZED (SELECT id FROM rowgate.customers) SELECT * FROM rg_c", "allows id, name"),
            ("WITH rg_i AS NOT MATERIALIZED (SELECT id FROM rowgate.invoices) SELECT * FROM rg_i", "allows *"),
            ("WITH rg_o AS NOT MATERIALIZED (SELECT * FROM rowgate.orders) SELECT * FROM rg_o", "not a policy table"),
            ("WITH a AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices), b AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices) SELECT * FROM a, b", "two permission CTEs"),
            (&format!("{PERM} SELECT * FROM (WITH rg_invoices AS (SELECT 1) SELECT * FROM rg_invoices) s"), "also used"),
            // Not one plain query.
            ("SELECT 1; SELECT 2", "exactly one"),
            ("DELETE FROM invoices", "not a query"),
            ("WITH x AS (DELETE FROM invoices RETURNING *) SELECT * FROM x", "not a plain query"),
            ("SELECT * INTO t FROM generate_series(1, 2) g", "INTO"),
            (&format!("{PERM} SELECT * FROM rg_invoices FOR UPDATE"), "locking"),
            ("SELECT 1 UNION TABLE invoices", "not a plain query"),
            ("SELECT (", "does not parse"),
            // Folding: the Kelvin sign is not a K to PostgreSQL.
            ("WITH bloc\u{212A}s AS (SELECT 1) SELECT * FROM blocks", "neither"),
        ];
        for (sql, expected) in cases {
            let error = check(sql).expect_err(sql);
            assert!(error.contains(expected), "{sql}: {error}");
        }
    }
}
