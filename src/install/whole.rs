//! Whole-table views for the row-security rules.
//!
//! A `rowgate_rows` policy's subqueries run as the owner role, so a table the rule reads that
//! has row-level security would be read through that table's policies: for another fenced
//! table only the caller's part of it (under `NOT IN`, a wider rule, not a narrower one), for
//! the rule's own table a recursion, for a table with the operator's own policies whatever
//! those give the owner role. The rule reads such a table as `rowgate_private."<schema>.<table>"`
//! instead: a plain view of the whole table, owned by the installer (a superuser or the
//! table's owner, whom row-level security does not bind), that only the owner role may read.
//! Without these, such tables would need `security_barrier` views, which PostgreSQL cannot
//! flatten into the agent's query (BENCHMARKS.md: Q21, Q22).

use sqlparser::ast::{Ident, ObjectNamePart, TableAlias};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::*;

/// The longest name PostgreSQL keeps whole; longer ones it truncates.
const MAX_NAME: usize = 63;

/// The whole view's name in schema `rowgate_private`: the table's name as SQL writes it
/// (`public.orders`; `"a.b".c` and `a."b.c"` stay two names).
pub(super) fn view_name(table: &QualifiedName) -> String {
    object_name(&[&table.schema, &table.name]).to_string()
}

/// Why `table` cannot be read through a whole view, if it cannot.
pub(super) fn unreadable(
    table: &QualifiedName,
    state: Option<&TableSecurity>,
    rule: &Expr,
) -> Option<String> {
    if !state.is_some_and(|s| s.installer_reads_whole) {
        // The view reads with its owner's rights: bound by the table's policies, it would
        // give the rule only some rows (a wider rule, under `NOT IN`).
        return Some(format!(
            "its rule reads {table}, which must be read whole, and row-level security binds \
             the installing role there (FORCE ROW LEVEL SECURITY, or not its owner); install \
             as a superuser or as the table's owner without FORCE"
        ));
    }
    if has_with(rule) {
        // A CTE of the rule could share a table's name; renaming its references could widen
        // the rule to the whole table.
        return Some(format!(
            "its rule reads {table}, which must be read whole, from inside a WITH clause, \
             where rowgate does not rename relations"
        ));
    }
    if let Some(reference) = unsafe_to_rename(rule) {
        return Some(format!(
            "its rule reads {table}, which must be read whole, and refers to `{reference}`, \
             which would not name the same thing once {table} is read through a view; \
             write the column as `alias.column` with an alias in FROM"
        ));
    }
    if view_name(table).len() > MAX_NAME {
        return Some(format!(
            "its rule reads {table}, which must be read whole, and that name is too long \
             for the whole view's (`<schema>.<table>`, at most {MAX_NAME} bytes)"
        ));
    }
    None
}

fn has_with(rule: &Expr) -> bool {
    struct FindWith;
    impl Visitor for FindWith {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if query.with.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    Visit::visit(rule, &mut FindWith).is_break()
}

/// `rule` with every relation that `names` resolves to a table in `whole` read through its
/// whole view instead. An unaliased reference gets its old name as alias: `orders.status`
/// and the whole-row `orders` must keep meaning the table read, not an outer `orders` (the
/// rule's own table), which would change the rule silently (wider, under `NOT IN`).
pub(super) fn read_whole(
    mut rule: Expr,
    names: &BTreeMap<String, QualifiedName>,
    whole: &BTreeSet<QualifiedName>,
) -> Expr {
    struct Rename<'a> {
        names: &'a BTreeMap<String, QualifiedName>,
        whole: &'a BTreeSet<QualifiedName>,
    }
    impl VisitorMut for Rename<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            let Some(table) = self
                .names
                .get(&name.to_string())
                .filter(|t| self.whole.contains(*t))
            else {
                return ControlFlow::Continue(());
            };
            if alias.is_none() {
                if let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident) {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: last.clone(),
                        columns: vec![],
                        at: None,
                    });
                }
            }
            *name = object_name(&[PRIVATE_SCHEMA, &view_name(table)]);
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(&mut rule, &mut Rename { names, whole });
    rule
}

/// PostgreSQL's system columns: a view has none.
const SYSTEM_COLUMNS: [&str; 6] = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

fn is_system_column(ident: &Ident) -> bool {
    let name = match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    };
    SYSTEM_COLUMNS.contains(&name.as_str())
}

/// A column reference in `rule` that a rename could not keep pointing at the same table:
/// one qualified by schema (`public.orders.col`, `public.orders.*`: PostgreSQL matches those
/// by the table's identity, which the view does not share, and an alias has no schema) or a
/// system column (a view has none, so `ctid` would find an outer table's).
fn unsafe_to_rename(rule: &Expr) -> Option<String> {
    struct Find;
    impl Visitor for Find {
        type Break = String;
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
            let found = match expr {
                Expr::CompoundIdentifier(parts) => parts.last().is_some_and(is_system_column),
                Expr::Identifier(ident) => is_system_column(ident),
                _ => false,
            };
            if found {
                ControlFlow::Break(expr.to_string())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    if let ControlFlow::Break(found) = Visit::visit(rule, &mut Find) {
        return Some(found);
    }
    // On the tokens, not the tree: a dotted chain of three parts can sit in an expression, a
    // select list or a function's arguments, each a different node.
    let Some(words) = words(rule) else {
        return Some(rule.to_string());
    };
    words.windows(5).find_map(|w| match w {
        [Token::Word(a), Token::Period, Token::Word(b), Token::Period, c] => {
            Some(format!("{a}.{b}.{c}"))
        }
        _ => None,
    })
}

/// The rule's tokens, without whitespace; `None` if the printed rule does not tokenize (then
/// the callers assume the worst).
fn words(rule: &Expr) -> Option<Vec<Token>> {
    let sql = rule.to_string();
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql)
        .tokenize()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect(),
    )
}

