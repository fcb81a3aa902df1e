//! `serve` refuses unsafe configurations at start-up, with a message that says how to fix them.

mod common;

use common::TestDb;
use rowgate::server::{prepare, ServeError};

#[tokio::test]
async fn refuses_a_superuser() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.database = common::admin_config(&db.name);
    let error = prepare(&config)
        .await
        .err()
        .expect("a superuser must be refused");
    assert!(matches!(error, ServeError::UnsafeRole { .. }), "{error}");
    assert!(error.to_string().contains("superuser"), "{error}");
    // --insecure lets an experiment through.
    config.insecure = true;
    assert!(prepare(&config).await.is_ok());
    db.teardown().await;
}

#[tokio::test]
async fn refuses_a_role_that_can_read_a_base_table() {
    let db = TestDb::new().await;
    db.admin
        .batch_execute(&format!(
            "GRANT SELECT ON public.invoices TO \"{}\"",
            db.role
        ))
        .await
        .unwrap();
    let error = prepare(&db.serve_config())
        .await
        .err()
        .expect("must be refused");
    let message = error.to_string();
    assert!(
        message.contains("public.invoices") && message.contains("REVOKE"),
        "{message}"
    );
    db.teardown().await;
}

/// A role that can create objects in a schema could plant a function or table that a
/// SECURITY DEFINER identity function resolves by name at run time (PL/pgSQL binds late); it
/// is PostgreSQL's default for `public` before version 15. Through PUBLIC or directly.
#[tokio::test]
async fn refuses_a_role_that_can_create_in_a_schema() {
    let db = TestDb::new().await;
    for grantee in ["PUBLIC".to_string(), format!("\"{}\"", db.role)] {
        db.admin
            .batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {grantee}"))
            .await
            .unwrap();
        let error = prepare(&db.serve_config())
            .await
            .err()
            .expect("must be refused");
        let message = error.to_string();
        assert!(
            message.contains("create objects in schema public")
                && message.contains("REVOKE CREATE"),
            "{message}"
        );
        db.admin
            .batch_execute(&format!("REVOKE CREATE ON SCHEMA public FROM {grantee}"))
            .await
            .unwrap();
    }
    prepare(&db.serve_config())
        .await
        .expect("serves once revoked");
    db.teardown().await;
}

#[tokio::test]
async fn refuses_a_bypassrls_role() {
    let db = TestDb::new().await;
    db.admin
        .batch_execute(&format!("ALTER ROLE \"{}\" BYPASSRLS", db.role))
        .await
        .unwrap();
    let error = prepare(&db.serve_config())
        .await
        .err()
        .expect("must be refused");
    assert!(error.to_string().contains("BYPASSRLS"), "{error}");
    db.teardown().await;
}

/// The permission views of base tables read them as their owner role, fenced by row-level
/// security: an owner that bypasses it (BYPASSRLS, superuser, or a membership in the table
/// owner's role) or can log in would void that fence, so serve refuses to start.
#[tokio::test]
async fn refuses_a_views_owner_that_escapes_row_level_security() {
    let db = TestDb::new().await;
    let owner = rowgate::install::owner_role(&db.role);
    for (break_it, mend_it, said) in [
        (
            "ALTER ROLE {o} BYPASSRLS",
            "ALTER ROLE {o} NOBYPASSRLS",
            "BYPASSRLS",
        ),
        (
            "ALTER ROLE {o} SUPERUSER",
            "ALTER ROLE {o} NOSUPERUSER",
            "superuser",
        ),
        ("ALTER ROLE {o} LOGIN", "ALTER ROLE {o} NOLOGIN", "log in"),
        (
            "GRANT postgres TO {o}",
            "REVOKE postgres FROM {o}",
            "member of postgres",
        ),
        (
            "GRANT {o} TO postgres",
            "REVOKE {o} FROM postgres",
            "has members (postgres)",
        ),
    ] {
        let sql = |template: &str| template.replace("{o}", &format!("\"{owner}\""));
        db.admin.batch_execute(&sql(break_it)).await.unwrap();
        let error = prepare(&db.serve_config())
            .await
            .err()
            .unwrap_or_else(|| panic!("{break_it}: must be refused"));
        let message = error.to_string();
        assert!(
            message.contains(&owner)
                && message.contains(said)
                && message.contains("rowgate install"),
            "{break_it}: {message}"
        );
        db.admin.batch_execute(&sql(mend_it)).await.unwrap();
    }
    prepare(&db.serve_config())
        .await
        .expect("serves once mended");
    db.teardown().await;
}

#[tokio::test]
async fn refuses_a_network_address_without_an_api_key() {
    let db = TestDb::new().await;
    let mut config = db.serve_config();
    config.bind = "0.0.0.0:0".parse().unwrap();
    config.api_keys = rowgate::auth::ApiKeys::default();
    let error = prepare(&config).await.err().expect("must be refused");
    assert!(matches!(error, ServeError::NoKeyOnNetwork(_)), "{error}");
    config.api_keys = rowgate::auth::ApiKeys::parse("secret");
    assert!(prepare(&config).await.is_ok());
    db.teardown().await;
}
