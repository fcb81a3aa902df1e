//! What the fence wraps, what it leaves alone, and the names it keeps.

use super::super::after_pass;
use super::*;

fn fenced(sql: &str) -> String {
    after_pass(sql, fence)
}

/// The two passes of layer 5, in the pipeline's order.
fn both_fences(query: &mut Query) {
    super::super::subqueries::fence(query);
    fence(query);
}

#[test]
fn conjuncts_that_are_not_plain_tests_are_wrapped_whole() {
    // What PostgreSQL folds to a cast with no column under it (issue 20): the shape decides,
    // not whether a column is written.
    for filter in [
        "CASE WHEN c.d = 'V' THEN COALESCE('x', c.name)::DATE END IS NULL",
        "CASE WHEN c.d = 'V' THEN (CASE WHEN false THEN c.name ELSE 'x' END)::DATE END IS NULL",
        "c.name LIKE 'a%'",
        "upper(c.name) = 'A'",
        // A subquery's output may be replaced by a constant, which a cast would then parse.
        "s.k::DATE = '2024-01-01'",
        "s.k + 1 = 2",
        "(c.d = 'V' OR upper(c.name) = 'A')",
        // A whole row, and `s.f` where `s` has no output `f`: the call `f(s)`.
        "c = c",
        "s.hash_record = 1",
    ] {
        assert_eq!(
            fenced(&format!("SELECT 1 FROM t AS c, (SELECT 1 AS k) AS s WHERE c.id = 7 AND {filter}")),
            format!("SELECT 1 FROM t AS c, (SELECT COALESCE((SELECT 1), NULL) AS k) AS s WHERE c.id = 7 AND COALESCE({filter}, NULL)"),
        );
    }
}

#[test]
fn plain_tests_stay_bare_and_keep_their_index_conditions() {
    for filter in [
        "c.id = 7 AND c.d <> 'V' AND c.n BETWEEN 1 AND 5 AND c.d IN ('a', 'b') AND c.e IS NULL",
        "(c.id = 7 OR c.id = 8) AND NOT c.flag AND c.d = ANY(ARRAY['a', 'b'])",
        "c.id = s.k AND c.id IN (SELECT id FROM u) AND EXISTS (SELECT 1 FROM u WHERE u.id = c.id)",
        "created_at >= CURRENT_DATE - INTERVAL '30 days' AND c.id IS DISTINCT FROM 3",
        // Casts and arithmetic of this level's table columns keep a column under every call.
        "c.name::DATE = '2024-01-01' AND c.n + 1 = 2 AND -c.n * 2 < c.m",
    ] {
        let sql = format!("SELECT 1 FROM t AS c, (SELECT u.id AS k FROM u) AS s WHERE {filter}");
        assert_eq!(fenced(&sql), sql);
    }
    // An outer query's column is a constant to the inner query: a cast of it is wrapped.
    assert_eq!(
        fenced("SELECT (SELECT 1 FROM u WHERE u.d = t.name::DATE AND u.id = t.id) FROM t"),
        "SELECT (SELECT COALESCE((SELECT 1), NULL) AS \"?column?\" FROM u \
         WHERE COALESCE(u.d = t.name::DATE, NULL) AND u.id = t.id) FROM t"
    );
    // Only the operand that reads no column is fenced; the comparison stays a comparison.
    assert_eq!(
        fenced("SELECT 1 FROM t WHERE id = 2 + 3 AND d = random()"),
        "SELECT 1 FROM t WHERE id = COALESCE(2 + 3, NULL) AND d = COALESCE(random(), NULL)"
    );
}

#[test]
fn inner_outputs_that_could_fold_are_wrapped_and_distinct_order_by_follows() {
    assert_eq!(
        fenced("SELECT * FROM (SELECT id, t.d, CASE WHEN false THEN name ELSE 'x' END, upper(name) AS u, unnest(a) FROM t) AS s"),
        "SELECT * FROM (SELECT id, t.d, COALESCE(CASE WHEN false THEN name ELSE 'x' END, NULL) AS \"case\", \
         COALESCE(upper(name), NULL) AS u, unnest(a) FROM t) AS s"
    );
    assert_eq!(
        fenced("SELECT * FROM (SELECT DISTINCT upper(name) FROM t ORDER BY upper(name)) AS s"),
        "SELECT * FROM (SELECT DISTINCT COALESCE(upper(name), NULL) AS upper FROM t ORDER BY COALESCE(upper(name), NULL)) AS s"
    );
    // DISTINCT ON's expressions must match the ORDER BY's first ones, as written.
    assert_eq!(
        fenced("SELECT * FROM (SELECT DISTINCT ON (upper(name)) upper(name) FROM t ORDER BY upper(name)) AS s"),
        "SELECT * FROM (SELECT DISTINCT ON (upper(name)) COALESCE(upper(name), NULL) AS upper FROM t ORDER BY upper(name)) AS s"
    );
}

