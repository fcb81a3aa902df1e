//! GROUP BY a primary key, kept valid after the rewrite.
//!
//! PostgreSQL accepts `SELECT c.name, count(*) FROM customers c JOIN invoices i ... GROUP BY
//! c.id` over the base table, because `c.name` depends functionally on the primary key `c.id`.
//! It applies that rule to base tables only; after the rewrite `customers` is a CTE over a
//! permission view, which has no key, and the same query fails with 42803 ("must appear in
//! the GROUP BY clause"). Agents write this often, so for each query level whose GROUP BY holds
//! all of a policy table's key (by name, ordinal or output name), this pass appends that
//! table's other columns that the level uses after grouping (select list outside aggregates,
//! HAVING, ORDER BY, DISTINCT ON, named windows, outer references from subqueries) to the
//! GROUP BY. Which keys make rows unique and which columns can be grouped is the catalog's
//! business (`Catalog::load`).
//!
//! Why this changes no answer: the rows of a permission CTE are rows of the source, each at
//! most once, so within one group of the key every column of that table has one value (NULL
//! for all of them when an outer join found no row). Grouping by it as well splits no group.
//! Adding a column that did not need it is therefore harmless too, which is why unknown
//! functions' arguments are treated as outside aggregates. The pass only ever adds plain
//! `range.column` references to a GROUP BY; it removes nothing and reads no other table.
//!
//! Left alone (PostgreSQL answers 42803 as before, and the message says what to add):
//! ROLLUP, CUBE, GROUPING SETS and GROUP BY ALL; ranges renamed with a column list
//! (`AS c(a, b)`, which resolve refuses on policy tables today); unqualified names when the
//! FROM clause holds a subquery, a function, an agent CTE or a USING/NATURAL join (whose
//! columns this pass does not know); columns whose type has no equality; whole-row
//! references (`row_to_json(c)`); an ORDER BY outside a parenthesized grouped SELECT.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, JoinConstraint, JoinOperator, NamedWindowExpr, OrderByKind, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins,
    Value, Visit, Visitor, VisitorMut,
};

use super::first_position;
use crate::policy::Grouping;
use crate::resolve::Position;
use crate::sql::{fold, ident};

/// A policy table reference, as the grouping pass needs it.
pub(super) struct Keyed<'a> {
    /// The name the rewrite gives the range when the agent wrote no alias.
    pub table: &'a str,
    /// The visible columns, in view order.
    pub columns: &'a [String],
    pub grouping: Option<&'a Grouping>,
}

/// Completes the GROUP BY of every query level of `query` (see the module doc).
pub(super) fn complete(query: &mut Query, references: &HashMap<Position, Keyed<'_>>) {
    let _ = sqlparser::ast::VisitMut::visit(query, &mut Completer { references });
}

struct Completer<'r, 'a> {
    references: &'r HashMap<Position, Keyed<'a>>,
}

impl VisitorMut for Completer<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let order_by: Vec<&Expr> = match &query.order_by {
            Some(order_by) => match &order_by.kind {
                OrderByKind::Expressions(items) => items.iter().map(|o| &o.expr).collect(),
                OrderByKind::All(_) => vec![],
            },
            None => vec![],
        };
        match query.body.as_mut() {
            SetExpr::Select(select) => self.level(select, &order_by),
            other => self.branches(other),
        }
        ControlFlow::Continue(())
    }
}

impl Completer<'_, '_> {
    /// The SELECTs of a set operation: the query's ORDER BY names their output, not their input.
    fn branches(&self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => self.level(select, &[]),
            SetExpr::SetOperation { left, right, .. } => {
                self.branches(left);
                self.branches(right);
            }
            _ => {}
        }
    }

    fn level(&self, select: &mut Select, order_by: &[&Expr]) {
        let GroupByExpr::Expressions(grouped, modifiers) = &select.group_by else {
            return;
        };
        if grouped.is_empty() || !modifiers.is_empty() || grouped.iter().any(is_grouping_set) {
            return;
        }
        let ranges = Ranges::of(&select.from, self.references);
        let keyed: Vec<&Range> = ranges
            .list
            .iter()
            .filter(|r| {
                r.grouping.is_some_and(|g| {
                    g.key
                        .iter()
                        .all(|k| grouped.iter().any(|e| ranges.is(e, select, r, k)))
                })
            })
            .collect();
        if keyed.is_empty() {
            return;
        }
        let used = Used::after_grouping(select, order_by);
        let mut added: Vec<Expr> = Vec::new();
        for range in keyed {
            let Some(grouping) = range.grouping else {
                continue;
            };
            for column in &grouping.groupable {
                let needed = used.wants(range, column, &ranges)
                    && !grouped.iter().any(|e| ranges.is(e, select, range, column));
                if needed {
                    added.push(Expr::CompoundIdentifier(vec![
                        ident(&range.name),
                        ident(column),
                    ]));
                }
            }
        }
        if let GroupByExpr::Expressions(grouped, _) = &mut select.group_by {
            grouped.extend(added);
        }
    }
}

