//! `rowgate install` against a real PostgreSQL (127.0.0.1:5432, user `postgres`, trust auth).
//!
//! Each test makes its own database `rg_inst_<pid>_<n>` with the demo migrations, and its own
//! serving role `rg_agent_<pid>_<n>` (roles are cluster-wide, so tests running in parallel must
//! not share one), and drops both when it ends, pass or fail. The checks run as the serving role
//! itself, straight against the database (not through the rewriter): this is layer 4 and 6 on
//! their own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rowgate::caller::IdentityKey;
use rowgate::install::{
    install, InstallError, InstallOptions, InstallReport, NO_CALLER_MESSAGE, NO_CALLER_SQLSTATE,
};
use rowgate::policy::Policy;
use rowgate::sql::ident;
use tokio_postgres::{Client, Config, NoTls};

const PERMISSION_DENIED: &str = "42501";

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_policy() -> Policy {
    Policy::load_dir(&root().join("policies")).expect("demo policy loads")
}

async fn connect(database: &str, user: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = Config::new()
        .host("127.0.0.1")
        .port(5432)
        .user(user)
        .dbname(database)
        .application_name("rowgate install tests")
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A fresh demo database and a serving role name, both dropped on drop.
struct TestDb {
    name: String,
    role: String,
}

impl TestDb {
    /// The database with the demo migrations loaded, and a superuser connection to it.
    async fn demo() -> (TestDb, Client) {
        Self::demo_with_role(None).await
    }

    async fn demo_with_role(role: Option<&str>) -> (TestDb, Client) {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let db = TestDb {
            name: format!("rg_inst_{pid}_{n}"),
            role: role.map_or_else(
                || format!("rg_agent_{pid}_{n}"),
                |r| format!("{r}{pid}_{n}"),
            ),
        };
        let admin = connect("postgres", "postgres")
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
        // One statement per call: a multi-statement string is one implicit transaction, and
        // neither DROP nor CREATE DATABASE may run inside one.
        for sql in [
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            "CREATE DATABASE {}",
        ] {
            admin
                .batch_execute(&sql.replace("{}", &ident(&db.name).to_string()))
                .await
                .expect("create the test database");
        }
        let client = connect(&db.name, "postgres")
            .await
            .expect("connect to the test database");
        for file in ["001_demo_schema.sql", "002_demo_data.sql"] {
            let sql =
                std::fs::read_to_string(root().join("migrations").join(file)).expect("migration");
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        (db, client)
    }

    fn options(&self) -> InstallOptions {
        InstallOptions {
            agent_role: self.role.clone(),
            agent_password: None,
        }
    }

    async fn agent(&self) -> Client {
        connect(&self.name, &self.role)
            .await
            .expect("connect as the serving role")
    }

    async fn cleanup(name: String, role: String) -> Result<(), tokio_postgres::Error> {
        let admin = connect("postgres", "postgres").await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        if exists {
            if let Ok(client) = connect(&name, "postgres").await {
                // Privileges on this database's objects would keep DROP ROLE from working.
                client
                    .batch_execute(&format!("DROP OWNED BY {}", ident(&role)))
                    .await?;
            }
        }
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            ))
            .await?;
        // The views' owner after the database: its only objects were there.
        for role in [role.clone(), rowgate::install::owner_role(&role)] {
            admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&role)))
                .await?;
        }
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, role) = (self.name.clone(), self.role.clone());
        // Drop cannot await, and the test's runtime may be the one blocked here: clean up on a
        // runtime of its own, on a thread of its own.
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(TestDb::cleanup(name.clone(), role.clone()))
                .map_err(|e| std::io::Error::other(format!("dropping {name} / {role}: {e}")))
        })
        .join();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleanup failed: {e}"),
            Err(_) => eprintln!("cleanup panicked"),
        }
    }
}

async fn install_demo(db: &TestDb, client: &Client, key: &IdentityKey) -> InstallReport {
    install(client, &demo_policy(), key, &db.options())
        .await
        .unwrap_or_else(|e| panic!("install: {e}"))
}