#[test]
fn column_free_parts_of_filters_are_wrapped_at_every_level() {
    assert_eq!(
        fenced("SELECT a FROM t WHERE b = random()::INT / 0 AND c = 1"),
        "SELECT a FROM t WHERE b = COALESCE(random()::INT / 0, NULL) AND c = 1"
    );
    assert_eq!(
        fenced("SELECT a FROM t JOIN u ON u.a = t.a AND u.d = CASE WHEN t.b = 1 THEN ('x' || '')::DATE END"),
        "SELECT a FROM t JOIN u ON u.a = t.a AND COALESCE(u.d = CASE WHEN t.b = 1 THEN ('x' || '')::DATE END, NULL)"
    );
    assert_eq!(
        fenced("SELECT a FROM t GROUP BY a HAVING a = 'x' AND random() > 2"),
        "SELECT a FROM t GROUP BY a HAVING a = 'x' AND COALESCE(random() > 2, NULL)"
    );
    assert_eq!(
        fenced("SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a AND u.b = random())"),
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a AND u.b = COALESCE(random(), NULL))"
    );
    assert_eq!(
        fenced("SELECT * FROM (VALUES (1, random(), NULL)) AS v (a, b, c)"),
        "SELECT * FROM (VALUES (COALESCE((SELECT 1), NULL), COALESCE((SELECT random()), NULL), COALESCE((SELECT NULL), NULL))) AS v (a, b, c)"
    );
    // A NULL in a set operation's branch takes its type from the other branches.
    assert_eq!(
        fenced("SELECT * FROM (SELECT NULL UNION ALL SELECT 1) AS s"),
        "SELECT * FROM (SELECT NULL UNION ALL SELECT COALESCE((SELECT 1), NULL) AS \"?column?\") AS s"
    );
    // A function in FROM that could fold to a constant; a set-returning one cannot.
    assert_eq!(
        fenced("SELECT * FROM t, upper('x') AS u, generate_series(1, 3) AS g"),
        "SELECT * FROM t, upper(COALESCE((SELECT 'x'), NULL)) AS u, generate_series(1, 3) AS g"
    );
    assert_eq!(
        fenced("SELECT a FROM t WHERE b = 5.5::MONEY AND c = '5.5'::MONEY"),
        "SELECT a FROM t WHERE b = COALESCE(5.5::MONEY, NULL) AND c = '5.5'::MONEY"
    );
    assert_eq!(
        fenced("SELECT * FROM (VALUES (1, random()), (2, 'x')) AS v (a, b)"),
        "SELECT * FROM (VALUES (1, COALESCE(random(), NULL)), (2, 'x')) AS v (a, b)"
    );
}

#[test]
fn inner_select_lists_are_wrapped_under_the_same_name_and_the_outermost_is_not() {
    // A subquery's outputs reach the parent's filters when PostgreSQL pulls it up, so a
    // column-free output is computed in a subquery of its own, which no constant folding sees
    // through; each keeps the name PostgreSQL gave it.
    assert_eq!(
        fenced("SELECT random(), x FROM (SELECT random(), random()::INT AS r, (random() + 1)::INT, 1 + random(), 'a', id FROM t) AS s"),
        "SELECT random(), x FROM (SELECT COALESCE((SELECT random()), NULL) AS random, \
         COALESCE((SELECT random()::INT), NULL) AS r, COALESCE((SELECT (random() + 1)::INT), NULL) AS int4, \
         COALESCE((SELECT 1 + random()), NULL) AS \"?column?\", COALESCE((SELECT 'a'), NULL) AS \"?column?\", \
         id FROM t) AS s"
    );
    assert_eq!(
        fenced("SELECT 1 UNION SELECT random() UNION (SELECT random())"),
        "SELECT 1 UNION SELECT random() UNION (SELECT random())"
    );
    // EXISTS never reads its select list.
    let sql = "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)";
    assert_eq!(fenced(sql), sql);
}

