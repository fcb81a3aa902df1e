//! The conjuncts of a filter that may stay bare: tests that PostgreSQL could run on a row
//! before the permission rule without harm, whatever constant folding and pull-up make of
//! them. Every other conjunct is wrapped whole, columns included (see the parent module).
//!
//! Why by shape and not by spelling: PostgreSQL decides what may run early on the expression
//! it plans, after folding (`COALESCE('x', c.name)` is the constant `'x'`, `CASE WHEN false
//! THEN c.name ELSE 'x' END` too) and after putting a subquery's outputs in place of its
//! columns. It deems a function call leakproof when no column lies under it, so a cast that
//! folding left with no column under it could raise on a hidden row. A bare test here is a
//! comparison, IS [NOT] NULL, IN list or BETWEEN whose operands are columns or expressions
//! that read no column (those are fenced one by one: a literal stays, anything else becomes
//! `COALESCE(x, NULL)`). No function of the agent's sits between a column and the test, so
//! folding can only turn an operand into a constant, and comparing constants cannot raise;
//! an operator PostgreSQL does not deem leakproof runs after the rule anyway.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use super::ranges::Ranges;
use super::safe::cannot_raise;
use super::{column_free, fenced_subquery, runs_after_filters};
use crate::sql::fold;

/// Where a filter stands: the query's FROM-item names, and those of its own level.
pub(super) struct Scope<'a> {
    pub ranges: &'a Ranges,
    pub local: Vec<String>,
}

/// May `expr`, a conjunct of a WHERE, HAVING or JOIN ... ON, stay bare?
pub(super) fn plain_test(expr: &Expr, scope: &Scope) -> bool {
    let test = |e: &Expr| plain_test(e, scope);
    let operand = |e: &Expr| operand(e, scope);
    match expr {
        Expr::Nested(inner) => test(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => test(expr),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And | BinaryOperator::Or => test(left) && test(right),
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => operand(left) && operand(right),
            _ => false,
        },
        Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e) => operand(e),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => operand(a) && operand(b),
        Expr::InList { expr, list, .. } => operand(expr) && list.iter().all(operand),
        Expr::Between {
            expr, low, high, ..
        } => operand(expr) && operand(low) && operand(high),
        // `x = ANY (ARRAY[...])`, `x = ANY (subquery)`: the subquery is a level of its own,
        // and PostgreSQL turns a top-level one into a semi-join.
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            comparison(compare_op)
                && operand(left)
                && (operand(right) || matches!(right.as_ref(), Expr::Subquery(_)))
        }
        // A subquery's own filters are fenced at its level; PostgreSQL makes these semi- and
        // anti-joins, or evaluates them as a whole after the rule (subqueries::fence wraps
        // the ones that could run earlier).
        Expr::InSubquery { expr, .. } => operand(expr),
        Expr::Exists { .. } => true,
        // A boolean column, a boolean literal, rowgate's own COALESCE around a subquery.
        other => operand(other),
    }
}

fn comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// A column, an expression that reads no column, an aggregate, a subquery rowgate fenced, or
/// arithmetic and casts of this level's table columns.
fn operand(expr: &Expr, scope: &Scope) -> bool {
    let ranges = scope.ranges;
    match expr {
        Expr::Nested(inner) => operand(inner, scope),
        Expr::Value(v) => !matches!(v.value, Value::Placeholder(_)),
        // An aggregate's or window function's arguments run on the rows that passed every
        // filter of its level, the rule's included.
        Expr::Function(f) if runs_after_filters(f) => true,
        _ => {
            column(expr, ranges)
                || fenced_subquery(expr).is_some()
                || column_free(expr)
                || arithmetic(expr, scope)
        }
    }
}

/// `o.id + 1`, `t.happened_at::date`, `-i.amount * 2`: operators and casts over columns of a
/// policy table (or FROM function) of this very level and literals. Those columns are plain
/// columns to PostgreSQL (not an outer query's value, not a subquery's output it may replace),
/// and an operator or a cast never drops an argument when it folds, so a column stays under
/// every function here: PostgreSQL runs the whole after the rule unless it is leakproof.
fn arithmetic(expr: &Expr, scope: &Scope) -> bool {
    match expr {
        Expr::Nested(inner) => arithmetic(inner, scope),
        Expr::Cast { expr, .. } => arithmetic(expr, scope),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => arithmetic(expr, scope),
        Expr::BinaryOp {
            left,
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo
                | BinaryOperator::StringConcat,
            right,
        } => arithmetic(left, scope) && arithmetic(right, scope),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [qualifier, _] | [_, qualifier, _] => {
                let qualifier = fold(qualifier);
                scope.local.contains(&qualifier) && scope.ranges.is_table(&qualifier)
            }
            _ => false,
        },
        // Unqualified, a name is this level's when one of its tables has that column
        // (PostgreSQL looks in the innermost level first).
        Expr::Identifier(ident) => {
            let column = fold(ident);
            scope
                .local
                .iter()
                .any(|q| scope.ranges.table_has(q, &column))
        }
        other => cannot_raise(other),
    }
}

/// A column for certain: not a whole row, not `s.f`, PostgreSQL's notation for the call
/// `f(s)` (see `ranges`).
pub(super) fn column(expr: &Expr, ranges: &Ranges) -> bool {
    match expr {
        Expr::Identifier(ident) => !ranges.is_range(&fold(ident)),
        // `schema.table.column` names a policy table's column (resolve allows no other).
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [qualifier, name] | [_, qualifier, name] => {
                ranges.is_column(&fold(qualifier), &fold(name))
            }
            _ => false,
        },
        _ => false,
    }
}
