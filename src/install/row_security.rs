//! The fence for policy tables whose source is a base table and whose rule is `rows`:
//! row-level security policies for a dedicated owner role, read through plain views it owns.
//!
//! Why not a `security_barrier` view, as for view sources: PostgreSQL plans such a view as a
//! separate subquery, so it cannot push a join key into it (no parameterized index scan) nor
//! let an outer `ORDER BY ... LIMIT` walk an index through it; BENCHMARKS.md measured 168x and
//! 41x the hand-written query for those two shapes at scale. A plain view is flattened into the
//! agent's query like the table itself, and the rule holds as a row-level security qual, which
//! PostgreSQL evaluates before every predicate of the query that is not leakproof (layer 5,
//! the same guarantee a `security_barrier` view gives) while still using it for index scans.
//!
//! Per such table T:
//! * the owner role `<serving role>_owner` (NOLOGIN, no attribute, member of nothing) may
//!   SELECT T and the relations the rules read, and owns `rowgate.T`, a plain view of T's
//!   shown columns, so T is read with the owner's rights and the owner's policies; the view's
//!   one filter is the caller gate, which also fails the query if T's fence was taken down;
//! * row-level security is enabled on T, with `rowgate_reads` (permissive, SELECT, TO owner,
//!   `true`) and `rowgate_rows` (restrictive, SELECT, TO owner, the rule): the owner
//!   sees exactly the rule's rows, whatever other policies T has;
//! * when install is what enabled row-level security on T, `rowgate_others` (permissive, ALL,
//!   TO PUBLIC, `true`) lets every other role see and write what it did before. Its presence
//!   records that install enabled it, so a table that leaves the policy gets it disabled again.
//!
//! Which base tables are fenced so ([`choose_fenced`]): a rule's subqueries read as the owner
//! role too, so a table the rule reads that has row-level security (another fenced table, the
//! rule's own, one with the operator's policies) is read through a whole view (`whole`), or
//! the rule would see only part of it (wider, not narrower, under `NOT IN`) or recurse. Tables
//! whose rule cannot read so (see `whole::unreadable`), tables named by two policy tables (one
//! `rowgate_rows` each), and tables whose row-level security is off but which hold policies of
//! the operator's (enabling it would make them live) keep a `security_barrier` view, as view
//! sources do; the report says why.

use super::*;

/// The restrictive policy holding the table's rule.
pub(super) const ROWS_POLICY: &str = "rowgate_rows";
/// The permissive policy that lets the owner role through to the restrictive one.
pub(super) const READS_POLICY: &str = "rowgate_reads";
/// The pass-through policy for every other role, on tables where install enabled RLS.
pub(super) const OTHERS_POLICY: &str = "rowgate_others";
pub(super) const POLICIES: [&str; 3] = [ROWS_POLICY, READS_POLICY, OTHERS_POLICY];

const ROWS_TEMPLATE: &str =
    "CREATE POLICY rowgate_rows ON t AS RESTRICTIVE FOR SELECT TO r USING (:Hole)";

/// The filter of a row-security view: the caller gate, by way of `rowgate.fenced_caller(t)`,
/// which also raises (42501) if `t`'s fence was taken down after install (row-level security
/// turned off to `COPY` into the table, say, or `rowgate_rows` dropped): without it the owner
/// role, and so the view, would read every row. The gate is in the view, not the policy, so
/// that it holds with the policy gone too. One InitPlan per reference (it reads no column).
const FENCED_GATE_TEMPLATE: &str =
    "(SELECT rowgate.fenced_caller(CAST(:Hole AS regclass))) IS NOT NULL";

/// The function an earlier install checked fences with; dropped once no view calls it.
pub(super) const OLD_FENCE_FUNCTION: &str = "rowgate.fence_down(regclass)";

