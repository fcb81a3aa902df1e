//! Unit tests of install's SQL planning (no database; `tests/install_db.rs` runs it for real).
use super::*;
use std::path::Path;

fn demo_policy() -> Policy {
    Policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

/// The demo database's columns, as `inspect` would read them.
fn demo_catalog(policy: &Policy) -> Catalog {
    let mut catalog = Catalog {
        database: "rowgate_demo".into(),
        swept_schemas: ["public".to_string()].into(),
        ..Catalog::default()
    };
    for name in policy.tables.keys() {
        let columns: &[&str] = match name.as_str() {
            "invoices" => &["id", "amount", "issued_on", "department", "customer_id"],
            "customers" => &["id", "name", "email", "department", "active", "created_at"],
            "orders" => &["id", "user_id", "total", "placed_at", "status", "metadata"],
            _ => &[
                "id",
                "folder_id",
                "document_id",
                "order_id",
                "tenant_id",
                "department",
            ],
        };
        catalog.source_columns.insert(
            name.clone(),
            columns.iter().map(|c| c.to_string()).collect(),
        );
    }
    catalog
}

fn key() -> IdentityKey {
    IdentityKey([7; crate::caller::KEY_BYTES])
}

fn view_of<'a>(plan: &'a [String], name: &str) -> &'a str {
    let prefix = format!("CREATE VIEW rowgate.{name} ");
    plan.iter().find(|s| s.starts_with(&prefix)).unwrap()
}

#[test]
fn templates_name_the_schema_rewrite_reads() {
    assert_eq!(VIEW_SCHEMA, "rowgate");
}

#[test]
fn demo_plan_substitutes_placeholders_on_the_tree() {
    let policy = demo_policy();
    let plan = plan_sql(
        &policy,
        &key(),
        &InstallOptions::default(),
        &demo_catalog(&policy),
    )
    .unwrap();
    assert!(plan
        .iter()
        .all(|s| !s.contains(":user_id") && !s.contains(":roles")));
    assert_eq!(
        view_of(&plan, "orders"),
        "CREATE VIEW rowgate.orders WITH (security_barrier = true) AS \
         SELECT id, user_id, total, placed_at, status, metadata FROM public.orders \
         WHERE (SELECT rowgate.caller_id()) IS NOT NULL AND (user_id = (SELECT rowgate.caller_id()))"
    );
    assert_eq!(
        view_of(&plan, "customers"),
        "CREATE VIEW rowgate.customers WITH (security_barrier = true) AS \
         SELECT id, name, department, active, created_at FROM public.customers \
         WHERE (SELECT rowgate.caller_id()) IS NOT NULL AND (department IN \
         (SELECT department FROM permissions WHERE allowed_role IN \
         (SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id()))))"
    );
    // `tenant_id IN (:tenant_id)` became a subquery, `:user_id` a scalar subquery.
    let items = view_of(&plan, "items");
    assert!(items.contains(
        "tenant_id IN (SELECT tenant_id FROM app_users WHERE id = (SELECT rowgate.caller_id()))"
    ));
    assert!(items.contains("item_users WHERE user_id = (SELECT rowgate.caller_id())"));
    // Every statement embedding fragments reads back as itself.
    for statement in plan.iter().filter(|s| s.starts_with("CREATE VIEW")) {
        assert_eq!(
            Parser::parse_sql(&DIALECT, statement).unwrap()[0].to_string(),
            *statement
        );
    }
}

