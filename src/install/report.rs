//! The report of what an install changed: a snapshot of the catalog before and after, compared.

use super::*;

/// What install may change, read the same way before and after it.
pub(super) struct Snapshot {
    pub(super) schemas: BTreeSet<String>,
    /// View name → definition and options.
    pub(super) views: BTreeMap<String, String>,
    /// `rowgate.f()` → definition.
    pub(super) functions: BTreeMap<String, String>,
    pub(super) role: Option<RoleState>,
    pub(super) member_of: BTreeSet<String>,
    pub(super) privileges: BTreeSet<Privilege>,
    /// A digest of the stored key, to tell a changed key without holding it.
    pub(super) key_digest: Option<Vec<u8>>,
    pub(super) version: Option<String>,
}

impl Snapshot {
    pub(super) async fn read(client: &Client, role: &str) -> Result<Snapshot, InstallError> {
        let what = || db("reading what is installed");
        let schemas = client
            .query(
                "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY ($1)",
                &[&vec![VIEW_SCHEMA, PRIVATE_SCHEMA]],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let views = client
            .query(
                "SELECT c.relname::text, \
                        pg_catalog.pg_get_viewdef(c.oid) || coalesce(c.reloptions::text, '') \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind = 'v'",
                &[&VIEW_SCHEMA],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let functions = client
            .query(
                "SELECT p.oid::pg_catalog.regprocedure::text, \
                        CASE WHEN p.prokind IN ('f', 'p') \
                             THEN pg_catalog.pg_get_functiondef(p.oid) ELSE '' END \
                 FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = $1",
                &[&VIEW_SCHEMA],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let role_state = role_state(client, role).await?;
        let (member_of, privileges) = match &role_state {
            Some(state) => (
                member_of(client, state.oid).await?,
                privileges(client, state.oid).await?,
            ),
            None => (BTreeSet::new(), BTreeSet::new()),
        };
        let has = |table: &'static str| async move {
            client
                .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&table])
                .await
                .map(|row| row.get::<_, bool>(0))
        };
        let key_digest = if has("rowgate_private.identity_key").await.map_err(what())? {
            let rows = client
                .query("SELECT key FROM rowgate_private.identity_key", &[])
                .await
                .map_err(what())?;
            let mut hasher = Sha256::new();
            for row in &rows {
                hasher.update(row.get::<_, &[u8]>(0));
            }
            (!rows.is_empty()).then(|| hasher.finalize().to_vec())
        } else {
            None
        };
        let version = if has("rowgate_private.installed").await.map_err(what())? {
            client
                .query_opt("SELECT version FROM rowgate_private.installed", &[])
                .await
                .map_err(what())?
                .map(|row| row.get(0))
        } else {
            None
        };
        Ok(Snapshot {
            schemas,
            views,
            functions,
            role: role_state,
            member_of,
            privileges,
            key_digest,
            version,
        })
    }

    pub(super) fn report(
        &self,
        after: &Snapshot,
        policy: &Policy,
        options: &InstallOptions,
    ) -> InstallReport {
        let role = ident(&options.agent_role).to_string();
        let mut changes = Vec::new();
        let mut unchanged = Vec::new();

        for schema in after.schemas.difference(&self.schemas) {
            changes.push(format!("created schema {schema}"));
        }
        match (&self.key_digest, &after.key_digest) {
            (None, Some(_)) => changes.push("stored the identity key".to_string()),
            (Some(a), Some(b)) if a != b => changes.push("replaced the identity key".to_string()),
            _ => unchanged.push("identity key".to_string()),
        }
        if self.version.as_deref() != Some(policy.version.as_str()) {
            match &self.version {
                Some(previous) => changes.push(format!(
                    "recorded policy version {} (was {previous})",
                    policy.version
                )),
                None => changes.push(format!("recorded policy version {}", policy.version)),
            }
        }

        match (&self.role, &after.role) {
            (None, Some(_)) => changes.push(format!("created role {role}")),
            (Some(before), Some(now)) => {
                let flags = [
                    (before.login, now.login, "LOGIN", "NOLOGIN"),
                    (before.superuser, now.superuser, "SUPERUSER", "NOSUPERUSER"),
                    (before.create_db, now.create_db, "CREATEDB", "NOCREATEDB"),
                    (
                        before.create_role,
                        now.create_role,
                        "CREATEROLE",
                        "NOCREATEROLE",
                    ),
                    (
                        before.replication,
                        now.replication,
                        "REPLICATION",
                        "NOREPLICATION",
                    ),
                    (
                        before.bypass_rls,
                        now.bypass_rls,
                        "BYPASSRLS",
                        "NOBYPASSRLS",
                    ),
                ];
                let altered: Vec<&str> = flags
                    .iter()
                    .filter(|(was, is, _, _)| was != is)
                    .map(|(_, is, yes, no)| if *is { *yes } else { *no })
                    .collect();
                if altered.is_empty() {
                    unchanged.push(format!("role {role}"));
                } else {
                    changes.push(format!("altered role {role}: {}", altered.join(" ")));
                }
            }
            _ => {}
        }
        if options.agent_password.is_some() {
            // A SCRAM verifier is salted, so whether it is the same password cannot be seen.
            changes.push(format!("set the password of role {role}"));
        }
        for group in self.member_of.difference(&after.member_of) {
            changes.push(format!(
                "revoked membership in {} from {role}",
                ident(group)
            ));
        }

        for (name, definition) in &after.functions {
            match self.functions.get(name) {
                None => changes.push(format!("created function {name}")),
                Some(previous) if previous != definition => {
                    changes.push(format!("replaced function {name}"))
                }
                Some(_) => unchanged.push(format!("function {name}")),
            }
        }

        for (name, definition) in &after.views {
            let shown = object_name(&[VIEW_SCHEMA, name]);
            match self.views.get(name) {
                None => changes.push(format!("created view {shown}")),
                Some(previous) if previous != definition => {
                    changes.push(format!("replaced view {shown}"))
                }
                Some(_) => unchanged.push(format!("view {shown}")),
            }
        }
        for name in self.views.keys().filter(|v| !after.views.contains_key(*v)) {
            changes.push(format!(
                "dropped view {}",
                object_name(&[VIEW_SCHEMA, name])
            ));
        }

        for privilege in self.privileges.difference(&after.privileges) {
            changes.push(format!("revoked {privilege} from {role}"));
        }
        for privilege in after.privileges.difference(&self.privileges) {
            changes.push(format!("granted {privilege} to {role}"));
        }

        InstallReport {
            version: policy.version.clone(),
            previous_version: self.version.clone(),
            changes,
            unchanged,
        }
    }
}