/// The filter of `table`'s view: see [`FENCED_GATE_TEMPLATE`].
pub(super) fn fenced_gate(table: &QualifiedName, what: &str) -> Result<Expr, InstallError> {
    let mut gate = parse_expr(FENCED_GATE_TEMPLATE, what)?;
    let name = object_name(&[&table.schema, &table.name]).to_string();
    let literal = Expr::Value(Value::SingleQuotedString(name).into());
    fill(&mut gate, Filling::Expr(Box::new(literal)), what)?;
    Ok(gate)
}

/// The role that owns the row-security views: the serving role's name with this suffix.
pub const OWNER_SUFFIX: &str = "_owner";

/// The owner role of the views of serving role `agent_role`.
pub fn owner_role(agent_role: &str) -> String {
    format!("{agent_role}{OWNER_SUFFIX}")
}

/// A table's row-level security state, as install found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSecurity {
    /// `relrowsecurity`.
    pub enabled: bool,
    /// The names of every policy on the table, rowgate's and others.
    pub policies: BTreeSet<String>,
    /// Row-level security does not bind the installer here (a superuser or BYPASSRLS role, or
    /// the table's owner without `FORCE ROW LEVEL SECURITY`), so a view it owns reads the
    /// whole table.
    pub installer_reads_whole: bool,
}

impl TableSecurity {
    /// Install enabled row-level security here (it left its pass-through policy).
    fn enabled_by_install(&self) -> bool {
        self.enabled && self.policies.contains(OTHERS_POLICY)
    }

    fn has_foreign_policies(&self) -> bool {
        self.policies
            .iter()
            .any(|p| !POLICIES.contains(&p.as_str()))
    }
}

/// The state of every table that holds one of rowgate's policies, and of `sources`.
pub(super) async fn table_security(
    client: &Client,
    sources: &[&QualifiedName],
) -> Result<BTreeMap<QualifiedName, TableSecurity>, InstallError> {
    let schemas: Vec<&str> = sources.iter().map(|s| s.schema.as_str()).collect();
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let rows = client
        .query(
            "WITH wanted AS ( \
                 SELECT c.oid FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) \
                      AS s(schema, name) \
                   ON s.schema = n.nspname AND s.name = c.relname \
                 UNION \
                 SELECT polrelid FROM pg_catalog.pg_policy WHERE polname = ANY ($3)) \
             SELECT n.nspname::text, c.relname::text, c.relrowsecurity, \
                    ARRAY(SELECT polname::text FROM pg_catalog.pg_policy WHERE polrelid = c.oid), \
                    (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r \
                      WHERE r.rolname = current_user) \
                    OR (NOT c.relforcerowsecurity \
                        AND pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')) \
             FROM wanted w JOIN pg_catalog.pg_class c ON c.oid = w.oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p')",
            &[&schemas, &names, &POLICIES.to_vec()],
        )
        .await
        .map_err(db("reading the tables' row-level security"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let name = QualifiedName {
                schema: row.get(0),
                name: row.get(1),
            };
            let policies: Vec<String> = row.get(3);
            let state = TableSecurity {
                enabled: row.get(2),
                policies: policies.into_iter().collect(),
                installer_reads_whole: row.get(4),
            };
            (name, state)
        })
        .collect())
}

/// The relations `rule` reads, as install's `search_path` resolves them, outside the system
/// schemas (which PUBLIC reads anyway), by the name the rule gives each. Names that resolve to
/// nothing (a CTE of the rule) are left out: were one a missing table, creating the policy
/// fails and says so.
pub(super) async fn rule_relations(
    client: &Client,
    rule: &Expr,
) -> Result<BTreeMap<String, QualifiedName>, InstallError> {
    let mut names = BTreeSet::new();
    let _ = visit_relations(rule, |name| {
        names.insert(name.to_string());
        ControlFlow::<()>::Continue(())
    });
    let mut resolved = BTreeMap::new();
    for name in names {
        let row = client
            .query_opt(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = pg_catalog.to_regclass($1) \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                &[&name],
            )
            .await
            .map_err(db(format!("resolving relation {name} of a rule")))?;
        if let Some(row) = row {
            let relation = QualifiedName {
                schema: row.get(0),
                name: row.get(1),
            };
            resolved.insert(name, relation);
        }
    }
    Ok(resolved)
}

