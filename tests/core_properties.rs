//! Property test: random queries over the demo policy's tables, built from a small grammar
//! (joins, subqueries in FROM / WHERE / the select list, LATERAL, agent CTEs that may be named
//! like policy tables, recursive WITH, set operations, aliases, qualified, quoted and upper-case
//! names), are rewritten. For each:
//!
//! * the output re-parses and the independent checker (`rowgate::check`) accepts it;
//! * rewriting is deterministic (same SQL, same plan);
//! * the plan's references are exactly the policy-table references the generator put in, as
//!   computed by the generator's own model of PostgreSQL's CTE scoping. This covers what the
//!   checker deliberately does not (it is scope-insensitive): a CTE named like a table that
//!   shadows, or fails to shadow, the right references.
//!
//! The case count defaults to 256 (`PROPTEST_CASES` overrides it).

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use rowgate::check::check_rewritten;
use rowgate::parse::Limits;
use rowgate::pipeline::rewrite;
use rowgate::policy::Policy;
use rowgate::refusal::Refusal;

/// Policy tables the grammar uses; every one of them has an allowed `id` column.
const TABLES: &[&str] = &["invoices", "customers", "orders", "blocks", "transactions"];
/// Agent CTE names: two plain ones and two that collide with policy tables.
const CTE_NAMES: &[&str] = &["x", "y", "invoices", "orders"];

#[derive(Debug, Clone)]
struct Query {
    with: Option<With>,
    body: Body,
    /// `ORDER BY (subquery)`: resolved in the scope of the query's body.
    order_by: Option<Box<Query>>,
}

#[derive(Debug, Clone)]
struct With {
    recursive: bool,
    ctes: Vec<(&'static str, Query)>,
}

#[derive(Debug, Clone)]
enum Body {
    Select(Box<Select>),
    SetOp(Box<Body>, &'static str, Box<Body>),
    Paren(Box<Query>),
}

#[derive(Debug, Clone)]
struct Select {
    projection: Projection,
    from: Vec<From>,
    joins: Vec<(From, Condition)>,
    condition: Option<Condition>,
}

#[derive(Debug, Clone)]
enum Projection {
    Star,
    Id,
    CountStar,
    /// `<first FROM item as written>.id`, e.g. `public.invoices.id`.
    QualifiedId,
    Scalar(Box<Query>),
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Plain,
    Upper,
    Quoted,
    Qualified,
    QualifiedQuoted,
}

#[derive(Debug, Clone)]
enum From {
    /// A name: a policy table or a CTE, depending on scope.
    Name {
        name: &'static str,
        form: Form,
        alias: Option<&'static str>,
    },
    Derived {
        lateral: bool,
        query: Box<Query>,
        alias: &'static str,
    },
    Series {
        alias: &'static str,
    },
    Values {
        alias: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Condition {
    True,
    In(Box<Query>),
    Exists(Box<Query>),
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
}

// --- generation -----------------------------------------------------------------------------

fn name_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => proptest::sample::select(TABLES),
        2 => proptest::sample::select(CTE_NAMES),
    ]
}

fn form_strategy() -> impl Strategy<Value = Form> {
    prop_oneof![
        4 => Just(Form::Plain),
        1 => Just(Form::Upper),
        1 => Just(Form::Quoted),
        1 => Just(Form::Qualified),
        1 => Just(Form::QualifiedQuoted),
    ]
}

fn alias_strategy() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["a", "b", "c", "sub", "t"][..])
}

fn query_strategy(depth: u32) -> BoxedStrategy<Query> {
    let with = if depth == 0 {
        Just(None).boxed()
    } else {
        prop_oneof![
            2 => Just(None),
            1 => (
                any::<bool>(),
                proptest::collection::vec(
                    (proptest::sample::select(CTE_NAMES), query_strategy(depth - 1)),
                    1..3
                )
            )
                .prop_map(|(recursive, ctes)| Some(With { recursive, ctes })),
        ]
        .boxed()
    };
    let order_by = if depth == 0 {
        Just(None).boxed()
    } else {
        prop_oneof![
            4 => Just(None),
            1 => query_strategy(depth - 1).prop_map(|q| Some(Box::new(q))),
        ]
        .boxed()
    };
    (with, body_strategy(depth), order_by)
        .prop_map(|(with, body, order_by)| Query {
            with,
            body,
            order_by,
        })
        .boxed()
}

