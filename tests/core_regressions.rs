//! Regression tests for bugs found in the core (parse, guard, resolve, rewrite) while writing
//! the snapshot, refusal and property suites. Each test names the bug it pins down.

use std::path::Path;

use rowgate::check::check_rewritten;
use rowgate::parse::Limits;
use rowgate::pipeline::{rewrite, Rewritten};
use rowgate::policy::Policy;
use rowgate::refusal::Refusal;

fn policy() -> Policy {
    Policy::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("demo policy loads")
}

fn ok(sql: &str) -> Rewritten {
    let policy = policy();
    let out = rewrite(sql, &policy, &Limits::default())
        .unwrap_or_else(|e| panic!("{sql}\nrefused ({}): {e}", e.code()));
    check_rewritten(&out.sql, &policy).unwrap_or_else(|e| panic!("{sql}\n{}\n{e}", out.sql));
    out
}

fn refused(sql: &str) -> (String, String, String) {
    match rewrite(sql, &policy(), &Limits::default()) {
        Ok(out) => panic!("{sql}\nwas rewritten to\n{}", out.sql),
        Err(e) => (e.code().as_str().to_string(), e.to_string(), e.hint()),
    }
}

/// Bypass: sqlparser's identifier folding used Unicode `to_lowercase`, PostgreSQL (UTF-8) folds
/// ASCII only. `bloc\u{212A}s` (KELVIN SIGN) folded to `blocks`, so the agent CTE was taken to
/// shadow the table and `FROM blocks` was left pointing at the real `public.blocks`.
#[test]
fn a_kelvin_sign_cte_does_not_shadow_a_policy_table() {
    let out = ok("WITH bloc\u{212A}s AS (SELECT 1 AS id) SELECT * FROM blocks");
    assert_eq!(
        out.sql,
        "WITH rg_blocks AS NOT MATERIALIZED (SELECT * FROM rowgate.blocks), bloc\u{212A}s AS (SELECT COALESCE((SELECT 1), NULL) AS id) SELECT * FROM rg_blocks AS blocks"
    );
    // The reverse: a table written with the Kelvin sign is not the policy table.
    let (code, ..) = refused("SELECT * FROM bloc\u{212A}s");
    assert_eq!(code, "table_not_allowed");
}

/// Bypass (stopped only by PostgreSQL's syntax error): sqlparser accepts `'name'` as an
/// identifier, so `WITH 'invoices' AS (...)` shadowed the table in the rewriter's eyes and
/// `FROM invoices` was not rewritten. Single-quoted names are refused outright.
#[test]
fn single_quoted_names_are_refused() {
    for sql in [
        "WITH 'invoices' AS (SELECT 1 AS id) SELECT * FROM invoices",
        "SELECT * FROM 'invoices'",
        "SELECT * FROM invoices AS 'i'",
        "SELECT amount AS 'a' FROM invoices",
    ] {
        let (code, message, hint) = refused(sql);
        assert_eq!(code, "parse_error", "{sql}: {message}");
        assert!(hint.contains("double quotes"), "{sql}: {hint}");
    }
}

/// Named function arguments (`f(days => 1)`) were read as the bare column `days`, and refused
/// as a hidden column of `customers`.
#[test]
fn named_function_arguments_are_not_columns() {
    let out = ok("SELECT name, make_interval(days => id) FROM customers");
    assert!(out
        .sql
        .ends_with("SELECT name, make_interval(days => id) FROM rg_customers AS customers"));
    // `days := 1` is a named argument to PostgreSQL but an expression to sqlparser: refused.
    let (code, message, _) = refused("SELECT make_interval(days := 1) FROM customers");
    assert_eq!(code, "statement_not_allowed", "{message}");
    assert!(message.contains("=>"), "{message}");
    ok("SELECT * FROM customers, generate_series(start => 1, stop => 3) AS g");
    // The value is still a column reference and still checked.
    let (code, message, _) = refused("SELECT make_interval(days => email) FROM customers");
    assert_eq!(code, "column_not_allowed", "{message}");
}

/// Only a plain name may name an argument (sqlparser accepts any expression there).
#[test]
fn named_function_arguments_must_be_names() {
    let (code, message, _) = refused("SELECT make_interval((SELECT 1) => 1)");
    assert!(
        code == "statement_not_allowed" || code == "parse_error",
        "{code}: {message}"
    );
}

