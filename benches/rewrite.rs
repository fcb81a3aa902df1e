//! Parse + guard + rewrite + print of typical agent queries, against sqlparser's parse alone.
//! Run: `cargo bench --bench rewrite`. Results: BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use rowgate::parse::Limits;
use rowgate::pipeline;
use rowgate::policy::Policy;
use sqlparser::parser::Parser;

const TYPICAL: &str =
    "SELECT c.name, date_trunc('month', i.issued_on) AS month, SUM(i.amount) AS total, \
COUNT(t.id) AS payments FROM invoices i JOIN customers c ON c.id = i.customer_id \
LEFT JOIN transactions t ON t.invoice_id = i.id \
WHERE i.amount > (SELECT avg(amount) FROM invoices WHERE department = i.department) \
GROUP BY c.name, month HAVING SUM(i.amount) > 1000 ORDER BY total DESC LIMIT 20";

const SMALL: &str = "SELECT department, sum(amount) FROM invoices GROUP BY 1";

fn bench(c: &mut Criterion) {
    #[allow(clippy::expect_used)] // benchmark set-up
    let policy = Policy::load_dir(Path::new("policies")).expect("policies/demo.yaml loads");
    let limits = Limits::default();
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    for (name, sql) in [("typical", TYPICAL), ("small", SMALL)] {
        c.bench_function(&format!("{name}/sqlparser_parse_only"), |b| {
            b.iter(|| Parser::parse_sql(&dialect, black_box(sql)))
        });
        c.bench_function(&format!("{name}/rowgate_full_pipeline"), |b| {
            b.iter(|| pipeline::rewrite(black_box(sql), &policy, &limits))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
