//! Stage 3, resolve: decide what every name in the query refers to, as PostgreSQL would.
//!
//! Table names are looked up through the query's scopes: an agent CTE shadows a table only
//! inside its own query (a non-recursive CTE's body sees earlier siblings, a recursive one
//! sees its whole list), then policy tables, and anything else is refused. Column qualifiers
//! are resolved to FROM items so that hidden columns are refused with a useful message and
//! `public.invoices.amount` can be re-qualified once the table becomes a CTE.
//!
//! Like the guard, this is a sqlparser `Visitor`, so it reaches every subquery in every clause.
//! As a last line, every table factor the visitor meets must have been resolved by the FROM
//! clause that owns it; one that was not is refused rather than passed through.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArguments, Ident, ObjectName, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins, Visit, Visitor,
};

use crate::policy::Policy;
use crate::refusal::{ErrorCode, Refusal};
use crate::sql::{fold, fold_name};

/// Where a name starts in the agent's SQL: unique per token, so it identifies one reference.
pub type Position = (u64, u64);

fn position(ident: &Ident) -> Position {
    (ident.span.start.line, ident.span.start.column)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("table `{written}` is not available")]
    TableNotAllowed { written: String, available: String },
    #[error("column `{column}` of table `{table}` is not available")]
    ColumnNotAllowed {
        column: String,
        table: String,
        available: String,
        /// Columns of the same table whose names hold this one or are held by it.
        near: Vec<String>,
        /// Other policy tables that have a column of this name.
        elsewhere: Vec<String>,
    },
    #[error("`{item}.{column}`: `{column}` is not a known column of the function `{item}` (PostgreSQL would call a function `{column}` on it)")]
    FunctionColumn {
        column: String,
        item: String,
        available: String,
    },
    #[error("{what} is not supported")]
    Unsupported { what: String },
}

impl Refusal for ResolveError {
    fn code(&self) -> ErrorCode {
        match self {
            ResolveError::TableNotAllowed { .. } => ErrorCode::TableNotAllowed,
            ResolveError::ColumnNotAllowed { .. } | ResolveError::FunctionColumn { .. } => {
                ErrorCode::ColumnNotAllowed
            }
            ResolveError::Unsupported { .. } => ErrorCode::StatementNotAllowed,
        }
    }

    fn hint(&self) -> String {
        match self {
            ResolveError::TableNotAllowed { available, .. } if available.is_empty() => {
                "No tables are available to this caller.".into()
            }
            ResolveError::TableNotAllowed { available, .. } => {
                format!("Query only these tables: {available}.")
            }
            ResolveError::ColumnNotAllowed {
                column,
                table,
                available,
                near,
                elsewhere,
            } => {
                let mut hint = format!("Use only these columns of {table}: {available}.");
                if !near.is_empty() {
                    hint.push_str(&format!(" Did you mean {}?", near.join(" or ")));
                }
                if !elsewhere.is_empty() {
                    hint.push_str(&format!(
                        " `{column}` is a column of {}: join that table and write its alias before the column.",
                        elsewhere.join(", ")
                    ));
                }
                hint
            }
            ResolveError::FunctionColumn { item, available, .. } if available.is_empty() => format!(
                "Name the function's columns and use those: FROM f(...) AS {item}(col1, col2), then {item}.col1."
            ),
            ResolveError::FunctionColumn { item, available, .. } => format!(
                "Use the columns of {item} ({available}), or name them: FROM f(...) AS {item}(col1, ...)."
            ),
            ResolveError::Unsupported { .. } => {
                "Rewrite the query with plain FROM items: tables, subqueries, or allowed set-returning functions.".into()
            }
        }
    }
}

/// The columns whose names, without underscores, hold `column`'s or are held by it: `name`
/// for `player_name`, `customerid` for `customer_id` (only that when one is the same name
/// without underscores). Names under three letters match nothing.
fn near_names(column: &str, columns: &[String]) -> Vec<String> {
    let bare = |s: &str| s.replace('_', "");
    let wanted = bare(column);
    if wanted.len() < 3 {
        return Vec::new();
    }
    let exact: Vec<String> = columns
        .iter()
        .filter(|c| bare(c) == wanted)
        .cloned()
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    columns
        .iter()
        .filter(|c| {
            let have = bare(c);
            have.len() >= 3 && (have.contains(&wanted) || wanted.contains(&have))
        })
        .cloned()
        .collect()
}

