//! Layer 5 for the agent's subqueries: `COALESCE(<subquery>, NULL)` around every scalar
//! subquery, `ARRAY(<subquery>)` and `EXISTS` that PostgreSQL could turn into an InitPlan.
//!
//! Why: PostgreSQL computes an uncorrelated subquery once, as an InitPlan, the first time an
//! expression needs its value, and deems that value (a Param) leakproof. So a leakproof test
//! of a hidden row's column, next to a subquery that raises, was evaluated before the
//! permission filter (row-level security or a `security_barrier` view alike), and whether the
//! query failed told whether the hidden row passed the test:
//! `WHERE id = 2001 AND department = 'Executive' AND customer_id = (SELECT 1 / count(*) ...)`.
//! PostgreSQL does not deem a COALESCE leakproof, so an expression holding one runs after the
//! filter, on visible rows only. `COALESCE(x, NULL)` is `x` for every value.
//!
//! Left alone, because PostgreSQL never makes them InitPlans or they are pulled up into joins
//! (which only see rows that passed the filter): `IN (subquery)`, `op ANY/ALL (subquery)`, and
//! `[NOT] EXISTS` standing as a top-level conjunct of a WHERE or HAVING (wrapping those would
//! stop PostgreSQL from turning them into semi- and anti-joins). The price: a comparison with
//! a wrapped subquery is no index condition on a policy table (`id = (SELECT max(id) ...)`
//! filters the visible rows instead of probing the index).

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Query, Select, SetExpr, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

/// Where a subquery starts in the agent's text: its first SELECT keyword.
pub(super) type Start = (u64, u64);

/// Wraps the subqueries of `query` (see the module doc).
pub(super) fn fence(query: &mut Query) {
    let mut exempt = Exempt::default();
    let _ = Visit::visit(&*query, &mut exempt);
    let mut wrap = Wrap {
        exempt: exempt.starts,
    };
    let _ = VisitMut::visit(query, &mut wrap);
}

pub(super) fn start(query: &Query) -> Option<Start> {
    fn of(body: &SetExpr) -> Option<Start> {
        match body {
            SetExpr::Select(select) => {
                let at = select.select_token.0.span.start;
                Some((at.line, at.column))
            }
            SetExpr::Query(inner) => start(inner),
            SetExpr::SetOperation { left, .. } => of(left),
            _ => None,
        }
    }
    of(&query.body)
}

/// The subqueries not to wrap: top-level `EXISTS` conjuncts, and `ANY`/`ALL` operands.
#[derive(Default)]
struct Exempt {
    starts: HashSet<Start>,
}

impl Exempt {
    fn conjuncts(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                self.conjuncts(left);
                self.conjuncts(right);
            }
            Expr::Nested(inner) => self.conjuncts(inner),
            Expr::Exists { subquery, .. } => self.starts.extend(start(subquery)),
            _ => {}
        }
    }
}

impl Visitor for Exempt {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        for clause in [&select.selection, &select.having].into_iter().flatten() {
            self.conjuncts(clause);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr {
            if let Expr::Subquery(subquery) = right.as_ref() {
                self.starts.extend(start(subquery));
            }
        }
        ControlFlow::Continue(())
    }
}

struct Wrap {
    exempt: HashSet<Start>,
}

impl Wrap {
    fn wraps(&self, expr: &Expr) -> bool {
        let free = |query: &Query| start(query).is_none_or(|at| !self.exempt.contains(&at));
        match expr {
            Expr::Subquery(query) => free(query) && one_column(query),
            Expr::Exists { subquery, .. } => free(subquery),
            Expr::Function(Function {
                args: FunctionArguments::Subquery(query),
                ..
            }) => free(query),
            _ => false,
        }
    }
}

/// A row comparison's subquery has several columns, and COALESCE takes one; the guard refuses
/// row comparisons with a subquery, so this only keeps a query PostgreSQL would refuse as is.
fn one_column(query: &Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.len() == 1,
        SetExpr::Query(inner) => one_column(inner),
        SetExpr::SetOperation { left, .. } => match left.as_ref() {
            SetExpr::Select(select) => select.projection.len() == 1,
            _ => true,
        },
        _ => true,
    }
}

impl VisitorMut for Wrap {
    type Break = ();

    // Post-order: the subquery's own subqueries are wrapped first, and the COALESCE put here
    // is not visited again.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.wraps(expr) {
            let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = coalesce_null(inner);
        }
        ControlFlow::Continue(())
    }
}

pub(super) fn coalesce_null(inner: Expr) -> Expr {
    let arg = |e: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(Function {
        // A keyword, not a function name: unquoted, as PostgreSQL reads it.
        name: ObjectName::from(vec![Ident::new("COALESCE")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![arg(inner), arg(Expr::Value(Value::Null.into()))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::super::after_pass;
    use super::*;

    fn fenced(sql: &str) -> String {
        after_pass(sql, fence)
    }

    #[test]
    fn initplan_subqueries_are_wrapped_and_joins_are_not() {
        assert_eq!(
            fenced("SELECT a FROM t WHERE b = (SELECT max(b) FROM u) AND c = ANY(ARRAY(SELECT c FROM v))"),
            "SELECT a FROM t WHERE b = COALESCE((SELECT max(b) FROM u), NULL) \
             AND c = ANY(COALESCE(ARRAY(SELECT c FROM v), NULL))"
        );
        assert_eq!(
            fenced("SELECT a FROM t WHERE (b = 1 OR EXISTS (SELECT 1 FROM u)) AND EXISTS (SELECT 1 FROM v WHERE v.a = t.a) AND NOT EXISTS (SELECT 1 FROM w)"),
            "SELECT a FROM t WHERE (b = 1 OR COALESCE(EXISTS (SELECT 1 FROM u), NULL)) \
             AND EXISTS (SELECT 1 FROM v WHERE v.a = t.a) AND NOT EXISTS (SELECT 1 FROM w)"
        );
        assert_eq!(
            fenced("SELECT a FROM t WHERE a IN (SELECT a FROM u) AND b > ALL (SELECT b FROM v) AND c = ANY (SELECT c FROM w)"),
            "SELECT a FROM t WHERE a IN (SELECT a FROM u) AND b > ALL(SELECT b FROM v) AND c = ANY(SELECT c FROM w)"
        );
        assert_eq!(
            fenced("SELECT (SELECT count(*) FROM u WHERE u.a = t.a) AS n FROM t"),
            "SELECT COALESCE((SELECT count(*) FROM u WHERE u.a = t.a), NULL) AS n FROM t"
        );
    }

    #[test]
    fn nested_subqueries_are_wrapped_inside_out() {
        assert_eq!(
            fenced("SELECT a FROM t WHERE b = (SELECT max(b) FROM u WHERE c = (SELECT min(c) FROM v))"),
            "SELECT a FROM t WHERE b = COALESCE((SELECT max(b) FROM u WHERE c = COALESCE((SELECT min(c) FROM v), NULL)), NULL)"
        );
    }
}