#[test]
fn functions_embed_the_subject_queries() {
    let policy = demo_policy();
    let plan = plan_sql(
        &policy,
        &key(),
        &InstallOptions::default(),
        &demo_catalog(&policy),
    )
    .unwrap();
    let exists = plan
        .iter()
        .find(|s| s.contains("rowgate.caller_exists()"))
        .unwrap();
    assert!(
        exists.ends_with(
            "rowgate_verified_caller := pg_catalog.convert_from(pg_catalog.decode(rowgate_payload, \
             'hex'), 'UTF8');\n    RETURN EXISTS (SELECT 1 FROM app_users WHERE id = (SELECT \
             rowgate_verified_caller));\nEND\n$rowgate$"
        ),
        "{exists}"
    );
    // It verifies the caller itself (one SECURITY DEFINER call a request, not two).
    assert!(exists.contains("pg_catalog.sha256(rowgate_key"), "{exists}");
    assert!(!exists.contains("rowgate.caller_id()"), "{exists}");
    assert!(exists.contains("LANGUAGE plpgsql STABLE SECURITY DEFINER"));
    // Names in the body resolve at run time, so exactly as they did for the views.
    let install_path = super::SETTINGS[0].trim_start_matches("SET LOCAL search_path = ");
    assert!(exists.contains(&format!("SET search_path = {install_path} AS ")));
    let attributes = plan
        .iter()
        .find(|s| s.contains("rowgate.caller_attributes()"))
        .unwrap();
    assert!(attributes.contains(
        "pg_catalog.jsonb_build_object('roles', pg_catalog.to_jsonb(ARRAY(SELECT role FROM \
         user_roles WHERE user_id = (SELECT rowgate.caller_id()))), 'tenant_id'"
    ));
    let caller_id = plan
        .iter()
        .find(|s| s.contains("FUNCTION rowgate.caller_id()"))
        .unwrap();
    assert!(caller_id.contains("'rowgate.caller'") && caller_id.contains("SECURITY DEFINER"));
}

#[test]
fn match_views_are_distinct_and_hide_the_permission_column() {
    let yaml = "subject:\n  attributes:\n    roles: \"SELECT role FROM user_roles WHERE user_id = :user_id\"\n\
                tables:\n  inv:\n    view: invoices_view\n    column: allowed_role\n    match: roles\n";
    let policy = Policy::from_yaml("t.yaml", yaml).unwrap();
    let mut catalog = Catalog::default();
    catalog.source_columns.insert(
        "inv".into(),
        vec!["id".into(), "amount".into(), "allowed_role".into()],
    );
    let plan = plan_sql(&policy, &key(), &InstallOptions::default(), &catalog).unwrap();
    assert_eq!(
        view_of(&plan, "inv"),
        "CREATE VIEW rowgate.inv WITH (security_barrier = true) AS SELECT DISTINCT id, amount \
         FROM public.invoices_view WHERE (SELECT rowgate.caller_id()) IS NOT NULL AND \
         (allowed_role IN (SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id())))"
    );
    let listed = yaml.replace(
        "match: roles\n",
        "match: roles\n    columns: [id, allowed_role]\n",
    );
    let policy = Policy::from_yaml("t.yaml", &listed).unwrap();
    assert!(matches!(
        plan_sql(&policy, &key(), &InstallOptions::default(), &catalog),
        Err(InstallError::PermissionColumnListed { .. })
    ));
}

#[test]
fn in_lists_any_and_scalars_are_substituted() {
    let yaml = "subject:\n  attributes:\n    roles: \"SELECT role FROM user_roles WHERE user_id = :user_id\"\n\
                tables:\n  t:\n    rows: \"a NOT IN (:roles, 'x') OR b = ANY (:roles) OR c = :roles\"\n";
    let policy = Policy::from_yaml("t.yaml", yaml).unwrap();
    let mut catalog = Catalog::default();
    catalog
        .source_columns
        .insert("t".into(), vec!["a".into(), "b".into(), "c".into()]);
    let plan = plan_sql(&policy, &key(), &InstallOptions::default(), &catalog).unwrap();
    let roles = "SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id())";
    assert!(view_of(&plan, "t").ends_with(&format!(
        "AND ((a NOT IN ({roles}) AND a NOT IN ('x')) OR b = ANY(ARRAY({roles})) OR c = ({roles}))"
    )));
}

