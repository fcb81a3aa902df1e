//! Snapshots of rewrites of typical and tricky agent queries under `policies/demo.yaml`.
//!
//! Each snapshot holds the agent's SQL, the exact rewritten SQL, and a compact view of the plan
//! (permission CTEs, which reference went to which CTE, the agent's own CTEs). Every case must
//! also pass the independent checker (`rowgate::check`), which re-parses the output. The
//! snapshots live in the repository's top-level `snapshots/` folder and were reviewed by eye:
//! a wrong rewrite accepted into a snapshot is a defect, not a baseline.

use std::fmt::Write as _;
use std::path::Path;

use rowgate::check::check_rewritten;
use rowgate::parse::Limits;
use rowgate::pipeline::{rewrite, Rewritten};
use rowgate::policy::Policy;
use rowgate::refusal::Refusal;

fn policy() -> Policy {
    Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("the demo policy loads")
}

fn plan_view(out: &Rewritten) -> String {
    let mut view = String::new();
    for cte in &out.plan.ctes {
        let columns = match &cte.columns {
            Some(columns) => columns.join(", "),
            None => "*".into(),
        };
        let _ = writeln!(view, "cte {} = {} ({columns})", cte.name, cte.view);
    }
    for r in &out.plan.references {
        let _ = writeln!(
            view,
            "ref {}:{} {} -> {}",
            r.line, r.column, r.written, r.cte
        );
    }
    if !out.plan.agent_ctes.is_empty() {
        let _ = writeln!(view, "agent ctes: {}", out.plan.agent_ctes.join(", "));
    }
    view
}

fn snapshot(name: &str, sql: &str) {
    let policy = policy();
    let out = rewrite(sql, &policy, &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: refused ({}): {e}\n{sql}", e.code()));
    check_rewritten(&out.sql, &policy)
        .unwrap_or_else(|e| panic!("{name}: the checker refuses the rewrite: {e}\n{}", out.sql));
    // The output is a fixed point of printing: what PostgreSQL receives is what we show.
    let reparsed =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &out.sql)
            .unwrap_or_else(|e| panic!("{name}: the rewrite does not re-parse: {e}\n{}", out.sql));
    assert_eq!(reparsed.len(), 1, "{name}");
    assert_eq!(
        reparsed[0].to_string(),
        out.sql,
        "{name}: printing is not stable"
    );

    let content = format!(
        "agent:\n{sql}\n\nrewritten:\n{}\n\nplan:\n{}",
        out.sql,
        plan_view(&out)
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, content));
}

macro_rules! snapshots {
    ($($name:ident: $sql:expr;)*) => {
        $(
            #[test]
            fn $name() {
                snapshot(stringify!($name), $sql);
            }
        )*

        /// Guards the "at least 45 rewrites" requirement against accidental deletion.
        #[test]
        fn there_are_enough_snapshot_cases() {
            let names: &[&str] = &[$(stringify!($name)),*];
            assert!(names.len() >= 45, "only {} snapshot cases", names.len());
        }
    };
}

