//! What `install` reads from the catalog: the serving role's state, its memberships and
//! privileges, and the columns of the policy's sources.

use super::*;

pub(super) fn db(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> InstallError {
    let what = what.into();
    move |source| {
        let message = match source.as_db_error() {
            Some(e) => {
                let mut message = e.message().to_string();
                if let Some(detail) = e.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = e.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
                message
            }
            None => source.to_string(),
        };
        InstallError::Database {
            what,
            message,
            source,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoleState {
    pub(super) oid: u32,
    pub(super) superuser: bool,
    pub(super) create_db: bool,
    pub(super) create_role: bool,
    pub(super) replication: bool,
    pub(super) bypass_rls: bool,
    pub(super) login: bool,
}

pub(super) async fn role_state(
    client: &Client,
    role: &str,
) -> Result<Option<RoleState>, InstallError> {
    let row = client
        .query_opt(
            "SELECT oid, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, \
             rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(db(format!("looking up role {role:?}")))?;
    Ok(row.map(|row| RoleState {
        oid: row.get(0),
        superuser: row.get(1),
        create_db: row.get(2),
        create_role: row.get(3),
        replication: row.get(4),
        bypass_rls: row.get(5),
        login: row.get(6),
    }))
}

/// Refuses a role that owns anything here but views in `views_schema` (pass `None` for the
/// serving role, which must own nothing at all). `Err` holds what it owns, in words.
pub(super) async fn owned_objects(
    client: &Client,
    role: &str,
    oid: u32,
    views_schema: Option<&str>,
) -> Result<Result<(), String>, InstallError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relowner = $1 AND NOT (c.relkind = 'v' AND n.nspname = $2)), \
                    (SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspowner = $1), \
                    (SELECT count(*) FROM pg_catalog.pg_proc WHERE proowner = $1), \
                    (SELECT datdba = $1 FROM pg_catalog.pg_database \
                      WHERE datname = pg_catalog.current_database())",
            &[&oid, &views_schema.unwrap_or("")],
        )
        .await
        .map_err(db(format!("checking what role {role:?} owns")))?;
    let relations: i64 = row.get(0);
    let schemas: i64 = row.get(1);
    let routines: i64 = row.get(2);
    let owns_database: Option<bool> = row.get(3);
    let mut owned = Vec::new();
    if owns_database == Some(true) {
        owned.push("this database (whose owner owns schema public)".to_string());
    }
    for (count, kind) in [
        (relations, "tables or views"),
        (schemas, "schemas"),
        (routines, "functions"),
    ] {
        if count > 0 {
            owned.push(format!("{count} {kind}"));
        }
    }
    if owned.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!("owns {} here", owned.join(", "))))
    }
}

/// The roles role `oid` is a member of.
pub(super) async fn member_of(client: &Client, oid: u32) -> Result<BTreeSet<String>, InstallError> {
    role_names(
        client,
        "SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
         JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = $1",
        oid,
        "reading a role's memberships",
    )
    .await
}

/// The roles that are members of role `oid`.
pub(super) async fn members(client: &Client, oid: u32) -> Result<BTreeSet<String>, InstallError> {
    role_names(
        client,
        "SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
         JOIN pg_catalog.pg_roles g ON g.oid = m.member WHERE m.roleid = $1",
        oid,
        "reading a role's members",
    )
    .await
}

async fn role_names(
    client: &Client,
    sql: &str,
    oid: u32,
    what: &str,
) -> Result<BTreeSet<String>, InstallError> {
    let rows = client.query(sql, &[&oid]).await.map_err(db(what))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One explicit privilege of the serving role in this database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Privilege {
    pub(super) kind: String,
    pub(super) schema: String,
    pub(super) object: String,
    pub(super) privilege: String,
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Privilege {
            kind,
            schema,
            object,
            privilege,
        } = self;
        match kind.as_str() {
            "table" => write!(f, "{privilege} on {}", object_name(&[schema, object])),
            "column" => write!(f, "{privilege} on column {schema}.{object}"),
            "routine" => write!(f, "{privilege} on function {object}"),
            _ => write!(f, "{privilege} on {kind} {object}"),
        }
    }
}

/// Every privilege granted to the role itself (not through PUBLIC) on this database's tables,
/// columns, routines, schemas and on the database.
pub(super) async fn privileges(
    client: &Client,
    oid: u32,
) -> Result<BTreeSet<Privilege>, InstallError> {
    let rows = client
        .query(
            "SELECT 'table', n.nspname::text, c.relname::text, a.privilege_type
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
              WHERE a.grantee = $1
             UNION ALL
             SELECT 'column', n.nspname::text, c.relname::text || '.' || t.attname::text,
                    a.privilege_type
               FROM pg_catalog.pg_attribute t
               JOIN pg_catalog.pg_class c ON c.oid = t.attrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a
              WHERE a.grantee = $1
             UNION ALL
             SELECT 'routine', n.nspname::text, p.oid::pg_catalog.regprocedure::text,
                    a.privilege_type
               FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
              WHERE a.grantee = $1
             UNION ALL
             SELECT 'schema', n.nspname::text, n.nspname::text, a.privilege_type
               FROM pg_catalog.pg_namespace n
              CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
              WHERE a.grantee = $1
             UNION ALL
             SELECT 'database', '', d.datname::text, a.privilege_type
               FROM pg_catalog.pg_database d
              CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a
              WHERE d.datname = pg_catalog.current_database() AND a.grantee = $1",
            &[&oid],
        )
        .await
        .map_err(db("reading the serving role's privileges"))?;
    Ok(rows
        .iter()
        .map(|row| Privilege {
            kind: row.get(0),
            schema: row.get(1),
            object: row.get(2),
            privilege: row.get(3),
        })
        .collect())
}

/// The source's kind (`pg_class.relkind`) and its columns in table order, or `None` when it
/// does not exist.
pub(super) async fn source_columns(
    client: &Client,
    source: &QualifiedName,
) -> Result<Option<(String, Vec<String>)>, InstallError> {
    let what = || db(format!("reading the columns of {source}"));
    let kind = client
        .query_opt(
            "SELECT c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&source.schema, &source.name],
        )
        .await
        .map_err(what())?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&source.schema, &source.name],
        )
        .await
        .map_err(what())?;
    Ok(Some((
        kind.get(0),
        rows.iter().map(|row| row.get(0)).collect(),
    )))
}

pub(super) async fn relations_of_kind(
    client: &Client,
    schema: &str,
    kind: &str,
) -> Result<BTreeSet<String>, InstallError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind::text = $2",
            &[&schema, &kind],
        )
        .await
        .map_err(db(format!("listing the views in schema {schema}")))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