/// A reference to a policy table found in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub table: String,
    pub at: Position,
    /// The name as written, e.g. `public.invoices`.
    pub written: String,
    /// Whether the agent gave it an alias; if not, the rewrite adds the table's own name.
    pub has_alias: bool,
}

/// What resolve found: the inputs of the rewrite plan.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Policy-table references, in the order they appear in the query.
    pub references: Vec<TableRef>,
    /// Names of the agent's own CTEs (folded).
    pub agent_ctes: BTreeSet<String>,
    /// Every identifier in the query (folded): names the rewrite must not reuse.
    pub names_in_use: HashSet<String>,
    /// Column references and wildcards written `schema.table.x` whose `schema.` must go.
    pub requalify: HashSet<Position>,
}

pub fn resolve(query: &Query, policy: &Policy) -> Result<Resolution, ResolveError> {
    let mut resolver = Resolver {
        policy,
        stack: Vec::new(),
        out: Resolution::default(),
        resolved: HashSet::new(),
        argument_names: HashSet::new(),
    };
    match query.visit(&mut resolver) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(resolver.out),
    }
}

/// What a FROM item stands for, under the name the rest of the query uses for it.
#[derive(Debug, Clone)]
struct Binding {
    name: String,
    kind: BindingKind,
}

#[derive(Debug, Clone)]
enum BindingKind {
    /// A policy table; `qualified` is its `schema.table` spelling when written without alias.
    Policy {
        table: String,
        qualified: Option<(String, String)>,
    },
    /// A function in FROM, with the names `alias.name` may use. PostgreSQL reads `alias.f`,
    /// when the function returns a scalar and has no column `f`, as the call `f(alias)`: any
    /// one-argument function, past the allowlist. So only the function's known columns pass.
    Function { columns: Vec<String> },
    /// An agent CTE or a subquery: its columns are the agent's own business. (`x.f` there is a
    /// call `f(x)` only for functions of a whole record, which read nothing else.)
    Other,
}

/// The output columns of the allowlisted set-returning functions that name their columns
/// themselves; the others return one column named after the FROM item.
fn function_columns(function: &str) -> Option<&'static [&'static str]> {
    match function {
        "json_each" | "jsonb_each" | "json_each_text" | "jsonb_each_text" => {
            Some(&["key", "value"])
        }
        "json_array_elements"
        | "jsonb_array_elements"
        | "json_array_elements_text"
        | "jsonb_array_elements_text" => Some(&["value"]),
        "generate_series"
        | "generate_subscripts"
        | "unnest"
        | "regexp_split_to_table"
        | "regexp_matches"
        | "json_object_keys"
        | "jsonb_object_keys"
        | "jsonb_path_query" => Some(&[]),
        _ => None,
    }
}

/// The names `alias.name` may use for a FROM function: the column list when one is written;
/// otherwise the known columns of the function (and `ordinality`); nothing for a function whose
/// columns rowgate does not know.
fn function_binding(
    function: Option<&str>,
    name: &str,
    alias: Option<&sqlparser::ast::TableAlias>,
    with_ordinality: bool,
) -> BindingKind {
    let listed: Vec<String> = alias
        .map(|a| a.columns.iter().map(|c| fold(&c.name)).collect())
        .unwrap_or_default();
    if !listed.is_empty() {
        return BindingKind::Function { columns: listed };
    }
    let mut columns: Vec<String> = match function.and_then(function_columns) {
        Some([]) => vec![name.to_string()],
        Some(named) => named.iter().map(|c| c.to_string()).collect(),
        None => Vec::new(),
    };
    if with_ordinality {
        columns.push("ordinality".to_string());
    }
    BindingKind::Function { columns }
}

struct QueryFrame {
    /// The query's CTE names and a pointer to each body, to know which body is being visited.
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    /// How many of `ctes` are visible right now.
    visible: usize,
    body: *const Select,
}

struct SelectScope {
    bindings: Vec<Binding>,
    /// Output names of the select list (ORDER BY and GROUP BY may use them).
    aliases: HashSet<String>,
    select: *const Select,
}

enum Frame {
    Query(QueryFrame),
    Select(SelectScope),
}

