//! What each FROM-item name of a query may stand for, so that the fence can tell a column
//! from PostgreSQL's attribute notation for a function call: `s.f` on a subquery or CTE `s`
//! without a column `f` is the call `f(s)` (any one-argument function of a record), and `s`
//! alone is the whole row. Both can raise where a column cannot.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor,
    TableWithJoins, Visit, Visitor,
};

use super::names::column_name;
use crate::sql::fold;

/// What `name.x` may be, for every name a FROM item of the query goes by.
#[derive(Debug, Default)]
pub(super) struct Ranges {
    kinds: HashMap<String, Kind>,
    /// The known columns of the policy tables, by the name the query gives them.
    table_columns: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A policy table: resolve has already refused `name.x` where `x` is not one of its
    /// columns (the serving side knows every policy table's columns).
    Columns,
    /// A function in FROM: resolve allows only its known columns, but PostgreSQL may replace
    /// a call it can fold by the constant, as it does a subquery's output.
    Function,
    /// A subquery or CTE whose output names are these.
    Outputs(Vec<String>),
    /// A subquery or CTE whose outputs are not known here (a `*`, an unnamed expression).
    Unknown,
}

impl Ranges {
    /// `tables`: the columns of each policy table the query reads, where known (the serving
    /// side knows them all), so that `SELECT *` over one has known outputs.
    pub(super) fn of(query: &Query, tables: &Tables) -> Ranges {
        let mut names = Names {
            known: Known {
                ctes: HashMap::new(),
                tables,
            },
            ranges: Ranges::default(),
        };
        let _ = Visit::visit(query, &mut names);
        names.ranges
    }

    /// Is `name` the name of a FROM item (so that, alone, it may be a whole row)?
    pub(super) fn is_range(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    /// Is `qualifier.column` certainly a column, never a function call?
    pub(super) fn is_column(&self, qualifier: &str, column: &str) -> bool {
        match self.kinds.get(qualifier) {
            Some(Kind::Columns | Kind::Function) => true,
            Some(Kind::Outputs(names)) => names.iter().any(|n| n == column),
            Some(Kind::Unknown) | None => false,
        }
    }

    /// Is `qualifier.x` a column of a policy table (never a subquery's or function's output,
    /// which PostgreSQL may replace by the expression that computes it)?
    pub(super) fn is_table(&self, qualifier: &str) -> bool {
        self.kinds.get(qualifier) == Some(&Kind::Columns)
    }

    /// Is `column` a known column of the policy table the query calls `qualifier`?
    pub(super) fn table_has(&self, qualifier: &str, column: &str) -> bool {
        self.is_table(qualifier)
            && self
                .table_columns
                .get(qualifier)
                .is_some_and(|columns| columns.iter().any(|c| c == column))
    }

    /// The same name used for several FROM items (at different levels) keeps only what all of
    /// them allow.
    fn add(&mut self, name: String, kind: Kind) {
        let merged = match (self.kinds.remove(&name), kind) {
            (None, kind) => kind,
            (Some(Kind::Columns), Kind::Columns) => Kind::Columns,
            (Some(Kind::Columns | Kind::Function), Kind::Columns | Kind::Function) => {
                Kind::Function
            }
            (Some(Kind::Outputs(a)), Kind::Outputs(b)) => {
                Kind::Outputs(a.into_iter().filter(|n| b.contains(n)).collect())
            }
            _ => Kind::Unknown,
        };
        self.kinds.insert(name, merged);
    }
}

/// Policy table name → its columns.
pub(in crate::rewrite) type Tables<'a> = HashMap<&'a str, &'a [String]>;

/// What is known of the outputs of agent CTEs (by name; `None` when unknown) and of policy
/// tables.
struct Known<'a> {
    ctes: HashMap<String, Option<Vec<String>>>,
    tables: &'a Tables<'a>,
}

