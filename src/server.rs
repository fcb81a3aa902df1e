//! `rowgate serve`: start-up checks that refuse an unsafe configuration, then the HTTP server
//! with graceful shutdown.
//!
//! The checks are the database side of the layers of defense: a gateway that connects as a
//! superuser, a BYPASSRLS role, or a role that can read any table outside `rowgate` would turn
//! a rewrite bug into a leak, so it does not start (unless `--insecure`, for experiments).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::{Audit, AuditError, AuditSink};
use crate::auth::ApiKeys;
use crate::caller::IdentityKey;
use crate::catalog::CatalogError;
use crate::execute::{ExecuteConfig, Executor};
use crate::http::{router, AppState};
use crate::identity::{Identity, JwtConfig, JwtConfigError, JwtVerifier};
use crate::metrics::Metrics;
use crate::parse::Limits;
use crate::pipeline::RewriteCache;
use crate::policy::{Policy, PolicyError, Rule};
use crate::reload::{self, Live};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "refusing to listen on {0} without an API key: set ROWGATE_API_KEYS (or JWT verification), or bind to 127.0.0.1"
    )]
    NoKeyOnNetwork(SocketAddr),
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach the database: {0}")]
    Database(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("refusing to serve as role `{role}`: {problem}. {fix} (or pass --insecure for an experiment)")]
    UnsafeRole {
        role: String,
        problem: String,
        fix: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: tokio_postgres::Config,
    pub bind: SocketAddr,
    pub api_keys: ApiKeys,
    pub policies: PathBuf,
    pub key: IdentityKey,
    pub max_rows: usize,
    pub execute: ExecuteConfig,
    pub limits: Limits,
    pub insecure: bool,
    /// JWT verification; off when no JWT setting is given (`JwtConfig::default()`).
    pub jwt: JwtConfig,
    /// Where the audit trail goes (`AuditSink::Off` for none).
    pub audit: AuditSink,
}

/// Everything `serve` does before listening: load, check, and build the shared state.
pub async fn prepare(config: &ServeConfig) -> Result<Arc<AppState>, ServeError> {
    let identity = Identity {
        keys: config.api_keys.clone(),
        jwt: config
            .jwt
            .is_requested()
            .then(|| JwtVerifier::new(&config.jwt))
            .transpose()?,
    };
    if !config.bind.ip().is_loopback() && !identity.is_required() {
        return Err(ServeError::NoKeyOnNetwork(config.bind));
    }
    // Before the database: a trail that cannot be opened stops start-up at once.
    let audit = Audit::start(&config.audit)?;
    let executor = Executor::new(
        config.database.clone(),
        config.key.clone(),
        config.execute.clone(),
    )
    .map_err(ServeError::Setup)?;
    let live = Live::start(&config.policies, executor.clone(), config.insecure).await?;
    let metrics = Metrics::new().map_err(|e| ServeError::Setup(e.to_string()))?;
    Ok(Arc::new(AppState {
        live: Arc::new(live),
        executor,
        identity,
        rewrites: RewriteCache::new(config.limits),
        max_rows: config.max_rows,
        metrics,
        audit,
    }))
}

pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let state = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let versions = state.live.versions();
    tracing::info!(bind = %config.bind, policy = %versions.loaded, installed = ?versions.installed, "rowgate is serving");
    // SIGHUP re-reads the policy files; the poll notices `rowgate install` on its own.
    #[cfg(unix)]
    let sighup = reload::watch_sighup(state.live.clone())
        .map_err(|e| ServeError::Setup(format!("cannot handle SIGHUP: {e}")))?;
    let poll = reload::poll_installed(state.live.clone(), reload::POLL_INTERVAL);
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| ServeError::Setup(e.to_string()));
    #[cfg(unix)]
    sighup.abort();
    poll.abort();
    served
}

/// SIGTERM or Ctrl-C: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

const ROLE: &str =
    "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user";

/// The permission views' owner role (`rowgate install`'s `<serving role>_owner`), when it
/// exists: its attributes and memberships.
const VIEWS_OWNER: &str = "
SELECT r.rolname::text, r.rolsuper, r.rolbypassrls, r.rolcanlogin,
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.member
             WHERE m.roleid = r.oid ORDER BY 1)
FROM pg_roles r WHERE r.rolname = current_user || $1";

/// Relations outside rowgate's schema that the role can read: should be none.
const READABLE: &str = "
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rowgate')
  AND n.nspname NOT LIKE 'pg_toast%'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1 LIMIT 5";

/// Schemas the role may create objects in (directly or through PUBLIC). Temporary schemas are
/// left out: every transaction the gateway runs is READ ONLY, which forbids creating even
/// temporary objects, and `pg_temp` comes last in every path rowgate pins.
const CREATABLE: &str = "
SELECT n.nspname::text FROM pg_namespace n
WHERE has_schema_privilege(n.oid, 'CREATE')
  AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