fn is_grouping_set(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_) | Expr::Tuple(_)
    )
}

/// The output names of a select list: ORDER BY prefers them to input columns.
fn output_names(select: &Select) -> Vec<String> {
    select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(fold(alias)),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(fold(i)),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(fold),
            _ => None,
        })
        .collect()
}

struct Range<'a> {
    name: String,
    columns: &'a [String],
    grouping: Option<&'a Grouping>,
}

/// The FROM items of one query level: the policy tables this pass knows, and whether an
/// unqualified column can be pinned to one of them.
struct Ranges<'a> {
    list: Vec<Range<'a>>,
    unqualified_known: bool,
}

impl<'a> Ranges<'a> {
    fn of(from: &[TableWithJoins], references: &HashMap<Position, Keyed<'a>>) -> Ranges<'a> {
        let mut ranges = Ranges {
            list: vec![],
            unqualified_known: true,
        };
        for item in from {
            ranges.factor(&item.relation, references);
            for join in &item.joins {
                if merges_columns(&join.join_operator) {
                    ranges.unqualified_known = false;
                }
                ranges.factor(&join.relation, references);
            }
        }
        ranges
    }

    fn factor(&mut self, factor: &TableFactor, references: &HashMap<Position, Keyed<'a>>) {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let Some(reference) = first_position(name).and_then(|p| references.get(&p)) else {
                    self.unqualified_known = false;
                    return;
                };
                let name = match alias {
                    Some(alias) if !alias.columns.is_empty() => {
                        self.unqualified_known = false;
                        return;
                    }
                    Some(alias) => fold(&alias.name),
                    None => reference.table.to_string(),
                };
                self.list.push(Range {
                    name,
                    columns: reference.columns,
                    grouping: reference.grouping,
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => {
                let nested = Ranges::of(std::slice::from_ref(table_with_joins), references);
                self.unqualified_known &= nested.unqualified_known;
                self.list.extend(nested.list);
            }
            _ => self.unqualified_known = false,
        }
    }

    /// The range an unqualified column of this level belongs to, if this pass can tell.
    fn owner(&self, column: &str) -> Option<&Range<'a>> {
        if !self.unqualified_known {
            return None;
        }
        let mut owners = self
            .list
            .iter()
            .filter(|r| r.columns.iter().any(|c| c == column));
        match (owners.next(), owners.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Whether the GROUP BY item `e` is the column `range.column`: by name, by ordinal or by
    /// output name (PostgreSQL reads a bare name as an output column only when no FROM item
    /// has it). A number inside the select list is a constant, not another ordinal.
    fn is(&self, e: &Expr, select: &Select, range: &Range, column: &str) -> bool {
        let item = |pick: &dyn Fn(usize, &SelectItem) -> bool| {
            select
                .projection
                .iter()
                .enumerate()
                .find_map(|(i, item)| match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }
                        if pick(i, item) =>
                    {
                        Some(e)
                    }
                    _ => None,
                })
        };
        let target = match unnested(e) {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    let Ok(n) = n.parse::<usize>() else {
                        return false;
                    };
                    item(&|i, _| i + 1 == n)
                }
                _ => None,
            },
            Expr::Identifier(name)
                if self.unqualified_known && self.owner(&fold(name)).is_none() =>
            {
                item(
                    &|_, item| matches!(item, SelectItem::ExprWithAlias { alias, .. } if fold(alias) == fold(name)),
                )
            }
            other => Some(other),
        };
        target.is_some_and(|e| self.names(e, range, column))
    }

    fn names(&self, e: &Expr, range: &Range, column: &str) -> bool {
        self.column_of(unnested(e))
            .is_some_and(|(r, c)| std::ptr::eq(r, range) && c == column)
    }

    /// The range and column a column reference of this level names.
    fn column_of(&self, e: &Expr) -> Option<(&Range<'a>, String)> {
        match e {
            Expr::Identifier(i) => {
                let column = fold(i);
                self.owner(&column).map(|r| (r, column))
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let column = fold(&parts[parts.len() - 1]);
                let qualifier = fold(&parts[parts.len() - 2]);
                self.list
                    .iter()
                    .find(|r| r.name == qualifier)
                    .filter(|r| r.columns.contains(&column))
                    .map(|r| (r, column))
            }
            _ => None,
        }
    }
}