#[test]
fn missing_columns_and_uninspected_tables_are_refused() {
    let policy = demo_policy();
    let mut catalog = demo_catalog(&policy);
    catalog
        .source_columns
        .insert("customers".into(), vec!["id".into(), "name".into()]);
    let err = plan_sql(&policy, &key(), &InstallOptions::default(), &catalog).unwrap_err();
    assert!(
        matches!(err, InstallError::ColumnMissing { ref column, .. } if column == "department"),
        "{err}"
    );
    catalog.source_columns.clear();
    assert!(matches!(
        plan_sql(&policy, &key(), &InstallOptions::default(), &catalog),
        Err(InstallError::NotInspected { .. })
    ));
}

#[test]
fn role_names_are_quoted_and_checked() {
    let policy = demo_policy();
    let catalog = demo_catalog(&policy);
    let options = InstallOptions {
        agent_role: "Agent \"x\"; DROP TABLE invoices".into(),
        agent_password: Some("it's \\ secret".into()),
    };
    let plan = plan_sql(&policy, &key(), &options, &catalog).unwrap();
    assert!(plan.contains(
        &"CREATE ROLE \"Agent \"\"x\"\"; DROP TABLE invoices\" WITH LOGIN NOSUPERUSER \
          NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD 'it''s \\ secret'"
            .to_string()
    ));
    for (role, password) in [
        ("", None),
        ("public", None),
        ("pg_x", None),
        ("a\0b", None),
        ("ok", Some("a\0")),
    ] {
        let options = InstallOptions {
            agent_role: role.into(),
            agent_password: password.map(String::from),
        };
        assert!(
            plan_sql(&policy, &key(), &options, &catalog).is_err(),
            "{role:?}"
        );
    }
    assert!(!format!("{options:?}").contains("secret"));
}

#[test]
fn the_key_is_stored_as_hex() {
    let policy = demo_policy();
    let plan = plan_sql(
        &policy,
        &key(),
        &InstallOptions::default(),
        &demo_catalog(&policy),
    )
    .unwrap();
    let insert = format!(
        "INSERT INTO rowgate_private.identity_key (key) VALUES (pg_catalog.decode('{}', 'hex'))",
        key().to_hex()
    );
    assert!(plan.contains(&insert));
}

#[test]
fn stale_views_are_dropped_and_existing_roles_altered() {
    let policy = demo_policy();
    let mut catalog = demo_catalog(&policy);
    catalog.views = ["invoices".to_string(), "old".to_string()].into();
    catalog.agent_exists = true;
    catalog.agent_member_of = vec!["pg_read_all_data".into()];
    let plan = plan_sql(&policy, &key(), &InstallOptions::default(), &catalog).unwrap();
    assert!(plan.contains(&"DROP VIEW rowgate.old".to_string()));
    assert!(!plan.contains(&"DROP VIEW rowgate.invoices".to_string()));
    assert!(plan.contains(&"DROP VIEW IF EXISTS rowgate.invoices".to_string()));
    assert!(plan
        .iter()
        .any(|s| s.starts_with("ALTER ROLE rowgate_agent WITH LOGIN NOSUPERUSER")));
    assert!(plan.contains(&"REVOKE pg_read_all_data FROM rowgate_agent".to_string()));
}

#[test]
fn literals_double_quotes() {
    assert_eq!(quote_literal("a'b"), "'a''b'");
}

#[test]
fn dollar_quoting_picks_a_tag_the_body_lacks() {
    assert_eq!(super::dollar_quoted("x"), "$rowgate$x$rowgate$");
    assert_eq!(
        super::dollar_quoted("a $rowgate$ b"),
        "$rowgate1$a $rowgate$ b$rowgate1$"
    );
    // A prefix of the closing tag is enough to be dangerous: `$rowgate` then `$`.
    assert_eq!(
        super::dollar_quoted("'$rowgate' || '$'"),
        "$rowgate1$'$rowgate' || '$'$rowgate1$"
    );
}

