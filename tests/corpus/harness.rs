//! What the corpus tests (`corpus_defog.rs`, `corpus_bird.rs`) share: one database per corpus
//! database, loaded from the corpus's SQL files plus `tests/corpus/callers.sql`, with the
//! committed policy file installed by `rowgate::install` for a serving role of its own, and a
//! second role that reads the same tables under PostgreSQL row-level security (defog only).
//! Everything made here is dropped again, panics included, so the tests can run twice in a row
//! and alongside the other suites.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rowgate::caller::IdentityKey;
use rowgate::catalog::Catalog;
use rowgate::execute::{ExecuteConfig, Executor};
use rowgate::install::{install, InstallOptions};
use rowgate::policy::{Policy, Rule};
use tokio_postgres::{Client, Config, NoTls};

use crate::common::{admin_config, connect, db_message, manifest_path};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `../shared/corpus/<rel>`, next to the crate.
pub fn corpus_path(rel: &str) -> PathBuf {
    manifest_path("../shared/corpus").join(rel)
}

/// The callers of `tests/corpus/callers.sql`.
pub const CALLERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// The setting that carries the caller's id to the row-level security policies.
pub const RLS_SETTING: &str = "rg.caller";

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL text for `batch_execute`: psql meta-commands (`\connect`, `\set`, ...) are psql's, not
/// PostgreSQL's, and are dropped (none of them matter for a fresh database).
pub fn without_psql_commands(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One corpus database, its serving role and its RLS role.
pub struct CorpusDb {
    pub label: String,
    pub name: String,
    pub agent: String,
    pub rls: String,
    pub password: String,
    pub key: IdentityKey,
    pub policy: Policy,
    pub admin: Client,
    torn_down: bool,
}

impl CorpusDb {
    /// Creates the database, runs `sources` and `callers.sql` in it, and installs `policy_file`.
    pub async fn create(label: &str, sources: &[PathBuf], policy_file: &Path) -> CorpusDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("rg_corpus_{pid}_{n}");
        let mut db = CorpusDb {
            label: label.to_string(),
            agent: format!("rg_cag_{pid}_{n}"),
            rls: format!("rg_crl_{pid}_{n}"),
            password: IdentityKey::generate().expect("random password").to_hex(),
            key: IdentityKey::generate().expect("random key"),
            policy: Policy::default(),
            admin: connect(&admin_config("postgres")).await,
            name,
            // Armed from here on: a failure below still drops what was made.
            torn_down: false,
        };
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name),
            format!("CREATE DATABASE {}", db.name),
        ] {
            db.admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
        }
        // The corpus files may change the session (`SET search_path`): load them on a
        // connection of their own.
        let loader = connect(&admin_config(&db.name)).await;
        let mut files = sources.to_vec();
        files.push(manifest_path("tests/corpus/callers.sql"));
        for file in &files {
            let text =
                std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            loader
                .batch_execute(&without_psql_commands(&text))
                .await
                .unwrap_or_else(|e| {
                    panic!("{label}: loading {}: {}", file.display(), db_message(&e))
                });
        }
        drop(loader);
        db.admin = connect(&admin_config(&db.name)).await;
        let text = std::fs::read_to_string(policy_file)
            .unwrap_or_else(|e| panic!("{}: {e}", policy_file.display()));
        db.policy = Policy::from_yaml(&policy_file.display().to_string(), &text)
            .unwrap_or_else(|e| panic!("{label}: the policy does not load: {e}"));
        let options = InstallOptions {
            agent_role: db.agent.clone(),
            agent_password: Some(db.password.clone()),
        };
        install(&db.admin, &db.policy, &db.key, &options)
            .await
            .unwrap_or_else(|e| panic!("{label}: install: {e}"));
        // As `rowgate serve` does: column lists and primary keys from the database.
        let catalog = Catalog::load(&db.admin, &db.policy)
            .await
            .unwrap_or_else(|e| panic!("{label}: catalog: {e}"));
        db.policy = catalog.complete(&db.policy);
        db
    }

    /// The tables of the database (outside the system schemas, rowgate's and the callers'),
    /// as `schema.table`.
    pub async fn base_tables(&self) -> Vec<String> {
        self.admin
            .query(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rowgate', 'rowgate_private') \
                   AND n.nspname NOT LIKE 'pg\\_%' \
                   AND NOT (n.nspname = 'public' AND c.relname IN ('rg_callers', 'rg_owned')) \
                 ORDER BY 1",
                &[],
            )
            .await
            .expect("catalog query")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Asserts that the policy names every table of the database, and nothing else.
    pub async fn assert_policy_covers_every_table(&self) {
        let mut sources: Vec<String> = self
            .policy
            .tables
            .values()
            .map(|t| format!("{}.{}", t.source.schema, t.source.name))
            .collect();
        sources.sort();
        assert_eq!(
            sources,
            self.base_tables().await,
            "{}: the policy must have a rule for every table",
            self.label
        );
    }

    pub fn agent_config(&self) -> Config {
        self.role_config(&self.agent)
    }

    pub fn rls_config(&self) -> Config {
        self.role_config(&self.rls)
    }

    fn role_config(&self, role: &str) -> Config {
        let mut config = admin_config(&self.name);
        config.user(role).password(&self.password);
        config
    }

    /// A pool of connections as the RLS role (see [`CorpusDb::enable_rls`]).
    pub fn rls_pool(&self, size: usize) -> deadpool_postgres::Pool {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
        let manager = Manager::from_config(
            self.rls_config(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .build()
            .expect("RLS pool")
    }

    /// The gateway's executor, as the installed serving role.
    pub fn executor(&self, pool_size: usize) -> Executor {
        Executor::new(
            self.agent_config(),
            self.key.clone(),
            ExecuteConfig {
                statement_timeout: Duration::from_secs(20),
                pool_wait: Duration::from_secs(60),
                pool_size,
            },
        )
        .expect("executor")
    }

    /// The RLS arm: a login role that owns nothing and may read the base tables, every one of
    /// which gets row-level security with the policy file's rule, the caller's id read from
    /// [`RLS_SETTING`]. The rowgate views are unaffected: rowgate's policies name only its own
    /// owner role, and these only this role.
    pub async fn enable_rls(&self) -> Vec<(String, String)> {
        let rls = quote_ident(&self.rls);
        let mut statements = vec![
            format!(
                "CREATE ROLE {rls} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{}'",
                self.password
            ),
            format!("GRANT CONNECT ON DATABASE {} TO {rls}", self.name),
            format!("GRANT USAGE ON SCHEMA public TO {rls}"),
            format!("GRANT SELECT ON public.rg_callers, public.rg_owned TO {rls}"),
        ];
        let mut rules = Vec::new();
        for table in self.policy.tables.values() {
            let source = format!(
                "{}.{}",
                quote_ident(&table.source.schema),
                quote_ident(&table.source.name)
            );
            let rule = rls_rule(&self.policy, &table.rule);
            statements.extend([
                format!(
                    "GRANT USAGE ON SCHEMA {} TO {rls}",
                    quote_ident(&table.source.schema)
                ),
                format!("GRANT SELECT ON {source} TO {rls}"),
                format!("ALTER TABLE {source} ENABLE ROW LEVEL SECURITY"),
                // Permissive `true` and the rule as RESTRICTIVE: other permissive policies
                // (rowgate's pass-through for every role) cannot widen the rule then.
                format!("CREATE POLICY rg_corpus_all ON {source} FOR SELECT TO {rls} USING (true)"),
                format!(
                    "CREATE POLICY rg_corpus ON {source} AS RESTRICTIVE FOR SELECT TO {rls} \
                     USING ({rule})"
                ),
            ]);
            rules.push((table.name.clone(), rule));
        }
        for sql in statements {
            self.admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {sql}: {}", self.label, db_message(&e)));
        }
        rules
    }

    pub async fn teardown(mut self) {
        self.torn_down = true;
        cleanup(
            self.name.clone(),
            vec![
                self.agent.clone(),
                rowgate::install::owner_role(&self.agent),
                self.rls.clone(),
            ],
        )
        .await;
    }
}

impl Drop for CorpusDb {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let (name, roles) = (
            self.name.clone(),
            vec![
                self.agent.clone(),
                rowgate::install::owner_role(&self.agent),
                self.rls.clone(),
            ],
        );
        // Drop runs inside the test's runtime, which cannot block on itself.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the clean-up")
                .block_on(cleanup(name, roles))
        })
        .join();
    }
}