fn body_strategy(depth: u32) -> BoxedStrategy<Body> {
    let select = select_strategy(depth).prop_map(|s| Body::Select(Box::new(s)));
    if depth == 0 {
        return select.boxed();
    }
    prop_oneof![
        4 => select,
        1 => (
            select_strategy(depth - 1),
            proptest::sample::select(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"][..]),
            select_strategy(depth - 1),
        )
            .prop_map(|(l, op, r)| Body::SetOp(
                Box::new(Body::Select(Box::new(l))),
                op,
                Box::new(Body::Select(Box::new(r)))
            )),
        // A parenthesized branch goes on the right: sqlparser cannot parse `((SELECT ...)
        // UNION ...)` inside a subquery (PostgreSQL can; it is refused as a parse error).
        1 => (
            select_strategy(depth - 1),
            proptest::sample::select(&["UNION ALL", "EXCEPT"][..]),
            query_strategy(depth - 1),
        )
            .prop_map(|(l, op, r)| Body::SetOp(
                Box::new(Body::Select(Box::new(l))),
                op,
                Box::new(Body::Paren(Box::new(r)))
            )),
    ]
    .boxed()
}

fn from_strategy(depth: u32) -> BoxedStrategy<From> {
    let name = (
        name_strategy(),
        form_strategy(),
        proptest::option::of(alias_strategy()),
    )
        .prop_map(|(name, form, alias)| From::Name { name, form, alias });
    if depth == 0 {
        return prop_oneof![
            4 => name,
            1 => alias_strategy().prop_map(|alias| From::Series { alias }),
            1 => alias_strategy().prop_map(|alias| From::Values { alias }),
        ]
        .boxed();
    }
    prop_oneof![
        5 => name,
        1 => alias_strategy().prop_map(|alias| From::Series { alias }),
        2 => (any::<bool>(), query_strategy(depth - 1), alias_strategy())
            .prop_map(|(lateral, q, alias)| From::Derived { lateral, query: Box::new(q), alias }),
    ]
    .boxed()
}

fn condition_strategy(depth: u32) -> BoxedStrategy<Condition> {
    if depth == 0 {
        return Just(Condition::True).boxed();
    }
    let leaf = prop_oneof![
        1 => Just(Condition::True),
        2 => query_strategy(depth - 1).prop_map(|q| Condition::In(Box::new(q))),
        2 => query_strategy(depth - 1).prop_map(|q| Condition::Exists(Box::new(q))),
    ];
    leaf.prop_recursive(2, 4, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Condition::Not(Box::new(c))),
            (inner.clone(), inner).prop_map(|(a, b)| Condition::And(Box::new(a), Box::new(b))),
        ]
    })
    .boxed()
}

fn projection_strategy(depth: u32) -> BoxedStrategy<Projection> {
    let simple = prop_oneof![
        Just(Projection::Star),
        Just(Projection::Id),
        Just(Projection::CountStar),
        Just(Projection::QualifiedId),
    ];
    if depth == 0 {
        return simple.boxed();
    }
    prop_oneof![
        4 => simple,
        1 => query_strategy(depth - 1).prop_map(|q| Projection::Scalar(Box::new(q))),
    ]
    .boxed()
}

fn select_strategy(depth: u32) -> BoxedStrategy<Select> {
    (
        projection_strategy(depth),
        proptest::collection::vec(from_strategy(depth), 1..3),
        proptest::collection::vec((from_strategy(depth), condition_strategy(depth)), 0..3),
        proptest::option::of(condition_strategy(depth)),
    )
        .prop_map(|(projection, from, joins, condition)| Select {
            projection,
            from,
            joins,
            condition,
        })
        .boxed()
}

// --- printing, with the generator's own model of scoping --------------------------------------

/// Prints the query and records, per policy-table reference, the table it must resolve to.
struct Printer {
    sql: String,
    expected: Vec<String>,
}