/// Runs `sql` as the serving role in a READ ONLY transaction whose caller is `signed` (the value
/// of `rowgate.caller`; `None` leaves it unset), as the gateway does. Always rolls back.
async fn query_as(
    agent: &Client,
    signed: Option<&str>,
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    agent.batch_execute("BEGIN READ ONLY").await?;
    let result = async {
        if let Some(signed) = signed {
            // The signed value is hex and a dot: nothing to escape.
            agent
                .batch_execute(&format!("SET LOCAL rowgate.caller = '{signed}'"))
                .await?;
        }
        agent.query(sql, &[]).await
    }
    .await;
    agent.batch_execute("ROLLBACK").await?;
    result
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

/// The caller checks fail with rowgate's own error, which says nothing about why.
fn assert_no_caller(result: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>, case: &str) {
    match result {
        Ok(rows) => panic!("{case}: expected an error, got {} rows", rows.len()),
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{case}: {e}"));
            assert_eq!(db.code().code(), NO_CALLER_SQLSTATE, "{case}: {e}");
            assert_eq!(db.message(), NO_CALLER_MESSAGE, "{case}");
        }
    }
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, case: &str) {
    match result {
        Ok(v) => panic!("{case}: expected permission denied, got {v:?}"),
        Err(e) => assert_eq!(sqlstate(&e), Some(PERMISSION_DENIED), "{case}: {e}"),
    }
}

/// Per view, the rule written out by hand over the base tables (`$1` is the caller's id).
const HAND_WRITTEN: &[(&str, &str)] = &[
    (
        "invoices",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM invoices WHERE department IN \
         (SELECT p.department FROM permissions p JOIN user_roles r ON r.role = p.allowed_role \
          WHERE r.user_id = $1)",
    ),
    (
        "customers",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM customers WHERE department IN \
         (SELECT p.department FROM permissions p JOIN user_roles r ON r.role = p.allowed_role \
          WHERE r.user_id = $1)",
    ),
    (
        "transactions",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM transactions WHERE department IN \
         (SELECT p.department FROM permissions p JOIN user_roles r ON r.role = p.allowed_role \
          WHERE r.user_id = $1)",
    ),
    (
        "orders",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM orders WHERE user_id = $1",
    ),
    (
        "order_items",
        "SELECT count(*), coalesce(sum(i.id), 0)::bigint FROM order_items i \
         JOIN orders o ON o.id = i.order_id WHERE o.user_id = $1",
    ),
    (
        "folders",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM folders WHERE id IN \
         (SELECT fa.folder_id FROM folder_access fa JOIN user_roles r ON r.role = fa.role \
          WHERE r.user_id = $1)",
    ),
    (
        "documents",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM documents WHERE folder_id IN \
         (SELECT fa.folder_id FROM folder_access fa JOIN user_roles r ON r.role = fa.role \
          WHERE r.user_id = $1)",
    ),
    (
        "blocks",
        "SELECT count(*), coalesce(sum(b.id), 0)::bigint FROM blocks b \
         JOIN documents d ON d.id = b.document_id WHERE d.folder_id IN \
         (SELECT fa.folder_id FROM folder_access fa JOIN user_roles r ON r.role = fa.role \
          WHERE r.user_id = $1)",
    ),
    (
        "items",
        "SELECT count(*), coalesce(sum(id), 0)::bigint FROM items \
         WHERE tenant_id = (SELECT tenant_id FROM app_users WHERE id = $1) \
           AND id IN (SELECT item_id FROM item_users WHERE user_id = $1)",
    ),
];

const CALLERS: &[&str] = &[
    "bob", "anne", "carol", "dave", "erin", "frank", "grace", "heidi", "nobody",
];

