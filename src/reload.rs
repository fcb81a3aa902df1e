//! The policy in force, replaced without a restart and never out of step with the database.
//!
//! [`Live`] holds the current [`Snapshot`] (the policy, the catalog read from its permission
//! views, and the policy version `rowgate install` last stamped into the database) behind an
//! `ArcSwap`: a request takes one snapshot and decides everything under it, so a reload in the
//! middle of a request never mixes two policies. [`Live::reload`] (what SIGHUP runs) re-reads
//! the policy files; a file that does not load is reported and the old snapshot stays.
//! [`Live::refresh`] (run every [`POLL_INTERVAL`] and by `/readyz`) re-reads the installed
//! version. While the loaded and the installed versions differ, [`Snapshot::check`] refuses
//! every query with `policy_out_of_date`: the views in the database would apply one policy and
//! the rewriter the other.
//!
//! The installed version is the comment `rowgate install` puts on schema `rowgate`
//! ("rowgate policy <version>"), which the serving role can read; `rowgate_private.installed`
//! holds the same version but only its owner can read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::catalog::{Catalog, CatalogError};
use crate::execute::Executor;
use crate::policy::{Policy, PolicyError};
use crate::refusal::{ErrorCode, Refusal};
use crate::server::{check_role, ServeError};

/// Reads the version stamped by `rowgate install`; NULL when nothing is installed. The serving
/// role can run it (it reads `pg_description`, readable by everyone). Exposed so that the
/// executor can run it in the same round trip as its fence.
pub const INSTALLED_VERSION_SQL: &str =
    "SELECT pg_catalog.obj_description(pg_catalog.to_regnamespace('rowgate'), 'pg_namespace')";

/// What `rowgate install` writes before the version in the schema comment.
const COMMENT_PREFIX: &str = "rowgate policy ";

/// How often the background task re-reads the installed version.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The policy version in a schema comment, if the comment is rowgate's.
pub fn version_from_comment(comment: Option<&str>) -> Option<String> {
    comment
        .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the policy files do not load, so the old policy stays in force: {0}")]
    Policy(#[from] PolicyError),
    #[error("the new policy was not loaded, so the old one stays in force: {0}")]
    Role(Box<ServeError>),
    #[error(
        "the permission views do not match the new policy, so the old one stays in force: {0}"
    )]
    Catalog(#[from] CatalogError),
    #[error("cannot read the installed policy version: {0}")]
    Database(String),
}

/// A query refused because the policy in force is not the one installed in the database.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the gateway's policy ({loaded}) is not the one installed in the database ({}), so nothing runs until they match", installed.as_deref().unwrap_or("none"))]
pub struct OutOfStep {
    pub loaded: String,
    pub installed: Option<String>,
}

impl Refusal for OutOfStep {
    fn code(&self) -> ErrorCode {
        ErrorCode::PolicyOutOfDate
    }

    fn hint(&self) -> String {
        "The agent cannot fix this; try again shortly. An administrator must run `rowgate install` with the policy files the gateway serves (it notices within a few seconds), or fix the policy files and send the gateway SIGHUP.".into()
    }
}

/// One consistent view of the policy: everything a request decides is decided under one.
#[derive(Debug)]
pub struct Snapshot {
    /// The policy with column lists completed from the catalog.
    pub policy: Arc<Policy>,
    /// The permission views' columns, read when the installed version matched `policy`.
    pub catalog: Arc<Catalog>,
    /// The version stamped in the database when last read; `None` if none is installed.
    pub installed: Option<String>,
    /// The policy as the files say it (before completion), to complete again later.
    raw: Arc<Policy>,
    /// The installed version the catalog was read from.
    catalog_of: Option<String>,
}

impl Snapshot {
    /// The version of the policy files in force.
    pub fn loaded(&self) -> &str {
        &self.policy.version
    }

    /// Whether the loaded policy, the installed views and the catalog all agree.
    pub fn in_step(&self) -> bool {
        let loaded = Some(self.raw.version.as_str());
        self.installed.as_deref() == loaded && self.catalog_of.as_deref() == loaded
    }

    /// `Ok` when queries may run under this snapshot.
    pub fn check(&self) -> Result<(), OutOfStep> {
        if self.in_step() {
            Ok(())
        } else {
            Err(OutOfStep {
                loaded: self.raw.version.clone(),
                installed: self.installed.clone(),
            })
        }
    }

    /// A snapshot from freshly read parts. A catalog that was not read from views of `raw`'s
    /// version completes nothing: its columns belong to another policy.
    fn new(raw: Policy, catalog: Catalog, installed: Option<String>) -> Snapshot {
        let catalog_of = installed.clone();
        let current = installed.as_deref() == Some(raw.version.as_str());
        let policy = if current {
            catalog.complete(&raw)
        } else {
            raw.clone()
        };
        Snapshot {
            policy: Arc::new(policy),
            catalog: Arc::new(catalog),
            installed,
            raw: Arc::new(raw),
            catalog_of,
        }
    }
}

/// What a successful reload or refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub loaded: String,
    pub installed: Option<String>,
    pub in_step: bool,
}

impl Versions {
    fn of(snapshot: &Snapshot) -> Versions {
        Versions {
            loaded: snapshot.raw.version.clone(),
            installed: snapshot.installed.clone(),
            in_step: snapshot.in_step(),
        }
    }
}

/// The policy in force and what reloads it.
pub struct Live {
    current: ArcSwap<Snapshot>,
    dir: PathBuf,
    executor: Executor,
    /// Skip the serving-role check on reload, as `serve --insecure` does at start-up.
    insecure: bool,
    /// Reloads and refreshes one at a time, so a slow one cannot store an older answer last.
    updating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("dir", &self.dir)
            .field("versions", &Versions::of(&self.snapshot()))
            .finish()
    }
}