impl Printer {
    fn query(&mut self, query: &Query, outer: &[&'static str]) {
        let mut visible: Vec<&'static str> = outer.to_vec();
        if let Some(with) = &query.with {
            self.sql.push_str("WITH ");
            if with.recursive {
                self.sql.push_str("RECURSIVE ");
            }
            let names: Vec<&'static str> = with.ctes.iter().map(|(n, _)| *n).collect();
            for (i, (name, body)) in with.ctes.iter().enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                // Non-recursive: a CTE body sees the earlier siblings; recursive: all of them.
                let mut scope = visible.clone();
                if with.recursive {
                    scope.extend(&names);
                } else {
                    scope.extend(&names[..i]);
                }
                self.sql.push_str(name);
                self.sql
                    .push_str(if i % 2 == 0 { " AS (" } else { " (id) AS (" });
                self.query(body, &scope);
                self.sql.push(')');
            }
            self.sql.push(' ');
            visible.extend(&names);
        }
        self.body(&query.body, &visible);
        if let Some(order_by) = &query.order_by {
            self.sql.push_str(" ORDER BY (");
            self.query(order_by, &visible);
            self.sql.push_str(") LIMIT 1");
        }
    }

    fn body(&mut self, body: &Body, visible: &[&'static str]) {
        match body {
            Body::Select(select) => self.select(select, visible),
            Body::SetOp(left, op, right) => {
                self.body(left, visible);
                self.sql.push_str(&format!(" {op} "));
                self.body(right, visible);
            }
            Body::Paren(query) => {
                self.sql.push('(');
                self.query(query, visible);
                self.sql.push(')');
            }
        }
    }

    fn select(&mut self, select: &Select, visible: &[&'static str]) {
        self.sql.push_str("SELECT ");
        match &select.projection {
            Projection::Star => self.sql.push('*'),
            Projection::Id => self.sql.push_str("id"),
            Projection::CountStar => self.sql.push_str("count(*)"),
            Projection::QualifiedId => match &select.from[0] {
                From::Name {
                    name,
                    form,
                    alias: None,
                } => {
                    let written = self.written(name, *form, visible);
                    self.sql.push_str(&written);
                    self.sql.push_str(".id");
                }
                From::Name { alias: Some(a), .. }
                | From::Derived { alias: a, .. }
                | From::Series { alias: a }
                | From::Values { alias: a } => {
                    self.sql.push_str(a);
                    self.sql.push_str(".id");
                }
            },
            Projection::Scalar(query) => {
                self.sql.push('(');
                self.query(query, visible);
                self.sql.push_str(") AS s");
            }
        }
        self.sql.push_str(" FROM ");
        for (i, from) in select.from.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.from(from, visible);
        }
        for (join, on) in &select.joins {
            self.sql.push_str(" JOIN ");
            self.from(join, visible);
            self.sql.push_str(" ON ");
            self.condition(on, visible);
        }
        if let Some(condition) = &select.condition {
            self.sql.push_str(" WHERE ");
            self.condition(condition, visible);
        }
    }

    /// The name as written; a CTE name that is not in scope (and is no table) becomes `invoices`.
    fn written(&self, name: &'static str, form: Form, visible: &[&'static str]) -> String {
        let is_table = TABLES.contains(&name);
        let name = if is_table || visible.contains(&name) {
            name
        } else {
            "invoices"
        };
        match form {
            Form::Plain => name.to_string(),
            Form::Upper => name.to_uppercase(),
            Form::Quoted => format!("\"{name}\""),
            Form::Qualified if TABLES.contains(&name) => format!("public.{name}"),
            Form::QualifiedQuoted if TABLES.contains(&name) => format!("\"public\".\"{name}\""),
            Form::Qualified | Form::QualifiedQuoted => name.to_string(),
        }
    }