#[tokio::test]
async fn each_view_shows_exactly_the_rows_of_its_rule() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    install_demo(&db, &client, &key).await;
    let agent = db.agent().await;
    assert_eq!(HAND_WRITTEN.len(), demo_policy().tables.len());
    for (view, rule) in HAND_WRITTEN {
        for caller in CALLERS {
            let row = client.query_one(*rule, &[caller]).await.unwrap();
            let expected: (i64, i64) = (row.get(0), row.get(1));
            let sql = format!("SELECT count(*), coalesce(sum(id), 0)::bigint FROM rowgate.{view}");
            let rows = query_as(&agent, Some(&key.sign(caller)), &sql)
                .await
                .unwrap();
            let got: (i64, i64) = (rows[0].get(0), rows[0].get(1));
            assert_eq!(got, expected, "{view} for {caller}");
        }
    }
    // The demo data makes these non-trivial.
    let count = |caller: &'static str| {
        let (agent, key) = (&agent, &key);
        async move {
            let rows = query_as(
                agent,
                Some(&key.sign(caller)),
                "SELECT count(*) FROM rowgate.invoices",
            )
            .await
            .unwrap();
            rows[0].get::<_, i64>(0)
        }
    };
    assert!(count("bob").await > 0);
    assert_eq!(count("carol").await, 0, "carol has no role");
    // `columns:` hides the others: customers has no email.
    let rows = query_as(
        &agent,
        Some(&key.sign("bob")),
        "SELECT * FROM rowgate.customers LIMIT 1",
    )
    .await
    .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "name", "department", "active", "created_at"]);
}

#[tokio::test]
async fn a_department_granted_to_two_roles_is_counted_once() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    // The view form too: one row per (invoice, role allowed to see it).
    client
        .batch_execute(
            "CREATE VIEW invoices_by_role AS \
             SELECT i.id, i.amount, i.department, p.allowed_role \
             FROM invoices i JOIN permissions p ON p.department = i.department",
        )
        .await
        .unwrap();
    let mut yaml = std::fs::read_to_string(root().join("policies/demo.yaml")).unwrap();
    yaml.push_str(
        "\n  invoices_by_view:\n    view: invoices_by_role\n    column: allowed_role\n    match: roles\n",
    );
    let policy = Policy::from_yaml("demo.yaml", &yaml).unwrap();
    install(&client, &policy, &key, &db.options())
        .await
        .unwrap();
    let agent = db.agent().await;

    let base: String = client
        .query_one(
            "SELECT sum(amount)::text FROM invoices WHERE department = 'Operations'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let roles: i64 = client
        .query_one(
            "SELECT count(*) FROM user_roles r JOIN permissions p ON p.allowed_role = r.role \
             WHERE r.user_id = 'anne' AND p.department = 'Operations'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        roles, 2,
        "the demo grants Operations to both of anne's roles"
    );
    for view in ["invoices", "invoices_by_view"] {
        let sql =
            format!("SELECT sum(amount)::text FROM rowgate.{view} WHERE department = 'Operations'");
        let rows = query_as(&agent, Some(&key.sign("anne")), &sql)
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0), base, "{view}");
    }
    // The match view hides its permission column.
    let rows = query_as(
        &agent,
        Some(&key.sign("anne")),
        "SELECT * FROM rowgate.invoices_by_view LIMIT 1",
    )
    .await
    .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "amount", "department"]);
}

#[tokio::test]
async fn a_missing_or_forged_caller_is_an_error_not_rows() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    install_demo(&db, &client, &key).await;
    let agent = db.agent().await;
    let other = IdentityKey::generate().unwrap();
    let bob = key.sign("bob");
    let (payload, digest) = bob.split_once('.').unwrap();
    let zeros = "0".repeat(64);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("unset", None),
        ("empty", Some(String::new())),
        ("payload only", Some(payload.to_string())),
        ("wrong digest", Some(format!("626f62.{zeros}"))),
        ("signed with another key", Some(other.sign("bob"))),
        ("upper-case hex", Some(bob.to_uppercase())),
        ("odd-length payload", Some(format!("626f6.{digest}"))),
        ("empty payload", Some(format!(".{digest}"))),
        ("trailing text", Some(format!("{bob}.00"))),
        (
            "bob's digest on anne",
            Some(format!("{}.{digest}", hex::encode("anne"))),
        ),
    ];
    for (case, signed) in &cases {
        for sql in [
            "SELECT count(*) FROM rowgate.invoices",
            "SELECT * FROM rowgate.orders",
            "SELECT rowgate.caller_exists()",
            "SELECT rowgate.caller_attributes()",
        ] {
            let result = query_as(&agent, signed.as_deref(), sql).await;
            assert_no_caller(result, &format!("{case}: {sql}"));
        }
    }
    // A valid signature still works on the same connection.
    let rows = query_as(&agent, Some(&bob), "SELECT rowgate.caller_id()")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "bob");
}

