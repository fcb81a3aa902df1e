//! Parse + guard + rewrite + print of typical agent queries, against sqlparser's parse alone.
//! Run: `cargo bench --bench rewrite`. Results: BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use rowgate::parse::Limits;
use rowgate::pipeline;
use rowgate::policy::{Grouping, Policy};
use sqlparser::parser::Parser;

const TYPICAL: &str =
    "SELECT c.name, date_trunc('month', i.issued_on) AS month, SUM(i.amount) AS total, \
COUNT(t.id) AS payments FROM invoices i JOIN customers c ON c.id = i.customer_id \
LEFT JOIN transactions t ON t.invoice_id = i.id \
WHERE i.amount > (SELECT avg(amount) FROM invoices WHERE department = i.department) \
GROUP BY c.name, month HAVING SUM(i.amount) > 1000 ORDER BY total DESC LIMIT 20";

const SMALL: &str = "SELECT department, sum(amount) FROM invoices GROUP BY 1";

/// Grouped by a primary key, selecting another column: the GROUP BY pass adds `c.name`.
const KEYED: &str = "SELECT c.id, c.name, count(*) AS n, sum(i.amount) AS total FROM customers c \
JOIN invoices i ON i.customer_id = c.id GROUP BY c.id ORDER BY total DESC LIMIT 10";

/// The server's policy as `Catalog::complete` leaves it: each view's columns and primary key
/// (from `migrations/001_demo_schema.sql`), which turns on the GROUP BY pass.
fn with_keys(policy: &Policy) -> Policy {
    let tables: [(&str, &[&str]); 3] = [
        (
            "invoices",
            &["id", "amount", "issued_on", "department", "customer_id"],
        ),
        (
            "customers",
            &["id", "name", "department", "active", "created_at"],
        ),
        (
            "transactions",
            &["id", "invoice_id", "amount", "department", "happened_at"],
        ),
    ];
    let mut policy = policy.clone();
    for (name, columns) in tables {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        if let Some(table) = policy.tables.get_mut(name) {
            table.grouping = Some(Grouping {
                key: vec!["id".into()],
                groupable: columns.clone(),
            });
            table.columns = Some(columns);
        }
    }
    policy
}

fn bench(c: &mut Criterion) {
    #[allow(clippy::expect_used)] // benchmark set-up
    let policy = Policy::load_dir(Path::new("policies")).expect("policies/demo.yaml loads");
    let keyed = with_keys(&policy);
    let limits = Limits::default();
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    for (name, sql) in [("typical", TYPICAL), ("small", SMALL), ("keyed", KEYED)] {
        c.bench_function(&format!("{name}/sqlparser_parse_only"), |b| {
            b.iter(|| Parser::parse_sql(&dialect, black_box(sql)))
        });
        c.bench_function(&format!("{name}/rowgate_full_pipeline"), |b| {
            b.iter(|| pipeline::rewrite(black_box(sql), &policy, &limits))
        });
        c.bench_function(&format!("{name}/rowgate_full_pipeline_with_keys"), |b| {
            b.iter(|| pipeline::rewrite(black_box(sql), &keyed, &limits))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
