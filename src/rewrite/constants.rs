//! Layer 5 for the agent's filters and inner outputs: whatever PostgreSQL may run on a row
//! before the permission rule must be unable to raise, after constant folding and pull-up.
//!
//! Why: PostgreSQL lets a filter it deems leakproof run before the rule (ordered by cost), and
//! deems a function call leakproof when no column lies under it, judged on the expression it
//! plans: `CASE WHEN c.department = 'Vault' THEN COALESCE('x', c.name)::date END IS NULL` folds
//! to a cast of the constant `'x'`, raised on the hidden Vault row only, and told whether it
//! was there (issue 20; `tests/fold_oracle.rs`). Earlier forms, found in review:
//! `customer_id = random()::int / 0`, `(VALUES ('x')) v(z) ... v.z::date`.
//!
//! What: each conjunct of a WHERE, HAVING or JOIN ... ON, at every level, stays bare only as a
//! plain test (`shape`: comparisons, IN lists, BETWEEN, IS NULL of columns and literals);
//! any other becomes `COALESCE(<conjunct>, NULL)`, which PostgreSQL never deems leakproof. In a
//! plain test, an operand that reads no column and could raise becomes `COALESCE(x, NULL)` on
//! its own (an immutable one folds back to a constant and keeps its index condition). Inner
//! queries' outputs, one-row VALUES and the arguments of functions in FROM, which PostgreSQL
//! puts in place of their columns, are wrapped unless they are plain columns, aggregates or
//! window functions: `COALESCE((SELECT x), NULL)` when they read no column (no folding sees
//! through it), `COALESCE(x, NULL)` otherwise (it folds at most to a constant). A wrapped
//! select-list item keeps the name PostgreSQL would have given it.
//!
//! What it costs: a wrapped conjunct is no index condition or join key and gets PostgreSQL's
//! default selectivity. Left alone, because they cannot raise: literals, and the current date
//! and time, cast, truncated to a named unit, or moved by literal intervals (`safe`), so "the
//! last 30 days" keeps its index.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    JoinConstraint, JoinOperator, OrderByKind, Query, Select, SelectItem, SetExpr, TableFactor,
    TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use sqlparser::tokenizer::Span;

use names::column_name;
use ranges::Ranges;
pub(in crate::rewrite) use ranges::Tables;
use safe::cannot_raise;
use shape::{plain_test, Scope};

use super::grouping::is_aggregate;
use super::select_query;
use super::subqueries::{coalesce_null, start, Start};
use crate::sql::{fold, ident};

/// Wraps the column-free expressions of `query` (see the module doc), knowing no policy
/// table's columns.
#[cfg(test)]
pub(super) fn fence(query: &mut Query) {
    fence_with(query, &Tables::new());
}

/// The same, with the columns of the policy tables the query reads (so that `SELECT *` over
/// one has known outputs, and `x.col` on it is a column for certain).
pub(super) fn fence_with(query: &mut Query, tables: &Tables) {
    let mut outermost = Vec::new();
    selects_of(&query.body, &mut outermost);
    let ranges = Ranges::of(query, tables);
    let _ = VisitMut::visit(
        query,
        &mut Fence {
            outermost,
            unread: Vec::new(),
            branches: Vec::new(),
            ranges,
        },
    );
}

/// Where the outermost query's SELECTs start (several for a UNION).
fn selects_of(body: &SetExpr, out: &mut Vec<Start>) {
    match body {
        SetExpr::Select(select) => {
            let at = select.select_token.0.span.start;
            out.push((at.line, at.column));
        }
        SetExpr::Query(inner) => out.extend(start(inner)),
        SetExpr::SetOperation { left, right, .. } => {
            selects_of(left, out);
            selects_of(right, out);
        }
        _ => {}
    }
}

struct Fence {
    outermost: Vec<Start>,
    /// The SELECTs of EXISTS subqueries, whose select list is never read.
    unread: Vec<Start>,
    /// The SELECTs that are branches of a set operation.
    branches: Vec<Start>,
    ranges: Ranges,
}