/// `public.invoices.amount` with the table written `FROM invoices` (no schema) is valid in
/// PostgreSQL; the qualifier was left as is and the rewritten query no longer ran.
#[test]
fn schema_qualified_columns_work_with_an_unqualified_table() {
    let out = ok("SELECT public.invoices.amount FROM invoices");
    assert!(
        out.sql
            .ends_with("SELECT invoices.amount FROM rg_invoices AS invoices"),
        "{}",
        out.sql
    );
}

/// `0b101` is 5 in PostgreSQL 16 but sqlparser reads `0 AS b101`: a number glued to a word is
/// refused rather than silently changed.
#[test]
fn numbers_glued_to_words_are_refused() {
    for sql in ["SELECT 0b101", "SELECT 0o17 FROM invoices", "SELECT 123abc"] {
        let (code, message, _) = refused(sql);
        assert_eq!(code, "parse_error", "{sql}: {message}");
    }
    ok("SELECT 1e5, 1.5e-3, .5, 5. FROM invoices");
}

/// Bypass (SQL injection through printing): sqlparser prints `- -1` as `--1`, which PostgreSQL
/// reads as the start of a comment. A string literal with a newline then turns the rest of the
/// agent's text into live SQL that the rewriter never saw:
/// `SELECT - -1 AS x, 'a<newline>1 AS x, * FROM app_users --' FROM invoices`
/// was printed as `... SELECT --1 AS x, 'a<newline>1 AS x, * FROM app_users --' FROM rg_invoices`,
/// and PostgreSQL ran `SELECT 1 AS x, * FROM app_users`.
#[test]
fn stacked_prefix_operators_cannot_print_a_comment() {
    let attack = "SELECT - -1 AS x, 'a\n1 AS x, * FROM app_users --' FROM invoices";
    let (code, message, hint) = refused(attack);
    assert_eq!(code, "statement_not_allowed", "{message}");
    assert!(hint.contains("parentheses"), "{hint}");
    for sql in [
        "SELECT - -1",
        "SELECT - - amount FROM invoices",
        "SELECT -(- -1)",
        "SELECT 1 - - -1",
        "SELECT ~ -1",
        "SELECT - +1",
        "SELECT @ -1",
        "SELECT |/ -4",
    ] {
        let (code, message, _) = refused(sql);
        assert_eq!(code, "statement_not_allowed", "{sql}: {message}");
    }
    // The unambiguous spellings still work, and print without `--`.
    for sql in [
        "SELECT -(-1)",
        "SELECT 1 - -1",
        "SELECT -amount FROM invoices",
    ] {
        let out = ok(sql);
        assert!(!out.sql.contains("--"), "{}", out.sql);
    }
}

/// Whatever the printer does, the text sent to PostgreSQL never holds a comment: the pipeline
/// re-tokenizes its output and refuses one that does (a net under the guard's rule above).
#[test]
fn the_printed_sql_never_holds_a_comment() {
    use rowgate::pipeline::printed_sql_is_plain;
    assert!(printed_sql_is_plain(
        "SELECT 1 - -1, '--', \"a--b\", $$/*$$"
    ));
    assert!(!printed_sql_is_plain("SELECT --1\n, 2"));
    assert!(!printed_sql_is_plain("SELECT 1 /* x */"));
}

/// PostgreSQL truncates names to 63 bytes, so two different long names the rewriter keeps apart
/// are one name to PostgreSQL. Names longer than that are refused.
#[test]
fn names_longer_than_postgresql_keeps_are_refused() {
    let long = "x".repeat(64);
    for sql in [
        format!("WITH {long} AS (SELECT 1) SELECT * FROM {long}"),
        format!("SELECT amount AS {long} FROM invoices"),
        format!("SELECT * FROM invoices {long}"),
    ] {
        let (code, message, hint) = refused(&sql);
        assert_eq!(code, "parse_error", "{message}");
        assert!(hint.contains("63"), "{hint}");
    }
    ok(&format!(
        "SELECT amount AS {} FROM invoices",
        "x".repeat(63)
    ));
}

/// `regclass 'pg_shadow'` (a typed literal) looked the name up in the catalog like
/// `'pg_shadow'::regclass`, but only the `::` spelling was refused.
#[test]
fn typed_literals_of_catalog_types_are_refused() {
    for (sql, expected) in [
        ("SELECT regclass 'pg_shadow'", "statement_not_allowed"),
        ("SELECT REGCLASS 'pg_authid'", "statement_not_allowed"),
        // sqlparser reads these as a column with a single-quoted alias: refused as such.
        ("SELECT regproc 'set_config'", "parse_error"),
        ("SELECT customers '(1,2)'", "parse_error"),
        // sqlparser reads this one as a column with the alias 'pg_authid': refused as such.
        ("SELECT pg_catalog.regclass 'pg_authid'", "parse_error"),
    ] {
        let (code, message, _) = refused(sql);
        assert_eq!(code, expected, "{sql}: {message}");
    }
    ok("SELECT date '2024-01-01', timestamp '2024-01-01 10:00', interval '1 day'");
}

