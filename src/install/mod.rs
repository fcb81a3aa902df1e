//! `rowgate install`: the database side of the layers of defense (DESIGN.md, layers 4 to 6).
//!
//! From the policy, install puts into the database:
//!
//! * schema `rowgate_private` (no privilege for anyone but its owner) holding the identity key
//!   (`identity_key`) and the installed policy version (`installed`);
//! * schema `rowgate` holding `caller_id()`, which checks the signed caller id the gateway sets
//!   in each transaction (see [`crate::caller`]) and raises when it is missing or forged,
//!   `caller_exists()` and `caller_attributes()`, and one permission view per policy table;
//! * for a policy table whose source is a base table and whose rule is `rows`: a plain view
//!   owned by `<serving role>_owner`, the rule as that role's row-level security policy on the
//!   table (see `row_security`, which says why); for the others (a view as source, a `match`
//!   rule): a `security_barrier` view owned by the installing role, the rule as its filter;
//! * the serving role (default `rowgate_agent`): a login that can read those views, call those
//!   functions, and nothing else.
//!
//! Everything runs in one transaction and is idempotent: views that left the policy are dropped,
//! every permission view is dropped and created again (`CREATE OR REPLACE VIEW` cannot change a
//! view's column list), and the [`InstallReport`] compares the catalog before and after, so a
//! second run with the same policy reports nothing changed.
//!
//! The permission views read their sources with their owner's rights (the owner role's, or the
//! installing role's) while the serving role has none on them. Every rule is gated: it first
//! checks that the transaction carries a validly signed caller (a one-time filter, evaluated
//! before any row), so a query without one fails instead of seeing anything, whatever the rule.
//!
//! SQL that embeds policy fragments is built as sqlparser trees: fixed templates (parsed, never
//! formatted with policy text) whose holes are filled with the fragments' parsed trees, with
//! `:user_id` and `:<attribute>` substituted on the tree. Each generated statement must print,
//! parse and print back to the same text, so the printer and the parser agree on it. Statements
//! that embed no fragment (grants, the role) are fixed text around identifiers quoted by
//! [`crate::sql::ident`]; the only literals are the identity key (hex), the policy version (hex)
//! and the optional role password ([`quote_literal`]).
//!
//! What the signature does not stop: replay. A signed value is valid for its user for as long
//! as the key is, so SQL that reaches `set_config` with *another caller's genuine* value (not a
//! forged one) reads as that caller. The serving role can see the text of its other sessions'
//! last statements in `pg_stat_activity`; the gateway must therefore send the value as a bind
//! parameter (see `crate::execute`), never as literal SQL text.
//! Re-installing with a new key invalidates every value signed with the old one.
//!
//! Unqualified names in policy fragments resolve in `public` (as the tables' default sources
//! do): install pins `search_path` to `pg_catalog, public, pg_temp` while it creates the views,
//! and PostgreSQL stores views and `RETURN`-bodied SQL functions as parsed trees, so the names
//! stay bound to what they meant at install time whatever the serving role's `search_path`.
//! `caller_exists()` is PL/pgSQL (its plan is cached) and binds names when it runs, under the
//! same pinned path; `serve` refuses a serving role that could create objects to shadow them.
//!
//! This module holds the plan and its execution; `fragments` builds the SQL from the policy,
//! `identity` the functions that verify the signed caller,
//! `catalog` reads the role and the sources, `report` compares the catalog before and after.

mod catalog;
mod fragments;
mod identity;
mod report;
mod row_security;
mod whole;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use sqlparser::ast::{
    visit_relations, BinaryOperator, Distinct, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Owner, Query, SelectItem, SetExpr, Statement, TableFactor, Value, Visit,
    VisitMut, Visitor, VisitorMut,
};
use sqlparser::parser::Parser;
use tokio_postgres::Client;

use crate::caller::{IdentityKey, SETTING};
use crate::policy::{Policy, QualifiedName, Rule, USER_ID};
use crate::rewrite::VIEW_SCHEMA;
use crate::sql::{ident, object_name, DIALECT};

use catalog::*;
use fragments::*;
use identity::*;
use report::*;
use row_security::*;

pub use row_security::{owner_role, TableSecurity, OWNER_SUFFIX};

/// The schema only the installing role can read: the identity key and the installed version.
pub const PRIVATE_SCHEMA: &str = "rowgate_private";

/// The serving role's default name.
pub const DEFAULT_AGENT_ROLE: &str = "rowgate_agent";