/// `x IN (SELECT e ...)` → `x = ANY (ARRAY(SELECT e ...))`, everywhere in the rule. The two
/// are equal for every row, NULLs included, but PostgreSQL keeps a row-security qual's
/// sublink as a per-row subplan, while the array form is computed once (an InitPlan) and is
/// an index condition: the difference between a sequential scan and an index scan for a
/// caller who sees few rows. Row-valued left sides and several-column subqueries stay as
/// they are, as do `NOT IN`s (no index would serve them).
pub(super) fn indexable(rule: Expr) -> Result<Expr, InstallError> {
    let mut rule = rule;
    let mut arrays = ToArrays { error: None };
    let _ = VisitMut::visit(&mut rule, &mut arrays);
    match arrays.error {
        Some(error) => Err(error),
        None => Ok(rule),
    }
}

/// A literal on the left of IN takes its type from the other side: compared with a subquery
/// of arrays it is an array, but with `ARRAY(SELECT arr)`, a two-dimensional array that `ANY`
/// walks element by element, it becomes one element (`'{paid}' IN (SELECT ARRAY[status])` is
/// true, its array form false: under NOT, a wider rule). No index serves a literal anyway.
fn untyped(left: &Expr) -> bool {
    match left {
        Expr::Nested(inner) => untyped(inner),
        Expr::Value(_) => true,
        _ => false,
    }
}

struct ToArrays {
    error: Option<InstallError>,
}

impl VisitorMut for ToArrays {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::InSubquery {
            expr: left,
            subquery,
            negated: false,
        } = &*expr
        else {
            return ControlFlow::Continue(());
        };
        if matches!(left.as_ref(), Expr::Tuple(_)) || untyped(left) || !single_column(subquery) {
            return ControlFlow::Continue(());
        }
        let what = "a rule's IN (subquery) as an array";
        let mut array = match parse_expr(ATTRIBUTE_ARRAY, what) {
            Ok(array) => array,
            Err(error) => {
                self.error = Some(error);
                return ControlFlow::Break(());
            }
        };
        if let Err(error) = fill(&mut array, Filling::Query(subquery.clone()), what) {
            self.error = Some(error);
            return ControlFlow::Break(());
        }
        *expr = Expr::AnyOp {
            left: left.clone(),
            compare_op: BinaryOperator::Eq,
            right: Box::new(array),
            is_some: false,
        };
        ControlFlow::Continue(())
    }
}

fn single_column(query: &Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => matches!(
            select.projection.as_slice(),
            [SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }]
        ),
        SetExpr::Query(inner) => single_column(inner),
        _ => false,
    }
}

/// `CREATE POLICY rowgate_rows ON <table> AS RESTRICTIVE FOR SELECT TO <owner> USING (<rule>)`.
pub(super) fn rows_policy_sql(
    table: &QualifiedName,
    owner: &str,
    rule: Expr,
    what: &str,
) -> Result<String, InstallError> {
    let mut statement = parse_statement(ROWS_TEMPLATE, what)?;
    let Statement::CreatePolicy(policy) = &mut statement else {
        return Err(template(what, "the policy template is not CREATE POLICY"));
    };
    policy.table_name = object_name(&[&table.schema, &table.name]);
    policy.to = Some(vec![Owner::Ident(ident(owner))]);
    fill(&mut statement, Filling::Expr(Box::new(rule)), what)?;
    printed(&statement, what)
}

