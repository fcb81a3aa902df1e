//! Stage 4, rewrite: turn a resolved query into one that reads permission CTEs only.
//!
//! First a [`Plan`] is computed (which references become which CTE, which CTEs read which
//! permission view with which columns): it is a plain value, and it is what a dry run reports.
//! Then the plan is applied to the tree and the tree is printed. Nothing is spliced as text:
//! every name that goes in is an `Ident` that PostgreSQL reads back as the same name. Applying
//! also wraps the agent's InitPlan-prone subqueries (see `subqueries`, layer 5).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    Cte, CteAsMaterialized, Expr, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor,
    TableWithJoins, VisitMut, VisitorMut, WildcardAdditionalOptions, With,
};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan};

mod constants;
mod grouping;
mod subqueries;

use crate::guard::MAX_NAME_BYTES;
use crate::policy::{Grouping, Policy};
use crate::resolve::{Position, Resolution};
use crate::sql::{ident, object_name};

/// The schema holding one permission view per policy table (created by `rowgate install`).
pub const VIEW_SCHEMA: &str = "rowgate";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// One per policy table the query reads, in order of first reference in the text.
    pub ctes: Vec<PermissionCte>,
    /// Every reference to a policy table, in the order of the text.
    pub references: Vec<PlannedReference>,
    /// The agent's own CTE names: left as they are.
    pub agent_ctes: Vec<String>,
    #[serde(skip)]
    requalify: HashSet<Position>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCte {
    pub table: String,
    /// The CTE's name in the rewritten query; never one of the agent's names.
    pub name: String,
    /// The permission view it reads, `rowgate.<table>`.
    pub view: String,
    /// The columns it selects, in table order; `None` when the policy lists none, in which case
    /// the view's own column list (the allowed columns) is used.
    pub columns: Option<Vec<String>>,
    #[serde(skip)]
    grouping: Option<Grouping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedReference {
    pub table: String,
    pub written: String,
    pub line: u64,
    pub column: u64,
    pub cte: String,
    #[serde(skip)]
    at: Position,
    #[serde(skip)]
    has_alias: bool,
}

impl Plan {
    pub fn new(resolution: Resolution, policy: &Policy) -> Plan {
        let mut ctes: Vec<PermissionCte> = Vec::new();
        let mut taken = resolution.names_in_use;
        taken.extend(resolution.agent_ctes.iter().cloned());
        let mut references = Vec::new();
        // Resolve meets a query's FROM before the subqueries of its select list; the plan (and
        // so the dry run and the order of the permission CTEs) follows the text instead.
        let mut found = resolution.references;
        found.sort_by_key(|r| r.at);
        for reference in found {
            let cte = match ctes.iter().find(|c| c.table == reference.table) {
                Some(cte) => cte.name.clone(),
                None => {
                    let name = unused_name(&format!("rg_{}", reference.table), &mut taken);
                    let table = policy.table(&reference.table);
                    ctes.push(PermissionCte {
                        table: reference.table.clone(),
                        name: name.clone(),
                        view: format!("{VIEW_SCHEMA}.{}", ident(&reference.table)),
                        columns: table.and_then(|t| t.columns.clone()),
                        grouping: table.and_then(|t| t.grouping.clone()),
                    });
                    name
                }
            };
            references.push(PlannedReference {
                table: reference.table,
                written: reference.written,
                line: reference.at.0,
                column: reference.at.1,
                cte,
                at: reference.at,
                has_alias: reference.has_alias,
            });
        }
        Plan {
            ctes,
            references,
            agent_ctes: resolution.agent_ctes.into_iter().collect(),
            requalify: resolution.requalify,
        }
    }

    /// Rewrites `query` in place according to the plan.
    pub fn apply(&self, query: &mut Query) {
        // First, while table names still carry the agent's positions; only when the catalog
        // gave some table a usable key (never offline).
        if self.ctes.iter().any(|c| c.grouping.is_some()) {
            grouping::complete(query, &self.keyed());
        }
        subqueries::fence(query);
        let tables: constants::Tables = self
            .ctes
            .iter()
            .filter_map(|c| Some((c.table.as_str(), c.columns.as_deref()?)))
            .collect();
        constants::fence_with(query, &tables);
        let by_position: HashMap<Position, &PlannedReference> =
            self.references.iter().map(|r| (r.at, r)).collect();
        let mut applier = Applier {
            references: by_position,
            requalify: &self.requalify,
        };
        let _ = query.visit(&mut applier);
        if self.ctes.is_empty() {
            return;
        }
        let permission_ctes = self.ctes.iter().map(permission_cte);
        match &mut query.with {
            Some(with) => {
                let agent = std::mem::take(&mut with.cte_tables);
                with.cte_tables = permission_ctes.chain(agent).collect();
            }
            None => {
                query.with = Some(With {
                    with_token: token(),
                    recursive: false,
                    cte_tables: permission_ctes.collect(),
                })
            }
        }
    }

    fn keyed(&self) -> HashMap<Position, grouping::Keyed<'_>> {
        self.references
            .iter()
            .filter_map(|r| {
                let cte = self.ctes.iter().find(|c| c.table == r.table)?;
                let keyed = grouping::Keyed {
                    table: &r.table,
                    columns: cte.columns.as_deref().unwrap_or_default(),
                    grouping: cte.grouping.as_ref(),
                };
                Some((r.at, keyed))
            })
            .collect()
    }
}

