//! The install plan: every statement `install` runs, in order, built from the policy and from
//! what [`inspect`] found. Nothing here touches the database; `install` runs the steps in one
//! transaction and `plan_sql` prints them (`snapshots/install_plan_demo.snap` is the demo's).
//!
//! The order matters: the schemas and roles first, then the functions the views call, the
//! views, what the views' owner may read, and the serving role's grants last, after everything
//! they name exists.

use super::*;

pub(super) enum Step {
    /// A statement, with what it does for error messages.
    Sql { what: String, sql: String },
    /// The identity key's row: a literal in [`plan_sql`]'s text, a bind parameter in [`install`].
    StoreKey,
}

pub(super) fn push(steps: &mut Vec<Step>, what: impl Into<String>, sql: impl Into<String>) {
    steps.push(Step::Sql {
        what: what.into(),
        sql: sql.into(),
    });
}

/// The quoted names every part of the plan writes.
struct Names {
    /// The serving role.
    role: String,
    /// The views' owner role, unquoted (for the functions that embed it) and quoted.
    owner_name: String,
    owner: String,
    private: String,
    views: String,
}

pub(super) fn plan(
    policy: &Policy,
    options: &InstallOptions,
    catalog: &Catalog,
) -> Result<Vec<Step>, InstallError> {
    check_options(options)?;
    let owner_name = owner_role(&options.agent_role);
    let names = Names {
        role: ident(&options.agent_role).to_string(),
        owner: ident(&owner_name).to_string(),
        owner_name,
        private: ident(PRIVATE_SCHEMA).to_string(),
        views: ident(VIEW_SCHEMA).to_string(),
    };
    let fragments = Fragments::new(policy)?;
    let mut steps = Vec::new();
    for setting in SETTINGS {
        push(&mut steps, "setting up the install transaction", setting);
    }
    private_schema(&mut steps, &names, policy);
    views_schema(&mut steps, &names, policy);
    roles(&mut steps, &names, options, catalog);
    sweep_privileges(&mut steps, &names, catalog);
    identity_functions(&mut steps, &names, &fragments)?;
    whole::plan(&mut steps, catalog);
    permission_views(&mut steps, &names, policy, &fragments, catalog)?;
    owner_reads(&mut steps, &names, policy, catalog);
    whole::grant(&mut steps, catalog, &names.role, &names.owner);
    serving_grants(&mut steps, &names, policy);
    Ok(steps)
}

/// The private schema: the identity key and the installed version, for the owner only.
fn private_schema(steps: &mut Vec<Step>, names: &Names, policy: &Policy) {
    let private = &names.private;
    let version = quote_literal(&policy.version);
    push(
        steps,
        format!("creating schema {private}"),
        format!("CREATE SCHEMA IF NOT EXISTS {private}"),
    );
    push(
        steps,
        format!("closing schema {private}"),
        format!("REVOKE ALL ON SCHEMA {private} FROM PUBLIC"),
    );
    push(
        steps,
        "creating the identity key table",
        format!(
            "CREATE TABLE IF NOT EXISTS {private}.identity_key \
             (key bytea NOT NULL CHECK (pg_catalog.octet_length(key) = 32))"
        ),
    );
    // One row only: `caller_id()` reads "the" key.
    push(
        steps,
        "creating the identity key table",
        format!("CREATE UNIQUE INDEX IF NOT EXISTS identity_key_one_row ON {private}.identity_key ((true))"),
    );
    push(
        steps,
        "replacing the identity key",
        format!("DELETE FROM {private}.identity_key"),
    );
    steps.push(Step::StoreKey);
    push(
        steps,
        "creating the installed-version table",
        format!(
            "CREATE TABLE IF NOT EXISTS {private}.installed \
             (version text NOT NULL, installed_at timestamptz NOT NULL)"
        ),
    );
    push(
        steps,
        "creating the installed-version table",
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS installed_one_row ON {private}.installed ((true))"
        ),
    );
    push(
        steps,
        "recording the policy version",
        format!("DELETE FROM {private}.installed"),
    );
    push(
        steps,
        "recording the policy version",
        format!("INSERT INTO {private}.installed (version, installed_at) VALUES ({version}, pg_catalog.now())"),
    );
    push(
        steps,
        format!("closing schema {private}"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA {private} FROM PUBLIC"),
    );
}