snapshots! {
    // --- joins -------------------------------------------------------------------------------
    join_design_example:
        "SELECT c.name, SUM(i.amount) FROM public.invoices i JOIN customers c ON c.id = i.customer_id GROUP BY 1";
    join_self:
        "SELECT a.id, b.id FROM invoices a JOIN invoices b ON a.customer_id = b.customer_id AND a.id < b.id";
    join_self_unaliased_and_aliased:
        "SELECT invoices.id, later.id FROM invoices JOIN invoices later ON later.issued_on > invoices.issued_on";
    join_left_right_full:
        "SELECT f.name, d.title, b.content, it.name FROM folders f LEFT JOIN documents d ON d.folder_id = f.id RIGHT JOIN blocks b ON b.document_id = d.id FULL JOIN items it ON true";
    join_using_and_natural:
        "SELECT * FROM invoices JOIN transactions USING (id, department) CROSS JOIN (folders NATURAL JOIN documents)";
    join_parenthesized:
        "SELECT * FROM (invoices i JOIN customers c ON c.id = i.customer_id) LEFT JOIN transactions t ON t.invoice_id = i.id";
    join_cross_and_comma:
        "SELECT count(*) FROM orders CROSS JOIN order_items, folders";
    join_unaliased_qualified_columns:
        "SELECT orders.id, order_items.product FROM orders JOIN order_items ON order_items.order_id = orders.id";

    // --- subqueries in every clause ------------------------------------------------------------
    subquery_in_select_correlated:
        "SELECT i.id, (SELECT name FROM customers c WHERE c.id = i.customer_id) AS customer FROM invoices i";
    subquery_in_where_in:
        "SELECT id, amount FROM invoices WHERE customer_id IN (SELECT id FROM customers WHERE active)";
    subquery_in_where_exists:
        "SELECT i.id FROM invoices i WHERE EXISTS (SELECT 1 FROM transactions t WHERE t.invoice_id = i.id)";
    subquery_in_where_not_exists_and_not_in:
        "SELECT id FROM invoices i WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.invoice_id = i.id) AND customer_id NOT IN (SELECT id FROM customers WHERE NOT active)";
    subquery_in_where_any_all:
        "SELECT id FROM invoices WHERE amount > ALL (SELECT amount FROM transactions) OR amount = ANY (SELECT total FROM orders)";
    subquery_in_having:
        "SELECT department, count(*) FROM invoices GROUP BY department HAVING sum(amount) > (SELECT avg(amount) FROM transactions)";
    subquery_in_order_by:
        "SELECT * FROM invoices ORDER BY (SELECT count(*) FROM transactions t WHERE t.invoice_id = invoices.id) DESC";
    subquery_in_from:
        "SELECT x.department, x.total FROM (SELECT department, sum(amount) AS total FROM invoices GROUP BY department) x WHERE x.total > 1000";
    subquery_in_join_on:
        "SELECT c.name FROM customers c JOIN invoices i ON i.customer_id = c.id AND i.amount > (SELECT avg(amount) FROM invoices)";
    subquery_in_case_and_function_args:
        "SELECT CASE WHEN amount > (SELECT avg(amount) FROM invoices) THEN 'high' ELSE 'low' END, coalesce((SELECT max(amount) FROM transactions t WHERE t.invoice_id = i.id), 0) FROM invoices i";
    subquery_nested_three_levels:
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM invoices WHERE id IN (SELECT invoice_id FROM transactions WHERE amount > (SELECT avg(amount) FROM transactions)))";
    subquery_array_constructor:
        "SELECT o.id, ARRAY(SELECT product FROM order_items oi WHERE oi.order_id = o.id) AS products FROM orders o";
    subquery_in_values:
        "VALUES ((SELECT max(amount) FROM invoices), (SELECT count(*) FROM customers))";

    // --- LATERAL -----------------------------------------------------------------------------------
    lateral_subquery:
        "SELECT c.name, x.total FROM customers c, LATERAL (SELECT sum(amount) AS total FROM invoices i WHERE i.customer_id = c.id) x";
    lateral_cross_join_top_one:
        "SELECT c.name, top.amount FROM customers c CROSS JOIN LATERAL (SELECT amount FROM invoices i WHERE i.customer_id = c.id ORDER BY amount DESC LIMIT 1) top";
    lateral_left_join_on_true:
        "SELECT o.id, last_item.product FROM orders o LEFT JOIN LATERAL (SELECT product FROM order_items WHERE order_id = o.id ORDER BY id DESC LIMIT 1) last_item ON true";

    // --- set operations ------------------------------------------------------------------------
    set_union:
        "SELECT id, amount FROM invoices UNION SELECT invoice_id, amount FROM transactions";
    set_union_all_order_by:
        "SELECT id FROM orders UNION ALL SELECT order_id FROM order_items ORDER BY 1 LIMIT 10";
    set_intersect:
        "SELECT id FROM invoices INTERSECT SELECT invoice_id FROM transactions";
    set_except:
        "SELECT id FROM invoices EXCEPT SELECT invoice_id FROM transactions";
    set_parenthesized_branches:
        "(SELECT id FROM documents ORDER BY id LIMIT 3) UNION ALL (SELECT document_id FROM blocks LIMIT 3) EXCEPT SELECT folder_id FROM documents";

    // --- agent CTEs -------------------------------------------------------------------------------
    cte_named_like_policy_table:
        "WITH invoices AS (SELECT * FROM invoices WHERE amount > 100) SELECT department, count(*) FROM invoices GROUP BY department";
    cte_chain:
        "WITH big AS (SELECT * FROM invoices WHERE amount > 1000), per_dept AS (SELECT department, count(*) AS n FROM big GROUP BY 1) SELECT * FROM per_dept ORDER BY n DESC";
    cte_recursive_counter:
        "WITH RECURSIVE months(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM months WHERE n < 12) SELECT m.n, (SELECT count(*) FROM invoices WHERE extract(month FROM issued_on) = m.n) FROM months m";
    cte_recursive_over_policy_table:
        "WITH RECURSIVE chain AS (SELECT id, total FROM orders WHERE id = 1 UNION ALL SELECT o.id, o.total FROM orders o JOIN chain c ON o.id = c.id + 1) SELECT * FROM chain";
    cte_earlier_sibling_sees_the_table:
        "WITH x AS (SELECT * FROM invoices), invoices AS (SELECT id FROM x WHERE amount > 10) SELECT * FROM invoices";
    cte_later_sibling_sees_the_cte:
        "WITH invoices AS (SELECT 1 AS id), x AS (SELECT * FROM invoices) SELECT x.id, t.amount FROM x JOIN transactions t ON t.invoice_id = x.id";
    cte_recursive_forward_reference:
        "WITH RECURSIVE x AS (SELECT * FROM invoices), invoices AS (SELECT 1 AS id) SELECT * FROM x";
    cte_scope_ends_with_its_subquery:
        "SELECT * FROM (WITH invoices AS (SELECT 1 AS id) SELECT * FROM invoices) s, invoices";
    cte_shadowing_inside_exists_only:
        "SELECT * FROM customers c WHERE EXISTS (WITH customers AS (SELECT 1 AS id) SELECT 1 FROM customers WHERE customers.id = c.id) AND c.id IN (SELECT id FROM customers)";
    cte_shadowing_in_a_scalar_subquery_only:
        "SELECT (WITH invoices AS (SELECT 2 AS amount) SELECT max(amount) FROM invoices) AS fake, (SELECT max(amount) FROM invoices) AS real";
    cte_name_taken_by_agent:
        "WITH rg_invoices AS (SELECT 1 AS x) SELECT * FROM rg_invoices, invoices";
    cte_materialized_by_agent:
        "WITH recent AS MATERIALIZED (SELECT * FROM orders WHERE placed_at > now() - interval '30 days') SELECT count(*) FROM recent";
    cte_in_union_branch:
        "SELECT id FROM invoices UNION ALL (WITH invoices AS (SELECT 42 AS id) SELECT id FROM invoices)";

    // --- windows, grouping, distinct ----------------------------------------------------------
    window_rank_partition:
        "SELECT id, amount, rank() OVER (PARTITION BY department ORDER BY amount DESC) AS r FROM invoices";
    window_named_and_frame:
        "SELECT id, sum(amount) OVER w AS running, avg(amount) OVER (ORDER BY issued_on ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM invoices WINDOW w AS (PARTITION BY department ORDER BY issued_on)";
    group_by_having:
        "SELECT department, count(*) AS n, sum(amount) FROM invoices GROUP BY department HAVING count(*) > 2 ORDER BY n DESC";
    group_by_output_alias:
        "SELECT lower(name) AS n, count(*) FROM customers GROUP BY n ORDER BY n";
    group_by_rollup_and_grouping_sets:
        "SELECT department, date_trunc('month', issued_on) AS month, sum(amount) FROM invoices GROUP BY GROUPING SETS ((department), (department, 2), ())";
    aggregate_filter_and_within_group:
        "SELECT count(*) FILTER (WHERE amount > 100), percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM invoices";
    distinct_on:
        "SELECT DISTINCT ON (department) department, id, amount FROM invoices ORDER BY department, amount DESC";

    // --- VALUES and set-returning functions ---------------------------------------------------
    values_joined_to_a_table:
        "SELECT v.label, i.amount FROM (VALUES (1, 'first'), (2, 'second')) AS v(id, label) JOIN invoices i ON i.id = v.id";
    generate_series_months:
        "SELECT d::date AS month, count(i.id) FROM generate_series('2024-01-01'::date, '2024-12-01'::date, interval '1 month') AS d LEFT JOIN invoices i ON date_trunc('month', i.issued_on) = d GROUP BY 1 ORDER BY 1";
    generate_series_lateral:
        "SELECT x, o.id FROM orders o, LATERAL generate_series(1, 3) x";
    unnest_with_ordinality:
        "SELECT it.name, t.tag, t.n FROM items it, unnest(it.tags) WITH ORDINALITY AS t(tag, n)";

    // --- retrieval ------------------------------------------------------------------------------
    vector_nearest_blocks:
        "SELECT id FROM blocks ORDER BY embedding <=> '[0.1,0.2,0.3,0.4]' LIMIT 5";
    vector_nearest_with_documents:
        "SELECT d.title, b.content FROM blocks b JOIN documents d ON d.id = b.document_id ORDER BY b.embedding <=> '[0.1, 0.2, 0.3, 0.4]' LIMIT 5";

    // --- names: schema-qualified, quoted, case ---------------------------------------------
    qualified_table_and_column:
        "SELECT public.invoices.amount, invoices.id FROM public.invoices WHERE public.invoices.amount > 10";
    qualified_column_unqualified_table:
        "SELECT public.invoices.amount FROM invoices";
    qualified_wildcard:
        "SELECT public.invoices.* FROM public.invoices";
    quoted_names:
        "SELECT \"invoices\".\"amount\" FROM \"public\".\"invoices\" JOIN \"customers\" c ON c.\"id\" = \"invoices\".customer_id";
    upper_case_names:
        "SELECT INVOICES.AMOUNT, Invoices.Id FROM PUBLIC.INVOICES";
    qualified_with_alias:
        "SELECT i.amount FROM public.invoices AS i WHERE i.id = 1";

    // --- columns -----------------------------------------------------------------------------
    star_on_a_table_with_a_column_list:
        "SELECT * FROM customers";
    whole_row_reference:
        "SELECT c.id, row_to_json(c) AS customer FROM customers c ORDER BY c.id";
    qualified_star_with_join:
        "SELECT c.*, i.amount FROM customers c JOIN invoices i ON i.customer_id = c.id";

    // --- expressions ------------------------------------------------------------------------------
    json_accessors:
        "SELECT metadata->>'channel' AS channel, count(*) FROM orders WHERE (metadata->'gift')::boolean GROUP BY 1";
    array_any:
        "SELECT id, name FROM items WHERE 'urgent' = ANY(tags) AND NOT archived";
    dates_and_strings:
        "SELECT to_char(issued_on, 'YYYY-MM') AS ym, upper(department), round(avg(amount), 2) FROM invoices WHERE issued_on >= date '2024-01-01' GROUP BY 1, 2";
    limit_offset_fetch:
        "SELECT id FROM invoices ORDER BY id OFFSET 10 ROWS FETCH FIRST 5 ROWS ONLY";
    named_function_argument:
        "SELECT name, created_at + make_interval(days => 30) AS renewal FROM customers";
    side_channel_predicate:
        "SELECT * FROM invoices WHERE amount = 777 AND 1 / (amount - 777) = 0";
    no_table_at_all:
        "SELECT 1 + 1 AS two, now()";
}