/// What `rowgate.caller_id()` raises when the transaction has no validly signed caller. It says
/// nothing about why (missing, malformed or forged), so a probing query learns nothing.
pub const NO_CALLER_MESSAGE: &str = "rowgate: no valid caller in this transaction";

/// The SQLSTATE of that error (`invalid_authorization_specification`), so the gateway can tell
/// it from other query failures.
pub const NO_CALLER_SQLSTATE: &str = "28000";

/// The functions install creates in schema `rowgate`, as `GRANT` names them.
pub const FUNCTIONS: [&str; 4] = [
    "caller_id()",
    "caller_exists()",
    "caller_attributes()",
    "fenced_caller(regclass)",
];

/// Serialises concurrent installs into the same database (advisory locks are per database).
/// The bytes spell "rowgate".
const INSTALL_LOCK: i64 = 0x0072_6f77_6761_7465;

/// Settings the plan runs under, first in the transaction. `search_path`: see the module doc;
/// `pg_temp` last so no temporary object of the installing session shadows a policy name.
/// `standard_conforming_strings`: the literals printed here double quotes and leave backslashes
/// alone, which is only right when this is on (the default since PostgreSQL 9.1, but settable).
const SETTINGS: [&str; 2] = [
    "SET LOCAL search_path = pg_catalog, public, pg_temp",
    "SET LOCAL standard_conforming_strings = on",
];

/// `:Hole` cannot be a policy placeholder (attribute names are lower case), and holes are filled
/// only with fragments whose placeholders are already substituted.
const HOLE: &str = ":Hole";

const VIEW_TEMPLATE: &str =
    "CREATE VIEW rowgate.t WITH (security_barrier = true) AS SELECT c FROM s WHERE :Hole";

/// A row-security table's view: no barrier, so PostgreSQL flattens it into the query (see
/// `row_security`); its one filter, the caller gate with the fence check, reads no column.
const PLAIN_VIEW_TEMPLATE: &str = "CREATE VIEW rowgate.t AS SELECT c FROM s WHERE :Hole";

const ATTRIBUTES_TEMPLATE: &str = "CREATE OR REPLACE FUNCTION rowgate.caller_attributes() \
     RETURNS jsonb LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER \
     SET search_path = pg_catalog, pg_temp \
     RETURN CASE WHEN (SELECT rowgate.caller_id()) IS NOT NULL THEN :Hole END";

/// The PL/pgSQL variable `caller_exists()` holds the verified caller in.
const VERIFIED_CALLER: &str = "rowgate_verified_caller";

/// What `:user_id` becomes: a scalar subquery, so PostgreSQL evaluates it once per query (an
/// InitPlan) rather than once per row.
const CALLER_QUERY: &str = "SELECT rowgate.caller_id()";

/// The gate in front of every view's rule and of `caller_exists()`: raises unless the
/// transaction carries a valid caller, even when the rule itself never reads the caller's id.
const CALLER_GATE: &str = "(SELECT rowgate.caller_id()) IS NOT NULL";

/// One attribute's values as a JSON array (`[]` when none), for dry runs.
const ATTRIBUTE_VALUES: &str = "pg_catalog.to_jsonb(ARRAY(SELECT :Hole))";

