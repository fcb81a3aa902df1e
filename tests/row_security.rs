//! The row-level security that fences the permission views of base tables (see
//! `src/install/row_security.rs`), attacked and checked directly in the database:
//! other roles keep what they had, an operator's own row-level security is left to them, the
//! fence holds when the agent turns row security off, and the views are flattened (the reason
//! for the design) without giving up the filter-first guarantee.

mod common;

use common::{db_message, sqlstate, TestDb};
use rowgate::install::{install, owner_role, InstallOptions};

/// A NOLOGIN role of this test's own, which the test drops again.
struct Reporter {
    name: String,
}

impl Reporter {
    async fn create(db: &TestDb, tag: &str) -> Reporter {
        let name = format!("{}_{tag}", db.role);
        db.admin
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" NOLOGIN; \
                 GRANT SELECT, INSERT ON public.invoices, public.orders TO \"{name}\""
            ))
            .await
            .unwrap();
        Reporter { name }
    }

    /// `sql` run as this role (SET ROLE from the superuser), one `i64` back.
    async fn i64(&self, db: &TestDb, sql: &str) -> Result<i64, tokio_postgres::Error> {
        db.admin
            .batch_execute(&format!("BEGIN; SET LOCAL ROLE \"{}\"", self.name))
            .await?;
        let result = db.admin.query_one(sql, &[]).await.map(|r| r.get(0));
        db.admin.batch_execute("ROLLBACK").await?;
        result
    }

    async fn drop(self, db: &TestDb) {
        db.admin
            .batch_execute(&format!(
                "DROP OWNED BY \"{0}\"; DROP ROLE \"{0}\"",
                self.name
            ))
            .await
            .unwrap();
    }
}

async fn reinstall(
    db: &TestDb,
    policy: &rowgate::policy::Policy,
) -> rowgate::install::InstallReport {
    let options = InstallOptions {
        agent_role: db.role.clone(),
        agent_password: None,
    };
    install(&db.admin, policy, &db.key, &options)
        .await
        .unwrap_or_else(|e| panic!("install: {e}"))
}

/// `SELECT count(*)` over a view, as the serving role with `user` as the signed caller.
async fn agent_count(
    agent: &tokio_postgres::Client,
    db: &TestDb,
    user: &str,
    setting: &str,
    sql: &str,
) -> Result<i64, tokio_postgres::Error> {
    agent
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL rowgate.caller = '{}'; {setting}",
            db.key.sign(user)
        ))
        .await?;
    let result = agent.query_one(sql, &[]).await.map(|r| r.get(0));
    agent.batch_execute("ROLLBACK").await?;
    result
}

/// Asserts that bob, through `rowgate.<view>` as the serving role, sees as many rows as the
/// superuser counts with `expected` (a `SELECT count(*)`).
async fn assert_bob_sees(db: &TestDb, view: &str, expected: &str) {
    let want = db.admin_i64(expected).await;
    let agent = db.agent().await;
    let seen = agent_count(
        &agent,
        db,
        "bob",
        "",
        &format!("SELECT count(*) FROM rowgate.{view}"),
    )
    .await
    .unwrap_or_else(|e| panic!("rowgate.{view}: {}", db_message(&e)));
    assert_eq!(seen, want, "rowgate.{view} against {expected}");
}

const BOBS_ORDERS: &str = "SELECT count(*) FROM public.orders WHERE user_id = 'bob'";

/// The demo's rule for orders and for order lines, as demo.yaml writes them.
const ORDERS_RULE: &str = "rows: \"user_id = :user_id\"";
const LINES_RULE: &str = "rows: \"order_id IN (SELECT id FROM orders WHERE user_id = :user_id)\"";

/// The demo policy with the rule `written` (as in demo.yaml) replaced by `rule`.
fn demo_with_rule(written: &str, rule: &str) -> rowgate::policy::Policy {
    let yaml = std::fs::read_to_string(common::policies_dir().join("demo.yaml")).unwrap();
    assert!(yaml.contains(written), "demo.yaml no longer says {written}");
    let yaml = yaml.replace(written, &format!("rows: \"{rule}\""));
    rowgate::policy::Policy::from_yaml("demo.yaml", &yaml).unwrap()
}

/// bob's invoices by the hand-written rule, counted.
fn bobs_invoices() -> String {
    format!(
        "SELECT count(*) FROM ({}) t",
        common::reference_table("invoices", "bob")
    )
}