ORDER BY 1";

/// Refuses a serving role that could read around the permission views (also run on reload,
/// for the new policy's relations).
pub(crate) async fn check_role(
    client: &tokio_postgres::Client,
    policy: &Policy,
) -> Result<(), ServeError> {
    let db = |e: tokio_postgres::Error| ServeError::Database(e.to_string());
    let row = client.query_one(ROLE, &[]).await.map_err(db)?;
    let role: String = row.get(0);
    let unsafe_role = |problem: &str, fix: String| ServeError::UnsafeRole {
        role: role.clone(),
        problem: problem.into(),
        fix,
    };
    if row.get::<_, bool>(1) {
        return Err(unsafe_role(
            "it is a superuser, which ignores every permission",
            "Connect as the role `rowgate install` created (rowgate_agent) in DATABASE_URL.".into(),
        ));
    }
    if row.get::<_, bool>(2) {
        return Err(unsafe_role(
            "it has BYPASSRLS",
            format!("Run ALTER ROLE \"{role}\" NOBYPASSRLS."),
        ));
    }
    if let Some(owner) = client
        .query_opt(VIEWS_OWNER, &[&crate::install::OWNER_SUFFIX])
        .await
        .map_err(db)?
    {
        let name: String = owner.get(0);
        let member_of: Vec<String> = owner.get(4);
        let members: Vec<String> = owner.get(5);
        let problem = if owner.get::<_, bool>(1) {
            Some("is a superuser, which ignores row-level security".to_string())
        } else if owner.get::<_, bool>(2) {
            Some("has BYPASSRLS".to_string())
        } else if owner.get::<_, bool>(3) {
            Some("can log in, and whoever does reads the base tables directly".to_string())
        } else if !member_of.is_empty() {
            Some(format!(
                "is a member of {}, whose rights it inherits (a table owner's role is exempt \
                 from row-level security)",
                member_of.join(", ")
            ))
        } else if !members.is_empty() {
            Some(format!(
                "has members ({}), who inherit its right to read the base tables and the \
                 tables its rules read",
                members.join(", ")
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(unsafe_role(
                &format!(
                    "the permission views' owner `{name}` {problem}, so the row-level security \
                     that fences the views' rows may not hold"
                ),
                "Re-run `rowgate install`, which resets that role.".into(),
            ));
        }
    }
    let readable: Vec<String> = client
        .query(READABLE, &[])
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !readable.is_empty() {
        return Err(unsafe_role(
            &format!("it can read tables directly ({})", readable.join(", ")),
            format!("Run REVOKE SELECT ON those tables FROM \"{role}\" (and from PUBLIC), or re-run `rowgate install`."),
        ));
    }
    let creatable: Vec<String> = client
        .query(CREATABLE, &[])
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !creatable.is_empty() {
        let schemas = creatable.join(", ");
        return Err(unsafe_role(
            &format!("it can create objects in schema {schemas}, where a function or table could shadow a name the identity functions resolve"),
            format!("Run REVOKE CREATE ON SCHEMA {schemas} FROM PUBLIC, \"{role}\"."),
        ));
    }
    // The policy's own sources, named explicitly in case they live in an excluded schema.
    for name in policy_relations(policy) {
        let readable = client
            .query_one(
                "SELECT coalesce(has_table_privilege(to_regclass($1), 'SELECT'), false)",
                &[&name],
            )
            .await
            .map_err(db)?;
        if readable.get::<_, bool>(0) {
            return Err(unsafe_role(
                &format!("it can read {name} directly"),
                format!("Run REVOKE ALL ON {name} FROM \"{role}\", PUBLIC."),
            ));
        }
    }
    Ok(())
}

/// Every relation a policy reads: sources, and tables named in rules and attribute queries.
fn policy_relations(policy: &Policy) -> Vec<String> {
    let mut names: Vec<String> = policy
        .tables
        .values()
        .map(|t| t.source.to_string())
        .collect();
    let mut collect = |name: &sqlparser::ast::ObjectName| {
        names.push(name.to_string());
        ControlFlow::<()>::Continue(())
    };
    for table in policy.tables.values() {
        if let Rule::Rows(fragment) = &table.rule {
            let _ = sqlparser::ast::visit_relations(&fragment.ast, &mut collect);
        }
    }
    for fragment in policy
        .subject
        .attributes
        .values()
        .chain(policy.subject.exists.iter())
    {
        let _ = sqlparser::ast::visit_relations(&*fragment.ast, &mut collect);
    }
    names.sort();
    names.dedup();
    names
}