impl Fence {
    /// A SELECT DISTINCT sorts by outputs only: an ORDER BY item written as one of its outputs
    /// gets the same wrap as that output, so that PostgreSQL still finds it in the list.
    fn match_distinct_order_by(&self, query: &mut Query) {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return;
        };
        let at = select.select_token.0.span.start;
        let at = (at.line, at.column);
        // DISTINCT ON asks no such thing, but that its expressions match the ORDER BY's first.
        let plain_distinct = matches!(select.distinct, Some(Distinct::Distinct));
        if !plain_distinct || self.outermost.contains(&at) || self.unread.contains(&at) {
            return;
        }
        let outputs: Vec<&Expr> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    Some(expr)
                }
                _ => None,
            })
            .collect();
        let branch = self.branches.contains(&at);
        let Some(order_by) = query.order_by.as_mut() else {
            return;
        };
        let OrderByKind::Expressions(items) = &mut order_by.kind else {
            return;
        };
        for item in items {
            if outputs.contains(&&item.expr) {
                wrap_output(&mut item.expr, branch, &self.ranges);
            }
        }
    }
}

impl VisitorMut for Fence {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if matches!(query.body.as_ref(), SetExpr::SetOperation { .. }) {
            selects_of(&query.body, &mut self.branches);
        }
        self.match_distinct_order_by(query);
        if let SetExpr::Values(values) = query.body.as_mut() {
            // PostgreSQL pulls up only a one-row VALUES; the rows of a longer one stay in its
            // own scan, which no filter of a policy table's scan reads.
            let pulled_up = values.rows.len() == 1;
            for cell in values
                .rows
                .iter_mut()
                .flat_map(|row| row.content.iter_mut())
            {
                if pulled_up {
                    wrap_output(cell, false, &self.ranges);
                } else {
                    wrap_maximal(cell);
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// A function in FROM whose call PostgreSQL can fold to a constant is replaced by that
    /// constant, under the alias's name (`FROM invoices, upper('x') u ... u::date` raised on a
    /// hidden row; found in review): its arguments are outputs too. Set-returning functions
    /// are never folded, and their row estimates need literal arguments.
    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let (name, args) = match factor {
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => (&*name, &mut args.args),
            TableFactor::Function { name, args, .. } => (&*name, args),
            _ => return ControlFlow::Continue(()),
        };
        let last = name.0.last().and_then(|part| part.as_ident()).map(fold);
        if last.is_some_and(|n| SETS.contains(&n.as_str())) {
            return ControlFlow::Continue(());
        }
        for arg in args {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(expr),
                ..
            } = arg
            {
                wrap_output(expr, false, &self.ranges);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Exists { subquery, .. } = expr {
            self.unread.extend(start(subquery));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        let at = select.select_token.0.span.start;
        if (at.line, at.column) == (0, 0) {
            // Written by rowgate (the subquery of `wrap_output`): nothing of the agent's here.
            return ControlFlow::Continue(());
        }
        let scope = Scope {
            ranges: &self.ranges,
            local: ranges::local_names(select),
        };
        for clause in [&mut select.selection, &mut select.having]
            .into_iter()
            .flatten()
        {
            fence_filter(clause, &scope);
        }
        for from in &mut select.from {
            wrap_join_conditions(from, &scope);
        }
        let at = (at.line, at.column);
        if self.outermost.contains(&at) {
            select.projection.iter_mut().for_each(name_fenced_subquery);
        } else if !self.unread.contains(&at) {
            let branch = self.branches.contains(&at);
            for item in &mut select.projection {
                wrap_item(item, branch, &self.ranges);
            }
        }
        ControlFlow::Continue(())
    }
}

fn wrap_join_conditions(from: &mut TableWithJoins, scope: &Scope) {
    if let TableFactor::NestedJoin {
        table_with_joins, ..
    } = &mut from.relation
    {
        wrap_join_conditions(table_with_joins, scope);
    }
    for join in &mut from.joins {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = &mut join.relation
        {
            wrap_join_conditions(table_with_joins, scope);
        }
        use JoinOperator::*;
        if let Join(JoinConstraint::On(on))
        | Inner(JoinConstraint::On(on))
        | Left(JoinConstraint::On(on))
        | LeftOuter(JoinConstraint::On(on))
        | Right(JoinConstraint::On(on))
        | RightOuter(JoinConstraint::On(on))
        | FullOuter(JoinConstraint::On(on)) = &mut join.join_operator
        {
            fence_filter(on, scope);
        }
    }
}

/// Each conjunct of a filter stays bare when its shape is a plain test (`shape`), with its
/// column-free operands fenced one by one; any other conjunct becomes `COALESCE(<conjunct>,
/// NULL)` as a whole, which PostgreSQL never deems leakproof and so runs after the rule.
/// Only an immutable conjunct folds back, to a constant, which raises nothing when the query
/// runs. Conjuncts are split so that each plain one keeps its index condition.
fn fence_filter(expr: &mut Expr, scope: &Scope) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            fence_filter(left, scope);
            fence_filter(right, scope);
        }
        Expr::Nested(inner) if is_and(inner) => fence_filter(inner, scope),
        _ if plain_test(expr, scope) => wrap_maximal(expr),
        _ => {
            let conjunct = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = coalesce_null(conjunct);
        }
    }
}

fn is_and(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryOp {
            op: BinaryOperator::And,
            ..
        } => true,
        Expr::Nested(inner) => is_and(inner),
        _ => false,
    }
}