#[tokio::test]
async fn other_roles_see_and_write_what_they_did_before() {
    let db = TestDb::new().await;
    let reporter = Reporter::create(&db, "rep").await;
    for table in ["invoices", "orders"] {
        let all = db
            .admin_i64(&format!("SELECT count(*) FROM public.{table}"))
            .await;
        let seen = reporter
            .i64(&db, &format!("SELECT count(*) FROM public.{table}"))
            .await
            .unwrap();
        assert_eq!(
            seen, all,
            "{table}: a role with SELECT still sees every row"
        );
        assert!(all > 0);
    }
    let inserted = reporter
        .i64(
            &db,
            "WITH i AS (INSERT INTO public.orders (id, user_id, total, placed_at, status) \
             VALUES (999001, 'bob', 1, now(), 'paid') RETURNING 1) SELECT count(*) FROM i",
        )
        .await
        .unwrap_or_else(|e| panic!("a role with INSERT still inserts: {}", db_message(&e)));
    assert_eq!(inserted, 1);
    reporter.drop(&db).await;
    db.teardown().await;
}

/// An operator who runs row-level security on a table themselves (here: took rowgate's
/// pass-through policy off and wrote their own) keeps it: install adds only the owner's two
/// policies, and takes only those away when the table leaves the policy.
#[tokio::test]
async fn an_operators_own_row_level_security_is_left_to_them() {
    let db = TestDb::new().await;
    let reporter = Reporter::create(&db, "ops").await;
    db.admin
        .batch_execute(&format!(
            "DROP POLICY rowgate_others ON public.orders; \
             CREATE POLICY ops_shipped ON public.orders FOR SELECT TO \"{}\" \
             USING (status = 'shipped')",
            reporter.name
        ))
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    assert!(
        !report
            .changes
            .iter()
            .any(|c| c.contains("on public.orders")),
        "{report}"
    );
    let policies = |table: &'static str| {
        let admin = &db.admin;
        async move {
            let rows = admin
                .query(
                    "SELECT polname::text FROM pg_policy WHERE polrelid = $1::text::regclass \
                     ORDER BY 1",
                    &[&table],
                )
                .await
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
        }
    };
    assert_eq!(
        policies("public.orders").await,
        ["ops_shipped", "rowgate_reads", "rowgate_rows"]
    );
    let shipped = db
        .admin_i64("SELECT count(*) FROM public.orders WHERE status = 'shipped'")
        .await;
    let seen = reporter
        .i64(&db, "SELECT count(*) FROM public.orders")
        .await
        .unwrap();
    assert_eq!(seen, shipped, "the operator's policy still filters");
    assert_bob_sees(&db, "orders", BOBS_ORDERS).await;

    // `orders` (and `order_items`, whose rule reads it) leave the policy.
    let yaml = std::fs::read_to_string(common::policies_dir().join("demo.yaml")).unwrap();
    let start = yaml.find("  orders:\n").unwrap();
    let end = yaml.find("  # --- folder access").unwrap();
    let without = format!("{}{}", &yaml[..start], &yaml[end..]);
    let policy = rowgate::policy::Policy::from_yaml("demo.yaml", &without).unwrap();
    let report = reinstall(&db, &policy).await;
    assert_eq!(policies("public.orders").await, ["ops_shipped"], "{report}");
    let enabled: bool = db
        .admin
        .query_one(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.orders'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        enabled,
        "row-level security stays on for the operator's policy"
    );
    // The table rowgate alone had enabled it on is back as it was.
    assert!(policies("public.order_items").await.is_empty(), "{report}");
    reporter.drop(&db).await;
    db.teardown().await;
}

/// `row_security = off` does not switch the fence off: PostgreSQL then refuses any query that
/// a policy would filter, rather than run it unfiltered.
#[tokio::test]
async fn turning_row_security_off_is_an_error_not_every_row() {
    let db = TestDb::new().await;
    let agent = db.agent().await;
    let visible = agent_count(
        &agent,
        &db,
        "bob",
        "",
        "SELECT count(*) FROM rowgate.invoices",
    )
    .await
    .unwrap();
    let all = db.admin_i64("SELECT count(*) FROM public.invoices").await;
    assert!(visible < all, "bob sees some invoices, not all");
    for setting in [
        "SET LOCAL row_security = off",
        "SELECT set_config('row_security', 'off', true)",
    ] {
        let result = agent_count(
            &agent,
            &db,
            "bob",
            setting,
            "SELECT count(*) FROM rowgate.invoices",
        )
        .await;
        match result {
            Ok(n) => panic!("{setting}: {n} rows instead of an error"),
            Err(e) => assert_eq!(sqlstate(&e), "42501", "{setting}: {}", db_message(&e)),
        }
    }
    db.teardown().await;
}

