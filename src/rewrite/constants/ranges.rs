//! What each FROM-item name of a query may stand for, so that the fence can tell a column
//! from PostgreSQL's attribute notation for a function call: `s.f` on a subquery or CTE `s`
//! without a column `f` is the call `f(s)` (any one-argument function of a record), and `s`
//! alone is the whole row. Both can raise where a column cannot.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{Query, SelectItem, SetExpr, TableFactor, Visit, Visitor};

use super::names::column_name;
use crate::sql::fold;

/// What `name.x` may be, for every name a FROM item of the query goes by.
#[derive(Debug, Default)]
pub(super) struct Ranges {
    kinds: HashMap<String, Kind>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A policy table or a function in FROM: resolve has already refused `name.x` where `x`
    /// is not one of its columns (the serving side knows every policy table's columns).
    Columns,
    /// A subquery or CTE whose output names are these.
    Outputs(Vec<String>),
    /// A subquery or CTE whose outputs are not known here (a `*`, an unnamed expression).
    Unknown,
}

impl Ranges {
    pub(super) fn of(query: &Query) -> Ranges {
        let mut ctes = HashMap::new();
        let _ = Visit::visit(query, &mut CteOutputs { out: &mut ctes });
        let mut ranges = Ranges::default();
        let _ = Visit::visit(
            query,
            &mut Names {
                ctes: &ctes,
                ranges: &mut ranges,
            },
        );
        ranges
    }

    /// Is `name` the name of a FROM item (so that, alone, it may be a whole row)?
    pub(super) fn is_range(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    /// Is `qualifier.column` certainly a column, never a function call?
    pub(super) fn is_column(&self, qualifier: &str, column: &str) -> bool {
        match self.kinds.get(qualifier) {
            Some(Kind::Columns) => true,
            Some(Kind::Outputs(names)) => names.iter().any(|n| n == column),
            Some(Kind::Unknown) | None => false,
        }
    }

    /// The same name used for several FROM items (at different levels) keeps only what all of
    /// them allow.
    fn add(&mut self, name: String, kind: Kind) {
        let merged = match (self.kinds.remove(&name), kind) {
            (None, kind) => kind,
            (Some(Kind::Columns), Kind::Columns) => Kind::Columns,
            (Some(Kind::Outputs(a)), Kind::Outputs(b)) => {
                Kind::Outputs(a.into_iter().filter(|n| b.contains(n)).collect())
            }
            _ => Kind::Unknown,
        };
        self.kinds.insert(name, merged);
    }
}

/// The output names of every agent CTE, by name (`None` when unknown).
struct CteOutputs<'a> {
    out: &'a mut HashMap<String, Option<Vec<String>>>,
}

impl Visitor for CteOutputs<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            let names = match cte.alias.columns.as_slice() {
                [] => outputs(&cte.query),
                columns => Some(columns.iter().map(|c| fold(&c.name)).collect()),
            };
            let name = fold(&cte.alias.name);
            // Two CTEs of one name (at different levels): only what both have.
            let merged = match self.out.remove(&name) {
                None => names,
                Some(Some(a)) => names.map(|b| a.into_iter().filter(|n| b.contains(n)).collect()),
                Some(None) => None,
            };
            self.out.insert(name, merged);
        }
        ControlFlow::Continue(())
    }
}

struct Names<'a> {
    ctes: &'a HashMap<String, Option<Vec<String>>>,
    ranges: &'a mut Ranges,
}

impl Visitor for Names<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let (name, kind) = match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let written = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(fold)
                    .unwrap_or_default();
                let kind = match (args, self.ctes.get(&written)) {
                    // A name that is some agent CTE's is taken as that CTE (the safe side).
                    (None, Some(Some(names))) => Kind::Outputs(names.clone()),
                    (None, Some(None)) => Kind::Unknown,
                    _ => Kind::Columns,
                };
                let kind = match alias {
                    Some(a) if !a.columns.is_empty() && kind != Kind::Columns => {
                        Kind::Outputs(a.columns.iter().map(|c| fold(&c.name)).collect())
                    }
                    _ => kind,
                };
                (alias.as_ref().map(|a| fold(&a.name)).unwrap_or(written), kind)
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let Some(alias) = alias else {
                    return ControlFlow::Continue(());
                };
                let kind = match alias.columns.as_slice() {
                    [] => outputs(subquery).map_or(Kind::Unknown, Kind::Outputs),
                    columns => Kind::Outputs(columns.iter().map(|c| fold(&c.name)).collect()),
                };
                (fold(&alias.name), kind)
            }
            TableFactor::Function { alias, name, .. } => {
                let written = name.0.last().and_then(|p| p.as_ident()).map(fold);
                match alias.as_ref().map(|a| fold(&a.name)).or(written) {
                    Some(name) => (name, Kind::Columns),
                    None => return ControlFlow::Continue(()),
                }
            }
            // UNNEST, JSON_TABLE and the like: their columns are checked by resolve, or they
            // are refused by the guard; a name of theirs is a range all the same.
            other => match factor_alias(other) {
                Some(name) => (name, Kind::Unknown),
                None => return ControlFlow::Continue(()),
            },
        };
        self.ranges.add(name, kind);
        ControlFlow::Continue(())
    }
}

fn factor_alias(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::UNNEST { alias, .. } => alias.as_ref().map(|a| fold(&a.name)),
        TableFactor::NestedJoin { alias, .. } => alias.as_ref().map(|a| fold(&a.name)),
        _ => None,
    }
}

/// The output names of a query, as PostgreSQL names them; `None` when this does not know them
/// all (a `*`, an expression whose name is not figured here).
fn outputs(query: &Query) -> Option<Vec<String>> {
    fn of(body: &SetExpr) -> Option<Vec<String>> {
        match body {
            SetExpr::Select(select) => select
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::ExprWithAlias { alias, .. } => Some(fold(alias)),
                    SelectItem::UnnamedExpr(expr) => column_name(expr),
                    _ => None,
                })
                .collect(),
            SetExpr::Query(inner) => outputs(inner),
            SetExpr::SetOperation { left, .. } => of(left),
            SetExpr::Values(values) => {
                let width = values.rows.first()?.content.len();
                Some((1..=width).map(|i| format!("column{i}")).collect())
            }
            _ => None,
        }
    }
    of(&query.body)
}