    fn from(&mut self, from: &From, visible: &[&'static str]) {
        match from {
            From::Name { name, form, alias } => {
                let written = self.written(name, *form, visible);
                // PostgreSQL's rule: an unqualified name is a CTE when one is in scope; a
                // schema-qualified name is always a table.
                let folded = written.trim_matches('"').to_lowercase();
                let qualified = folded.contains('.');
                let table = folded
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"');
                let is_cte = !qualified && visible.contains(&table);
                if !is_cte {
                    assert!(TABLES.contains(&table), "generator bug: {written}");
                    self.expected.push(table.to_string());
                }
                self.sql.push_str(&written);
                if let Some(alias) = alias {
                    self.sql.push(' ');
                    self.sql.push_str(alias);
                }
            }
            From::Derived {
                lateral,
                query,
                alias,
            } => {
                if *lateral {
                    self.sql.push_str("LATERAL ");
                }
                self.sql.push('(');
                self.query(query, visible);
                self.sql.push_str(") ");
                self.sql.push_str(alias);
            }
            From::Series { alias } => {
                self.sql.push_str("generate_series(1, 3) AS ");
                self.sql.push_str(alias);
                // Named, so that `alias.id` is a column (without it PostgreSQL would look for a
                // function `id`, which resolve now refuses).
                self.sql.push_str(" (id)");
            }
            From::Values { alias } => {
                self.sql.push_str("(VALUES (1), (2)) AS ");
                self.sql.push_str(alias);
                self.sql.push_str(" (id)");
            }
        }
    }

    fn condition(&mut self, condition: &Condition, visible: &[&'static str]) {
        match condition {
            Condition::True => self.sql.push_str("true"),
            Condition::In(query) => {
                self.sql.push_str("id IN (");
                self.query(query, visible);
                self.sql.push(')');
            }
            Condition::Exists(query) => {
                self.sql.push_str("EXISTS (");
                self.query(query, visible);
                self.sql.push(')');
            }
            Condition::Not(inner) => {
                self.sql.push_str("NOT (");
                self.condition(inner, visible);
                self.sql.push(')');
            }
            Condition::And(a, b) => {
                self.sql.push('(');
                self.condition(a, visible);
                self.sql.push_str(" AND ");
                self.condition(b, visible);
                self.sql.push(')');
            }
        }
    }
}

fn print(query: &Query) -> (String, Vec<String>) {
    let mut printer = Printer {
        sql: String::new(),
        expected: Vec::new(),
    };
    printer.query(query, &[]);
    let mut expected = printer.expected;
    expected.sort();
    (printer.sql, expected)
}

fn policy() -> Policy {
    Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("the demo policy loads")
}

fn check_one(sql: &str, expected: &[String], policy: &Policy) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let first = rewrite(sql, policy, &limits)
        .map_err(|e| TestCaseError::fail(format!("refused ({}): {e}\n{sql}", e.code())))?;
    check_rewritten(&first.sql, policy)
        .map_err(|e| TestCaseError::fail(format!("checker: {e}\n{sql}\n{}", first.sql)))?;
    let again = rewrite(sql, policy, &limits)
        .map_err(|e| TestCaseError::fail(format!("second run refused: {e}")))?;
    prop_assert_eq!(&first.sql, &again.sql, "not deterministic");
    prop_assert_eq!(&first.plan, &again.plan, "plan not deterministic");

    let mut planned: Vec<String> = first
        .plan
        .references
        .iter()
        .map(|r| r.table.clone())
        .collect();
    planned.sort();
    prop_assert_eq!(
        &planned,
        expected,
        "policy references differ from PostgreSQL's scoping\n{}\n{}",
        sql,
        first.sql
    );
    // One permission CTE per table read, no more.
    let tables: BTreeSet<&String> = expected.iter().collect();
    prop_assert_eq!(first.plan.ctes.len(), tables.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_queries_rewrite_to_checked_sql(query in query_strategy(3)) {
        let (sql, expected) = print(&query);
        check_one(&sql, &expected, &policy())?;
    }
}

/// The generator's scoping model on hand-picked cases, so that the property's oracle is itself
/// tested (and a regression in these shapes is reported plainly).
#[test]
fn the_scoping_model_agrees_on_known_cases() {
    let policy = policy();
    let cases: &[(&str, &[&str])] = &[
        ("WITH invoices AS (SELECT id FROM invoices) SELECT * FROM invoices", &["invoices"]),
        ("WITH invoices AS (SELECT 1 AS id) SELECT * FROM public.invoices", &["invoices"]),
        ("WITH invoices AS (SELECT 1 AS id) SELECT * FROM \"invoices\", INVOICES", &[]),
        (
            "WITH RECURSIVE x AS (SELECT id FROM orders), orders AS (SELECT 1 AS id) SELECT * FROM x",
            &[],
        ),
        (
            "WITH x AS (SELECT id FROM orders), orders AS (SELECT 1 AS id) SELECT * FROM x",
            &["orders"],
        ),
        (
            "SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) a, orders",
            &["orders"],
        ),
        (
            "WITH orders AS (SELECT 1 AS id) SELECT * FROM blocks WHERE id IN (SELECT id FROM orders) AND EXISTS (WITH x AS (SELECT id FROM orders) SELECT * FROM x, public.orders)",
            &["blocks", "orders"],
        ),
    ];
    for (sql, tables) in cases {
        let expected: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        if let Err(e) = check_one(sql, &expected, &policy) {
            panic!("{e}");
        }
    }
}
