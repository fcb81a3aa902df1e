//! The report of what an install changed: a snapshot of the catalog before and after, compared.

use super::*;

/// What install may change, read the same way before and after it.
pub(super) struct Snapshot {
    pub(super) schemas: BTreeSet<String>,
    /// View (`schema.name`, quoted) → definition, options and owner, in `rowgate` and
    /// `rowgate_private` (the whole views).
    pub(super) views: BTreeMap<String, String>,
    /// `rowgate.f()` (and `rowgate_private.whole_gate()`) → definition.
    pub(super) functions: BTreeMap<String, String>,
    pub(super) role: Option<RoleState>,
    pub(super) member_of: BTreeSet<String>,
    pub(super) privileges: BTreeSet<Privilege>,
    /// The same three for the views' owner role.
    pub(super) owner: Option<RoleState>,
    pub(super) owner_member_of: BTreeSet<String>,
    pub(super) owner_privileges: BTreeSet<Privilege>,
    /// "<policy> on <table>" → its definition, for rowgate's row-level security policies.
    pub(super) policies: BTreeMap<String, String>,
    /// Tables with row-level security enabled.
    pub(super) row_security: BTreeSet<String>,
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
                "SELECT pg_catalog.quote_ident(n.nspname) || '.' \
                        || pg_catalog.quote_ident(c.relname), \
                        pg_catalog.pg_get_viewdef(c.oid) || coalesce(c.reloptions::text, '') \
                        || ' owned by ' || pg_catalog.pg_get_userbyid(c.relowner) \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ANY ($1) AND c.relkind = 'v'",
                &[&vec![VIEW_SCHEMA, PRIVATE_SCHEMA]],
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
                 WHERE n.nspname = ANY ($1)",
                &[&vec![VIEW_SCHEMA, PRIVATE_SCHEMA]],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let (role_state, member_of, privileges) = role_snapshot(client, role).await?;
        let (owner, owner_member_of, mut owner_privileges) =
            role_snapshot(client, &owner_role(role)).await?;
        // An owner's rights on its own views are implicit; they show up as grants only once
        // someone else is granted one. Not a change of what it may read.
        owner_privileges.retain(|p| p.schema != VIEW_SCHEMA);
        let policies = client
            .query(
                "SELECT p.policyname::text || ' on ' \
                        || pg_catalog.quote_ident(p.schemaname) || '.' \
                        || pg_catalog.quote_ident(p.tablename), \
                        p.permissive || ' ' || p.cmd || ' TO ' || p.roles::text \
                        || ' USING ' || coalesce(p.qual, '') \
                        || ' WITH CHECK ' || coalesce(p.with_check, '') \
                 FROM pg_catalog.pg_policies p WHERE p.policyname = ANY ($1)",
                &[&row_security::POLICIES.to_vec()],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let row_security = client
            .query(
                "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relrowsecurity",
                &[],
            )
            .await
            .map_err(what())?
            .iter()
            .map(|row| row.get(0))
            .collect();
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
            owner,
            owner_member_of,
            owner_privileges,
            policies,
            row_security,
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

        role_changes(&role, &self.role, &after.role, &mut changes, &mut unchanged);
        let owner = ident(&owner_role(&options.agent_role)).to_string();
        role_changes(
            &owner,
            &self.owner,
            &after.owner,
            &mut changes,
            &mut unchanged,
        );
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

        // Functions install no longer makes are left in place (their EXECUTE swept), so none
        // is reported dropped.
        let mut objects = Objects {
            changes: &mut changes,
            unchanged: &mut unchanged,
        };
        objects.compare("function", &self.functions, &after.functions, false, |n| {
            n.to_string()
        });
        objects.compare("view", &self.views, &after.views, true, |n| n.to_string());

        for group in self.owner_member_of.difference(&after.owner_member_of) {
            changes.push(format!(
                "revoked membership in {} from {owner}",
                ident(group)
            ));
        }
        for table in after.row_security.difference(&self.row_security) {
            changes.push(format!("enabled row-level security on {table}"));
        }
        for table in self.row_security.difference(&after.row_security) {
            changes.push(format!("disabled row-level security on {table}"));
        }
        let mut objects = Objects {
            changes: &mut changes,
            unchanged: &mut unchanged,
        };
        objects.compare("policy", &self.policies, &after.policies, true, |n| {
            n.to_string()
        });

        for (who, before, now) in [
            (&role, &self.privileges, &after.privileges),
            (&owner, &self.owner_privileges, &after.owner_privileges),
        ] {
            for privilege in before.difference(now) {
                changes.push(format!("revoked {privilege} from {who}"));
            }
            for privilege in now.difference(before) {
                changes.push(format!("granted {privilege} to {who}"));
            }
        }

        InstallReport {
            version: policy.version.clone(),
            previous_version: self.version.clone(),
            changes,
            unchanged,
            notes: Vec::new(),
        }
    }
}

type RoleSnapshot = (Option<RoleState>, BTreeSet<String>, BTreeSet<Privilege>);

async fn role_snapshot(client: &Client, role: &str) -> Result<RoleSnapshot, InstallError> {
    Ok(match role_state(client, role).await? {
        Some(state) => {
            let member_of = member_of(client, state.oid).await?;
            let privileges = privileges(client, state.oid).await?;
            (Some(state), member_of, privileges)
        }
        None => (None, BTreeSet::new(), BTreeSet::new()),
    })
}

/// "created role r", "altered role r: NOLOGIN", or "role r" among the unchanged.
fn role_changes(
    role: &str,
    before: &Option<RoleState>,
    after: &Option<RoleState>,
    changes: &mut Vec<String>,
    unchanged: &mut Vec<String>,
) {
    match (before, after) {
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
}

/// The report's lines for one kind of named object with a definition.
struct Objects<'a> {
    changes: &'a mut Vec<String>,
    unchanged: &'a mut Vec<String>,
}

impl Objects<'_> {
    /// "created <kind> <shown>", "replaced ...", "dropped ..." (when `drops`), or
    /// "<kind> <shown>" among the unchanged.
    fn compare(
        &mut self,
        kind: &str,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        drops: bool,
        show: impl Fn(&str) -> String,
    ) {
        for (name, definition) in after {
            let shown = show(name);
            match before.get(name) {
                None => self.changes.push(format!("created {kind} {shown}")),
                Some(previous) if previous != definition => {
                    self.changes.push(format!("replaced {kind} {shown}"))
                }
                Some(_) => self.unchanged.push(format!("{kind} {shown}")),
            }
        }
        if drops {
            for name in before.keys().filter(|n| !after.contains_key(*n)) {
                self.changes.push(format!("dropped {kind} {}", show(name)));
            }
        }
    }
}