/// The views' schema. Its comment carries the version where the serving role can read it
/// (obj_description), so `serve` can check that the views match the policy it loaded.
fn views_schema(steps: &mut Vec<Step>, names: &Names, policy: &Policy) {
    let views = &names.views;
    push(
        steps,
        format!("creating schema {views}"),
        format!("CREATE SCHEMA IF NOT EXISTS {views}"),
    );
    push(
        steps,
        format!("closing schema {views}"),
        format!("REVOKE ALL ON SCHEMA {views} FROM PUBLIC"),
    );
    push(
        steps,
        format!("commenting schema {views}"),
        format!(
            "COMMENT ON SCHEMA {views} IS {}",
            quote_literal(&format!("rowgate policy {}", policy.version))
        ),
    );
}

/// The serving role, a plain login whatever it was before, and the views' owner.
fn roles(steps: &mut Vec<Step>, names: &Names, options: &InstallOptions, catalog: &Catalog) {
    let role = &names.role;
    let owner = &names.owner;
    let attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    let password = match &options.agent_password {
        Some(p) => format!(" PASSWORD {}", quote_literal(p)),
        None => String::new(),
    };
    if catalog.agent_exists {
        push(
            steps,
            format!("altering role {role}"),
            format!("ALTER ROLE {role} WITH {attributes}{password}"),
        );
    } else {
        push(
            steps,
            format!("creating role {role}"),
            format!("CREATE ROLE {role} WITH {attributes}{password}"),
        );
    }
    for group in &catalog.agent_member_of {
        let group = ident(group);
        push(
            steps,
            format!("revoking membership in {group} from {role}"),
            format!("REVOKE {group} FROM {role}"),
        );
    }
    // The views' owner: no login, no attribute, member of nothing (a membership in a table
    // owner's role would exempt it from row-level security).
    let owner_attributes = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    if catalog.owner_exists {
        push(
            steps,
            format!("altering role {owner}"),
            format!("ALTER ROLE {owner} WITH {owner_attributes}"),
        );
    } else {
        push(
            steps,
            format!("creating role {owner}"),
            format!("CREATE ROLE {owner} WITH {owner_attributes}"),
        );
    }
    for group in &catalog.owner_member_of {
        let group = ident(group);
        push(
            steps,
            format!("revoking membership in {group} from {owner}"),
            format!("REVOKE {group} FROM {owner}"),
        );
    }
    for member in &catalog.owner_members {
        let member = ident(member);
        push(
            steps,
            format!("revoking membership in {owner} from {member}"),
            format!("REVOKE {owner} FROM {member}"),
        );
    }
}

/// The database and every swept schema: the two roles keep only what install grants them.
fn sweep_privileges(steps: &mut Vec<Step>, names: &Names, catalog: &Catalog) {
    let role = &names.role;
    let owner = &names.owner;
    // CONNECT again explicitly: a database that revoked it from PUBLIC must still admit the
    // serving role; CREATE and TEMPORARY it gets only through PUBLIC, if at all.
    let database = ident(&catalog.database);
    push(
        steps,
        format!("revoking privileges on database {database} from {role}"),
        format!("REVOKE ALL ON DATABASE {database} FROM {role}"),
    );
    push(
        steps,
        format!("granting CONNECT on database {database} to {role}"),
        format!("GRANT CONNECT ON DATABASE {database} TO {role}"),
    );
    push(
        steps,
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
                steps,
                &what,
                format!("REVOKE ALL ON ALL {kind} IN SCHEMA {schema} FROM {role}, {owner}"),
            );
        }
        push(
            steps,
            &what,
            format!("REVOKE ALL ON SCHEMA {schema} FROM {role}, {owner}"),
        );
    }
}