#[test]
fn the_exists_check_cannot_end_the_function_body_early() {
    let sql = super::identity_function_sql(super::Verifier::Exists {
        check: "EXISTS (SELECT 1 WHERE '$rowgate$' <> '')",
    });
    assert!(sql.contains(" AS $rowgate1$\nDECLARE"), "{sql}");
    assert!(sql.ends_with("END\n$rowgate1$"), "{sql}");
}

#[test]
fn base_tables_get_plain_views_and_row_security_policies() {
    let policy = demo_policy();
    let mut catalog = demo_catalog(&policy);
    catalog.row_security = ["orders".to_string(), "customers".to_string()].into();
    // `customers` already has row-level security of the operator's own: no pass-through.
    let customers = QualifiedName {
        schema: "public".into(),
        name: "customers".into(),
    };
    catalog.tables.insert(
        customers,
        TableSecurity {
            enabled: true,
            policies: ["theirs".to_string()].into(),
            installer_reads_whole: true,
        },
    );
    let plan = plan_sql(&policy, &key(), &InstallOptions::default(), &catalog).unwrap();
    assert_eq!(
        view_of(&plan, "orders"),
        "CREATE VIEW rowgate.orders AS \
         SELECT id, user_id, total, placed_at, status, metadata FROM public.orders \
         WHERE (SELECT rowgate.fenced_caller(CAST('public.orders' AS REGCLASS))) IS NOT NULL"
    );
    let has = |sql: &str| plan.iter().any(|s| s == sql);
    assert!(has(
        "ALTER VIEW rowgate.orders OWNER TO rowgate_agent_owner"
    ));
    assert!(has("ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY"));
    assert!(has(
        "CREATE POLICY rowgate_others ON public.orders AS PERMISSIVE FOR ALL TO PUBLIC \
         USING (true) WITH CHECK (true)"
    ));
    assert!(has(
        "CREATE POLICY rowgate_rows ON public.orders AS RESTRICTIVE FOR SELECT TO \
         rowgate_agent_owner USING (user_id = (SELECT rowgate.caller_id()))"
    ));
    // IN (subquery) became = ANY (ARRAY(subquery)), at every level.
    assert!(has(
        "CREATE POLICY rowgate_rows ON public.customers AS RESTRICTIVE FOR SELECT TO \
         rowgate_agent_owner USING (department = ANY(ARRAY(SELECT department FROM permissions \
         WHERE allowed_role = ANY(ARRAY(SELECT role FROM user_roles WHERE user_id = \
         (SELECT rowgate.caller_id()))))))"
    ));
    assert!(!plan
        .iter()
        .any(|s| s.contains("ALTER TABLE public.customers")));
    assert!(!plan
        .iter()
        .any(|s| s.contains("rowgate_others ON public.customers")));
    assert!(has("GRANT SELECT ON public.orders TO rowgate_agent_owner"));
    // The others keep their barrier views, owned by the installer.
    assert!(view_of(&plan, "invoices").contains("security_barrier = true"));
    assert!(!has(
        "ALTER VIEW rowgate.invoices OWNER TO rowgate_agent_owner"
    ));
}