/// The owner role is a fence, not a login: no attribute, member of nothing, owner of nothing
/// but the views; the serving role is not a member of it.
#[tokio::test]
async fn the_views_owner_has_no_way_around_the_policies() {
    let db = TestDb::new().await;
    let owner = owner_role(&db.role);
    let row = db
        .admin
        .query_one(
            "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, \
                    (SELECT count(*) FROM pg_auth_members WHERE member = r.oid), \
                    (SELECT count(*) FROM pg_auth_members WHERE roleid = r.oid), \
                    (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid \
                       AND NOT (c.relkind = 'v' AND c.relnamespace = 'rowgate'::regnamespace)), \
                    (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) \
             FROM pg_roles r WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap();
    for (i, what) in ["LOGIN", "SUPERUSER", "BYPASSRLS", "CREATEROLE", "CREATEDB"]
        .iter()
        .enumerate()
    {
        assert!(!row.get::<_, bool>(i), "{owner} has {what}");
    }
    assert_eq!(row.get::<_, i64>(5), 0, "{owner} is a member of a role");
    assert_eq!(row.get::<_, i64>(6), 0, "a role is a member of {owner}");
    assert_eq!(row.get::<_, i64>(7), 0, "{owner} owns more than views");
    assert!(row.get::<_, i64>(8) > 0, "{owner} owns the views");
    db.teardown().await;
}

/// The reason for the design: a view over a row-security table is planned as part of the
/// query, so a join key reaches the table's index and ORDER BY ... LIMIT walks it; no
/// `Subquery Scan` stands between them. The control: the same query over a security_barrier
/// view of the same rule does show one, so the check can tell the two apart.
#[tokio::test]
async fn base_table_views_are_flattened_into_the_query() {
    let db = TestDb::new().await;
    let agent = db.agent().await;
    agent
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL rowgate.caller = '{}'",
            db.key.sign("bob")
        ))
        .await
        .unwrap();
    let plan = |sql: String| {
        let agent = &agent;
        async move {
            let rows = agent
                .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    for sql in [
        "WITH rg_orders AS NOT MATERIALIZED (SELECT * FROM rowgate.orders) \
         SELECT id FROM rg_orders ORDER BY id LIMIT 3",
        "WITH rg_i AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices), \
              rg_c AS NOT MATERIALIZED (SELECT * FROM rowgate.customers) \
         SELECT c.name, i.amount FROM rg_c c JOIN rg_i i ON i.customer_id = c.id",
    ] {
        let shown = plan(sql.to_string()).await;
        assert!(!shown.contains("Subquery Scan"), "{sql}\n{shown}");
    }
    agent.batch_execute("ROLLBACK").await.unwrap();
    db.admin
        .batch_execute(
            "CREATE VIEW public.orders_barrier WITH (security_barrier) AS \
             SELECT * FROM public.orders WHERE user_id = 'bob'",
        )
        .await
        .unwrap();
    let control = db
        .admin
        .query(
            "EXPLAIN (COSTS OFF) WITH rg AS NOT MATERIALIZED \
             (SELECT * FROM public.orders_barrier) SELECT id FROM rg ORDER BY id LIMIT 3",
            &[],
        )
        .await
        .unwrap();
    let control: Vec<String> = control.iter().map(|r| r.get(0)).collect();
    assert!(
        control.join("\n").contains("Subquery Scan"),
        "{}",
        control.join("\n")
    );
    db.teardown().await;
}

/// A role made a member of the owner role would inherit its SELECT on the base tables and the
/// permission tables: install takes the membership away again.
#[tokio::test]
async fn install_revokes_memberships_in_the_owner_role() {
    let db = TestDb::new().await;
    let owner = owner_role(&db.role);
    let analyst = format!("{}_analyst", db.role);
    db.admin
        .batch_execute(&format!(
            "CREATE ROLE \"{analyst}\" NOLOGIN; GRANT \"{owner}\" TO \"{analyst}\""
        ))
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    let members = db
        .admin_i64(&format!(
            "SELECT count(*) FROM pg_auth_members WHERE roleid = '\"{owner}\"'::regrole"
        ))
        .await;
    assert_eq!(members, 0, "{report}");
    db.admin
        .batch_execute(&format!("DROP ROLE \"{analyst}\""))
        .await
        .unwrap();
    db.teardown().await;
}

/// Whether `rowgate.<view>` is a security_barrier view.
async fn is_barrier(db: &TestDb, view: &str) -> bool {
    db.admin
        .query_one(
            "SELECT coalesce('security_barrier=true' = ANY (reloptions), false) \
             FROM pg_class WHERE oid = $1::text::regclass",
            &[&format!("rowgate.{view}")],
        )
        .await
        .unwrap()
        .get(0)
}

/// A rule's subqueries run as the owner role, which row-level security fences too: a rule that
/// read a fenced table directly would see only the caller's part of it, and under NOT IN that
/// widens the rule. The rule reads it through a whole view instead, and both tables stay
/// flattened row-security views; the serving role cannot read the whole view.
#[tokio::test]
async fn a_rule_that_reads_a_fenced_table_reads_it_whole() {
    let db = TestDb::new().await;
    let policy = demo_with_rule(
        LINES_RULE,
        "order_id NOT IN (SELECT id FROM orders WHERE status = 'cancelled')",
    );
    let report = reinstall(&db, &policy).await;
    let expected = db
        .admin_i64(
            "SELECT count(*) FROM public.order_items WHERE order_id NOT IN \
             (SELECT id FROM public.orders WHERE status = 'cancelled')",
        )
        .await;
    let all = db
        .admin_i64("SELECT count(*) FROM public.order_items")
        .await;
    assert!(expected < all, "the rule must exclude something");
    let agent = db.agent().await;
    for user in ["anne", "bob"] {
        let seen = agent_count(
            &agent,
            &db,
            user,
            "",
            "SELECT count(*) FROM rowgate.order_items",
        )
        .await
        .unwrap();
        assert_eq!(seen, expected, "{user}: {report}");
    }
    assert!(!is_barrier(&db, "order_items").await, "{report}");
    assert!(!is_barrier(&db, "orders").await, "{report}");
    // The demo's own rule for order_items reads orders too, so the whole view was there.
    assert!(
        report
            .unchanged
            .iter()
            .any(|c| c == "view rowgate_private.\"public.orders\""),
        "{report}"
    );
    let error = agent_count(
        &agent,
        &db,
        "bob",
        "",
        "SELECT count(*) FROM rowgate_private.\"public.orders\"",
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&error), "42501", "{}", db_message(&error));
    // A rule that reads no other table: the whole view is no longer needed and goes.
    let policy = demo_with_rule(LINES_RULE, "order_id > 0");
    let report = reinstall(&db, &policy).await;
    assert!(
        report
            .changes
            .iter()
            .any(|c| c == "dropped view rowgate_private.\"public.orders\""),
        "{report}"
    );
    db.teardown().await;
}