async fn cleanup(name: String, roles: Vec<String>) {
    let server = connect(&admin_config("postgres")).await;
    for role in &roles {
        let _ = server
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[role],
            )
            .await;
    }
    if let Ok((client, connection)) = admin_config(&name).connect(NoTls).await {
        let task = tokio::spawn(connection);
        for role in &roles {
            let _ = client
                .batch_execute(&format!(
                    "SET lock_timeout = '5s'; DROP OWNED BY {}",
                    quote_ident(role)
                ))
                .await;
        }
        drop(client);
        let _ = task.await;
    }
    let mut problems = Vec::new();
    if let Err(e) = server
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
    {
        problems.push(format!("DROP DATABASE {name}: {}", db_message(&e)));
    }
    for role in &roles {
        if let Err(e) = server
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
            .await
        {
            problems.push(format!("DROP ROLE {role}: {}", db_message(&e)));
        }
    }
    if !problems.is_empty() && !std::thread::panicking() {
        panic!("clean-up failed: {}", problems.join("; "));
    }
}

/// The policy's rule as a row-level security expression: `:user_id` becomes the caller's id
/// from [`RLS_SETTING`], and `:attribute` the attribute's query (itself over `:user_id`), as
/// rowgate documents them: "where SQL takes a subquery".
pub fn rls_rule(policy: &Policy, rule: &Rule) -> String {
    let caller = format!("current_setting('{RLS_SETTING}')");
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    values.insert("user_id".into(), caller.clone());
    for (name, query) in &policy.subject.attributes {
        let user = BTreeMap::from([("user_id".to_string(), caller.clone())]);
        values.insert(name.clone(), substitute(&query.text, &user));
    }
    match rule {
        Rule::Rows(fragment) => substitute(&fragment.text, &values),
        Rule::Match { column, attribute } => {
            format!("{} IN ({})", quote_ident(column), values[attribute])
        }
    }
}

