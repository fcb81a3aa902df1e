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
mod plan;
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
use plan::*;
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

#[cfg(test)]
mod tests;