/// A rule that reads its own table would recurse under row-level security; it reads the
/// table whole instead.
#[tokio::test]
async fn a_rule_that_reads_its_own_table_reads_it_whole() {
    let db = TestDb::new().await;
    let rule = "user_id = :user_id OR id IN (SELECT o.id FROM orders o WHERE o.status = 'paid' \
                AND EXISTS (SELECT 1 FROM orders mine WHERE mine.user_id = :user_id))";
    let policy = demo_with_rule(ORDERS_RULE, rule);
    let report = reinstall(&db, &policy).await;
    let expected = rule
        .replace("orders", "public.orders")
        .replace(":user_id", "'bob'");
    let expected = format!("SELECT count(*) FROM public.orders WHERE {expected}");
    assert!(db.admin_i64(&expected).await > db.admin_i64(BOBS_ORDERS).await);
    assert_bob_sees(&db, "orders", &expected).await;
    assert!(!is_barrier(&db, "orders").await, "{report}");
    db.teardown().await;
}

/// A whole view reads past row-level security, so install leaves no grant on it but the
/// owner role's: not one that the installer's default privileges added, not one by hand.
#[tokio::test]
async fn whole_views_are_granted_to_the_owner_role_only() {
    let db = TestDb::new().await;
    let other = Reporter::create(&db, "defaults").await;
    db.admin
        .batch_execute(&format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA rowgate_private GRANT SELECT ON TABLES TO \"{0}\"; \
             GRANT USAGE ON SCHEMA rowgate_private TO \"{0}\"; \
             GRANT SELECT ON rowgate_private.identity_key TO PUBLIC",
            other.name
        ))
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    for relation in [
        "rowgate_private.\"public.orders\"",
        "rowgate_private.identity_key",
    ] {
        let error = other
            .i64(&db, &format!("SELECT count(*) FROM {relation}"))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&error), "42501", "{relation}: {report}");
    }
    assert_bob_sees(
        &db,
        "order_items",
        "SELECT count(*) FROM public.order_items WHERE order_id IN \
         (SELECT id FROM public.orders WHERE user_id = 'bob')",
    )
    .await;
    // DROP OWNED BY takes the default privileges naming the role too.
    other.drop(&db).await;
    db.teardown().await;
}