#[tokio::test]
async fn the_serving_role_can_read_the_views_and_nothing_else() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    install_demo(&db, &client, &key).await;
    let agent = db.agent().await;
    let bob = key.sign("bob");

    let tables: Vec<String> = client
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
             WHERE schemaname IN ('public', 'rowgate_private') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for required in [
        "public.invoices",
        "public.permissions",
        "public.user_roles",
        "rowgate_private.identity_key",
    ] {
        assert!(
            tables.iter().any(|t| t == required),
            "{required} in {tables:?}"
        );
    }
    for table in &tables {
        assert_denied(
            query_as(
                &agent,
                Some(&bob),
                &format!("SELECT * FROM {table} LIMIT 1"),
            )
            .await,
            &format!("select from {table}"),
        );
    }

    // Writes fail on privileges, even outside a read-only transaction.
    agent
        .batch_execute(&format!("SET rowgate.caller = '{bob}'"))
        .await
        .unwrap();
    for (case, sql) in [
        ("insert into a view", "INSERT INTO rowgate.orders (id, user_id, total, placed_at, status) VALUES (9999, 'bob', 1, now(), 'paid')"),
        ("update a view", "UPDATE rowgate.orders SET total = 0"),
        ("delete from a view", "DELETE FROM rowgate.orders"),
        ("insert into a base table", "INSERT INTO public.permissions VALUES ('Executive', 'HR Manager')"),
        ("create a table in rowgate", "CREATE TABLE rowgate.mine (x int)"),
        ("create a table in public", "CREATE TABLE public.mine (x int)"),
        ("create a schema", "CREATE SCHEMA mine"),
        ("create a function in rowgate", "CREATE FUNCTION rowgate.f() RETURNS int LANGUAGE sql RETURN 1"),
        ("replace caller_id", "CREATE OR REPLACE FUNCTION rowgate.caller_id() RETURNS text LANGUAGE sql RETURN 'anne'"),
        ("drop a view", "DROP VIEW rowgate.invoices"),
        ("read the key table", "SELECT key FROM rowgate_private.identity_key"),
    ] {
        assert_denied(agent.batch_execute(sql).await, case);
    }
    agent.batch_execute("RESET rowgate.caller").await.unwrap();

    let row = client
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin \
             FROM pg_roles WHERE rolname = $1",
            &[&db.role],
        )
        .await
        .unwrap();
    let flags: (bool, bool, bool, bool, bool, bool) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    assert_eq!(flags, (false, false, false, false, false, true));
    // No table anywhere outside rowgate is readable through a grant.
    let readable: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
               AND n.nspname NOT IN ('rowgate', 'pg_catalog', 'information_schema') \
               AND has_table_privilege($1, c.oid, 'SELECT')",
            &[&db.role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(readable, 0);
}

