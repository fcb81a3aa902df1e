//! `encode` against a real PostgreSQL 15 (127.0.0.1:5432, user postgres, trust auth).
//!
//! Each test works in a database of its own, named after the process id and a counter, so the
//! tests run in parallel and the suite can run twice in a row (or in two processes at once).
//! A guard drops the database when the test ends, panics included.
//!
//! Besides exact expectations for literals of every supported type, some tests cross-check
//! the encoder against PostgreSQL's own text output over thousands of generated values, so
//! that the hand-written binary decoders are held to what the server itself prints.

use std::sync::atomic::{AtomicUsize, Ordering};

use rowgate::encode::{self, ColumnInfo, EncodeError, EncodedRow};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

const ADMIN: &str = "host=127.0.0.1 user=postgres dbname=postgres";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database that exists for one test; dropped (with its connections) when the guard is.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create() -> (TestDb, Client) {
        let name = format!(
            "rg_enc_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(ADMIN).await;
        // A leftover from a killed run that had the same pid would make CREATE fail.
        // Two calls: several statements in one simple query form one transaction, and neither
        // statement may run inside one.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
        }
        let guard = TestDb { name };
        let client = connect(&format!(
            "host=127.0.0.1 user=postgres dbname={}",
            guard.name
        ))
        .await;
        (guard, client)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on itself: do the work on a
        // thread with a runtime of its own and wait for it.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            runtime.block_on(async move {
                let admin = connect(ADMIN).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// PostgreSQL's own message, which tokio-postgres's `Display` leaves out ("db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

async fn connect(config: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(config, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect with {config:?}: {e}"));
    tokio::spawn(async move {
        // The connection ends with an error when its database is dropped under it; fine.
        let _ = connection.await;
    });
    client
}

/// The single row of `sql`, encoded, with the column descriptions.
async fn one_row(client: &Client, sql: &str) -> (Vec<ColumnInfo>, Result<EncodedRow, EncodeError>) {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
    assert_eq!(rows.len(), 1, "{sql}");
    (
        encode::columns(rows[0].columns()),
        encode::encode_row(&rows[0]),
    )
}

/// Checks each `(SQL expression, expected JSON, expected type)` in one SELECT: the value, the
/// type name, and the whole row's JSON text (so key order is checked too).
async fn check_values(client: &Client, cases: &[(&str, Value, &str)]) {
    let select = cases
        .iter()
        .enumerate()
        .map(|(i, (expr, _, _))| format!("{expr} AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (columns, row) = one_row(client, &format!("SELECT {select}")).await;
    let row = row.unwrap_or_else(|e| panic!("encode failed: {e}"));
    for (i, (expr, expected, ty)) in cases.iter().enumerate() {
        let key = format!("c{i}");
        assert_eq!(row.get(&key), Some(expected), "value of {expr}");
        assert_eq!(
            columns[i],
            ColumnInfo {
                name: key,
                r#type: (*ty).to_owned()
            },
            "column of {expr}"
        );
    }
    let expected_text = format!(
        "{{{}}}",
        cases
            .iter()
            .enumerate()
            .map(|(i, (_, v, _))| format!("\"c{i}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(serde_json::to_string(&row).unwrap(), expected_text);
}

#[tokio::test]
async fn numbers_and_booleans() {
    let (_db, client) = TestDb::create().await;
    check_values(
        &client,
        &[
            ("1::int2", json!(1), "int2"),
            ("(-32768)::int2", json!(-32768), "int2"),
            ("2147483647", json!(2147483647), "int4"),
            ("12345678901234::int8", json!(12345678901234i64), "int8"),
            ("9223372036854775807::int8", json!(i64::MAX), "int8"),
            ("(-9223372036854775808)::int8", json!(i64::MIN), "int8"),
            ("4294967295::oid", json!(4294967295u32), "oid"),
            ("1.5::float4", json!(1.5), "float4"),
            ("0.1::float4", json!(0.1), "float4"),
            ("'-Infinity'::float4", json!("-Infinity"), "float4"),
            ("0.1::float8", json!(0.1), "float8"),
            ("1e300::float8", json!(1e300), "float8"),
            ("'NaN'::float8", json!("NaN"), "float8"),
            ("'Infinity'::float8", json!("Infinity"), "float8"),
            (
                "123456789012345678901234567890.123456789::numeric",
                json!("123456789012345678901234567890.123456789"),
                "numeric",
            ),
            ("1234.50::numeric", json!("1234.50"), "numeric"),
            ("-0.5::numeric", json!("-0.5"), "numeric"),
            ("0::numeric(10,3)", json!("0.000"), "numeric"),
            ("1e-20::numeric", json!("0.00000000000000000001"), "numeric"),
            ("'NaN'::numeric", json!("NaN"), "numeric"),
            ("'Infinity'::numeric", json!("Infinity"), "numeric"),
            ("'-Infinity'::numeric", json!("-Infinity"), "numeric"),
            ("true", json!(true), "bool"),
            ("false", json!(false), "bool"),
        ],
    )
    .await;
}

#[tokio::test]
async fn int8_beyond_2_pow_53_is_exact_in_the_json_text() {
    let (_db, client) = TestDb::create().await;
    let (_, row) = one_row(&client, "SELECT 9007199254740993::int8 AS n").await;
    assert_eq!(
        serde_json::to_string(&row.unwrap()).unwrap(),
        r#"{"n":9007199254740993}"#
    );
}

#[tokio::test]
async fn text_json_bytea_uuid_and_network() {
    let (_db, client) = TestDb::create().await;
    check_values(
        &client,
        &[
            ("'abc'::text", json!("abc"), "text"),
            ("'abc'", json!("abc"), "text"),
            ("'héllo ✓ \"q\"'::text", json!("héllo ✓ \"q\""), "text"),
            ("'v'::varchar(5)", json!("v"), "varchar"),
            ("'ab'::char(4)", json!("ab  "), "bpchar"),
            ("'nm'::name", json!("nm"), "name"),
            ("'x'::\"char\"", json!("x"), "char"),
            ("'<a>1</a>'::xml", json!("<a>1</a>"), "xml"),
            ("'$.a[*]'::jsonpath", json!("$.\"a\"[*]"), "jsonpath"),
            (
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
                json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                "uuid",
            ),
            (r#"'{"a":[1,2]}'::jsonb"#, json!({"a": [1, 2]}), "jsonb"),
            (
                r#"'{"b":{"c":null},"a":"x"}'::jsonb"#,
                json!({"a": "x", "b": {"c": null}}),
                "jsonb",
            ),
            ("'[1,2]'::json", json!([1, 2]), "json"),
            ("'\"s\"'::json", json!("s"), "json"),
            (r"'\xdeadbeef'::bytea", json!(r"\xdeadbeef"), "bytea"),
            (r"''::bytea", json!(r"\x"), "bytea"),
            ("'192.168.0.1/24'::inet", json!("192.168.0.1/24"), "inet"),
            ("'192.168.0.1'::inet", json!("192.168.0.1"), "inet"),
            ("'10.0.0.0/8'::cidr", json!("10.0.0.0/8"), "cidr"),
            ("'::1'::inet", json!("::1"), "inet"),
            ("'2001:db8::/32'::cidr", json!("2001:db8::/32"), "cidr"),
            (
                "'08:00:2b:01:02:03'::macaddr",
                json!("08:00:2b:01:02:03"),
                "macaddr",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn dates_times_and_intervals() {
    let (_db, client) = TestDb::create().await;
    // The session time zone must not matter: timestamptz is always written in UTC.
    client
        .batch_execute("SET TimeZone = 'America/New_York'")
        .await
        .unwrap();
    check_values(
        &client,
        &[
            ("DATE '2024-02-29'", json!("2024-02-29"), "date"),
            ("'infinity'::date", json!("infinity"), "date"),
            ("'-infinity'::date", json!("-infinity"), "date"),
            ("'0001-01-01 BC'::date", json!("0000-01-01"), "date"),
            ("'10000-01-01'::date", json!("+010000-01-01"), "date"),
            ("TIME '12:34:56.789'", json!("12:34:56.789"), "time"),
            ("TIME '00:00:00'", json!("00:00:00"), "time"),
            ("TIME '24:00:00'", json!("24:00:00"), "time"),
            ("TIMETZ '12:34:56+05:30'", json!("12:34:56+05:30"), "timetz"),
            (
                "TIMETZ '01:02:03.5-08'",
                json!("01:02:03.5-08:00"),
                "timetz",
            ),
            (
                "TIMESTAMP '2024-01-02 03:04:05.678901'",
                json!("2024-01-02T03:04:05.678901"),
                "timestamp",
            ),
            (
                "TIMESTAMP '1999-12-31 23:59:59.5'",
                json!("1999-12-31T23:59:59.5"),
                "timestamp",
            ),
            (
                "TIMESTAMPTZ '2024-01-02 03:04:05+02'",
                json!("2024-01-02T01:04:05Z"),
                "timestamptz",
            ),
            ("'infinity'::timestamp", json!("infinity"), "timestamp"),
            (
                "'-infinity'::timestamptz",
                json!("-infinity"),
                "timestamptz",
            ),
            (
                "INTERVAL '1 year 2 months 3 days 04:05:06.5'",
                json!("P1Y2M3DT4H5M6.5S"),
                "interval",
            ),
            ("INTERVAL '0'", json!("PT0S"), "interval"),
            ("INTERVAL '-1 day 02:00'", json!("P-1DT2H"), "interval"),
            ("INTERVAL '-1.25 seconds'", json!("PT-1.25S"), "interval"),
        ],
    )
    .await;
}

#[tokio::test]
async fn arrays() {
    let (_db, client) = TestDb::create().await;
    check_values(
        &client,
        &[
            ("ARRAY[1,NULL,3]", json!([1, null, 3]), "int4[]"),
            ("ARRAY['a','b']", json!(["a", "b"]), "text[]"),
            ("ARRAY[0.1,0.2]::float8[]", json!([0.1, 0.2]), "float8[]"),
            ("ARRAY['NaN', 1]::float4[]", json!(["NaN", 1.0]), "float4[]"),
            (
                "ARRAY[1.50, NULL]::numeric[]",
                json!(["1.50", null]),
                "numeric[]",
            ),
            (
                "ARRAY[9007199254740993]::int8[]",
                json!([9007199254740993i64]),
                "int8[]",
            ),
            ("ARRAY[true, false]", json!([true, false]), "bool[]"),
            ("'{}'::int4[]", json!([]), "int4[]"),
            ("ARRAY[NULL]::text[]", json!([null]), "text[]"),
            (
                "ARRAY[[1,2],[3,4],[5,6]]",
                json!([[1, 2], [3, 4], [5, 6]]),
                "int4[]",
            ),
            ("'[0:1]={7,8}'::int4[]", json!([7, 8]), "int4[]"),
            (
                "ARRAY[DATE '2024-02-29', 'infinity']",
                json!(["2024-02-29", "infinity"]),
                "date[]",
            ),
            (
                "ARRAY[TIMESTAMPTZ '2024-01-02 03:04:05+02']",
                json!(["2024-01-02T01:04:05Z"]),
                "timestamptz[]",
            ),
            (
                "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]",
                json!(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
                "uuid[]",
            ),
            (
                r#"ARRAY['{"a":1}'::jsonb, NULL]"#,
                json!([{"a": 1}, null]),
                "jsonb[]",
            ),
            (r"ARRAY['\x01ff'::bytea]", json!([r"\x01ff"]), "bytea[]"),
            ("ARRAY[INTERVAL '1 day']", json!(["P1D"]), "interval[]"),
            ("ARRAY['ab'::varchar]", json!(["ab"]), "varchar[]"),
        ],
    )
    .await;
}

#[tokio::test]
async fn nulls_of_every_type_are_null() {
    let (_db, client) = TestDb::create().await;
    let types = [
        "int2",
        "int4",
        "int8",
        "oid",
        "float4",
        "float8",
        "numeric",
        "text",
        "varchar",
        "bool",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "interval",
        "uuid",
        "json",
        "jsonb",
        "bytea",
        "inet",
        "int4[]",
        "text[]",
        "float8[]",
        // Unsupported types too: there is nothing to decode in a NULL.
        "point",
        "money",
        "tsvector",
    ];
    let cases: Vec<(String, Value, &str)> = types
        .iter()
        .map(|ty| (format!("NULL::{ty}"), Value::Null, *ty))
        .collect();
    let mut refs: Vec<(&str, Value, &str)> = cases
        .iter()
        .map(|(expr, v, ty)| (expr.as_str(), v.clone(), *ty))
        .collect();
    refs.push(("NULL", Value::Null, "text"));
    check_values(&client, &refs).await;
}

#[tokio::test]
async fn enums_domains_and_citext() {
    let (_db, client) = TestDb::create().await;
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy');
             CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
             CREATE DOMAIN positive_amount AS numeric(12,2) CHECK (VALUE > 0);
             CREATE EXTENSION citext;",
        )
        .await
        .unwrap();
    check_values(
        &client,
        &[
            ("'happy'::mood", json!("happy"), "mood"),
            (
                "ARRAY['sad', NULL, 'happy']::mood[]",
                json!(["sad", null, "happy"]),
                "mood[]",
            ),
            // PostgreSQL describes a domain column by its base type.
            ("'a@b.example'::email", json!("a@b.example"), "text"),
            ("12.5::positive_amount", json!("12.50"), "numeric"),
            ("'MiXeD'::citext", json!("MiXeD"), "citext"),
            ("ARRAY['x'::citext]", json!(["x"]), "citext[]"),
            ("NULL::mood", Value::Null, "mood"),
        ],
    )
    .await;
    // The same through a table, as an agent would meet them.
    client
        .batch_execute(
            "CREATE TABLE people (id int, m mood, e email, c citext);
             INSERT INTO people VALUES (1, 'sad', 'x@y', 'Bob'), (2, NULL, NULL, NULL);",
        )
        .await
        .unwrap();
    let rows = client
        .query("SELECT * FROM people ORDER BY id", &[])
        .await
        .unwrap();
    let encoded = encode::encode_rows(&rows).unwrap();
    assert_eq!(
        serde_json::to_string(&encoded).unwrap(),
        r#"[{"id":1,"m":"sad","e":"x@y","c":"Bob"},{"id":2,"m":null,"e":null,"c":null}]"#
    );
}

#[tokio::test]
async fn unsupported_types_are_refused_with_a_cast_hint() {
    let (_db, client) = TestDb::create().await;
    client
        .batch_execute("CREATE TYPE pair AS (a int, b text)")
        .await
        .unwrap();
    for (expr, column, ty) in [
        ("point(1,2) AS location", "location", "point"),
        ("'1.50'::money AS price", "price", "money"),
        ("'a fat cat'::tsvector AS doc", "doc", "tsvector"),
        ("int4range(1, 5) AS span", "span", "int4range"),
        ("B'101' AS flags", "flags", "bit"),
        ("ROW(1, 'a') AS r", "r", "record"),
        ("ROW(1, 'a')::pair AS p", "p", "pair"),
        ("ARRAY[point(1,2)] AS pts", "pts", "point[]"),
        ("point(1,2) AS \"Where\"", "Where", "point"),
    ] {
        let (_, row) = one_row(&client, &format!("SELECT 1 AS ok, {expr}")).await;
        let err = row.expect_err(expr);
        assert_eq!(
            err,
            EncodeError::Unsupported {
                column: column.to_owned(),
                r#type: ty.to_owned()
            }
        );
        let message = err.to_string();
        assert!(message.contains(&format!("has type {ty}")), "{message}");
        assert!(message.contains("::text"), "{message}");
    }
    let (_, row) = one_row(&client, "SELECT point(1,2) AS location").await;
    assert_eq!(
        row.unwrap_err().to_string(),
        "column \"location\" has type point, which rowgate cannot return as JSON; \
         cast it to text in the query, e.g. SELECT location::text"
    );
    // And the suggested cast works.
    let (_, row) = one_row(&client, "SELECT point(1,2)::text AS location").await;
    assert_eq!(row.unwrap().get("location"), Some(&json!("(1,2)")));
}

#[tokio::test]
async fn duplicate_column_names_keep_every_value() {
    let (_db, client) = TestDb::create().await;
    let (columns, row) = one_row(
        &client,
        "SELECT 1 AS count, 2 AS count, 3 AS count_2, 4 AS count, 'x' AS name, count(*) FROM (VALUES (1)) v",
    )
    .await;
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["count", "count_3", "count_2", "count_4", "name", "count_5"]
    );
    assert_eq!(
        serde_json::to_string(&row.unwrap()).unwrap(),
        r#"{"count":1,"count_3":2,"count_2":3,"count_4":4,"name":"x","count_5":1}"#
    );
    assert_eq!(
        serde_json::to_string(&columns).unwrap(),
        r#"[{"name":"count","type":"int4"},{"name":"count_3","type":"int4"},{"name":"count_2","type":"int4"},{"name":"count_4","type":"int4"},{"name":"name","type":"text"},{"name":"count_5","type":"int8"}]"#
    );
}

#[tokio::test]
async fn key_order_is_column_order_across_rows() {
    let (_db, client) = TestDb::create().await;
    let rows = client
        .query(
            "SELECT i AS zeta, i * 2 AS alpha, NULL::text AS mid FROM generate_series(1, 3) i ORDER BY i",
            &[],
        )
        .await
        .unwrap();
    let encoded = encode::encode_rows(&rows).unwrap();
    assert_eq!(
        serde_json::to_string(&encoded).unwrap(),
        r#"[{"zeta":1,"alpha":2,"mid":null},{"zeta":2,"alpha":4,"mid":null},{"zeta":3,"alpha":6,"mid":null}]"#
    );
    assert_eq!(encode::encode_row(&rows[1]).unwrap(), encoded[1]);
    assert!(encode::encode_rows(&[]).unwrap().is_empty());
}

/// Rows of `(value, value::text)`, for comparing the encoder with PostgreSQL's own output.
async fn against_text(client: &Client, sql: &str) -> Vec<(Value, String)> {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
    assert!(
        rows.len() > 100,
        "too few values to compare: {}",
        rows.len()
    );
    rows.iter()
        .map(|row| {
            let text: String = row.get(1);
            let encoded = encode::encode_row(row).unwrap();
            (encoded.fields()[0].1.clone(), text)
        })
        .collect()
}

#[tokio::test]
async fn numeric_matches_postgres_text_output() {
    let (_db, client) = TestDb::create().await;
    client.batch_execute("SELECT setseed(0.42)").await.unwrap();
    let values = against_text(
        &client,
        "SELECT v, v::text FROM (
             SELECT round(((random() - 0.5) * 10 ^ (i % 50 - 25))::numeric, i % 35) AS v
               FROM generate_series(1, 3000) i
             UNION ALL SELECT ('1e' || i)::numeric FROM generate_series(-400, 400, 7) i
             UNION ALL SELECT -('9.99e' || i)::numeric FROM generate_series(-120, 120, 3) i
             UNION ALL SELECT 1::numeric / i FROM generate_series(1, 200) i
             UNION ALL SELECT (i * 10000::numeric ^ (i % 9)) / 7 FROM generate_series(1, 200) i
             UNION ALL SELECT 2::numeric ^ i FROM generate_series(0, 1000, 37) i
             UNION ALL SELECT factorial(i) FROM generate_series(0, 150, 5) i
             UNION ALL SELECT v FROM unnest('{0, -0, 0.000, -0.0001, 10000, 9999.9999, 1e5, NaN, Infinity, -Infinity}'::numeric[]) v
         ) s",
    )
    .await;
    for (encoded, text) in values {
        assert_eq!(encoded, Value::String(text));
    }
}

#[tokio::test]
async fn intervals_match_postgres_iso_8601_output() {
    let (_db, client) = TestDb::create().await;
    client
        .batch_execute("SET IntervalStyle = iso_8601; SELECT setseed(0.17)")
        .await
        .unwrap();
    let values = against_text(
        &client,
        "SELECT v, v::text FROM (
             SELECT make_interval(0, (i % 37) - 18, 0, (i % 23) - 11, (i % 50) - 25, (i % 61) - 30,
                                  round(((random() - 0.5) * 200)::numeric, i % 7)::float8) AS v
               FROM generate_series(1, 2000) i
             UNION ALL SELECT (random() - 0.5) * INTERVAL '100000 hours' FROM generate_series(1, 500)
             UNION ALL SELECT v FROM unnest('{0, 1 mon, -1 year, 1 day -1 sec, 0.000001 sec, -0.000001 sec,
                 23:59:59.999999, -178000000 years, 178000000 years}'::interval[]) v
         ) s",
    )
    .await;
    for (encoded, text) in values {
        assert_eq!(encoded, Value::String(text));
    }
}

#[tokio::test]
async fn dates_and_timestamps_match_postgres_iso_output() {
    let (_db, client) = TestDb::create().await;
    // In ISO DateStyle PostgreSQL writes `2024-01-02 03:04:05.5`, and timestamptz with the
    // session's offset; with UTC that is `+00`. The encoder writes `T` and `Z` instead.
    client
        .batch_execute("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SELECT setseed(0.5)")
        .await
        .unwrap();
    let span = "random() * (TIMESTAMP '9999-12-31 23:59:59.999999' - TIMESTAMP '0001-01-01')";
    let timestamps = against_text(
        &client,
        &format!(
            "SELECT v, v::text FROM (
                 SELECT TIMESTAMP '0001-01-01' + {span} AS v FROM generate_series(1, 2000)
                 UNION ALL SELECT TIMESTAMP '2000-01-01' + i * INTERVAL '1 day 1.000001 sec'
                   FROM generate_series(-1000, 1000) i
             ) s"
        ),
    )
    .await;
    for (encoded, text) in timestamps {
        assert_eq!(encoded, Value::String(text.replacen(' ', "T", 1)));
    }
    let timestamptzs = against_text(
        &client,
        &format!(
            "SELECT v, v::text FROM (
                 SELECT TIMESTAMPTZ '0001-01-01 00:00Z' + {span} AS v FROM generate_series(1, 2000)
             ) s"
        ),
    )
    .await;
    for (encoded, text) in timestamptzs {
        let text = text
            .strip_suffix("+00")
            .expect("UTC offset")
            .replacen(' ', "T", 1);
        assert_eq!(encoded, Value::String(format!("{text}Z")));
    }
    let dates = against_text(
        &client,
        "SELECT v, v::text FROM (
             SELECT DATE '0001-01-01' + (random() * 3652058)::int AS v FROM generate_series(1, 2000)
             UNION ALL SELECT DATE '2000-01-01' + i FROM generate_series(-1500, 1500) i
         ) s",
    )
    .await;
    for (encoded, text) in dates {
        assert_eq!(encoded, Value::String(text));
    }
    let times = against_text(
        &client,
        "SELECT v, v::text FROM (
             SELECT TIME '00:00' + random() * INTERVAL '24 hours' AS v FROM generate_series(1, 1000)
         ) s",
    )
    .await;
    for (encoded, text) in times {
        assert_eq!(encoded, Value::String(text));
    }
}

#[tokio::test]
async fn floats_match_postgres_shortest_output() {
    let (_db, client) = TestDb::create().await;
    client.batch_execute("SELECT setseed(0.9)").await.unwrap();
    for ty in ["float4", "float8"] {
        let values = against_text(
            &client,
            &format!(
                "SELECT v, v::text FROM (
                     SELECT ((random() - 0.5) * 10 ^ (i % 60 - 30))::{ty} AS v FROM generate_series(1, 2000) i
                     UNION ALL SELECT (i / 10.0)::{ty} FROM generate_series(-100, 100) i
                     UNION ALL SELECT (2::float8 ^ i)::{ty} FROM generate_series(-149, 127) i
                     UNION ALL SELECT -(2::float8 ^ i)::{ty} FROM generate_series(-149, 127) i
                     UNION ALL SELECT v::{ty} FROM unnest('{{0, -0, 3.4028235e38, 1.17549435e-38, 1e-45, 16777217, 45195288}}'::float8[]) v
                 ) s"
            ),
        )
        .await;
        for (encoded, text) in values {
            // PostgreSQL writes the shortest text that reads back as the same float; read as an
            // f64, that text must be exactly the number the encoder wrote (for float4 too: a
            // widened f32 would carry its binary noise, 0.10000000149011612 for 0.1).
            let expected: f64 = text.parse().unwrap();
            assert_eq!(encoded.as_f64(), Some(expected), "{ty} {text}");
        }
    }
}

#[tokio::test]
async fn network_types_match_postgres_text_output() {
    let (_db, client) = TestDb::create().await;
    let values = against_text(
        &client,
        "SELECT v, format('%s', v) FROM (
             SELECT ('10.' || (i % 256) || '.' || (i * 7 % 256) || '.' || (i * 13 % 256) || '/' || (i % 33))::inet AS v
               FROM generate_series(1, 300) i
             UNION ALL SELECT v::inet FROM unnest('{::, ::1, 2001:db8::1, 2001:db8:0:0:1:0:0:1, ::ffff:1.2.3.4,
                 ::1.2.3.4, fe80::1:2:3:4/64, 1:2:3:4:5:6:7:8, 1:0:3:4:5:6:7:8}'::text[]) v
         ) s",
    )
    .await;
    for (encoded, text) in values {
        assert_eq!(encoded, Value::String(text));
    }
    let cidrs = against_text(
        &client,
        "SELECT v, format('%s', v) FROM (
             SELECT set_masklen(('10.' || (i % 256) || '.' || (i * 7 % 256) || '.0')::inet, 8 + i % 17)::cidr AS v
               FROM generate_series(1, 300) i
         ) s",
    )
    .await;
    for (encoded, text) in cidrs {
        assert_eq!(encoded, Value::String(text));
    }
}

#[tokio::test]
async fn floats_of_random_bit_patterns_match_postgres() {
    let (_db, client) = TestDb::create().await;
    // A fixed xorshift stream: the same values every run, spread over every exponent.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let float4s: Vec<f32> = std::iter::repeat_with(|| f32::from_bits(next() as u32))
        .filter(|v| v.is_finite())
        .take(50_000)
        .collect();
    let float8s: Vec<f64> = std::iter::repeat_with(|| f64::from_bits(next()))
        .filter(|v| v.is_finite())
        .take(50_000)
        .collect();
    let rows4 = client
        .query("SELECT v, v::text FROM unnest($1::float4[]) v", &[&float4s])
        .await
        .unwrap();
    let rows8 = client
        .query("SELECT v, v::text FROM unnest($1::float8[]) v", &[&float8s])
        .await
        .unwrap();
    for row in rows4.iter().chain(&rows8) {
        let text: String = row.get(1);
        let encoded = encode::encode_row(row).unwrap();
        let expected: f64 = text.parse().unwrap();
        assert_eq!(encoded.fields()[0].1.as_f64(), Some(expected), "{text}");
    }
}