/// An attribute used with `= ANY (:attr)`: its values as an array.
const ATTRIBUTE_ARRAY: &str = "ARRAY(SELECT :Hole)";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the serving role name {role:?} cannot be used: {why}")]
    BadRoleName { role: String, why: &'static str },
    #[error("the serving role's password contains a NUL character, which PostgreSQL cannot store")]
    PasswordNul,
    #[error(
        "the serving role {role:?} is the role running install; install as the database owner \
         or a superuser, and serve as a separate role"
    )]
    AgentIsInstaller { role: String },
    #[error(
        "the serving role {role:?} {what}; it must own nothing, or it could change or read \
         what it owns (reassign with REASSIGN OWNED BY, or choose another role name)"
    )]
    AgentOwnsObjects { role: String, what: String },
    #[error(
        "role {role:?}, which install makes the owner of the permission views, {what}; it may \
         own nothing but those views (reassign with REASSIGN OWNED BY, or choose another \
         serving role name)"
    )]
    OwnerOwnsObjects { role: String, what: String },
    #[error(
        "table `{table}`: its source {relation} does not exist (no table or view of that name)"
    )]
    SourceMissing { table: String, relation: String },
    #[error(
        "table `{table}`: its source {relation} is in schema {schema:?}, which rowgate manages"
    )]
    SourceInManagedSchema {
        table: String,
        relation: String,
        schema: String,
    },
    #[error("table `{table}`: column `{column}` does not exist in {relation} (its columns: {available})")]
    ColumnMissing {
        table: String,
        column: String,
        relation: String,
        available: String,
    },
    #[error(
        "table `{table}`: `columns` lists `{column}`, the view's permission column; the view \
         would list each row once per granting value instead of once"
    )]
    PermissionColumnListed { table: String, column: String },
    #[error("table `{table}`: {relation} has no column besides the permission column `{column}`")]
    NothingToShow {
        table: String,
        relation: String,
        column: String,
    },
    #[error("table `{table}`: the catalog given to plan_sql has no columns for its source")]
    NotInspected { table: String },
    #[error("{what}: `:{name}` is neither `:user_id` nor a declared attribute")]
    UnknownPlaceholder { what: String, name: String },
    #[error("{what}: a placeholder is left where it cannot be substituted")]
    PlaceholderLeft { what: String },
    #[error("{what}: the generated SQL does not read back as itself, refusing to run it: {sql}")]
    RoundTrip { what: String, sql: String },
    #[error("internal error building {what}: {message}")]
    Template { what: String, message: String },
    #[error("{what}: {message}")]
    Database {
        what: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// How install sets up the serving role.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// The serving role, created when missing (default `rowgate_agent`).
    pub agent_role: String,
    /// Its password; `None` leaves an existing password as it is (and creates the role without
    /// one, for `trust` or certificate authentication).
    pub agent_password: Option<String>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            agent_role: DEFAULT_AGENT_ROLE.to_string(),
            agent_password: None,
        }
    }
}

// By hand, so that a logged `{:?}` never shows the password.
impl fmt::Debug for InstallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallOptions")
            .field("agent_role", &self.agent_role)
            .field(
                "agent_password",
                &self.agent_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What install needs to know about the database before planning: [`inspect`] reads it inside
/// the install transaction. Public so that [`plan_sql`] can be run (and tested) on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// `current_database()`: CONNECT is granted on it.
    pub database: String,
    /// Whether the serving role exists (then it is altered rather than created).
    pub agent_exists: bool,
    /// Roles the serving role is a member of: each membership is revoked, since a membership
    /// (`pg_read_all_data`, a table owner's role) would lend it their privileges.
    pub agent_member_of: Vec<String>,
    /// Existing schemas other than `rowgate` and `rowgate_private` in which every privilege of
    /// the serving role is revoked: `public`, the sources' schemas, and every schema where it
    /// holds an explicit privilege now.
    pub swept_schemas: BTreeSet<String>,
    /// Policy table name → the columns of its source, in table order.
    pub source_columns: BTreeMap<String, Vec<String>>,
    /// Whether the views' owner role ([`owner_role`]) exists.
    pub owner_exists: bool,
    /// Roles the owner role is a member of: revoked, as for the serving role (a membership in
    /// a table owner's role would exempt it from row-level security).
    pub owner_member_of: Vec<String>,
    /// Roles that are members of the owner role: each loses the membership, which would lend
    /// it SELECT on the base tables with only the owner's policies between it and the rows.
    pub owner_members: Vec<String>,
    /// Policy tables fenced by row-level security (see `row_security`): a `rows` rule over a
    /// base table. The others get a `security_barrier` view.
    pub row_security: BTreeSet<String>,
    /// The row-level security state of the sources in `row_security` and of every table that
    /// holds one of rowgate's policies.
    pub tables: BTreeMap<QualifiedName, TableSecurity>,
    /// The relations the row-security tables' rules read directly: the owner role may SELECT
    /// them.
    pub rule_relations: BTreeSet<QualifiedName>,
    /// The tables those rules read through a whole view instead (see `whole`).
    pub whole: BTreeSet<QualifiedName>,
    /// How the rules name the relations they read (as printed) → the relation.
    pub rule_names: BTreeMap<String, QualifiedName>,
    /// The whole views now in schema `rowgate_private`.
    pub whole_views: BTreeSet<String>,
    /// Policy table name → why its base table gets a `security_barrier` view rather than
    /// row-level security, for the report.
    pub barrier_reasons: BTreeMap<String, String>,
    /// The views now in schema `rowgate`.
    pub views: BTreeSet<String>,
}

/// What an install changed, found by comparing the catalog before and after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// The policy version now installed.
    pub version: String,
    /// The version installed before, if any.
    pub previous_version: Option<String>,
    /// One line per change, e.g. "created view rowgate.invoices", "dropped view rowgate.old",
    /// "granted SELECT on rowgate.invoices to rowgate_agent".
    pub changes: Vec<String>,
    /// Objects install (re)made identically, e.g. "view rowgate.orders".
    pub unchanged: Vec<String>,
    /// Why a base table was not fenced by row-level security, one line per table.
    pub notes: Vec<String>,
}