/// The steps that fence `table` for `owner` with `rule` (made indexable).
pub(super) fn plan_table(
    steps: &mut Vec<Step>,
    table: &QualifiedName,
    state: Option<&TableSecurity>,
    owner: &str,
    rule: Expr,
) -> Result<(), InstallError> {
    let shown = object_name(&[&table.schema, &table.name]);
    let owner_ident = ident(owner);
    let enabled = state.is_some_and(|s| s.enabled);
    if !enabled {
        push(
            steps,
            format!("enabling row-level security on {shown}"),
            format!("ALTER TABLE {shown} ENABLE ROW LEVEL SECURITY"),
        );
    }
    if !enabled || state.is_some_and(TableSecurity::enabled_by_install) {
        let what = format!("keeping every other role's rows on {shown}");
        push(
            steps,
            &what,
            format!("DROP POLICY IF EXISTS {OTHERS_POLICY} ON {shown}"),
        );
        push(
            steps,
            what,
            format!(
                "CREATE POLICY {OTHERS_POLICY} ON {shown} AS PERMISSIVE FOR ALL TO PUBLIC \
                 USING (true) WITH CHECK (true)"
            ),
        );
    }
    let what = format!("creating policy {READS_POLICY} on {shown}");
    push(
        steps,
        &what,
        format!("DROP POLICY IF EXISTS {READS_POLICY} ON {shown}"),
    );
    push(
        steps,
        what,
        format!(
            "CREATE POLICY {READS_POLICY} ON {shown} AS PERMISSIVE FOR SELECT TO {owner_ident} \
             USING (true)"
        ),
    );
    let what = format!("creating policy {ROWS_POLICY} on {shown}");
    push(
        steps,
        &what,
        format!("DROP POLICY IF EXISTS {ROWS_POLICY} ON {shown}"),
    );
    let create = rows_policy_sql(table, owner, rule, &what)?;
    push(steps, what, create);
    Ok(())
}

/// The steps that take rowgate's policies off a table no longer fenced by them, and disable
/// row-level security again where install enabled it and no other policy relies on it.
pub(super) fn plan_leaving(steps: &mut Vec<Step>, table: &QualifiedName, state: &TableSecurity) {
    let shown = object_name(&[&table.schema, &table.name]);
    for policy in [ROWS_POLICY, READS_POLICY] {
        if state.policies.contains(policy) {
            push(
                steps,
                format!("dropping policy {policy} on {shown}"),
                // `whole::plan` dropped rowgate_rows already.
                format!("DROP POLICY IF EXISTS {policy} ON {shown}"),
            );
        }
    }
    let has_others = state.policies.contains(OTHERS_POLICY);
    if state.enabled_by_install() && !state.has_foreign_policies() {
        push(
            steps,
            format!("dropping policy {OTHERS_POLICY} on {shown}"),
            format!("DROP POLICY {OTHERS_POLICY} ON {shown}"),
        );
        push(
            steps,
            format!("disabling row-level security on {shown}"),
            format!("ALTER TABLE {shown} DISABLE ROW LEVEL SECURITY"),
        );
    } else if has_others && !state.enabled {
        // Someone turned row-level security off and wrote policies of their own: left here,
        // the pass-through would void their permissive ones the day they turn it back on.
        push(
            steps,
            format!("dropping policy {OTHERS_POLICY} on {shown}"),
            format!("DROP POLICY {OTHERS_POLICY} ON {shown}"),
        );
    }
}

/// The rule of policy table `name` as its row-security policy holds it: substituted and made
/// indexable (the caller gate is the view's). `None` for a table whose rule is not `rows`.
pub(super) fn row_security_rule(
    policy: &Policy,
    fragments: &Fragments<'_>,
    name: &str,
) -> Result<Option<Expr>, InstallError> {
    let Some(table) = policy.tables.get(name) else {
        return Ok(None);
    };
    let Rule::Rows(fragment) = &table.rule else {
        return Ok(None);
    };
    let rule = fragments.substitute_expr(&fragment.ast, &format!("table `{name}` rows"))?;
    Ok(Some(indexable(rule)?))
}