impl Known<'_> {
    /// The output names of a query, as PostgreSQL names them; `None` when this does not know
    /// them all (an expression whose name is not figured here, a `*` over something unknown).
    fn outputs(&self, query: &Query) -> Option<Vec<String>> {
        self.body_outputs(&query.body)
    }

    fn body_outputs(&self, body: &SetExpr) -> Option<Vec<String>> {
        match body {
            SetExpr::Select(select) => {
                let mut names = Vec::new();
                for item in &select.projection {
                    match item {
                        SelectItem::ExprWithAlias { alias, .. } => names.push(fold(alias)),
                        SelectItem::UnnamedExpr(expr) => names.push(column_name(expr)?),
                        SelectItem::Wildcard(_) => {
                            for from in &select.from {
                                for factor in factors(from) {
                                    names.extend(self.factor_columns(factor)?);
                                }
                            }
                        }
                        SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(name),
                            _,
                        ) => {
                            let qualifier = name.0.last()?.as_ident().map(fold)?;
                            let factor =
                                select.from.iter().flat_map(factors).find(|f| {
                                    range_name(f).as_deref() == Some(qualifier.as_str())
                                })?;
                            names.extend(self.factor_columns(factor)?);
                        }
                        _ => return None,
                    }
                }
                Some(names)
            }
            SetExpr::Query(inner) => self.outputs(inner),
            SetExpr::SetOperation { left, .. } => self.body_outputs(left),
            SetExpr::Values(values) => {
                let width = values.rows.first()?.content.len();
                Some((1..=width).map(|i| format!("column{i}")).collect())
            }
            _ => None,
        }
    }

    /// The columns a FROM item brings, where known.
    fn factor_columns(&self, factor: &TableFactor) -> Option<Vec<String>> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                if let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
                    return Some(alias.columns.iter().map(|c| fold(&c.name)).collect());
                }
                let written = name.0.last()?.as_ident().map(fold)?;
                match self.ctes.get(&written) {
                    Some(cte) => cte.clone(),
                    None => self.tables.get(written.as_str()).map(|c| c.to_vec()),
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => match alias.as_ref().map(|a| a.columns.as_slice()) {
                Some(columns) if !columns.is_empty() => {
                    Some(columns.iter().map(|c| fold(&c.name)).collect())
                }
                _ => self.outputs(subquery),
            },
            _ => None,
        }
    }
}

/// The names of the FROM items of one SELECT (its own level, not outer ones).
pub(super) fn local_names(select: &Select) -> Vec<String> {
    select
        .from
        .iter()
        .flat_map(factors)
        .filter_map(range_name)
        .collect()
}

/// A FROM clause's items, joins and nested joins flattened.
fn factors(from: &TableWithJoins) -> Vec<&TableFactor> {
    let mut out = Vec::new();
    for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation)) {
        match factor {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => out.extend(factors(table_with_joins)),
            other => out.push(other),
        }
    }
    out
}

/// The name the rest of the query uses for a FROM item.
fn range_name(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(alias) => Some(fold(&alias.name)),
            None => name.0.last()?.as_ident().map(fold),
        },
        TableFactor::Derived { alias, .. } | TableFactor::Function { alias, .. } => {
            alias.as_ref().map(|a| fold(&a.name))
        }
        _ => None,
    }
}

/// One pass over the query: the output names of every agent CTE, noted when its WITH is met
/// (before any reference to it, and in the order written, since a later one may read an
/// earlier one), and the kind of every FROM item's name.
struct Names<'b> {
    known: Known<'b>,
    ranges: Ranges,
}

impl Visitor for Names<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            let names = match cte.alias.columns.as_slice() {
                [] => self.known.outputs(&cte.query),
                columns => Some(columns.iter().map(|c| fold(&c.name)).collect()),
            };
            let name = fold(&cte.alias.name);
            // Two CTEs of one name (at different levels): only what both have.
            let merged = match self.known.ctes.remove(&name) {
                None => names,
                Some(Some(a)) => names.map(|b| a.into_iter().filter(|n| b.contains(n)).collect()),
                Some(None) => None,
            };
            self.known.ctes.insert(name, merged);
        }
        ControlFlow::Continue(())
    }

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
                let kind = match (args, self.known.ctes.get(&written)) {
                    // A name that is some agent CTE's is taken as that CTE (the safe side).
                    (None, Some(Some(names))) => Kind::Outputs(names.clone()),
                    (None, Some(None)) => Kind::Unknown,
                    (None, None) => Kind::Columns,
                    (Some(_), _) => Kind::Function,
                };
                let kind = match alias {
                    Some(a)
                        if !a.columns.is_empty()
                            && matches!(kind, Kind::Outputs(_) | Kind::Unknown) =>
                    {
                        Kind::Outputs(a.columns.iter().map(|c| fold(&c.name)).collect())
                    }
                    _ => kind,
                };
                let name = alias
                    .as_ref()
                    .map(|a| fold(&a.name))
                    .unwrap_or(written.clone());
                if kind == Kind::Columns {
                    let columns = self
                        .known
                        .tables
                        .get(written.as_str())
                        .map(|c| c.to_vec())
                        .unwrap_or_default();
                    let kept = match self.ranges.table_columns.remove(&name) {
                        Some(earlier) => columns
                            .into_iter()
                            .filter(|c| earlier.contains(c))
                            .collect(),
                        None => columns,
                    };
                    self.ranges.table_columns.insert(name.clone(), kept);
                }
                (name, kind)
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let Some(alias) = alias else {
                    return ControlFlow::Continue(());
                };
                let kind = match alias.columns.as_slice() {
                    [] => self
                        .known
                        .outputs(subquery)
                        .map_or(Kind::Unknown, Kind::Outputs),
                    columns => Kind::Outputs(columns.iter().map(|c| fold(&c.name)).collect()),
                };
                (fold(&alias.name), kind)
            }
            TableFactor::Function { alias, name, .. } => {
                let written = name.0.last().and_then(|p| p.as_ident()).map(fold);
                match alias.as_ref().map(|a| fold(&a.name)).or(written) {
                    Some(name) => (name, Kind::Function),
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