#[tokio::test]
async fn install_is_idempotent_and_follows_policy_changes() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    let first = install_demo(&db, &client, &key).await;
    for expected in [
        "created schema rowgate".to_string(),
        "stored the identity key".to_string(),
        format!("created role {}", db.role),
        "created view rowgate.invoices".to_string(),
        "created function rowgate.caller_id()".to_string(),
        format!("granted SELECT on rowgate.invoices to {}", db.role),
        format!("granted USAGE on schema rowgate to {}", db.role),
    ] {
        assert!(first.changes.contains(&expected), "{expected:?} in {first}");
    }

    let second = install_demo(&db, &client, &key).await;
    assert!(second.is_unchanged(), "second install changed: {second}");
    assert_eq!(
        second.previous_version.as_deref(),
        Some(second.version.as_str())
    );
    assert!(
        second
            .unchanged
            .contains(&"view rowgate.orders".to_string()),
        "{second}"
    );

    // A new key replaces the old one; signatures made with the old one stop working.
    let new_key = IdentityKey::generate().unwrap();
    let third = install_demo(&db, &client, &new_key).await;
    assert_eq!(third.changes, ["replaced the identity key"], "{third}");
    let agent = db.agent().await;
    assert_no_caller(
        query_as(
            &agent,
            Some(&key.sign("bob")),
            "SELECT count(*) FROM rowgate.orders",
        )
        .await,
        "old key",
    );

    // Drop `folders`, list columns for `orders`.
    let yaml = std::fs::read_to_string(root().join("policies/demo.yaml"))
        .unwrap()
        .replace(
            "  folders:\n    rows: \"id IN (SELECT folder_id FROM folder_access WHERE role IN (:roles))\"\n    \
             description: \"Document folders the current user's roles may read.\"\n",
            "",
        )
        .replace(
            "    rows: \"user_id = :user_id\"\n",
            "    rows: \"user_id = :user_id\"\n    columns: [id, total, status]\n",
        );
    let changed = Policy::from_yaml("demo.yaml", &yaml).unwrap();
    assert!(!changed.tables.contains_key("folders") && changed.tables["orders"].columns.is_some());
    let fourth = install(&client, &changed, &new_key, &db.options())
        .await
        .unwrap();
    let mut changes = fourth.changes.clone();
    changes.sort();
    let mut expected = vec![
        "dropped view rowgate.folders".to_string(),
        "replaced view rowgate.orders".to_string(),
        format!(
            "recorded policy version {} (was {})",
            changed.version, third.version
        ),
        format!("revoked SELECT on rowgate.folders from {}", db.role),
        // The row-level security that install enabled on `folders` goes with it.
        "disabled row-level security on public.folders".to_string(),
        "dropped policy rowgate_others on public.folders".to_string(),
        "dropped policy rowgate_reads on public.folders".to_string(),
        "dropped policy rowgate_rows on public.folders".to_string(),
        format!(
            "revoked SELECT on public.folders from {}",
            rowgate::install::owner_role(&db.role)
        ),
    ];
    expected.sort();
    assert_eq!(changes, expected, "{fourth}");
    assert_eq!(
        fourth.previous_version.as_deref(),
        Some(third.version.as_str())
    );

    let rows = query_as(
        &agent,
        Some(&new_key.sign("bob")),
        "SELECT * FROM rowgate.orders LIMIT 1",
    )
    .await
    .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "total", "status"]);
    let gone = query_as(
        &agent,
        Some(&new_key.sign("bob")),
        "SELECT * FROM rowgate.folders",
    )
    .await;
    assert_eq!(sqlstate(&gone.unwrap_err()), Some("42P01"));

    // The version is where `serve` can read it, even as the serving role.
    let comment: String = agent
        .query_one(
            "SELECT obj_description('rowgate'::regnamespace, 'pg_namespace')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, format!("rowgate policy {}", changed.version));

    // And back: the policy file as it was.
    let fifth = install_demo(&db, &client, &new_key).await;
    assert!(
        fifth
            .changes
            .contains(&"created view rowgate.folders".to_string()),
        "{fifth}"
    );
    assert!(install_demo(&db, &client, &new_key).await.is_unchanged());
}

#[tokio::test]
async fn caller_functions_answer_for_the_signed_caller() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    install_demo(&db, &client, &key).await;
    let agent = db.agent().await;
    let exists = |caller: &'static str| {
        let (agent, key) = (&agent, &key);
        async move {
            let rows = query_as(
                agent,
                Some(&key.sign(caller)),
                "SELECT rowgate.caller_exists()",
            )
            .await
            .unwrap();
            rows[0].get::<_, bool>(0)
        }
    };
    assert!(exists("bob").await);
    assert!(!exists("nobody").await);

    let rows = query_as(
        &agent,
        Some(&key.sign("anne")),
        "SELECT rowgate.caller_attributes()",
    )
    .await
    .unwrap();
    let attributes: serde_json::Value = rows[0].get(0);
    let mut roles: Vec<&str> = attributes["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(roles, ["HR Manager", "Sales Manager"]);
    assert_eq!(attributes["tenant_id"], serde_json::json!([1]));

    let rows = query_as(
        &agent,
        Some(&key.sign("nobody")),
        "SELECT rowgate.caller_attributes()",
    )
    .await
    .unwrap();
    assert_eq!(
        rows[0].get::<_, serde_json::Value>(0),
        serde_json::json!({"roles": [], "tenant_id": []})
    );

    // Ids that need care survive the round trip.
    for id in ["o'brien", "zoë 🦀", "a.b.c", "x\\y"] {
        let rows = query_as(&agent, Some(&key.sign(id)), "SELECT rowgate.caller_id()")
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0), id);
    }
}

