//! What the catalog tells the GROUP BY pass, read from a real PostgreSQL: a primary key only
//! where it makes rows unique (not on a table with inheritance children, whose rows a query
//! also reads), and only the columns PostgreSQL can group by, whatever their type is called.

mod common;

use rowgate::catalog::Catalog;
use rowgate::parse::Limits;
use rowgate::pipeline::rewrite;
use rowgate::policy::Policy;

use common::TestDb;

const SCHEMA: &str = "
CREATE DOMAIN jdom AS json;
CREATE TYPE pair AS (a int, b json);
CREATE TABLE acct (id int PRIMARY KEY, name text);
CREATE TABLE acct_archive () INHERITS (acct);
INSERT INTO acct VALUES (1, 'current');
INSERT INTO acct_archive VALUES (1, 'archived');
CREATE TABLE notes (
    id int PRIMARY KEY, body text, payload json, doc jdom, docs jdom[], path jsonpath,
    pr pair, j jsonb, at point, tags text[]
);
CREATE TABLE keyless (id int, body text);
CREATE VIEW rowgate.acct AS SELECT * FROM acct;
CREATE VIEW rowgate.notes AS SELECT * FROM notes;
CREATE VIEW rowgate.keyless AS SELECT * FROM keyless;
";

const POLICY: &str = "
tables:
  acct:
    rows: \"true\"
  notes:
    rows: \"true\"
  keyless:
    rows: \"true\"
";

#[tokio::test]
async fn keys_are_read_only_where_they_make_rows_unique_and_columns_only_if_groupable() {
    let db = TestDb::new().await;
    db.admin.batch_execute(SCHEMA).await.expect("test schema");
    let policy = Policy::from_yaml("test.yaml", POLICY).expect("policy loads");
    let catalog = Catalog::load(&db.admin, &policy).await.expect("catalog");

    // acct has a primary key, but acct_archive's rows are read with it and may repeat an id.
    assert_eq!(
        catalog.keys.get("acct"),
        None,
        "a parent's key covers no child"
    );
    assert_eq!(catalog.keys.get("keyless"), None);
    // What /v1/schema shows agents follows the same rule.
    assert_eq!(catalog.tables["acct"].primary_key, None);
    assert_eq!(catalog.tables["keyless"].primary_key, None);
    assert_eq!(
        catalog.tables["notes"].primary_key,
        Some(vec!["id".to_string()])
    );
    assert!(catalog.to_text().contains("TABLE notes\n  id integer\n"));
    assert!(catalog
        .to_text()
        .contains("  tags text[]\n  PRIMARY KEY (id)\n"));
    let notes = catalog.keys.get("notes").expect("notes has a key");
    assert_eq!(notes.key, ["id"]);
    // json, a domain over json, an array of it, jsonpath, a composite holding json and point
    // have no equality: PostgreSQL cannot group by them.
    assert_eq!(notes.groupable, ["id", "body", "j", "tags"]);

    let completed = catalog.complete(&policy);
    let rewritten = |sql: &str| {
        rewrite(sql, &completed, &Limits::default())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .sql
    };
    let out = rewritten("SELECT a.id, a.name, count(*) AS n FROM acct a GROUP BY a.id");
    assert!(out.ends_with("GROUP BY a.id"), "{out}");
    // Over the base table PostgreSQL accepts it (the parent's key) and answers one group for
    // id 1; grouping by name as well would have answered two. The rewrite leaves PostgreSQL's
    // refusal instead of a different answer.
    let base = db
        .admin
        .query(
            "SELECT a.id, a.name, count(*) AS n FROM acct a GROUP BY a.id",
            &[],
        )
        .await
        .expect("base query");
    assert_eq!(base.len(), 1);
    let refused = db
        .admin
        .query(&out, &[])
        .await
        .expect_err("the view has no key");
    assert_eq!(common::sqlstate(&refused), "42803");

    let out = rewritten("SELECT n.id, n.body, n.payload, n.tags FROM notes n GROUP BY n.id");
    assert!(out.ends_with("GROUP BY n.id, n.body, n.tags"), "{out}");
    db.teardown().await;
}