/// The functions that verify the signed caller, which every view and the caller check call.
fn identity_functions(
    steps: &mut Vec<Step>,
    names: &Names,
    fragments: &Fragments,
) -> Result<(), InstallError> {
    push(
        steps,
        "creating function rowgate.caller_id()",
        caller_id_sql(),
    );
    push(
        steps,
        "creating function rowgate.caller_exists()",
        fragments.caller_exists()?,
    );
    push(
        steps,
        "creating function rowgate.caller_attributes()",
        fragments.caller_attributes()?,
    );
    push(
        steps,
        "creating function rowgate.fenced_caller(regclass)",
        fenced_caller_sql(&names.owner_name),
    );
    Ok(())
}

/// The views: first those the policy no longer names, then each policy table's, anew.
fn permission_views(
    steps: &mut Vec<Step>,
    names: &Names,
    policy: &Policy,
    fragments: &Fragments,
    catalog: &Catalog,
) -> Result<(), InstallError> {
    let owner = &names.owner;
    for stale in catalog
        .views
        .iter()
        .filter(|v| !policy.tables.contains_key(*v))
    {
        let name = object_name(&[VIEW_SCHEMA, stale]);
        push(
            steps,
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
            let rule = row_security_rule(policy, fragments, name)?.ok_or_else(|| {
                template(&what, "a row-security table's rule is not a `rows` rule")
            })?;
            let rule = whole::read_whole(rule, &catalog.rule_names, &catalog.whole);
            let state = catalog.tables.get(&table.source);
            row_security::plan_table(steps, &table.source, state, &names.owner_name, rule)?;
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
        push(steps, &what, format!("DROP VIEW IF EXISTS {view}"));
        push(steps, &what, create);
        if fenced {
            push(steps, what, format!("ALTER VIEW {view} OWNER TO {owner}"));
        }
    }
    Ok(())
}

/// Row-level security left behind on tables no longer fenced, and what the views' owner reads:
/// the fenced tables and the relations their rules read.
fn owner_reads(steps: &mut Vec<Step>, names: &Names, policy: &Policy, catalog: &Catalog) {
    let owner = &names.owner;
    // No view calls it any more (each was just created anew).
    push(
        steps,
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
            row_security::plan_leaving(steps, table, state);
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
            steps,
            format!("granting USAGE on schema {schema} to {owner}"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {owner}"),
        );
    }
    for table in readable {
        let shown = object_name(&[&table.schema, &table.name]);
        push(
            steps,
            format!("granting SELECT on {shown} to {owner}"),
            format!("GRANT SELECT ON {shown} TO {owner}"),
        );
    }
}

/// The serving role's grants, last, after everything they name exists: first take away whatever
/// the role or PUBLIC holds in schema rowgate (default privileges could have granted some to new
/// views), then give exactly USAGE, EXECUTE on the functions and SELECT on each view.
fn serving_grants(steps: &mut Vec<Step>, names: &Names, policy: &Policy) {
    let role = &names.role;
    let views = &names.views;
    let what = format!("granting {role} its privileges in schema {views}");
    push(
        steps,
        &what,
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        steps,
        &what,
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        steps,
        &what,
        format!("REVOKE ALL ON ALL ROUTINES IN SCHEMA {views} FROM PUBLIC, {role}"),
    );
    push(
        steps,
        &what,
        format!("REVOKE ALL ON SCHEMA {views} FROM {role}"),
    );
    push(
        steps,
        &what,
        format!("GRANT USAGE ON SCHEMA {views} TO {role}"),
    );
    let functions: Vec<String> = FUNCTIONS.iter().map(|f| format!("{views}.{f}")).collect();
    push(
        steps,
        &what,
        format!(
            "GRANT EXECUTE ON FUNCTION {} TO {role}",
            functions.join(", ")
        ),
    );
    for name in policy.tables.keys() {
        let view = object_name(&[VIEW_SCHEMA, name]);
        push(
            steps,
            format!("granting SELECT on {view} to {role}"),
            format!("GRANT SELECT ON {view} TO {role}"),
        );
    }
}

pub(super) fn check_options(options: &InstallOptions) -> Result<(), InstallError> {
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