struct Resolver<'p> {
    policy: &'p Policy,
    stack: Vec<Frame>,
    out: Resolution,
    /// Positions of table factors resolved by their FROM clause.
    resolved: HashSet<Position>,
    /// Positions of argument names (`days` in `make_interval(days => 1)`): not columns.
    argument_names: HashSet<Position>,
}

type Flow = ControlFlow<ResolveError>;

impl Resolver<'_> {
    fn table_not_allowed(&self, written: String) -> ResolveError {
        ResolveError::TableNotAllowed {
            written,
            available: self.policy.table_list(),
        }
    }

    /// Is `name` an agent CTE visible from here?
    fn cte_visible(&self, name: &str) -> bool {
        self.stack.iter().rev().any(|frame| match frame {
            Frame::Query(q) => q.ctes[..q.visible].iter().any(|(n, _)| n == name),
            Frame::Select(_) => false,
        })
    }

    fn bind_from(&mut self, from: &TableWithJoins, bindings: &mut Vec<Binding>) -> Flow {
        self.bind_factor(&from.relation, bindings)?;
        for join in &from.joins {
            self.bind_factor(&join.relation, bindings)?;
        }
        ControlFlow::Continue(())
    }

    fn bind_factor(&mut self, factor: &TableFactor, bindings: &mut Vec<Binding>) -> Flow {
        let (alias, kind) = match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let kind = self.bind_table(name, alias.is_some())?;
                let own_name = fold_name(name)
                    .and_then(|p| p.last().cloned())
                    .unwrap_or_default();
                (
                    alias.as_ref().map(|a| fold(&a.name)).unwrap_or(own_name),
                    kind,
                )
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    // PostgreSQL hides the inner names behind the alias; we keep it simple.
                    return ControlFlow::Break(ResolveError::Unsupported {
                        what: "an alias on a parenthesized join".into(),
                    });
                }
                return self.bind_from(table_with_joins, bindings);
            }
            TableFactor::Table {
                name,
                alias,
                with_ordinality,
                ..
            }
            | TableFactor::Function {
                name,
                alias,
                with_ordinality,
                ..
            } => {
                let function = fold_name(name)
                    .filter(|p| p.len() == 1 || p.first().is_some_and(|s| s == "pg_catalog"));
                let function = function.as_ref().and_then(|p| p.last()).map(String::as_str);
                let own = fold_name(name)
                    .and_then(|p| p.last().cloned())
                    .unwrap_or_default();
                let bound = alias.as_ref().map(|a| fold(&a.name)).unwrap_or(own);
                let kind = function_binding(function, &bound, alias.as_ref(), *with_ordinality);
                (bound, kind)
            }
            TableFactor::UNNEST {
                alias,
                with_ordinality,
                ..
            } => {
                let bound = alias
                    .as_ref()
                    .map(|a| fold(&a.name))
                    .unwrap_or_else(|| "unnest".into());
                let kind =
                    function_binding(Some("unnest"), &bound, alias.as_ref(), *with_ordinality);
                (bound, kind)
            }
            TableFactor::Derived { alias, .. } => (
                alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default(),
                BindingKind::Other,
            ),
            _ => {
                return ControlFlow::Break(ResolveError::Unsupported {
                    what: "that kind of FROM item".into(),
                })
            }
        };
        bindings.push(Binding { name: alias, kind });
        ControlFlow::Continue(())
    }

    fn bind_table(
        &mut self,
        name: &ObjectName,
        has_alias: bool,
    ) -> ControlFlow<ResolveError, BindingKind> {
        let written = name.to_string();
        let Some(parts) = fold_name(name) else {
            return ControlFlow::Break(self.table_not_allowed(written));
        };
        let Some(first) = name.0.first().and_then(|p| p.as_ident()) else {
            return ControlFlow::Break(self.table_not_allowed(written));
        };
        let at = position(first);
        if at == (0, 0) {
            // Positions identify references for the rewrite; a name without one (sqlparser
            // makes a few up) cannot be tracked, so it is not accepted.
            return ControlFlow::Break(ResolveError::Unsupported {
                what: format!("the table reference `{written}` in that form"),
            });
        }
        self.resolved.insert(at);
        let (table, qualified) = match parts.as_slice() {
            [table] if self.cte_visible(table) => return ControlFlow::Continue(BindingKind::Other),
            [table] => (table.clone(), None),
            [schema, table] => (table.clone(), Some((schema.clone(), table.clone()))),
            _ => return ControlFlow::Break(self.table_not_allowed(written)),
        };
        let Some(policy) = self.policy.table(&table) else {
            return ControlFlow::Break(self.table_not_allowed(written));
        };
        if let Some((schema, _)) = &qualified {
            if *schema != policy.source.schema {
                return ControlFlow::Break(self.table_not_allowed(written));
            }
        }
        self.out.references.push(TableRef {
            table: table.clone(),
            at,
            written,
            has_alias,
        });
        // Without an alias, PostgreSQL matches `schema.table.column` against the relation the
        // name resolved to, however the FROM item was written (`FROM invoices` and
        // `public.invoices.amount` go together).
        let qualified = if has_alias {
            None
        } else {
            Some((policy.source.schema.clone(), table.clone()))
        };
        ControlFlow::Continue(BindingKind::Policy { table, qualified })
    }

    /// Remembers where argument names stand, so that they are not taken for columns.
    fn note_argument_names(&mut self, args: &[FunctionArg]) {
        for arg in args {
            if let FunctionArg::ExprNamed {
                name: Expr::Identifier(ident),
                ..
            } = arg
            {
                self.argument_names.insert(position(ident));
            }
        }
    }

    /// The binding a qualifier names, innermost scope first (correlated subqueries see out).
    fn binding(&self, qualifier: &[String]) -> Option<&Binding> {
        self.scopes()
            .flat_map(|s| s.bindings.iter())
            .find(|b| match (qualifier, &b.kind) {
                ([name], _) => b.name == *name,
                (
                    [schema, table],
                    BindingKind::Policy {
                        qualified: Some((s, t)),
                        ..
                    },
                ) => s == schema && t == table,
                _ => false,
            })
    }

    fn scopes(&self) -> impl Iterator<Item = &SelectScope> {
        self.stack.iter().rev().filter_map(|frame| match frame {
            Frame::Select(scope) => Some(scope),
            Frame::Query(_) => None,
        })
    }

    fn check_column(&self, table: &str, column: &str) -> Flow {
        match self.policy.table(table) {
            Some(policy) if !policy.allows_column(column) => {
                let columns = policy.columns.as_deref().unwrap_or_default();
                ControlFlow::Break(ResolveError::ColumnNotAllowed {
                    column: column.to_string(),
                    table: table.to_string(),
                    available: columns.join(", "),
                    near: near_names(column, columns),
                    elsewhere: self
                        .policy
                        .tables
                        .iter()
                        .filter(|(name, t)| *name != table && t.allows_column(column))
                        .filter(|(_, t)| t.columns.is_some())
                        .map(|(name, _)| name.clone())
                        .collect(),
                })
            }
            _ => ControlFlow::Continue(()),
        }
    }

    /// `x.col`, `schema.x.col`: check the column, and note the schema part for removal.
    fn qualified_column(&mut self, idents: &[Ident], wildcard: bool) -> Flow {
        let parts: Vec<String> = idents.iter().map(fold).collect();
        let (qualifier, column) = if wildcard {
            (&parts[..], None)
        } else {
            match parts.split_last() {
                Some((column, qualifier)) => (qualifier, Some(column)),
                None => return ControlFlow::Continue(()),
            }
        };
        let Some(binding) = self.binding(qualifier) else {
            return ControlFlow::Continue(());
        };
        if let (BindingKind::Function { columns }, Some(column)) = (&binding.kind, column) {
            if !columns.contains(column) {
                return ControlFlow::Break(ResolveError::FunctionColumn {
                    column: column.clone(),
                    item: binding.name.clone(),
                    available: columns.join(", "),
                });
            }
        }
        if let BindingKind::Policy { table, .. } = &binding.kind {
            if let Some(column) = column {
                self.check_column(table, column)?;
            }
            if qualifier.len() == 2 {
                if let Some(first) = idents.first() {
                    self.out.requalify.insert(position(first));
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// An unqualified column: refused only when every FROM item in reach is a policy table with
    /// a known column list and none of them (nor an output alias, nor a FROM item's name) has it.
    fn bare_column(&self, column: &str) -> Flow {
        let mut hidden_in = None;
        for scope in self.scopes() {
            if scope.aliases.contains(column) {
                return ControlFlow::Continue(());
            }
            // No column of that name: PostgreSQL takes the name of a FROM item as a whole-row
            // reference (`row_to_json(c)`), which carries the permission CTE's columns only.
            if scope.bindings.iter().any(|b| b.name == column) {
                return ControlFlow::Continue(());
            }
            for binding in &scope.bindings {
                let BindingKind::Policy { table, .. } = &binding.kind else {
                    return ControlFlow::Continue(());
                };
                match self.policy.table(table) {
                    Some(p) if p.columns.is_some() => {
                        if p.allows_column(column) {
                            return ControlFlow::Continue(());
                        }
                        hidden_in.get_or_insert(table.as_str());
                    }
                    _ => return ControlFlow::Continue(()),
                }
            }
        }
        match hidden_in {
            Some(table) => self.check_column(table, column),
            None => ControlFlow::Continue(()),
        }
    }
}

impl Visitor for Resolver<'_> {
    type Break = ResolveError;

    fn pre_visit_query(&mut self, query: &Query) -> Flow {
        // Entering a CTE body of the enclosing query: only some of its siblings are visible.
        if let Some(Frame::Query(parent)) = self.stack.last_mut() {
            if let Some(index) = parent
                .ctes
                .iter()
                .position(|(_, body)| std::ptr::eq(*body, query))
            {
                parent.visible = if parent.recursive {
                    parent.ctes.len()
                } else {
                    index
                };
            }
        }
        let (ctes, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| (fold(&cte.alias.name), &*cte.query as *const Query))
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), false),
        };
        for (name, _) in &ctes {
            self.out.agent_ctes.insert(name.clone());
        }
        let body = match &*query.body {
            SetExpr::Select(select) => &**select as *const Select,
            _ => std::ptr::null(),
        };
        self.stack.push(Frame::Query(QueryFrame {
            ctes,
            recursive,
            visible: 0,
            body,
        }));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> Flow {
        // Drop the body's select scope, kept alive for ORDER BY, then this query's frame.
        if let Some(Frame::Select(_)) = self.stack.last() {
            self.stack.pop();
        }
        self.stack.pop();
        if let Some(Frame::Query(parent)) = self.stack.last_mut() {
            if parent
                .ctes
                .iter()
                .any(|(_, body)| std::ptr::eq(*body, query))
            {
                parent.visible = parent.ctes.len();
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> Flow {
        let mut bindings = Vec::new();
        for from in &select.from {
            self.bind_from(from, &mut bindings)?;
        }
        let aliases = select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(fold(alias)),
                _ => None,
            })
            .collect();
        self.stack.push(Frame::Select(SelectScope {
            bindings,
            aliases,
            select,
        }));
        for item in &select.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) = item
            {
                let idents: Vec<Ident> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().cloned())
                    .collect();
                self.qualified_column(&idents, true)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &Select) -> Flow {
        let keep_for_order_by =
            self.stack.iter().rev().nth(1).is_some_and(
                |frame| matches!(frame, Frame::Query(q) if std::ptr::eq(q.body, select)),
            );
        let is_top =
            matches!(self.stack.last(), Some(Frame::Select(s)) if std::ptr::eq(s.select, select));
        if is_top && !keep_for_order_by {
            self.stack.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> Flow {
        match factor {
            TableFactor::Table {
                args: Some(args), ..
            } => self.note_argument_names(&args.args),
            TableFactor::Function { args, .. } => self.note_argument_names(args),
            _ => {}
        }
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let at = name.0.first().and_then(|p| p.as_ident()).map(position);
            if !at.is_some_and(|at| self.resolved.contains(&at)) {
                return ControlFlow::Break(ResolveError::Unsupported {
                    what: format!("the table reference `{name}` in that position"),
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> Flow {
        match expr {
            Expr::CompoundIdentifier(idents) => self.qualified_column(idents, false),
            Expr::Identifier(ident) if self.argument_names.contains(&position(ident)) => {
                ControlFlow::Continue(())
            }
            Expr::Identifier(ident) => self.bare_column(&fold(ident)),
            Expr::Function(function) => {
                if let FunctionArguments::List(list) = &function.args {
                    self.note_argument_names(&list.args);
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_ident(&mut self, ident: &Ident) -> Flow {
        self.out.names_in_use.insert(fold(ident));
        ControlFlow::Continue(())
    }
}

/// Positions of every policy reference, for the rewrite's lookups.
pub fn reference_index(resolution: &Resolution) -> HashMap<Position, &TableRef> {
    resolution.references.iter().map(|r| (r.at, r)).collect()
}