impl Live {
    /// Start-up: load the policy, check the serving role, read the catalog (all fatal on
    /// failure, as before reloads existed). Versions that differ are not fatal: the gateway
    /// starts and refuses queries until `rowgate install` or a reload brings them together.
    pub async fn start(dir: &Path, executor: Executor, insecure: bool) -> Result<Live, ServeError> {
        let policy = Policy::load_dir(dir)?;
        let client = executor
            .pool()
            .get()
            .await
            .map_err(|e| ServeError::Database(e.to_string()))?;
        if !insecure {
            check_role(&client, &policy).await?;
        }
        let installed = installed_version(&client)
            .await
            .map_err(|e| ServeError::Database(e.to_string()))?;
        let catalog = Catalog::load(&client, &policy).await?;
        drop(client);
        let snapshot = Snapshot::new(policy, catalog, installed);
        if let Err(out_of_step) = snapshot.check() {
            tracing::warn!(%out_of_step, "queries are refused until the versions match");
        }
        Ok(Live {
            current: ArcSwap::from_pointee(snapshot),
            dir: dir.to_path_buf(),
            executor,
            insecure,
            updating: tokio::sync::Mutex::new(()),
        })
    }

    /// The snapshot to decide one request under.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn versions(&self) -> Versions {
        Versions::of(&self.snapshot())
    }

    /// Re-reads the policy files (SIGHUP). On any failure the old snapshot stays in force.
    pub async fn reload(&self) -> Result<Versions, ReloadError> {
        let _one_at_a_time = self.updating.lock().await;
        let policy = Policy::load_dir(&self.dir)?;
        let client = self.client().await?;
        if !self.insecure {
            check_role(&client, &policy)
                .await
                .map_err(|e| ReloadError::Role(Box::new(e)))?;
        }
        let installed = installed_version(&client).await?;
        let catalog = if installed.as_deref() == Some(policy.version.as_str()) {
            Catalog::load(&client, &policy).await?
        } else {
            // The views are another policy's: there is nothing to read until install runs.
            Catalog::default()
        };
        let snapshot = Snapshot::new(policy, catalog, installed);
        let versions = Versions::of(&snapshot);
        self.current.store(Arc::new(snapshot));
        Ok(versions)
    }

    /// Re-reads the installed version (the poll, `/readyz`). When install has just caught up
    /// with the loaded policy, reads the new views' columns too.
    pub async fn refresh(&self) -> Result<Versions, ReloadError> {
        let _one_at_a_time = self.updating.lock().await;
        let client = self.client().await?;
        let installed = installed_version(&client).await?;
        let current = self.snapshot();
        if installed == current.installed && current.catalog_of == installed {
            return Ok(Versions::of(&current));
        }
        let catalog_is_stale = installed.as_deref() == Some(current.raw.version.as_str())
            && current.catalog_of != installed;
        let snapshot = if catalog_is_stale {
            let raw = (*current.raw).clone();
            let catalog = Catalog::load(&client, &raw).await?;
            Snapshot::new(raw, catalog, installed)
        } else {
            Snapshot {
                policy: current.policy.clone(),
                catalog: current.catalog.clone(),
                installed,
                raw: current.raw.clone(),
                catalog_of: current.catalog_of.clone(),
            }
        };
        let versions = Versions::of(&snapshot);
        if versions.in_step != current.in_step() {
            tracing::info!(loaded = %versions.loaded, installed = ?versions.installed, in_step = versions.in_step, "installed policy version changed");
        }
        self.current.store(Arc::new(snapshot));
        Ok(versions)
    }

    /// [`Live::reload`], logged: what SIGHUP runs.
    pub async fn reload_and_log(&self) -> Result<Versions, ReloadError> {
        let result = self.reload().await;
        match &result {
            Ok(v) if v.in_step => {
                tracing::info!(policy = %v.loaded, "policy reloaded")
            }
            Ok(v) => tracing::warn!(
                policy = %v.loaded,
                installed = ?v.installed,
                "policy reloaded, but the database has another version installed: queries are refused until `rowgate install` runs with these files"
            ),
            Err(error) => tracing::error!(%error, "policy reload failed"),
        }
        result
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, ReloadError> {
        self.executor
            .pool()
            .get()
            .await
            .map_err(|e| ReloadError::Database(e.to_string()))
    }
}

async fn installed_version(client: &tokio_postgres::Client) -> Result<Option<String>, ReloadError> {
    let row = client
        .query_one(INSTALLED_VERSION_SQL, &[])
        .await
        .map_err(|e| ReloadError::Database(e.to_string()))?;
    Ok(version_from_comment(row.get::<_, Option<&str>>(0)))
}

/// Reloads on every SIGHUP until the task is aborted. The handler is installed before this
/// returns, so a SIGHUP sent afterwards never takes the default action (ending the process).
#[cfg(unix)]
pub fn watch_sighup(live: Arc<Live>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = live.reload_and_log().await;
        }
    }))
}

/// Re-reads the installed version every `interval` until the task is aborted.
pub fn poll_installed(live: Arc<Live>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = live.refresh().await {
                tracing::warn!(%error, "cannot re-check the installed policy version");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_from_installs_comment() {
        assert_eq!(
            version_from_comment(Some("rowgate policy 0123abcd")),
            Some("0123abcd".into())
        );
        assert_eq!(version_from_comment(Some("someone else's note")), None);
        assert_eq!(version_from_comment(Some("rowgate policy ")), None);
        assert_eq!(version_from_comment(None), None);
    }
}
