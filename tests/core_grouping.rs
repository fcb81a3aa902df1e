//! GROUP BY a primary key: the rewrite adds the grouped table's other columns that the query
//! uses, and nothing in the cases it cannot read safely. The policy is the demo's, completed
//! by hand the way `Catalog::complete` does from the database (keys, visible columns). That the
//! rewritten queries run and answer what the base tables answer is `demo_equivalence`'s job.

use std::path::Path;

use rowgate::check::check_rewritten;
use rowgate::parse::Limits;
use rowgate::pipeline::rewrite;
use rowgate::policy::{Grouping, Policy};

fn policy() -> Policy {
    let mut policy = Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("the demo policy loads");
    let tables: &[(&str, &[&str], &[&str])] = &[
        (
            "customers",
            &["id", "name", "department", "active", "created_at"],
            &[],
        ),
        (
            "invoices",
            &["id", "amount", "issued_on", "department", "customer_id"],
            &[],
        ),
        // As if `metadata` were json: no equality, so never added.
        (
            "orders",
            &["id", "user_id", "total", "placed_at", "status", "metadata"],
            &["metadata"],
        ),
    ];
    for (name, columns, ungroupable) in tables {
        let table = policy.tables.get_mut(*name).expect("a demo table");
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        table.grouping = Some(Grouping {
            key: vec!["id".into()],
            groupable: columns
                .iter()
                .filter(|c| !ungroupable.contains(&c.as_str()))
                .cloned()
                .collect(),
        });
        table.columns = Some(columns);
    }
    policy
}

/// The rewritten SQL's GROUP BY clause, up to HAVING, ORDER BY, LIMIT or the end.
fn group_by(sql: &str) -> String {
    let out = rewrite(sql, &policy(), &Limits::default())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .sql;
    check_rewritten(&out, &policy()).unwrap_or_else(|e| panic!("{out}: {e}"));
    let at = out
        .rfind("GROUP BY ")
        .unwrap_or_else(|| panic!("no GROUP BY: {out}"));
    let clause = &out[at + "GROUP BY ".len()..];
    let end = [" HAVING ", " WINDOW ", " ORDER BY ", " LIMIT ", " UNION "]
        .iter()
        .filter_map(|w| clause.find(w))
        .min()
        .unwrap_or(clause.len());
    clause[..end].to_string()
}

#[test]
fn a_grouped_key_brings_the_columns_used_outside_aggregates() {
    let cases = [
        (
            "SELECT c.id, c.name, count(*), sum(i.amount) FROM customers c \
             JOIN invoices i ON i.customer_id = c.id GROUP BY c.id",
            "c.id, c.name",
        ),
        // Unaliased: the range is the table's own name, however it was written.
        (
            "SELECT public.customers.name, count(*) FROM public.customers GROUP BY customers.id",
            "customers.id, customers.name",
        ),
        // Unqualified, pinned to the one table that has the column; `amount` is aggregated.
        (
            "SELECT name, department, sum(amount) FROM customers c \
             JOIN invoices i ON i.customer_id = c.id GROUP BY c.id",
            // `department` is in both tables: PostgreSQL would refuse it as ambiguous.
            "c.id, c.name",
        ),
        // By ordinal, and a window function's ORDER BY is evaluated per group.
        (
            "SELECT c.id, rank() OVER (ORDER BY c.created_at) FROM customers c GROUP BY 1",
            "1, c.created_at",
        ),
        // `c.*`, HAVING and ORDER BY; `label` is an output name, not a column.
        (
            "SELECT c.*, count(*) AS label FROM customers c JOIN invoices i ON i.customer_id = c.id \
             GROUP BY c.id HAVING c.active ORDER BY label, c.name",
            "c.id, c.name, c.department, c.active, c.created_at",
        ),
        // An outer reference in a subquery of the select list must be grouped too.
        (
            "SELECT c.id, (SELECT count(*) FROM invoices i WHERE i.department = c.department) \
             FROM customers c GROUP BY c.id",
            "c.id, c.department",
        ),
        // Both tables keyed.
        (
            "SELECT c.name, i.amount, count(*) FROM customers c JOIN invoices i \
             ON i.customer_id = c.id GROUP BY c.id, i.id",
            "c.id, i.id, c.name, i.amount",
        ),
        // A column of a type without equality is never added.
        (
            "SELECT o.id, o.status, o.metadata FROM orders o GROUP BY o.id",
            "o.id, o.status",
        ),
        // DISTINCT ON and a named window are evaluated per group too.
        (
            "SELECT DISTINCT ON (c.department) c.id, count(*) FROM customers c GROUP BY c.id",
            "c.id, c.department",
        ),
        (
            "SELECT c.id, rank() OVER w FROM customers c GROUP BY c.id \
             WINDOW w AS (PARTITION BY c.department ORDER BY c.created_at)",
            "c.id, c.department, c.created_at",
        ),
        // By output name, when no FROM item has a column of that name; and by (ordinal).
        (
            "SELECT c.id AS cid, c.name, count(*) FROM customers c GROUP BY cid",
            "cid, c.name",
        ),
        (
            "SELECT (c.id), c.name FROM customers c GROUP BY (1)",
            "(1), c.name",
        ),
        // Each branch of a set operation on its own.
        (
            "SELECT 'x' AS name UNION ALL SELECT c.name FROM customers c GROUP BY c.id",
            "c.id, c.name",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(group_by(sql), want, "{sql}");
    }
}

#[test]
fn nothing_is_added_where_the_key_is_not_grouped_or_the_columns_are_unknown() {
    let cases = [
        // Only aggregates and the key: already valid.
        (
            "SELECT c.id, count(*), max(c.name) FROM customers c GROUP BY c.id",
            "c.id",
        ),
        // A bare name is the FROM item's column first: this groups by c.name, not c.id.
        (
            "SELECT c.id AS name, c.department FROM customers c GROUP BY name",
            "name",
        ),
        // A number in the select list is a constant, not another ordinal.
        ("SELECT (1), c.name FROM customers c GROUP BY 1", "1"),
        // The key is not grouped: PostgreSQL's own 42803 stands.
        (
            "SELECT c.name, c.department FROM customers c GROUP BY c.name",
            "c.name",
        ),
        // Grouping sets change which rows are grouped: left to the agent.
        (
            "SELECT c.id, c.name FROM customers c GROUP BY ROLLUP (c.id)",
            "ROLLUP (c.id)",
        ),
        // An unqualified name next to a subquery in FROM may be the subquery's.
        (
            "SELECT name FROM customers c, (SELECT 1 AS x) s GROUP BY c.id",
            "c.id",
        ),
        // ... and next to a USING join it is the merged column.
        (
            "SELECT department FROM customers c JOIN invoices i USING (department) GROUP BY c.id",
            "c.id",
        ),
        // A subquery's own grouping is its own: its `c` is not the outer one.
        (
            "SELECT x.n FROM (SELECT c.id, count(*) AS n FROM customers c GROUP BY c.id) x \
             JOIN invoices i ON i.customer_id = x.id GROUP BY x.n",
            "x.n",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(group_by(sql), want, "{sql}");
    }
}

#[test]
fn without_the_catalog_the_rewrite_is_unchanged() {
    let sql = "SELECT c.id, c.name FROM customers c GROUP BY c.id";
    let plain = Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("the demo policy loads");
    let out = rewrite(sql, &plain, &Limits::default())
        .expect("rewrites")
        .sql;
    assert!(out.ends_with("GROUP BY c.id"), "{out}");
}