/// `base`, or `base_1`, `base_2`, ... whichever is free. PostgreSQL keeps 63 bytes of a name and
/// cuts the rest, so a suffix goes in place of `base`'s last bytes rather than past them: cut,
/// `rg_<table>_1` would be `rg_<table>` again, a name the agent's query may have taken.
fn unused_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 1;
    while taken.contains(&name) {
        let suffix = format!("_{n}");
        let mut keep = base.len().min(MAX_NAME_BYTES.saturating_sub(suffix.len()));
        while !base.is_char_boundary(keep) {
            keep -= 1;
        }
        name = format!("{}{suffix}", &base[..keep]);
        n += 1;
    }
    taken.insert(name.clone());
    name
}

fn token() -> sqlparser::ast::helpers::attached_token::AttachedToken {
    sqlparser::ast::helpers::attached_token::AttachedToken(TokenWithSpan::new(
        Token::EOF,
        Span::empty(),
    ))
}

/// `name AS NOT MATERIALIZED (SELECT cols FROM rowgate.table)`: NOT MATERIALIZED so that a
/// table referenced twice (a self-join) is still inlined and its indexes used.
fn permission_cte(cte: &PermissionCte) -> Cte {
    let projection = match &cte.columns {
        Some(columns) => columns
            .iter()
            .map(|c| SelectItem::UnnamedExpr(Expr::Identifier(ident(c))))
            .collect(),
        None => vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())],
    };
    let from = vec![TableWithJoins {
        relation: TableFactor::Table {
            name: object_name(&[VIEW_SCHEMA, &cte.table]),
            alias: None,
            args: None,
            with_hints: vec![],
            version: None,
            with_ordinality: false,
            partitions: vec![],
            json_path: None,
            sample: None,
            index_hints: vec![],
        },
        joins: vec![],
    }];
    Cte {
        alias: TableAlias {
            explicit: false,
            name: ident(&cte.name),
            columns: vec![],
            at: None,
        },
        query: Box::new(select_query(projection, from)),
        from: None,
        materialized: Some(CteAsMaterialized::NotMaterialized),
        closing_paren_token: token(),
    }
}

/// `SELECT <projection> FROM <from>`, with no position in the agent's text (an empty span,
/// which tells later passes that rowgate wrote it).
fn select_query(projection: Vec<SelectItem>, from: Vec<TableWithJoins>) -> Query {
    let select = Select {
        select_token: token(),
        optimizer_hints: vec![],
        distinct: None,
        select_modifiers: None,
        top: None,
        top_before_distinct: false,
        projection,
        exclude: None,
        into: None,
        from,
        lateral_views: vec![],
        prewhere: None,
        selection: None,
        connect_by: vec![],
        group_by: GroupByExpr::Expressions(vec![], vec![]),
        cluster_by: vec![],
        distribute_by: vec![],
        sort_by: vec![],
        having: None,
        named_window: vec![],
        qualify: None,
        window_before_qualify: false,
        value_table_mode: None,
        flavor: SelectFlavor::Standard,
    };
    Query {
        with: None,
        body: Box::new(SetExpr::Select(Box::new(select))),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

struct Applier<'a> {
    references: HashMap<Position, &'a PlannedReference>,
    requalify: &'a HashSet<Position>,
}

fn first_position(name: &ObjectName) -> Option<Position> {
    name.0
        .first()
        .and_then(|p| p.as_ident())
        .map(|i| (i.span.start.line, i.span.start.column))
}

impl Applier<'_> {
    fn requalifies(&self, first: Option<&Ident>) -> bool {
        first.is_some_and(|i| {
            self.requalify
                .contains(&(i.span.start.line, i.span.start.column))
        })
    }
}

impl VisitorMut for Applier<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        {
            if let Some(reference) = first_position(name).and_then(|p| self.references.get(&p)) {
                *name = ObjectName(vec![ObjectNamePart::Identifier(ident(&reference.cte))]);
                if !reference.has_alias {
                    // Keeps `invoices.amount` (and, re-qualified, `public.invoices.amount`) valid.
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: ident(&reference.table),
                        columns: vec![],
                        at: None,
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(idents) = expr {
            if self.requalifies(idents.first()) {
                idents.remove(0);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) = item
            {
                if self.requalifies(name.0.first().and_then(|p| p.as_ident())) {
                    name.0.remove(0);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// For the passes' unit tests: `sql`, parsed, passed through `pass`, printed back.
#[cfg(test)]
fn after_pass(sql: &str, pass: fn(&mut Query)) -> String {
    let mut statements =
        sqlparser::parser::Parser::parse_sql(&crate::sql::DIALECT, sql).expect("test SQL parses");
    let Some(sqlparser::ast::Statement::Query(query)) = statements.first_mut() else {
        panic!("not a query: {sql}")
    };
    pass(query);
    query.to_string()
}