/// A rule written with the table's own name as qualifier (`orders.user_id`, no alias) must
/// keep it meaning the table it reads once that table is read through its whole view, not the
/// outer `orders` the rule filters: under NOT IN that would widen the rule.
#[tokio::test]
async fn qualified_columns_keep_their_table_when_it_is_read_whole() {
    let db = TestDb::new().await;
    let rule = "status = 'paid' AND user_id = :user_id OR user_id NOT IN \
                (SELECT orders.user_id FROM orders WHERE orders.status = 'cancelled')";
    let policy = demo_with_rule(ORDERS_RULE, rule);
    let report = reinstall(&db, &policy).await;
    let expected = format!(
        "SELECT count(*) FROM public.orders WHERE {}",
        rule.replace("FROM orders", "FROM public.orders")
            .replace(":user_id", "'bob'")
    );
    // Were `orders.user_id` the outer row, every order not cancelled would show.
    let misread = "SELECT count(*) FROM public.orders WHERE status = 'paid' AND user_id = 'bob' \
                   OR status <> 'cancelled'";
    assert_ne!(db.admin_i64(&expected).await, db.admin_i64(misread).await);
    assert_bob_sees(&db, "orders", &expected).await;
    assert!(!is_barrier(&db, "orders").await, "{report}");
    db.teardown().await;
}

/// References a rename could not keep pointing at the table (`public.orders.user_id` and
/// `public.orders.*` match by the table's identity, an alias has no schema, a view no
/// `ctid`), and `FROM ONLY t`, which sqlparser reads as a table named ONLY: such a rule keeps a
/// security_barrier view (which reads as the installer), says why, and shows the right rows.
#[tokio::test]
async fn rules_a_rename_could_change_keep_a_barrier_view() {
    let db = TestDb::new().await;
    for (table, written, rule, reason) in [
        (
            "orders",
            ORDERS_RULE,
            "user_id = :user_id AND user_id NOT IN (SELECT public.orders.user_id \
             FROM public.orders WHERE public.orders.total < 0)",
            "`public.orders.user_id`",
        ),
        (
            "orders",
            ORDERS_RULE,
            "user_id = :user_id OR NOT EXISTS (SELECT 1 FROM public.orders WHERE \
             (public.orders.*).user_id = :user_id AND (public.orders.*).status = 'cancelled')",
            "`public.orders.*`",
        ),
        (
            "orders",
            ORDERS_RULE,
            "user_id = :user_id AND id NOT IN (SELECT o.id FROM orders o \
             WHERE o.total < 0 AND ctid IS NULL)",
            "`ctid`",
        ),
        (
            "order_items",
            LINES_RULE,
            "order_id NOT IN (SELECT id FROM ONLY orders WHERE user_id <> :user_id)",
            "ONLY",
        ),
    ] {
        let policy = demo_with_rule(written, rule);
        let report = reinstall(&db, &policy).await;
        assert!(is_barrier(&db, table).await, "{rule}: {report}");
        assert!(
            report.notes.iter().any(|n| n.contains(reason)),
            "{rule}: {report}"
        );
        let expected = format!(
            "SELECT count(*) FROM public.{table} WHERE {}",
            rule.replace(":user_id", "'bob'")
        );
        assert!(db.admin_i64(&expected).await > 0, "{expected}");
        assert_bob_sees(&db, table, &expected).await;
    }
    db.teardown().await;
}

/// `pg_read_all_data` grants USAGE and SELECT everywhere, past any REVOKE; a whole view reads
/// past the table's row-level security. Its filter is a function only the serving role may
/// call, so such a role is refused there, and still sees only what the table's policies give.
#[tokio::test]
async fn a_role_that_reads_all_data_cannot_read_the_whole_views() {
    let db = TestDb::new().await;
    let reader = Reporter::create(&db, "read_all").await;
    db.admin
        .batch_execute(&format!(
            "GRANT pg_read_all_data TO \"{0}\"; \
             ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO \"{0}\"; \
             ALTER TABLE public.permissions ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY theirs ON public.permissions TO PUBLIC USING (false)",
            reader.name
        ))
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    assert!(
        report
            .changes
            .iter()
            .any(|c| c == "created view rowgate_private.\"public.permissions\""),
        "{report}"
    );
    assert_eq!(
        reader
            .i64(&db, "SELECT count(*) FROM public.permissions")
            .await
            .unwrap(),
        0,
        "the operator's policy binds the reader"
    );
    for relation in [
        "rowgate_private.\"public.permissions\"",
        "rowgate_private.\"public.orders\"",
    ] {
        let error = reader
            .i64(&db, &format!("SELECT count(*) FROM {relation}"))
            .await
            .unwrap_err();
        assert_eq!(
            sqlstate(&error),
            "42501",
            "{relation}: {}",
            db_message(&error)
        );
    }
    assert_bob_sees(&db, "invoices", &bobs_invoices()).await;
    // A grant by hand does not survive the next install either.
    db.admin
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION rowgate_private.whole_gate() TO \"{}\", PUBLIC",
            reader.name
        ))
        .await
        .unwrap();
    reinstall(&db, &common::policy()).await;
    let error = reader
        .i64(
            &db,
            "SELECT count(*) FROM rowgate_private.\"public.permissions\"",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42501", "{}", db_message(&error));
    reader.drop(&db).await;
    db.teardown().await;
}