/// Narrows `catalog.row_security` (the candidates: `rows` rules over base tables) to the tables
/// that can be fenced by row-level security, records why the others cannot, and fills
/// `catalog.tables` and `catalog.rule_relations`. See the module doc.
pub(super) async fn choose_fenced(
    client: &Client,
    policy: &Policy,
    catalog: &mut Catalog,
) -> Result<(), InstallError> {
    let source = |name: &String| policy.tables.get(name).map(|t| &t.source);
    let mut by_source: BTreeMap<&QualifiedName, Vec<&String>> = BTreeMap::new();
    for name in &catalog.row_security {
        if let Some(source) = source(name) {
            by_source.entry(source).or_default().push(name);
        }
    }
    let sources: Vec<&QualifiedName> = by_source.keys().copied().collect();
    catalog.tables = table_security(client, &sources).await?;
    let fragments = Fragments::new(policy)?;
    let mut reasons = BTreeMap::new();
    let mut reads = BTreeMap::new();
    for name in &catalog.row_security {
        let Some(table) = source(name) else { continue };
        let sharing = &by_source[table];
        if sharing.len() > 1 {
            let others: Vec<String> = sharing.iter().map(|n| format!("`{n}`")).collect();
            reasons.insert(
                name.clone(),
                format!("{table} is the source of {}", others.join(" and ")),
            );
            continue;
        }
        if let Some(state) = catalog.tables.get(table) {
            if !state.enabled && state.has_foreign_policies() {
                reasons.insert(
                    name.clone(),
                    format!(
                        "{table} has row-level security off but policies of its own, which \
                         enabling it would make live"
                    ),
                );
                continue;
            }
        }
        if let Some(rule) = row_security_rule(policy, &fragments, name)? {
            if let Some(why) = whole::reads_only(&rule) {
                reasons.insert(name.clone(), why);
                continue;
            }
            let names = rule_relations(client, &rule).await?;
            reads.insert(name.clone(), (rule, names));
        }
    }
    // The rules' other tables: one with row-level security (a fenced table, the rule's own,
    // or the operator's) is read through a whole view, where the rule allows it.
    let read: Vec<&QualifiedName> = reads.values().flat_map(|(_, n)| n.values()).collect();
    let read_security = table_security(client, &read).await?;
    // Any row-level security: also where install enabled it on a table that leaves the policy
    // but keeps it for the operator's own policies, which would then bind the owner role.
    let must_be_whole = |r: &QualifiedName| {
        by_source.contains_key(r) || read_security.get(r).is_some_and(|s| s.enabled)
    };
    let mut whole = BTreeSet::new();
    for (name, (rule, names)) in &reads {
        let needed: BTreeSet<&QualifiedName> =
            names.values().filter(|r| must_be_whole(r)).collect();
        match needed
            .iter()
            .find_map(|r| whole::unreadable(r, read_security.get(*r), rule))
        {
            Some(why) => {
                reasons.insert(name.clone(), why);
            }
            None => whole.extend(needed.into_iter().cloned()),
        }
    }
    for (table, state) in read_security {
        catalog.tables.entry(table).or_insert(state);
    }
    catalog
        .row_security
        .retain(|name| !reasons.contains_key(name));
    let fenced_reads: Vec<_> = reads
        .into_iter()
        .filter(|(name, _)| catalog.row_security.contains(name))
        .flat_map(|(_, (_, names))| names)
        .collect();
    catalog.whole = fenced_reads
        .iter()
        .map(|(_, r)| r)
        .filter(|r| whole.contains(*r))
        .cloned()
        .collect();
    catalog.rule_relations = fenced_reads
        .iter()
        .map(|(_, r)| r)
        .filter(|r| !catalog.whole.contains(*r))
        .cloned()
        .collect();
    catalog.rule_names = fenced_reads.into_iter().collect();
    catalog.barrier_reasons = reasons;
    Ok(())
}