/// Layer 6: SQL that reaches `set_config` (layer 3 forbids it; assume it slipped through) still
/// cannot become another caller.
#[tokio::test]
async fn agent_sql_cannot_change_its_own_identity() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    install_demo(&db, &client, &key).await;
    let agent = db.agent().await;
    let bob = key.sign("bob");
    let bobs_count: i64 = query_as(&agent, Some(&bob), "SELECT count(*) FROM rowgate.invoices")
        .await
        .unwrap()[0]
        .get(0);
    let annes_count: i64 = query_as(
        &agent,
        Some(&key.sign("anne")),
        "SELECT count(*) FROM rowgate.invoices",
    )
    .await
    .unwrap()[0]
        .get(0);
    assert!(annes_count > bobs_count, "anne sees more than bob");

    // Switch, then read, in the same transaction.
    agent.batch_execute("BEGIN READ ONLY").await.unwrap();
    agent
        .batch_execute(&format!("SET LOCAL rowgate.caller = '{bob}'"))
        .await
        .unwrap();
    let forged = format!("{}.{}", hex::encode("anne"), "ab".repeat(32));
    agent
        .query("SELECT set_config('rowgate.caller', $1, true)", &[&forged])
        .await
        .unwrap();
    let result = agent
        .query("SELECT count(*) FROM rowgate.invoices", &[])
        .await;
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert_no_caller(result, "switched to a forged anne");

    // Switch inside the very query that reads, with a signature made by another key: the
    // caller is read once (an InitPlan), before or after the switch, so either the forged value
    // is seen and refused, or bob's rows come back. Never anne's.
    let other = IdentityKey::generate().unwrap().sign("anne");
    for sql in [
        format!(
            "SELECT count(*) FROM rowgate.invoices, \
             (SELECT set_config('rowgate.caller', '{other}', true)) s"
        ),
        format!(
            "SELECT count(*) FROM (SELECT set_config('rowgate.caller', '{other}', true)) s, \
             rowgate.invoices"
        ),
        format!(
            "SELECT count(*) FROM rowgate.invoices \
             WHERE set_config('rowgate.caller', '{other}', true) IS NOT NULL"
        ),
    ] {
        match query_as(&agent, Some(&bob), &sql).await {
            Ok(rows) => assert_eq!(rows[0].get::<_, i64>(0), bobs_count, "{sql}"),
            Err(e) => assert_eq!(sqlstate(&e), Some(NO_CALLER_SQLSTATE), "{sql}: {e}"),
        }
    }

    // Not even a session-level setting that outlives the transaction helps.
    agent
        .batch_execute(&format!("SET rowgate.caller = '{forged}'"))
        .await
        .unwrap();
    let result = agent
        .query("SELECT count(*) FROM rowgate.invoices", &[])
        .await;
    assert_no_caller(result, "session-level forged caller");
}