/// A table that leaves the policy keeps row-level security if the operator has policies of
/// their own on it (here a restrictive one hiding cancelled orders); a rule that reads it must
/// still read it whole, or under NOT IN it would see no cancelled order and exclude nothing.
#[tokio::test]
async fn a_table_that_left_the_policy_with_the_operators_policies_is_read_whole() {
    let db = TestDb::new().await;
    db.admin
        .batch_execute(
            "CREATE POLICY theirs ON public.orders AS RESTRICTIVE TO PUBLIC \
             USING (status <> 'cancelled')",
        )
        .await
        .unwrap();
    let demo = std::fs::read_to_string(common::policies_dir().join("demo.yaml")).unwrap();
    let start = demo.find("  orders:\n").unwrap();
    let end = demo.find("  order_items:\n").unwrap();
    let yaml = format!("{}{}", &demo[..start], &demo[end..]).replace(
        "rows: \"order_id IN (SELECT id FROM orders WHERE user_id = :user_id)\"",
        "rows: \"order_id NOT IN (SELECT id FROM orders WHERE status = 'cancelled')\"",
    );
    assert!(!yaml.contains("  orders:\n") && yaml.contains("NOT IN (SELECT id FROM orders"));
    let policy = rowgate::policy::Policy::from_yaml("demo.yaml", &yaml).unwrap();
    let report = reinstall(&db, &policy).await;
    let enabled = db
        .admin_i64("SELECT count(*) FROM pg_class WHERE oid = 'public.orders'::regclass AND relrowsecurity")
        .await;
    assert_eq!(
        enabled, 1,
        "orders keeps row-level security for their policy: {report}"
    );
    let expected = "SELECT count(*) FROM public.order_items WHERE order_id NOT IN \
                    (SELECT id FROM public.orders WHERE status = 'cancelled')";
    let all = db
        .admin_i64("SELECT count(*) FROM public.order_items")
        .await;
    assert!(db.admin_i64(expected).await < all);
    assert_bob_sees(&db, "order_items", expected).await;
    db.teardown().await;
}

/// Install writes `x IN (SELECT ...)` as `x = ANY (ARRAY(SELECT ...))` for index use; with a
/// literal on the left and a subquery of arrays the two differ (found by differential
/// testing), so such an IN stays as written.
#[tokio::test]
async fn an_in_with_a_literal_on_the_left_keeps_its_meaning() {
    let db = TestDb::new().await;
    let rule = "user_id = :user_id AND NOT ('{paid}' IN (SELECT ARRAY[status]))";
    let policy = demo_with_rule(ORDERS_RULE, rule);
    reinstall(&db, &policy).await;
    let expected = format!(
        "SELECT count(*) FROM public.orders WHERE {}",
        rule.replace(":user_id", "'bob'")
    );
    assert!(db.admin_i64(&expected).await < db.admin_i64(BOBS_ORDERS).await);
    assert_bob_sees(&db, "orders", &expected).await;
    db.teardown().await;
}

/// Two policy tables over one base table would each need the table's one `rowgate_rows`
/// policy; both get security_barrier views instead, each with its own rule.
#[tokio::test]
async fn two_policy_tables_over_one_table_keep_their_own_rules() {
    let db = TestDb::new().await;
    let yaml = std::fs::read_to_string(common::policies_dir().join("demo.yaml")).unwrap()
        + "  invoices_sales:\n    source: public.invoices\n    rows: \"department = 'Sales'\"\n";
    let policy = rowgate::policy::Policy::from_yaml("demo.yaml", &yaml).unwrap();
    let report = reinstall(&db, &policy).await;
    let sales = "SELECT count(*) FROM public.invoices WHERE department = 'Sales'";
    assert_ne!(
        db.admin_i64(&bobs_invoices()).await,
        db.admin_i64(sales).await
    );
    assert_bob_sees(&db, "invoices", &bobs_invoices()).await;
    assert_bob_sees(&db, "invoices_sales", sales).await;
    assert!(is_barrier(&db, "invoices").await, "{report}");
    assert!(is_barrier(&db, "invoices_sales").await, "{report}");
    let policies = db
        .admin_i64("SELECT count(*) FROM pg_policy WHERE polrelid = 'public.invoices'::regclass")
        .await;
    assert_eq!(
        policies, 0,
        "install took its policies off invoices: {report}"
    );
    db.teardown().await;
}