/// A select-list item keeps the name PostgreSQL gave it before the wrap (and before
/// `subqueries::fence` wrapped a subquery in it).
fn wrap_item(item: &mut SelectItem, in_set_operation: bool, ranges: &Ranges) {
    match item {
        SelectItem::UnnamedExpr(expr) => {
            let before = column_name(fenced_subquery(expr).unwrap_or(expr));
            wrap_output(expr, in_set_operation, ranges);
            let after = column_name(expr);
            if let (Some(name), false) = (before.clone(), before == after) {
                let expr = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: ident(&name),
                };
            }
        }
        SelectItem::ExprWithAlias { expr, .. } => wrap_output(expr, in_set_operation, ranges),
        _ => {}
    }
}

/// An outermost select-list item that `subqueries::fence` wrapped keeps its subquery's name
/// (`SELECT (SELECT max(id) ...)` answers a column `max`, not `coalesce`).
fn name_fenced_subquery(item: &mut SelectItem) {
    let SelectItem::UnnamedExpr(expr) = item else {
        return;
    };
    let Some(name) = fenced_subquery(expr).and_then(column_name) else {
        return;
    };
    let expr = std::mem::replace(expr, Expr::Value(Value::Null.into()));
    *item = SelectItem::ExprWithAlias {
        expr,
        alias: ident(&name),
    };
}

/// The subquery inside a `COALESCE(<subquery>, NULL)` that rowgate wrote (its name has no
/// position in the agent's text); an agent's own COALESCE is not one.
fn fenced_subquery(expr: &Expr) -> Option<&Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let written_by_rowgate = f.name.0.first()?.as_ident()?.span == Span::empty();
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner)), FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(null)))]
            if written_by_rowgate && null.value == Value::Null =>
        {
            Some(inner)
        }
        _ => None,
    }
}