#[tokio::test]
async fn an_existing_role_loses_every_extra_right() {
    // A name that needs quoting everywhere it appears.
    let (db, client) = TestDb::demo_with_role(Some("rg Agent\"")).await;
    let role = ident(&db.role);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} SUPERUSER CREATEDB BYPASSRLS NOLOGIN;
             GRANT pg_read_all_data TO {role};
             GRANT SELECT ON public.invoices, public.user_roles TO {role};
             GRANT UPDATE (department) ON public.customers TO {role};
             GRANT CREATE ON SCHEMA public TO {role};
             GRANT CREATE ON DATABASE {db} TO {role};
             CREATE SCHEMA rowgate;
             CREATE VIEW rowgate.leftover AS SELECT * FROM public.permissions;
             GRANT SELECT ON rowgate.leftover TO {role};",
            db = ident(&db.name)
        ))
        .await
        .unwrap();
    let options = InstallOptions {
        agent_role: db.role.clone(),
        agent_password: Some("it's a secret".into()),
    };
    let report = install(
        &client,
        &demo_policy(),
        &IdentityKey::generate().unwrap(),
        &options,
    )
    .await
    .unwrap();
    for expected in [
        format!("altered role {role}: LOGIN NOSUPERUSER NOCREATEDB NOBYPASSRLS"),
        format!("set the password of role {role}"),
        format!("revoked membership in pg_read_all_data from {role}"),
        format!("revoked SELECT on public.invoices from {role}"),
        format!("revoked SELECT on public.user_roles from {role}"),
        format!("revoked UPDATE on column public.customers.department from {role}"),
        format!("revoked CREATE on schema public from {role}"),
        format!("revoked CREATE on database {} from {role}", db.name),
        format!("revoked SELECT on rowgate.leftover from {role}"),
        "dropped view rowgate.leftover".to_string(),
    ] {
        assert!(
            report.changes.contains(&expected),
            "{expected:?} in {report}"
        );
    }
    let agent = db.agent().await;
    let key_unused = IdentityKey::generate().unwrap().sign("bob");
    assert_denied(
        query_as(
            &agent,
            Some(&key_unused),
            "SELECT count(*) FROM public.invoices",
        )
        .await,
        "base table after install",
    );
    let password: Option<String> = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&db.role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(password.is_some_and(|p| p.starts_with("SCRAM-SHA-256$") || p.starts_with("md5")));
}

#[tokio::test]
async fn a_bad_policy_fails_clearly_and_changes_nothing() {
    let (db, client) = TestDb::demo().await;
    let key = IdentityKey::generate().unwrap();
    let base = std::fs::read_to_string(root().join("policies/demo.yaml")).unwrap();
    let cases = [
        (
            base.replace("source: public.invoices", "source: public.invoicez"),
            "source public.invoicez does not exist",
        ),
        (
            base.replace(
                "columns: [id, name, department",
                "columns: [id, nam, department",
            ),
            "column `nam` does not exist in public.customers",
        ),
        (
            base.replace(
                "user_id = :user_id\"\n    description: \"The current",
                "usr = :user_id\"\n    description: \"The current",
            ),
            "creating policy rowgate_rows on public.orders: column \"usr\" does not exist",
        ),
    ];
    for (yaml, message) in cases {
        let policy = Policy::from_yaml("demo.yaml", &yaml).unwrap();
        let error = install(&client, &policy, &key, &db.options())
            .await
            .unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
        let leftovers: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rowgate%') \
                      + (SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)) \
                      + (SELECT count(*) FROM pg_policy) \
                      + (SELECT count(*) FROM pg_class WHERE relrowsecurity)",
                &[&db.role, &rowgate::install::owner_role(&db.role)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(leftovers, 0, "{message}: the transaction was rolled back");
    }
    // The client is usable afterwards: install works.
    install_demo(&db, &client, &key).await;
}

#[tokio::test]
async fn a_serving_role_that_owns_objects_is_refused() {
    let (db, client) = TestDb::demo().await;
    let role = ident(&db.role);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; CREATE TABLE public.agents_own (x int); \
             ALTER TABLE public.agents_own OWNER TO {role}"
        ))
        .await
        .unwrap();
    let error = install(
        &client,
        &demo_policy(),
        &IdentityKey::generate().unwrap(),
        &db.options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, InstallError::AgentOwnsObjects { .. }),
        "{error}"
    );

    let installer = InstallOptions {
        agent_role: "postgres".into(),
        agent_password: None,
    };
    let error = install(
        &client,
        &demo_policy(),
        &IdentityKey::generate().unwrap(),
        &installer,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, InstallError::AgentIsInstaller { .. }),
        "{error}"
    );
}