/// A rule reads a table whole only where the view can: the installer not bound by the table's
/// row-level security, no WITH clause (whose names renaming could confuse with a table's),
/// and a view name PostgreSQL keeps whole.
#[test]
fn whole_views_only_where_they_read_the_whole_table() {
    let table = QualifiedName {
        schema: "public".to_string(),
        name: "permissions".to_string(),
    };
    let state = |reads| TableSecurity {
        enabled: true,
        policies: ["theirs".to_string()].into(),
        installer_reads_whole: reads,
    };
    let expr = |sql: &str| parse_expr(sql, "test").unwrap();
    let plain = expr("department IN (SELECT department FROM permissions)");
    assert_eq!(whole::unreadable(&table, Some(&state(true)), &plain), None);
    let bound = whole::unreadable(&table, Some(&state(false)), &plain).unwrap();
    assert!(bound.contains("FORCE ROW LEVEL SECURITY"), "{bound}");
    assert!(whole::unreadable(&table, None, &plain).is_some());
    let with = expr(
        "department IN (WITH permissions AS (SELECT 1 AS department) \
         SELECT department FROM permissions)",
    );
    let why = whole::unreadable(&table, Some(&state(true)), &with).unwrap();
    assert!(why.contains("WITH clause"), "{why}");
    let long = QualifiedName {
        schema: "s".repeat(40),
        name: "t".repeat(30),
    };
    let why = whole::unreadable(&long, Some(&state(true)), &plain).unwrap();
    assert!(why.contains("too long"), "{why}");
}

/// Only the names that resolve to a table read whole are renamed.
#[test]
fn read_whole_renames_only_the_tables_read_whole() {
    let orders = QualifiedName {
        schema: "public".to_string(),
        name: "orders".to_string(),
    };
    let users = QualifiedName {
        schema: "public".to_string(),
        name: "users".to_string(),
    };
    let names = [
        ("orders".to_string(), orders.clone()),
        ("public.users".to_string(), users),
    ]
    .into();
    let rule = parse_expr(
        "id IN (SELECT o.id FROM orders o JOIN public.users u ON u.id = o.user_id)",
        "test",
    )
    .unwrap();
    let renamed = whole::read_whole(rule, &names, &[orders].into()).to_string();
    assert_eq!(
        renamed,
        "id IN (SELECT o.id FROM rowgate_private.\"public.orders\" o \
         JOIN public.users u ON u.id = o.user_id)"
    );
}

/// Two tables whose names differ only in where the dot falls get two whole views.
#[test]
fn whole_view_names_are_one_per_table() {
    let name = |schema: &str, name: &str| {
        whole::view_name(&QualifiedName {
            schema: schema.to_string(),
            name: name.to_string(),
        })
    };
    assert_eq!(name("public", "orders"), "public.orders");
    assert_ne!(name("a.b", "c"), name("a", "b.c"));
}

/// Every statement install runs for the demo policy, in order, on a database where the roles
/// exist with memberships to revoke, a view left the policy, and two tables get row-level
/// security: the snapshot is what a reviewer reads to see exactly what install does, and what
/// keeps a refactor of the plan from changing a statement unseen.
#[test]
fn the_whole_demo_plan() {
    let policy = demo_policy();
    let mut catalog = demo_catalog(&policy);
    catalog.agent_exists = true;
    catalog.agent_member_of = vec!["pg_read_all_data".into()];
    catalog.owner_exists = true;
    catalog.owner_member_of = vec!["app_owner".into()];
    catalog.owner_members = vec!["someone".into()];
    catalog.swept_schemas = ["public".to_string(), "sales".to_string()].into();
    catalog.views = ["invoices".to_string(), "retired".to_string()].into();
    catalog.row_security = ["orders".to_string(), "customers".to_string()].into();
    let table = |name: &str| QualifiedName {
        schema: "public".into(),
        name: name.into(),
    };
    catalog.tables.insert(
        table("customers"),
        TableSecurity {
            enabled: true,
            policies: ["theirs".to_string()].into(),
            installer_reads_whole: true,
        },
    );
    catalog.tables.insert(
        table("legacy"),
        TableSecurity {
            enabled: true,
            policies: ["rowgate_rows".to_string(), "rowgate_reads".to_string()].into(),
            installer_reads_whole: true,
        },
    );
    catalog.rule_relations = [table("user_roles"), table("permissions")].into();
    let options = InstallOptions {
        agent_password: Some("it's secret".into()),
        ..InstallOptions::default()
    };
    let plan = plan_sql(&policy, &key(), &options, &catalog).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("install_plan_demo", plan.join(";\n")));
}