/// A cast to a table's row type reads the catalog for that table (`'(1,...)'::customers`
/// answers with the base table's column names, hidden ones included, through `to_jsonb`), and
/// types outside a known built-in list are not needed for analytics. Default deny.
#[test]
fn casts_to_row_types_and_unknown_types_are_refused() {
    for sql in [
        "SELECT to_jsonb('(1,a,b,c,true,2020-01-01,x)'::customers)",
        "SELECT to_jsonb('(1)'::public.customers)",
        "SELECT NULL::app_users",
        "SELECT CAST(NULL AS pg_catalog.pg_authid)",
        "SELECT '(0,1)'::tid",
        "SELECT NULL::record",
        "SELECT 'x'::anyelement",
        "SELECT ARRAY[]::customers[]",
    ] {
        let (code, message, hint) = refused(sql);
        assert_eq!(code, "statement_not_allowed", "{sql}: {message}");
        assert!(hint.contains("text"), "{hint}");
    }
    ok(
        "SELECT 1::int4, 2::float8, '{}'::jsonb, 'a'::citext, '[1,2]'::vector, '10.0.0.1'::inet, \
        'x'::bpchar, 'a'::\"char\", '[1,3)'::int4range, 1::pg_catalog.int8, now()::timestamptz, \
        '1'::numeric(10, 2), 'x'::varchar(3), 'x'::text[]",
    );
}

/// A FROM item's name used as a value is a whole-row reference (`row_to_json(c)`); it was
/// refused as a hidden column `c` of `customers`. The row holds the permission CTE's columns
/// only, so nothing hidden comes with it.
#[test]
fn whole_row_references_are_not_hidden_columns() {
    for sql in [
        "SELECT row_to_json(c) FROM customers c",
        "SELECT json_agg(c) FROM customers c",
        "SELECT to_jsonb(customers) FROM customers",
        "SELECT customers FROM customers",
        "SELECT (SELECT json_agg(c) FROM customers c2 WHERE c2.id = c.id) FROM customers c",
    ] {
        let out = ok(sql);
        assert!(
            out.sql
                .starts_with("WITH rg_customers AS NOT MATERIALIZED (SELECT id, name, department, active, created_at FROM rowgate.customers)"),
            "{}",
            out.sql
        );
    }
    // A name that is neither a column nor a FROM item in reach is still refused.
    let (code, message, _) = refused("SELECT row_to_json(x) FROM customers c");
    assert_eq!(code, "column_not_allowed", "{message}");
}

/// Bypass of layer 3 (found by the layer-6 review): PostgreSQL reads `x.f`, when `x` is a FROM
/// function returning a scalar and has no column `f`, as the call `f(x)`. The guard saw a
/// column, so any one-argument function ran: `current_setting` read the signed caller,
/// `pg_stat_get_live_tuples` counted the rows of every table (2001 invoices for bob, who sees
/// 670), `pg_stat_get_backend_activity` read other requests' SQL, `ts_stat` ran a SQL string.
#[test]
fn a_function_called_as_a_column_of_a_from_function_is_refused() {
    for sql in [
        "SELECT s.current_setting FROM unnest(ARRAY['rowgate.caller']) AS s",
        "SELECT unnest.current_setting FROM unnest(ARRAY['rowgate.caller'])",
        "SELECT s.current_setting FROM unnest(ARRAY['rowgate.caller']) AS s(v)",
        "SELECT s.current_setting FROM jsonb_array_elements_text('[\"rowgate.caller\"]') AS s",
        "SELECT g.pg_stat_get_live_tuples FROM generate_series(16384, 20000) AS g",
        "SELECT g.pg_stat_get_backend_activity FROM generate_series(1, 100) AS g",
        "SELECT g.pg_terminate_backend FROM generate_series(1, 100000) AS g",
        "SELECT s.ts_stat FROM unnest(ARRAY['SELECT to_tsvector(query) FROM pg_stat_activity']) AS s",
        "SELECT s.pg_relation_size FROM unnest(ARRAY['public.invoices']) AS s",
        "SELECT count(*) FROM invoices i, generate_series(1, 2) AS g WHERE g.pg_sleep IS NULL",
        "SELECT current_setting.current_setting FROM jsonb_array_elements_text('[\"x\"]') AS current_setting",
    ] {
        let (code, message, _) = refused(sql);
        assert!(
            code == "column_not_allowed" || code == "function_not_allowed" || code == "statement_not_allowed",
            "{sql}: {code} {message}"
        );
    }
    // The columns such functions do have stay usable.
    for sql in [
        "SELECT g FROM generate_series(1, 3) AS g",
        "SELECT g.g FROM generate_series(1, 3) AS g",
        "SELECT d.day FROM generate_series(1, 3) AS d(day)",
        "SELECT u.x FROM unnest(ARRAY[1, 2]) AS u(x)",
        "SELECT e.key, e.value FROM jsonb_each('{\"a\": 1}') AS e",
        "SELECT t.value FROM jsonb_array_elements('[1]') AS t",
        "SELECT t.value, t.ordinality FROM jsonb_array_elements('[1]') WITH ORDINALITY AS t",
    ] {
        ok(sql);
    }
}