impl InstallReport {
    /// True when the install found everything already as the policy wants it.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            writeln!(
                f,
                "policy {}: already installed, nothing changed",
                self.version
            )?;
        } else {
            writeln!(f, "policy {}:", self.version)?;
            for change in &self.changes {
                writeln!(f, "  {change}")?;
            }
        }
        if !self.unchanged.is_empty() {
            writeln!(f, "  unchanged: {}", self.unchanged.join(", "))?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

/// A standard-conforming SQL string literal: quotes doubled, backslashes literal (the plan sets
/// `standard_conforming_strings = on`). PostgreSQL text cannot hold NUL; callers reject it.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The statements that install runs, in order, in one transaction (install adds the advisory
/// lock and the before/after comparison around them). `catalog` comes from [`inspect`].
///
/// The output holds the identity key and the serving role's password in clear: treat it as a
/// secret. ([`install`] itself sends the key as a bind parameter, so it stays out of
/// `pg_stat_activity` and the statement log.)
pub fn plan_sql(
    policy: &Policy,
    key: &IdentityKey,
    options: &InstallOptions,
    catalog: &Catalog,
) -> Result<Vec<String>, InstallError> {
    Ok(plan(policy, options, catalog)?
        .into_iter()
        .map(|step| match step {
            Step::Sql { sql, .. } => sql,
            Step::StoreKey => format!(
                "INSERT INTO {PRIVATE_SCHEMA}.identity_key (key) VALUES (pg_catalog.decode({}, 'hex'))",
                quote_literal(&key.to_hex())
            ),
        })
        .collect())
}

/// Reads what the plan depends on, and refuses a serving role that is the installer or owns
/// anything here. Sources and listed columns are checked by the plan against what this returns.
pub async fn inspect(
    client: &Client,
    policy: &Policy,
    options: &InstallOptions,
) -> Result<Catalog, InstallError> {
    check_options(options)?;
    let role = &options.agent_role;
    let row = client
        .query_one(
            "SELECT pg_catalog.current_database()::text, current_user::text",
            &[],
        )
        .await
        .map_err(db("reading the current database"))?;
    let database: String = row.get(0);
    let installer: String = row.get(1);
    if &installer == role {
        return Err(InstallError::AgentIsInstaller { role: role.clone() });
    }

    let mut catalog = Catalog {
        database,
        ..Catalog::default()
    };
    if let Some(agent) = role_state(client, role).await? {
        catalog.agent_exists = true;
        if let Err(what) = owned_objects(client, role, agent.oid, None).await? {
            return Err(InstallError::AgentOwnsObjects {
                role: role.clone(),
                what,
            });
        }
        catalog.agent_member_of = member_of(client, agent.oid).await?.into_iter().collect();
        for privilege in privileges(client, agent.oid).await? {
            if privilege.kind != "database" {
                catalog.swept_schemas.insert(privilege.schema);
            }
        }
    }
    let owner = owner_role(role);
    if installer == owner {
        return Err(InstallError::AgentIsInstaller { role: owner });
    }
    if let Some(state) = role_state(client, &owner).await? {
        catalog.owner_exists = true;
        if let Err(what) = owned_objects(client, &owner, state.oid, Some(VIEW_SCHEMA)).await? {
            return Err(InstallError::OwnerOwnsObjects { role: owner, what });
        }
        catalog.owner_member_of = member_of(client, state.oid).await?.into_iter().collect();
        catalog.owner_members = members(client, state.oid).await?.into_iter().collect();
        for privilege in privileges(client, state.oid).await? {
            if privilege.kind != "database" {
                catalog.swept_schemas.insert(privilege.schema);
            }
        }
    }
    let public = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .map_err(db("looking for schema public"))?;
    if public.is_some() {
        catalog.swept_schemas.insert("public".to_string());
    }

    for (name, table) in &policy.tables {
        let source = &table.source;
        if source.schema == VIEW_SCHEMA || source.schema == PRIVATE_SCHEMA {
            return Err(InstallError::SourceInManagedSchema {
                table: name.clone(),
                relation: source.to_string(),
                schema: source.schema.clone(),
            });
        }
        let (kind, columns) =
            source_columns(client, source)
                .await?
                .ok_or_else(|| InstallError::SourceMissing {
                    table: name.clone(),
                    relation: source.to_string(),
                })?;
        if matches!(table.rule, Rule::Rows(_)) && (kind == "r" || kind == "p") {
            catalog.row_security.insert(name.clone());
        }
        catalog.swept_schemas.insert(source.schema.clone());
        catalog.source_columns.insert(name.clone(), columns);
    }
    choose_fenced(client, policy, &mut catalog).await?;
    for relation in &catalog.rule_relations {
        catalog.swept_schemas.insert(relation.schema.clone());
    }
    catalog.swept_schemas.remove(VIEW_SCHEMA);
    catalog.swept_schemas.remove(PRIVATE_SCHEMA);
    catalog.views = relations_of_kind(client, VIEW_SCHEMA, "v").await?;
    catalog.whole_views = relations_of_kind(client, PRIVATE_SCHEMA, "v").await?;
    Ok(catalog)
}

/// Installs (or re-installs) the policy in the database `client` is connected to, in one
/// transaction, and reports what changed. Run it as the database owner or a superuser: the
/// permission views read the base tables with that role's rights. `client` must not be inside
/// a transaction already (install issues its own BEGIN and COMMIT).
pub async fn install(
    client: &Client,
    policy: &Policy,
    key: &IdentityKey,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    check_options(options)?;
    client
        .batch_execute("BEGIN")
        .await
        .map_err(db("starting the install transaction"))?;
    match install_in_transaction(client, policy, key, options).await {
        Ok(report) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(db("committing the install transaction"))?;
            Ok(report)
        }
        Err(error) => {
            // The error is what matters; a failed ROLLBACK means the connection is gone, and
            // the transaction with it.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

async fn install_in_transaction(
    client: &Client,
    policy: &Policy,
    key: &IdentityKey,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    client
        .execute(
            "SELECT pg_catalog.pg_advisory_xact_lock($1)",
            &[&INSTALL_LOCK],
        )
        .await
        .map_err(db("waiting for another install of this database to finish"))?;
    // Before the first snapshot, so both snapshots print definitions under the same path.
    for setting in SETTINGS {
        client
            .batch_execute(setting)
            .await
            .map_err(db("setting up the install transaction"))?;
    }
    let before = Snapshot::read(client, &options.agent_role).await?;
    let catalog = inspect(client, policy, options).await?;
    for step in plan(policy, options, &catalog)? {
        match step {
            Step::Sql { what, sql } => client.batch_execute(&sql).await.map_err(db(what))?,
            Step::StoreKey => {
                client
                    .execute(
                        "INSERT INTO rowgate_private.identity_key (key) VALUES ($1)",
                        &[&key.0.as_slice()],
                    )
                    .await
                    .map_err(db("storing the identity key"))?;
            }
        }
    }
    let after = Snapshot::read(client, &options.agent_role).await?;
    let mut report = before.report(&after, policy, options);
    report.notes = catalog
        .barrier_reasons
        .iter()
        .map(|(table, why)| format!("rowgate.{table} is a security_barrier view: {why}"))
        .collect();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

enum Step {
    /// A statement, with what it does for error messages.
    Sql { what: String, sql: String },
    /// The identity key's row: a literal in [`plan_sql`]'s text, a bind parameter in [`install`].
    StoreKey,
}

fn push(steps: &mut Vec<Step>, what: impl Into<String>, sql: impl Into<String>) {
    steps.push(Step::Sql {
        what: what.into(),
        sql: sql.into(),
    });
}

fn plan(
    policy: &Policy,
    options: &InstallOptions,
    catalog: &Catalog,
) -> Result<Vec<Step>, InstallError> {
    check_options(options)?;
    let role = ident(&options.agent_role).to_string();
    let private = ident(PRIVATE_SCHEMA).to_string();
    let views = ident(VIEW_SCHEMA).to_string();
    let version = quote_literal(&policy.version);
    let fragments = Fragments::new(policy)?;
    let owner_name = owner_role(&options.agent_role);
    let mut steps = Vec::new();

    for setting in SETTINGS {
        push(&mut steps, "setting up the install transaction", setting);
    }

    // The private schema: the identity key and the installed version, for the owner only.
    push(
        &mut steps,
        format!("creating schema {private}"),
        format!("CREATE SCHEMA IF NOT EXISTS {private}"),
    );
    push(
        &mut steps,
        format!("closing schema {private}"),
        format!("REVOKE ALL ON SCHEMA {private} FROM PUBLIC"),
    );
    push(
        &mut steps,
        "creating the identity key table",
        format!(
            "CREATE TABLE IF NOT EXISTS {private}.identity_key \
             (key bytea NOT NULL CHECK (pg_catalog.octet_length(key) = 32))"
        ),
    );
    // One row only: `caller_id()` reads "the" key.
    push(
        &mut steps,
        "creating the identity key table",
        format!("CREATE UNIQUE INDEX IF NOT EXISTS identity_key_one_row ON {private}.identity_key ((true))"),
    );
    push(
        &mut steps,
        "replacing the identity key",
        format!("DELETE FROM {private}.identity_key"),
    );
    steps.push(Step::StoreKey);
    push(
        &mut steps,
        "creating the installed-version table",
        format!(
            "CREATE TABLE IF NOT EXISTS {private}.installed \
             (version text NOT NULL, installed_at timestamptz NOT NULL)"
        ),
    );
    push(
        &mut steps,
        "creating the installed-version table",
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS installed_one_row ON {private}.installed ((true))"
        ),
    );
    push(
        &mut steps,
        "recording the policy version",
        format!("DELETE FROM {private}.installed"),
    );
    push(
        &mut steps,
        "recording the policy version",
        format!("INSERT INTO {private}.installed (version, installed_at) VALUES ({version}, pg_catalog.now())"),
    );
    push(
        &mut steps,
        format!("closing schema {private}"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA {private} FROM PUBLIC"),
    );

    // The views' schema. The comment carries the version where the serving role can read it
    // (obj_description), so `serve` can check that the views match the policy it loaded.
    push(
        &mut steps,
        format!("creating schema {views}"),
        format!("CREATE SCHEMA IF NOT EXISTS {views}"),
    );
    push(
        &mut steps,
        format!("closing schema {views}"),
        format!("REVOKE ALL ON SCHEMA {views} FROM PUBLIC"),
    );
    push(
        &mut steps,
        format!("commenting schema {views}"),
        format!(
            "COMMENT ON SCHEMA {views} IS {}",
            quote_literal(&format!("rowgate policy {}", policy.version))
        ),
    );

    // The serving role: a plain login, whatever it was before.
    let attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    let password = match &options.agent_password {
        Some(p) => format!(" PASSWORD {}", quote_literal(p)),
        None => String::new(),
    };
    if catalog.agent_exists {
        push(
            &mut steps,
            format!("altering role {role}"),
            format!("ALTER ROLE {role} WITH {attributes}{password}"),
        );
    } else {
        push(
            &mut steps,
            format!("creating role {role}"),
            format!("CREATE ROLE {role} WITH {attributes}{password}"),
        );
    }
    for group in &catalog.agent_member_of {
        let group = ident(group);
        push(
            &mut steps,
            format!("revoking membership in {group} from {role}"),
            format!("REVOKE {group} FROM {role}"),
        );
    }
    // The views' owner: no login, no attribute, member of nothing (a membership in a table
    // owner's role would exempt it from row-level security).
    let owner = ident(&owner_role(&options.agent_role)).to_string();
    let owner_attributes = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    if catalog.owner_exists {
        push(
            &mut steps,
            format!("altering role {owner}"),
            format!("ALTER ROLE {owner} WITH {owner_attributes}"),
        );
    } else {
        push(
            &mut steps,
            format!("creating role {owner}"),
            format!("CREATE ROLE {owner} WITH {owner_attributes}"),
        );
    }
    for group in &catalog.owner_member_of {
        let group = ident(group);
        push(
            &mut steps,
            format!("revoking membership in {group} from {owner}"),
            format!("REVOKE {group} FROM {owner}"),
        );
    }
    for member in &catalog.owner_members {
        let member = ident(member);
        push(
            &mut steps,
            format!("revoking membership in {owner} from {member}"),
            format!("REVOKE {owner} FROM {member}"),
        );
    }
    // CONNECT again explicitly: a database that revoked it from PUBLIC must still admit the
    // serving role; CREATE and TEMPORARY it gets only through PUBLIC, if at all.
    let database = ident(&catalog.database);
    push(
        &mut steps,
        format!("revoking privileges on database {database} from {role}"),
        format!("REVOKE ALL ON DATABASE {database} FROM {role}"),
    );
    push(
        &mut steps,
        format!("granting CONNECT on database {database} to {role}"),
        format!("GRANT CONNECT ON DATABASE {database} TO {role}"),
    );
    push(
        &mut steps,
        format!("revoking privileges on database {database} from {owner}"),
        format!("REVOKE ALL ON DATABASE {database} FROM {owner}"),
    );
    // Only the role's own grants: PUBLIC keeps USAGE on public and EXECUTE on functions, which
    // the agent's queries need (e.g. public.cosine_distance behind `<=>`).
    let swept = catalog
        .swept_schemas
        .iter()
        .map(String::as_str)
        .chain([PRIVATE_SCHEMA]);
    for schema in swept {
        let schema = ident(schema);
        let what = format!("revoking privileges in schema {schema} from {role} and {owner}");
        for kind in ["TABLES", "SEQUENCES", "ROUTINES"] {
            push(
                &mut steps,
                &what,
                format!("REVOKE ALL ON ALL {kind} IN SCHEMA {schema} FROM {role}, {owner}"),
            );
        }
        push(
            &mut steps,
            &what,
            format!("REVOKE ALL ON SCHEMA {schema} FROM {role}, {owner}"),
        );
    }

    // The identity functions.
    push(
        &mut steps,
        "creating function rowgate.caller_id()",
        caller_id_sql(),
    );
    push(
        &mut steps,
        "creating function rowgate.caller_exists()",
        fragments.caller_exists()?,
    );
    push(
        &mut steps,
        "creating function rowgate.caller_attributes()",
        fragments.caller_attributes()?,
    );
    push(
        &mut steps,
        "creating function rowgate.fenced_caller(regclass)",
        fenced_caller_sql(&owner_name),
    );

    whole::plan(&mut steps, catalog);

    // The views: first those the policy no longer names, then each policy table's, anew.
    for stale in catalog
        .views
        .iter()
        .filter(|v| !policy.tables.contains_key(*v))
    {
        let name = object_name(&[VIEW_SCHEMA, stale]);
        push(
            &mut steps,
            format!("dropping view {name}"),
            format!("DROP VIEW {name}"),
        );
    }
    for (name, table) in &policy.tables {
        let view = object_name(&[VIEW_SCHEMA, name]);
        let source_columns =
            catalog
                .source_columns
                .get(name)
                .ok_or_else(|| InstallError::NotInspected {
                    table: name.clone(),
                })?;
        let missing = |column: &str| InstallError::ColumnMissing {
            table: name.clone(),
            column: column.to_string(),
            relation: table.source.to_string(),
            available: source_columns.join(", "),
        };
        let check_listed = |listed: &[String]| {
            listed
                .iter()
                .find(|c| !source_columns.contains(c))
                .map_or(Ok(()), |c| Err(missing(c)))
        };
        let (columns, distinct, rule) = match &table.rule {
            Rule::Rows(fragment) => {
                let columns = match &table.columns {
                    Some(listed) => {
                        check_listed(listed)?;
                        listed.clone()
                    }
                    None => source_columns.clone(),
                };
                let what = format!("table `{name}` rows");
                (
                    columns,
                    false,
                    fragments.substitute_expr(&fragment.ast, &what)?,
                )
            }
            Rule::Match { column, attribute } => {
                if !source_columns.contains(column) {
                    return Err(missing(column));
                }
                let columns = match &table.columns {
                    Some(listed) if listed.contains(column) => {
                        return Err(InstallError::PermissionColumnListed {
                            table: name.clone(),
                            column: column.clone(),
                        })
                    }
                    Some(listed) => {
                        check_listed(listed)?;
                        listed.clone()
                    }
                    None => source_columns
                        .iter()
                        .filter(|c| *c != column)
                        .cloned()
                        .collect(),
                };
                if columns.is_empty() {
                    return Err(InstallError::NothingToShow {
                        table: name.clone(),
                        relation: table.source.to_string(),
                        column: column.clone(),
                    });
                }
                let values = fragments.attribute(attribute, &format!("table `{name}` match"))?;
                let rule = Expr::InSubquery {
                    expr: Box::new(Expr::Identifier(ident(column))),
                    subquery: Box::new(values),
                    negated: false,
                };
                // DISTINCT: such a view lists a row once per granting value, and each visible
                // row must appear once (DESIGN.md). Rows equal in every shown column collapse
                // into one too; a policy that must count those lists a key column.
                (columns, true, rule)
            }
        };
        let what = format!("creating view {view}");
        let fenced = catalog.row_security.contains(name);
        let create = if fenced {
            let rule = row_security_rule(policy, &fragments, name)?.ok_or_else(|| {
                template(&what, "a row-security table's rule is not a `rows` rule")
            })?;
            let rule = whole::read_whole(rule, &catalog.rule_names, &catalog.whole);
            let state = catalog.tables.get(&table.source);
            row_security::plan_table(&mut steps, &table.source, state, &owner_name, rule)?;
            let gate = row_security::fenced_gate(&table.source, &what)?;
            view_sql(name, &table.source, &columns, false, false, gate, &what)?
        } else {
            view_sql(
                name,
                &table.source,
                &columns,
                distinct,
                true,
                fragments.gated(rule),
                &what,
            )?
        };
        // DROP then CREATE: CREATE OR REPLACE VIEW cannot drop or reorder columns. No CASCADE:
        // an object built on a permission view makes install fail rather than vanish.
        push(&mut steps, &what, format!("DROP VIEW IF EXISTS {view}"));
        push(&mut steps, &what, create);
        if fenced {
            push(
                &mut steps,
                what,
                format!("ALTER VIEW {view} OWNER TO {owner}"),
            );
        }
    }
    // No view calls it any more (each was just created anew).
    push(
        &mut steps,
        format!("dropping function {}", row_security::OLD_FENCE_FUNCTION),
        format!(
            "DROP FUNCTION IF EXISTS {}",
            row_security::OLD_FENCE_FUNCTION
        ),
    );
    // Tables that hold rowgate's policies but are no longer fenced by them.
    let fenced_sources: BTreeSet<&QualifiedName> = catalog
        .row_security
        .iter()
        .filter_map(|name| policy.tables.get(name).map(|t| &t.source))
        .collect();
    for (table, state) in &catalog.tables {
        if !fenced_sources.contains(table) {
            row_security::plan_leaving(&mut steps, table, state);
        }
    }
    // What the owner reads: the fenced tables and the relations their rules read.
    let readable: BTreeSet<&QualifiedName> = fenced_sources
        .iter()
        .copied()
        .chain(catalog.rule_relations.iter())
        .collect();
    let schemas: BTreeSet<&str> = readable.iter().map(|t| t.schema.as_str()).collect();
    for schema in schemas {
        let schema = ident(schema);
        push(
            &mut steps,
            format!("granting USAGE on schema {schema} to {owner}"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {owner}"),
        );
    }
    for table in readable {
        let shown = object_name(&[&table.schema, &table.name]);
        push(
            &mut steps,
            format!("granting SELECT on {shown} to {owner}"),
            format!("GRANT SELECT ON {shown} TO {owner}"),
        );
    }
    whole::grant(&mut steps, catalog, &role, &owner);

    // Grants last, after everything they name exists: first take away whatever the role or
    // PUBLIC holds in schema rowgate (default privileges could have granted some to new views),
    // then give exactly USAGE, EXECUTE on the three functions and SELECT on each view.
    let what = format!("granting {role} its privileges in schema {views}");
    push(
        &mut steps,
        &what,
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        &mut steps,
        &what,
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        &mut steps,
        &what,
        format!("REVOKE ALL ON ALL ROUTINES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        &mut steps,
        &what,
        format!("REVOKE ALL ON SCHEMA {views} FROM {role}"),
    );
    push(
        &mut steps,
        &what,
        format!("GRANT USAGE ON SCHEMA {views} TO {role}"),
    );
    let functions: Vec<String> = FUNCTIONS.iter().map(|f| format!("{views}.{f}")).collect();
    push(
        &mut steps,
        &what,
        format!(
            "GRANT EXECUTE ON FUNCTION {} TO {role}",
            functions.join(", ")
        ),
    );
    for name in policy.tables.keys() {
        let view = object_name(&[VIEW_SCHEMA, name]);
        push(
            &mut steps,
            format!("granting SELECT on {view} to {role}"),
            format!("GRANT SELECT ON {view} TO {role}"),
        );
    }
    Ok(steps)
}

fn check_options(options: &InstallOptions) -> Result<(), InstallError> {
    let role = &options.agent_role;
    let bad = |why| {
        Err(InstallError::BadRoleName {
            role: role.clone(),
            why,
        })
    };
    if role.is_empty() {
        return bad("it is empty");
    }
    if role.len() + OWNER_SUFFIX.len() > 63 {
        // PostgreSQL would silently truncate it (or the views' owner, named after it), and
        // then look-ups by the full name miss.
        return bad("it is longer than 57 bytes");
    }
    if role.contains('\0') {
        return bad("it contains a NUL character");
    }
    if role == "public" || role == "none" {
        // `GRANT ... TO "public"` means PUBLIC, whatever the quoting.
        return bad("it is reserved by PostgreSQL");
    }
    if role.starts_with("pg_") {
        return bad("names starting with pg_ are reserved by PostgreSQL");
    }
    if options
        .agent_password
        .as_deref()
        .is_some_and(|p| p.contains('\0'))
    {
        return Err(InstallError::PasswordNul);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