/// Replaces each `:name` placeholder of `sql` (not `::type` casts, not inside string literals
/// or quoted names) with its value.
pub fn substitute(sql: &str, values: &BTreeMap<String, String>) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .map_or(chars.len(), |p| i + 1 + p + 1);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push_str("::");
            i += 2;
        } else if c == ':' {
            let end = chars[i + 1..]
                .iter()
                .position(|d| !(d.is_ascii_alphanumeric() || *d == '_'))
                .map_or(chars.len(), |p| i + 1 + p);
            let name: String = chars[i + 1..end].iter().collect();
            let value = values
                .get(&name)
                .unwrap_or_else(|| panic!("no value for :{name} in {sql}"));
            out.push_str(value);
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Counts per outcome key, for the grouped parts of a report.
#[derive(Default, Debug)]
pub struct Tally(pub BTreeMap<String, usize>);

impl Tally {
    pub fn add(&mut self, key: impl Into<String>) {
        *self.0.entry(key.into()).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        for (k, n) in &other.0 {
            *self.0.entry(k.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Most frequent first.
    pub fn lines(&self, indent: &str) -> String {
        let mut entries: Vec<(&String, &usize)> = self.0.iter().collect();
        entries.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        entries
            .iter()
            .map(|(k, n)| format!("{indent}{n:>4}  {k}\n"))
            .collect()
    }
}

#[test]
fn placeholders_are_substituted_but_casts_and_literals_are_not() {
    let values = BTreeMap::from([
        ("user_id".to_string(), "U".to_string()),
        (
            "owned".to_string(),
            "SELECT o FROM t WHERE u = U".to_string(),
        ),
    ]);
    assert_eq!(
        substitute(
            "a::text IN (:owned) AND b = ':owned' AND \"c:x\" = :user_id",
            &values
        ),
        "a::text IN (SELECT o FROM t WHERE u = U) AND b = ':owned' AND \"c:x\" = U"
    );
    assert_eq!(
        without_psql_commands("\\connect x\nSELECT 1;\n  \\set a b"),
        "SELECT 1;"
    );
}