fn unnested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

fn merges_columns(operator: &JoinOperator) -> bool {
    use JoinOperator::*;
    let constraint = match operator {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c) | RightAnti(c)
        | StraightJoin(c) => c,
        _ => return false,
    };
    matches!(
        constraint,
        JoinConstraint::Using(_) | JoinConstraint::Natural
    )
}

/// Column references of one query level that PostgreSQL wants grouped or aggregated.
#[derive(Default)]
struct Used {
    columns: Vec<Expr>,
    /// `r.*` (Some) and `*` (None).
    wildcards: Vec<Option<String>>,
}

impl Used {
    /// What PostgreSQL evaluates after grouping at this level: the select list, HAVING,
    /// DISTINCT ON, named windows and ORDER BY (whose bare output names are not columns).
    fn after_grouping(select: &Select, order_by: &[&Expr]) -> Used {
        let mut used = Used::default();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    used.expr(e)
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    if let Some(last) = n.0.last().and_then(|p| p.as_ident()) {
                        used.wildcards.push(Some(fold(last)));
                    }
                }
                SelectItem::ExprWithAliases { expr, .. } => used.expr(expr),
                SelectItem::QualifiedWildcard(_, _) => {}
                SelectItem::Wildcard(_) => used.wildcards.push(None),
            }
        }
        if let Some(having) = &select.having {
            used.expr(having);
        }
        if let Some(Distinct::On(exprs)) = &select.distinct {
            exprs.iter().for_each(|e| used.expr(e));
        }
        for window in &select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &window.1 {
                spec.partition_by.iter().for_each(|e| used.expr(e));
                spec.order_by.iter().for_each(|o| used.expr(&o.expr));
            }
        }
        let outputs = output_names(select);
        for e in order_by.iter().copied() {
            match e {
                Expr::Identifier(i) if outputs.contains(&fold(i)) => {}
                e => used.expr(e),
            }
        }
        used
    }

    fn expr(&mut self, e: &Expr) {
        let mut collect = Collect {
            found: &mut self.columns,
            subqueries: 0,
            aggregates: vec![],
        };
        let _ = e.visit(&mut collect);
    }

    fn wants(&self, range: &Range, column: &str, ranges: &Ranges) -> bool {
        self.wildcards
            .iter()
            .any(|w| w.as_ref().is_none_or(|name| *name == range.name))
            || self.columns.iter().any(|e| {
                ranges
                    .column_of(e)
                    .is_some_and(|(r, c)| std::ptr::eq(r, range) && c == column)
            })
    }
}

struct Collect<'f> {
    found: &'f mut Vec<Expr>,
    subqueries: usize,
    /// For each function entered, whether it is an aggregate (so its arguments are inside).
    aggregates: Vec<bool>,
}

impl Collect<'_> {
    /// At this level, a column counts outside aggregates. In a subquery only qualified names
    /// count (`c.name` may be an outer reference, which PostgreSQL also wants grouped); when
    /// the qualifier is really the subquery's own, adding the outer column is harmless.
    fn wanted(&self, e: &Expr) -> bool {
        if self.subqueries > 0 {
            return matches!(e, Expr::CompoundIdentifier(_));
        }
        !self.aggregates.iter().any(|a| *a)
    }
}

impl Visitor for Collect<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.subqueries += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.subqueries -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self
                .aggregates
                .push(f.over.is_none() && is_aggregate(&f.name)),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) if self.wanted(e) => {
                self.found.push(e.clone())
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(_) = e {
            self.aggregates.pop();
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL's built-in aggregates (a window call of one is not an aggregate here: its
/// arguments are evaluated per group, like any other expression).
pub(super) fn is_aggregate(name: &sqlparser::ast::ObjectName) -> bool {
    AGGREGATES
        .binary_search(&aggregate_name(name).as_str())
        .is_ok()
}

fn aggregate_name(name: &sqlparser::ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(fold)
        .unwrap_or_default()
}

/// Sorted: looked up by binary search.
const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_list_is_sorted_for_binary_search() {
        let mut sorted = AGGREGATES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, AGGREGATES);
        let name = |s: &str| sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new(s)]);
        assert!(is_aggregate(&name("COUNT")));
        assert!(!is_aggregate(&name("lower")));
    }
}
