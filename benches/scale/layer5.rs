//! The A/B of layer 5's whole-conjunct wrap (issue 20), in the same run: the rewrite as the
//! gateway runs it, against the same rewrite with each conjunct that the fence wrapped whole
//! put back bare (the unsafe form, timed here only). Printed for the questions where the two
//! differ, so that the price of the fence is measured where it is paid.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, JoinConstraint,
    JoinOperator, Query, Select, Value, VisitMut, VisitorMut,
};
use sqlparser::tokenizer::Span;

/// `query` with every conjunct that rowgate wrapped whole (`COALESCE(<conjunct>, NULL)` with
/// no position in the agent's text) unwrapped; `None` when there is none.
pub fn unwrapped(query: &Query) -> Option<String> {
    let mut copy = query.clone();
    let mut pass = Unwrap { changed: false };
    let _ = VisitMut::visit(&mut copy, &mut pass);
    pass.changed.then(|| copy.to_string())
}

struct Unwrap {
    changed: bool,
}

impl VisitorMut for Unwrap {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for clause in [&mut select.selection, &mut select.having]
            .into_iter()
            .flatten()
        {
            self.conjuncts(clause);
        }
        for from in &mut select.from {
            for join in &mut from.joins {
                if let JoinOperator::Join(JoinConstraint::On(on))
                | JoinOperator::Inner(JoinConstraint::On(on))
                | JoinOperator::Left(JoinConstraint::On(on))
                | JoinOperator::LeftOuter(JoinConstraint::On(on)) = &mut join.join_operator
                {
                    self.conjuncts(on);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl Unwrap {
    fn conjuncts(&mut self, expr: &mut Expr) {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } = expr
        {
            self.conjuncts(left);
            self.conjuncts(right);
            return;
        }
        if let Some(inner) = rowgate_wrap(expr) {
            *expr = inner;
            self.changed = true;
        }
    }
}

fn rowgate_wrap(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.0.first()?.as_ident()?;
    if name.span != Span::empty() || !name.value.eq_ignore_ascii_case("coalesce") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner)), FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(null)))]
            if null.value == Value::Null && !matches!(inner, Expr::Subquery(_)) =>
        {
            Some(inner.clone())
        }
        _ => None,
    }
}