/// Printing divergence: sqlparser's string printer leaves a quote after a backslash, and two
/// quotes in a row, as they are (it guesses they are already escaped). The value `x\'`
/// (written `'x\'''`) printed as `'x\''`, which PostgreSQL reads as an unterminated string,
/// and `a''b` (written `'a''''b'`) as `'a''b'`, which it reads as `a'b`: the database would not
/// run the query that was checked. Such literals (and quoted names) are refused.
#[test]
fn literals_the_printer_cannot_write_back_are_refused() {
    for sql in [
        "SELECT 'x\\''' AS a",
        "SELECT 'a''''b' AS a",
        "SELECT count(*) FROM invoices WHERE department = 'x\\''' OR department = ' OR true'",
        "SELECT DATE 'x\\'''",
        "SELECT 1 AS \"a\\\"\"\"",
        "SELECT 1 AS \"a\"\"\"\"b\"",
    ] {
        match rewrite(sql, &policy(), &Limits::default()) {
            Err(_) => {}
            Ok(out) => {
                // Accepted only if the printed SQL reads back as the same query.
                let again =
                    rowgate::parse::parse(&out.sql, &Limits::default()).unwrap_or_else(|e| {
                        panic!("{sql}\nprinted as {}\nwhich does not parse: {e}", out.sql)
                    });
                assert_eq!(
                    again,
                    vec![sqlparser::ast::Statement::Query(out.query.clone())],
                    "{sql}\nprinted as {}",
                    out.sql
                );
            }
        }
    }
    // Ordinary quotes and backslashes are fine.
    ok("SELECT 'it''s' AS a, 'C:\\dir\\' AS b, E'\\'' AS c, '''' AS d");
}

/// PostgreSQL keeps 63 bytes of a name and silently cuts the rest. A permission CTE named
/// `rg_<table>_1` past 63 bytes was cut back to `rg_<table>`, the very name the agent's query
/// had taken, so the two could not be told apart (found in review: at worst the agent read its
/// own CTE or got an error, never the base table). Every generated name now fits, and a policy
/// table whose `rg_` name cannot fit is refused when the policy loads.
#[test]
fn generated_cte_names_fit_in_what_postgresql_keeps() {
    let long = "t".repeat(60);
    let policy = Policy::from_yaml(
        "long.yaml",
        &format!("tables:\n  {long}:\n    rows: \"true\"\n"),
    )
    .expect("a 60-byte table name loads");
    let taken = format!("rg_{long}");
    let sql = format!("WITH {taken} AS (SELECT 1 AS id) SELECT * FROM {long}, {taken}");
    let out = rewrite(&sql, &policy, &Limits::default())
        .unwrap_or_else(|e| panic!("refused ({}): {e}", e.code()));
    check_rewritten(&out.sql, &policy).unwrap_or_else(|e| panic!("{}\n{e}", out.sql));
    let cte = out.sql["WITH ".len()..]
        .split(' ')
        .next()
        .expect("a permission CTE first");
    assert!(cte.len() <= 63, "{cte} is {} bytes", cte.len());
    assert_ne!(cte, taken, "{}", out.sql);
    assert!(
        out.sql.contains(&format!("FROM {cte} AS {long}")),
        "{}",
        out.sql
    );

    let too_long = "t".repeat(61);
    let error = Policy::from_yaml(
        "long.yaml",
        &format!("tables:\n  {too_long}:\n    rows: \"true\"\n"),
    )
    .expect_err("a 61-byte table name is refused");
    assert!(error.to_string().contains("60 bytes"), "{error}");
}