/// Why a rule that says `FROM ONLY t` cannot be fenced by row-level security. sqlparser reads
/// `ONLY t` as a table named `ONLY` aliased `t` and prints it back as written, so rowgate
/// would not see which table the rule reads, nor read it whole; PostgreSQL would read `t`.
pub(super) fn reads_only(rule: &Expr) -> Option<String> {
    let only = words(rule).is_none_or(|words| {
        words.iter().any(|t| {
            matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::ONLY)
        })
    });
    only.then(|| {
        "its rule says ONLY, which rowgate cannot follow in a rule (it would not know which \
         table the rule reads); write the table without ONLY"
            .to_string()
    })
}

/// The whole views' filter, which only the serving role may call. A function's EXECUTE is
/// checked for the user running the query, not the view's owner: the serving role, when a
/// rule reads the view; anyone else who reached the view (a member of `pg_read_all_data`,
/// which grants USAGE and SELECT everywhere and which no REVOKE takes away) gets "permission
/// denied" instead of the table past its row-level security. For the serving role PostgreSQL
/// inlines the call to `true`: no cost.
const GATE: &str = "rowgate_private.whole_gate";

/// The steps that (re)create the whole views the rules need and drop the others. Every
/// `rowgate_rows` goes first (each is created again with its table): a policy that reads a
/// whole view would stop the view being replaced.
pub(super) fn plan(steps: &mut Vec<Step>, catalog: &Catalog) {
    push(
        steps,
        format!("creating function {GATE}()"),
        format!(
            "CREATE OR REPLACE FUNCTION {GATE}() RETURNS boolean \
             LANGUAGE sql STABLE PARALLEL SAFE AS 'SELECT true'"
        ),
    );
    push(
        steps,
        format!("creating function {GATE}()"),
        format!("REVOKE ALL ON FUNCTION {GATE}() FROM PUBLIC"),
    );
    for (table, state) in &catalog.tables {
        if state.policies.contains(row_security::ROWS_POLICY) {
            let shown = object_name(&[&table.schema, &table.name]);
            push(
                steps,
                format!("dropping policy {} on {shown}", row_security::ROWS_POLICY),
                format!(
                    "DROP POLICY IF EXISTS {} ON {shown}",
                    row_security::ROWS_POLICY
                ),
            );
        }
    }
    let wanted: BTreeSet<String> = catalog.whole.iter().map(view_name).collect();
    for stale in catalog.whole_views.difference(&wanted) {
        let name = object_name(&[PRIVATE_SCHEMA, stale]);
        push(
            steps,
            format!("dropping view {name}"),
            format!("DROP VIEW {name}"),
        );
    }
    for table in &catalog.whole {
        let name = object_name(&[PRIVATE_SCHEMA, &view_name(table)]);
        let what = format!("creating view {name}");
        push(steps, &what, format!("DROP VIEW IF EXISTS {name}"));
        push(
            steps,
            what,
            format!(
                "CREATE VIEW {name} AS SELECT * FROM {} WHERE {GATE}()",
                object_name(&[&table.schema, &table.name])
            ),
        );
    }
}

/// Takes every grant on a relation or function in `rowgate_private` from everyone but its
/// owner: default privileges (`ALTER DEFAULT PRIVILEGES ...`) would otherwise hand a new whole
/// view, which reads past the table's row-level security, or EXECUTE on its gate, to whoever
/// they name, and a grant by hand (or to an earlier serving role) would survive install.
/// `grant` then gives the owner role its own.
const CLOSE_PRIVATE: &str = "DO $rowgate$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT c.oid::pg_catalog.regclass::text AS object, a.grantee
             FROM pg_catalog.pg_class AS c
             CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
             WHERE c.relnamespace = 'rowgate_private'::pg_catalog.regnamespace
               AND a.grantee <> c.relowner
             UNION
             SELECT 'FUNCTION ' || p.oid::pg_catalog.regprocedure::text, a.grantee
             FROM pg_catalog.pg_proc AS p
             CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) AS a
             WHERE p.pronamespace = 'rowgate_private'::pg_catalog.regnamespace
               AND a.grantee <> p.proowner
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s', g.object,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::pg_catalog.regrole::text END);
    END LOOP;
END
$rowgate$";

/// The serving role's EXECUTE on the gate, and the owner role's grants on the whole views (after the sweep that revoked its rights in
/// schema `rowgate_private`).
pub(super) fn grant(steps: &mut Vec<Step>, catalog: &Catalog, role: &str, owner: &str) {
    push(
        steps,
        format!("revoking every grant in schema {PRIVATE_SCHEMA}"),
        CLOSE_PRIVATE,
    );
    push(
        steps,
        format!("granting EXECUTE on {GATE}() to {role}"),
        format!("GRANT EXECUTE ON FUNCTION {GATE}() TO {role}"),
    );
    if catalog.whole.is_empty() {
        return;
    }
    push(
        steps,
        format!("granting USAGE on schema {PRIVATE_SCHEMA} to {owner}"),
        format!("GRANT USAGE ON SCHEMA {PRIVATE_SCHEMA} TO {owner}"),
    );
    for table in &catalog.whole {
        let name = object_name(&[PRIVATE_SCHEMA, &view_name(table)]);
        push(
            steps,
            format!("granting SELECT on {name} to {owner}"),
            format!("GRANT SELECT ON {name} TO {owner}"),
        );
    }
}