/// Policies defined on a table whose row-level security is off do nothing; enabling it would
/// make them live for every role. Install leaves such a table alone.
#[tokio::test]
async fn dormant_policies_of_the_operator_stay_dormant() {
    let db = TestDb::new().await;
    let reporter = Reporter::create(&db, "dormant").await;
    db.admin
        .batch_execute(
            "DROP POLICY rowgate_rows ON public.orders; DROP POLICY rowgate_reads ON public.orders; \
             DROP POLICY rowgate_others ON public.orders; \
             ALTER TABLE public.orders DISABLE ROW LEVEL SECURITY; \
             CREATE POLICY theirs ON public.orders AS RESTRICTIVE USING (status = 'paid')",
        )
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    let all = db.admin_i64("SELECT count(*) FROM public.orders").await;
    let seen = reporter
        .i64(&db, "SELECT count(*) FROM public.orders")
        .await
        .unwrap();
    assert_eq!(
        seen, all,
        "the operator's restrictive policy is still not live"
    );
    assert_bob_sees(&db, "orders", BOBS_ORDERS).await;
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("rowgate.orders is a security_barrier view")),
        "{report}"
    );
    reporter.drop(&db).await;
    db.teardown().await;
}

/// A rule's subqueries read as the owner role, so a permission table with row-level security
/// of the operator's would be read through their policies (here: none for that role, so
/// nothing). The rule reads it through a whole view; FORCE binds the table's owner but not
/// the superuser who installs here, so it changes nothing.
#[tokio::test]
async fn a_rule_that_reads_a_table_with_the_operators_row_security_reads_it_whole() {
    let db = TestDb::new().await;
    db.admin
        .batch_execute(
            "ALTER TABLE public.permissions ENABLE ROW LEVEL SECURITY; \
             ALTER TABLE public.permissions FORCE ROW LEVEL SECURITY; \
             CREATE POLICY theirs ON public.permissions TO PUBLIC USING (false)",
        )
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    assert!(db.admin_i64(&bobs_invoices()).await > 0);
    assert_bob_sees(&db, "invoices", &bobs_invoices()).await;
    assert!(!is_barrier(&db, "invoices").await, "{report}");
    assert!(
        report
            .changes
            .iter()
            .any(|c| c == "created view rowgate_private.\"public.permissions\""),
        "{report}"
    );
    db.teardown().await;
}