#[test]
fn wrapped_outputs_keep_the_names_postgresql_gives_them() {
    let names = [
        ("trim(' a ' || '')", "btrim"),
        ("trim(LEADING 'x' FROM 'xa')", "ltrim"),
        ("substr('abc' || '', 2)", "substr"),
        ("substring('abc' FROM 2)", "substring"),
        ("('b' || '') COLLATE \"C\"", "\"?column?\""),
        ("lower('A') COLLATE \"C\"", "lower"),
        ("(now() - INTERVAL '1 day')::TIMESTAMP", "timestamp"),
        ("('{}' || '')::JSONB", "jsonb"),
        ("CASE WHEN random() > 0.5 THEN 1 END", "\"case\""),
        ("CASE WHEN random() > 0.5 THEN 1 ELSE abs(-1) END", "abs"),
        ("EXTRACT(YEAR FROM now())", "extract"),
    ];
    for (expr, name) in names {
        let out = fenced(&format!("SELECT * FROM (SELECT {expr}) AS s"));
        assert!(
            out.ends_with(&format!(") AS {name}) AS s")),
            "{expr}: {out}"
        );
    }
}

#[test]
fn literals_aggregates_and_the_current_time_are_left_alone() {
    let untouched = [
        "SELECT a FROM t WHERE b = 1 AND c IN ('x', 'y') AND d = -2 AND e = DATE '2024-01-01' AND f = '2024-01-01'::DATE",
        "SELECT a FROM t WHERE d >= CURRENT_DATE - INTERVAL '30 days' AND d < now() + INTERVAL '1' YEAR",
        "SELECT a FROM t WHERE d >= date_trunc('month', now())::DATE - 7 AND e > now()::DATE",
        "SELECT a FROM t GROUP BY a HAVING count(*) > 1 AND sum(b) > 0",
        "SELECT * FROM (SELECT generate_series(1, 3)::INT AS n, unnest(ARRAY[1, 2])) AS s",
    ];
    for sql in untouched {
        assert_eq!(fenced(sql), sql);
    }
    // An interval that could leave the dates PostgreSQL holds, or an unknown unit, is wrapped.
    assert_eq!(
        fenced("SELECT a FROM t WHERE d > now() - INTERVAL '300000 years' AND e = date_trunc('bogus', now())"),
        "SELECT a FROM t WHERE d > COALESCE(now() - INTERVAL '300000 years', NULL) \
         AND e = COALESCE(date_trunc('bogus', now()), NULL)"
    );
    let far = format!("now(){}", " + INTERVAL '1000 years'".repeat(300));
    assert_eq!(
        fenced(&format!("SELECT a FROM t WHERE d > {far}")),
        format!("SELECT a FROM t WHERE d > COALESCE({far}, NULL)")
    );
    // rowgate's own COALESCE around a subquery is an operand like any other.
    assert_eq!(
        after_pass(
            "SELECT a FROM t WHERE b = (SELECT max(b) FROM u)",
            both_fences
        ),
        "SELECT a FROM t WHERE b = COALESCE((SELECT max(b) FROM u), NULL)"
    );
    let near = "now() - INTERVAL '1000 years' - INTERVAL '1000 years' - INTERVAL '1000 years'";
    let sql = format!("SELECT a FROM t WHERE d > {near}");
    assert_eq!(fenced(&sql), sql);
    assert_eq!(
        fenced("SELECT a FROM t WHERE d > CURRENT_DATE - 999999999"),
        "SELECT a FROM t WHERE d > COALESCE(CURRENT_DATE - 999999999, NULL)"
    );
}

#[test]
fn a_star_over_a_policy_table_has_that_tables_columns() {
    let fenced_with = |sql: &str, tables: &Tables| {
        let mut statements = sqlparser::parser::Parser::parse_sql(&crate::sql::DIALECT, sql)
            .expect("test SQL parses");
        let Some(sqlparser::ast::Statement::Query(query)) = statements.first_mut() else {
            panic!("not a query: {sql}")
        };
        fence_with(query, tables);
        query.to_string()
    };
    let sql = "WITH x AS (SELECT * FROM t) SELECT x.b FROM x JOIN u ON u.a = x.id";
    let columns = ["id".to_string(), "b".to_string()];
    let tables = Tables::from([("t", &columns[..])]);
    assert_eq!(fenced_with(sql, &tables), sql);
    // A known column of this level's table, unqualified, may be cast and computed with; a
    // name it does not have may be an outer query's.
    let inner = "SELECT (SELECT 1 FROM t WHERE b = id / 2 AND b = c::INT) FROM u";
    assert_eq!(
        fenced_with(inner, &tables),
        "SELECT (SELECT COALESCE((SELECT 1), NULL) AS \"?column?\" FROM t WHERE b = id / 2 \
         AND COALESCE(b = c::INT, NULL)) FROM u"
    );
    // Not knowing `t`'s columns, `x.id` could be the call `id(x)`.
    assert_eq!(
        fenced_with(sql, &Tables::new()),
        "WITH x AS (SELECT * FROM t) SELECT x.b FROM x JOIN u ON COALESCE(u.a = x.id, NULL)"
    );
}