/// An output of an inner query or a VALUES row. PostgreSQL puts an output into the parent's
/// filters when it pulls the query up or pushes a filter down, so an output that reads no
/// column becomes a constant there, under a column's name: `(VALUES ('x')) v(z) ... CASE WHEN
/// department = 'Executive' THEN v.z::date END` raised on the hidden row (found in review).
/// `COALESCE(x, NULL)` would fold back to `'x'`; `COALESCE((SELECT x), NULL)` does not (the
/// subquery's value is known only when it runs), so the parent's filter holds a COALESCE and
/// runs after the permission filter. A NULL is wrapped too (`jsonb_build_object(s.z, 1)`
/// raises on a NULL key), except in a branch of UNION, INTERSECT or EXCEPT, whose NULL takes
/// its type from the other branches (wrapped, it would be text).
fn wrap_output(expr: &mut Expr, in_set_operation: bool, ranges: &Ranges) {
    let null = matches!(expr, Expr::Value(v) if v.value == Value::Null);
    if null && in_set_operation {
        return;
    }
    if column_free(expr) {
        let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
        let query = select_query(vec![SelectItem::UnnamedExpr(inner)], vec![]);
        *expr = coalesce_null(Expr::Subquery(Box::new(query)));
        return;
    }
    // A column is a column wherever it goes. A set-returning function cannot sit in a
    // COALESCE, and PostgreSQL neither pulls up nor pushes a filter into a query that has one
    // in its select list. An aggregate or window function is computed from the rows that passed
    // every filter, and a parent's filter on it stays above that computation (kept bare, a
    // window function's output still stops the window early: `WHERE r <= 3`).
    let after_filters = matches!(expr, Expr::Function(f) if runs_after_filters(f));
    if shape::column(expr, ranges)
        || fenced_subquery(expr).is_some()
        || after_filters
        || holds_set_function(expr)
    {
        return wrap_maximal(expr);
    }
    // Anything else may fold to an expression with no column under it once it stands in the
    // parent's filter (`CASE WHEN false THEN name ELSE 'x'::text::date END`); wrapped, it
    // folds at most to a constant, and otherwise stays a COALESCE that runs after the rule.
    let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
    *expr = coalesce_null(inner);
}

fn holds_set_function(expr: &Expr) -> bool {
    struct Sets;
    impl Visitor for Sets {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Function(f) if last_name(f).is_some_and(|n| SETS.contains(&n.as_str())) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    Visit::visit(expr, &mut Sets).is_break()
}

/// Wraps each largest column-free part of `expr` that could raise. Subqueries are left to their
/// own query level (and to `subqueries::fence`).
fn wrap_maximal(expr: &mut Expr) {
    let _ = VisitMut::visit(expr, &mut Maximal::default());
}

#[derive(Default)]
struct Maximal {
    depth: usize,
    /// The depth of the column-free expression being passed over, while inside it.
    inside_free: Option<usize>,
    queries: usize,
}

impl VisitorMut for Maximal {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.queries += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.queries -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.queries == 0 && self.inside_free.is_none() && column_free(expr) {
            if !cannot_raise(expr) {
                let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                *expr = coalesce_null(inner);
            }
            self.inside_free = Some(self.depth);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &mut Expr) -> ControlFlow<()> {
        if self.inside_free == Some(self.depth) {
            self.inside_free = None;
        }
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Reads no column and holds no subquery, aggregate or window function (those run on visible
/// rows only, after every filter of their level).
fn column_free(expr: &Expr) -> bool {
    struct Reads;
    impl Visitor for Reads {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => ControlFlow::Break(()),
                Expr::Function(f) if runs_after_filters(f) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    Visit::visit(expr, &mut Reads).is_continue()
}

/// PostgreSQL's built-in set-returning functions.
const SETS: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "json_array_elements",
    "json_array_elements_text",
    "json_each",
    "json_each_text",
    "json_object_keys",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_object_keys",
    "jsonb_path_query",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
    "unnest",
];

/// Aggregates and window functions (by PostgreSQL's built-in names), and set-returning
/// functions: PostgreSQL refuses them inside COALESCE, never runs them in a filter, and never
/// pulls a subquery whose select list has one into its parent's filters.
fn runs_after_filters(f: &Function) -> bool {
    f.over.is_some()
        || f.filter.is_some()
        || !f.within_group.is_empty()
        || is_aggregate(&f.name)
        || last_name(f).is_some_and(|n| SETS.contains(&n.as_str()))
}

fn last_name(f: &Function) -> Option<String> {
    f.name.0.last()?.as_ident().map(fold)
}

mod names;
mod ranges;
mod safe;
mod shape;
#[cfg(test)]
mod tests;