/// A table whose row-level security someone turned off, adding a policy of their own, goes
/// back to a barrier view; rowgate's pass-through policy must go too, or it would void their
/// permissive policy the day they turn row-level security on again.
#[tokio::test]
async fn a_table_handed_back_to_the_operator_keeps_no_pass_through() {
    let db = TestDb::new().await;
    let reporter = Reporter::create(&db, "back").await;
    db.admin
        .batch_execute(&format!(
            "ALTER TABLE public.orders DISABLE ROW LEVEL SECURITY; \
             CREATE POLICY theirs ON public.orders FOR SELECT TO \"{}\" USING (status = 'paid')",
            reporter.name
        ))
        .await
        .unwrap();
    let report = reinstall(&db, &common::policy()).await;
    db.admin
        .batch_execute("ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let paid = db
        .admin_i64("SELECT count(*) FROM public.orders WHERE status = 'paid'")
        .await;
    let seen = reporter
        .i64(&db, "SELECT count(*) FROM public.orders")
        .await
        .unwrap();
    assert_eq!(
        seen, paid,
        "their policy filters once RLS is back on: {report}"
    );
    reporter.drop(&db).await;
    db.teardown().await;
}

/// Taking the fence down later (row-level security off, to COPY into the table, the rule's
/// policy dropped or pointed at another role, or the owner role made exempt from the table's
/// policies by owning it or by membership) would let the owner role, and so the view, read
/// every row. Each view's gate checks its table's fence when a query starts and fails instead.
#[tokio::test]
async fn a_fence_taken_down_later_fails_the_query_instead_of_opening_it() {
    let db = TestDb::new().await;
    let agent = db.agent().await;
    let sql = "SELECT count(*) FROM rowgate.invoices";
    let bobs = agent_count(&agent, &db, "bob", "", sql).await.unwrap();
    let owner = owner_role(&db.role);
    let table_owner: String = db
        .admin
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(relowner)::text FROM pg_catalog.pg_class \
             WHERE oid = 'public.invoices'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for (take_down, put_back) in [
        (
            "ALTER TABLE public.invoices DISABLE ROW LEVEL SECURITY".to_string(),
            "ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY".to_string(),
        ),
        (
            "ALTER POLICY rowgate_rows ON public.invoices RENAME TO gone".to_string(),
            "ALTER POLICY gone ON public.invoices RENAME TO rowgate_rows".to_string(),
        ),
        (
            format!(
                "ALTER POLICY rowgate_rows ON public.invoices TO \"{}\"",
                db.role
            ),
            format!("ALTER POLICY rowgate_rows ON public.invoices TO \"{owner}\""),
        ),
        (
            format!("ALTER TABLE public.invoices OWNER TO \"{owner}\""),
            // Handing the table back moves the owner role's grant with it.
            format!(
                "ALTER TABLE public.invoices OWNER TO \"{table_owner}\"; \
                 GRANT SELECT ON public.invoices TO \"{owner}\""
            ),
        ),
        (
            format!("GRANT \"{table_owner}\" TO \"{owner}\""),
            format!("REVOKE \"{table_owner}\" FROM \"{owner}\""),
        ),
    ] {
        db.admin.batch_execute(&take_down).await.unwrap();
        match agent_count(&agent, &db, "bob", "", sql).await {
            Ok(n) => panic!("{take_down}: {n} rows instead of an error"),
            Err(e) => {
                assert_eq!(sqlstate(&e), "42501", "{take_down}: {}", db_message(&e));
                assert!(
                    db_message(&e).contains("public.invoices"),
                    "{}",
                    db_message(&e)
                );
            }
        }
        db.admin.batch_execute(&put_back).await.unwrap();
        assert_eq!(
            agent_count(&agent, &db, "bob", "", sql).await.unwrap(),
            bobs
        );
    }
    db.teardown().await;
}

/// Settings that make PostgreSQL plan every query it can in parallel (a Gather on top, the
/// scans in a worker), so the small demo tables take the plans large ones would.
const FORCE_PARALLEL: &str = "SET LOCAL force_parallel_mode = on; \
     SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0; \
     SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL min_parallel_index_scan_size = 0";

/// The identity functions are PARALLEL RESTRICTED, so the agent's queries may run in parallel
/// (row-level security's did, and won Q21 by it). In a parallel plan the views show the same
/// rows, and the rule still runs before a predicate that errors on a hidden row.
#[tokio::test]
async fn parallel_plans_keep_the_fence() {
    let db = TestDb::new().await;
    let agent = db.agent().await;
    agent
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL rowgate.caller = '{}'; {FORCE_PARALLEL}",
            db.key.sign("bob")
        ))
        .await
        .unwrap();
    let plan: Vec<String> = agent
        .query("EXPLAIN SELECT count(*) FROM rowgate.invoices", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    agent.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        plan.iter().any(|l| l.contains("Gather")),
        "no parallel plan: {plan:#?}"
    );
    for view in ["invoices", "orders", "order_items", "documents", "blocks"] {
        let sql = format!("SELECT count(*) FROM rowgate.{view}");
        let serial = agent_count(&agent, &db, "bob", "", &sql).await.unwrap();
        let parallel = agent_count(&agent, &db, "bob", FORCE_PARALLEL, &sql)
            .await
            .unwrap_or_else(|e| panic!("{view} in parallel: {}", db_message(&e)));
        assert_eq!(parallel, serial, "{view}");
    }
    assert_bob_sees(&db, "invoices", &bobs_invoices()).await;
    // 777.77 is the amount of invoice 2001 (Executive), which bob does not see.
    let hidden = db
        .admin_i64("SELECT count(*) FROM public.invoices WHERE amount = 777.77")
        .await;
    assert_eq!(hidden, 1);
    let probe = agent_count(
        &agent,
        &db,
        "bob",
        FORCE_PARALLEL,
        "SELECT count(*) FROM rowgate.invoices WHERE amount = 777.77 AND 1/(amount - 777.77) = 0",
    )
    .await
    .unwrap_or_else(|e| panic!("the probe reached the hidden row: {}", db_message(&e)));
    assert_eq!(probe, 0);
    db.teardown().await;
}
