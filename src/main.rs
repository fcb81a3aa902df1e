//! The `rowgate` command line: `rewrite` (an offline dry run), `check` (validate policies),
//! `install` (permission views and serving role), `serve` (the gateway) and `demo`.
//!
//! Exit codes: 0 ok, 1 the query was refused (or the server failed), 2 usage or policy error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rowgate::audit::AuditSink;
use rowgate::auth::ApiKeys;
use rowgate::caller::IdentityKey;
use rowgate::execute::ExecuteConfig;
use rowgate::identity::JwtConfig;
use rowgate::install::InstallOptions;
use rowgate::parse::Limits;
use rowgate::pipeline;
use rowgate::policy::{Policy, Rule};
use rowgate::refusal::Refusal;
use rowgate::server::ServeConfig;

#[derive(Parser)]
#[command(
    name = "rowgate",
    version,
    about = "Makes AI-agent SQL safe: every table read becomes a read of the caller's permission view."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrite one query offline and print the SQL that would run, with the plan (a dry run).
    Rewrite {
        /// Folder of policy files (*.yaml).
        #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
        policies: PathBuf,
        /// The caller's user id (shown with the plan; the filter itself runs in the database).
        #[arg(long)]
        user: String,
        /// Largest SQL accepted, in bytes.
        #[arg(long, default_value_t = Limits::default().max_sql_bytes)]
        max_sql_bytes: usize,
        /// Deepest nesting accepted.
        #[arg(long, default_value_t = Limits::default().max_depth)]
        max_depth: usize,
        /// Print the result as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The agent's SQL.
        sql: String,
    },
    /// Validate the policy files and print what they grant.
    Check {
        /// Folder of policy files (*.yaml).
        #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
        policies: PathBuf,
    },
    /// Create or update the permission views, identity functions and serving role (idempotent).
    Install {
        /// Administrator connection (owner of the views), e.g. postgres://postgres@127.0.0.1/app.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
        policies: PathBuf,
        /// Identity key file: created if missing, reused otherwise; `serve` needs the same file.
        #[arg(long, env = "ROWGATE_KEY_FILE", default_value = "./rowgate.key")]
        key_file: PathBuf,
        /// The serving role to create.
        #[arg(long, default_value = "rowgate_agent")]
        agent_role: String,
        /// Password for the serving role (omit with trust or peer authentication).
        #[arg(long, env = "ROWGATE_AGENT_PASSWORD")]
        agent_password: Option<String>,
    },
    /// Serve the HTTP API as the serving role.
    Serve {
        /// Connection for the serving role (not a superuser), e.g. postgres://rowgate_agent@127.0.0.1/app.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Identity key file written by `rowgate install`.
        #[arg(long, env = "ROWGATE_KEY_FILE", default_value = "./rowgate.key")]
        key_file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Build the demo database from scratch, install it, and serve it (no API key on loopback).
    Demo {
        /// Administrator connection to the PostgreSQL server that will hold the demo database.
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
        /// Name of the demo database (dropped and re-created).
        #[arg(long, default_value = "rowgate_demo")]
        database: String,
        #[arg(long, default_value = "./migrations")]
        migrations: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on. A non-loopback address requires ROWGATE_API_KEYS.
    #[arg(long, env = "ROWGATE_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Comma-separated API keys; callers send `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "ROWGATE_API_KEYS",
        default_value = "",
        hide_env_values = true
    )]
    api_keys: String,
    #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
    policies: PathBuf,
    /// Most rows a query returns (requests may ask for fewer).
    #[arg(long, env = "ROWGATE_MAX_ROWS", default_value_t = 1000)]
    max_rows: usize,
    /// Server-side statement timeout, in milliseconds.
    #[arg(long, env = "ROWGATE_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    statement_timeout_ms: u64,
    /// Database connections in the pool. Two to four per database core keeps the latency tail
    /// short under load; more only queue inside PostgreSQL (BENCHMARKS.md, load mode).
    #[arg(long, env = "ROWGATE_POOL_SIZE", default_value_t = 16)]
    pool_size: usize,
    /// How long a request waits for a free connection before `database_unavailable`, in ms.
    #[arg(long, env = "ROWGATE_POOL_WAIT_MS", default_value_t = 5000)]
    pool_wait_ms: u64,
    /// Largest SQL accepted, in bytes.
    #[arg(long, env = "ROWGATE_MAX_SQL_BYTES", default_value_t = Limits::default().max_sql_bytes)]
    max_sql_bytes: usize,
    /// Serve even as a superuser or a role that can read base tables. Experiments only.
    #[arg(long)]
    insecure: bool,
    /// Audit trail, one JSON line per decision and per outcome: `stdout`, a file path (opened
    /// for appending; rotate by renaming it), or `off`. On by default: a gateway that decides
    /// who reads what should leave a record unless told not to.
    #[arg(long, env = "ROWGATE_AUDIT", default_value = "stdout")]
    audit: AuditSink,
    #[command(flatten)]
    jwt: JwtArgs,
}

/// Verified identity: any of the first four turns it on, and then the caller's id comes from
/// `Authorization: Bearer <JWT>` (API keys, if set, move to the X-Rowgate-Api-Key header).
#[derive(Args)]
#[command(next_help_heading = "Verified identity (JWT; any of the first four turns it on)")]
struct JwtArgs {
    /// HS256 secret that signs callers' tokens (at least 32 bytes; prefer the environment).
    #[arg(long, env = "ROWGATE_JWT_HS256_SECRET", hide_env_values = true)]
    jwt_hs256_secret: Option<String>,
    /// JWKS file with the RS256/ES256 public keys that sign callers' tokens.
    #[arg(long, env = "ROWGATE_JWT_JWKS")]
    jwt_jwks: Option<PathBuf>,
    /// Required `iss` of callers' tokens (required with JWT).
    #[arg(long, env = "ROWGATE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required `aud` of callers' tokens (required with JWT).
    #[arg(long, env = "ROWGATE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// The claim that holds the caller's user id.
    #[arg(long, env = "ROWGATE_JWT_CLAIM", default_value = "sub")]
    jwt_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "ROWGATE_JWT_LEEWAY_SECS", default_value_t = 30)]
    jwt_leeway_secs: u64,
}

impl JwtArgs {
    fn config(self) -> JwtConfig {
        JwtConfig {
            hs256_secret: self.jwt_hs256_secret,
            jwks_file: self.jwt_jwks,
            issuer: self.jwt_issuer,
            audience: self.jwt_audience,
            claim: self.jwt_claim,
            leeway_secs: self.jwt_leeway_secs,
        }
    }
}

impl ServerArgs {
    fn config(self, database: tokio_postgres::Config, key: IdentityKey) -> ServeConfig {
        ServeConfig {
            database,
            bind: self.bind,
            api_keys: ApiKeys::parse(&self.api_keys),
            policies: self.policies,
            key,
            max_rows: self.max_rows,
            execute: ExecuteConfig {
                statement_timeout: Duration::from_millis(self.statement_timeout_ms),
                pool_wait: Duration::from_millis(self.pool_wait_ms),
                pool_size: self.pool_size,
            },
            limits: Limits {
                max_sql_bytes: self.max_sql_bytes,
                ..Limits::default()
            },
            insecure: self.insecure,
            jwt: self.jwt.config(),
            audit: self.audit,
        }
    }
}

fn database_config(url: &str) -> Option<tokio_postgres::Config> {
    match url.parse() {
        Ok(config) => Some(config),
        Err(error) => {
            eprintln!("DATABASE_URL is not a valid connection string: {error}");
            None
        }
    }
}

/// The async commands share one runtime, built at start-up.
fn runtime() -> tokio::runtime::Runtime {
    #[allow(clippy::expect_used)] // start-up
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime") // start-up
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROWGATE_LOG")
        // PostgreSQL's NOTICEs ("view ... does not exist, skipping" during install) arrive as
        // tokio_postgres INFO lines: noise for an operator, so warnings only unless asked.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rewrite {
            policies,
            user,
            max_sql_bytes,
            max_depth,
            json,
            sql,
        } => {
            let Some(policy) = load(&policies) else {
                return ExitCode::from(2);
            };
            let limits = Limits {
                max_sql_bytes,
                max_depth,
            };
            rewrite(&policy, &user, &sql, &limits, json)
        }
        Command::Check { policies } => match load(&policies) {
            Some(policy) => {
                print_grants(&policy);
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        Command::Install {
            database_url,
            policies,
            key_file,
            agent_role,
            agent_password,
        } => {
            let (Some(policy), Some(database)) = (load(&policies), database_config(&database_url))
            else {
                return ExitCode::from(2);
            };
            let options = InstallOptions {
                agent_role,
                agent_password,
            };
            runtime().block_on(install(database, policy, key_file, options))
        }
        Command::Serve {
            database_url,
            key_file,
            server,
        } => {
            let Some(database) = database_config(&database_url) else {
                return ExitCode::from(2);
            };
            let key = match IdentityKey::read(&key_file) {
                Ok(key) => key,
                Err(error) => {
                    eprintln!("{error}\nRun `rowgate install` first; it writes the key file.");
                    return ExitCode::from(2);
                }
            };
            init_logging();
            let config = server.config(database, key);
            match runtime().block_on(rowgate::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("rowgate serve: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo {
            database_url,
            database,
            migrations,
            server,
        } => {
            let Some(admin) = database_config(&database_url) else {
                return ExitCode::from(2);
            };
            init_logging();
            // Replaced by the demo with the serving role's own connection and a fresh key.
            let placeholder = IdentityKey([0; rowgate::caller::KEY_BYTES]);
            let serve = server.config(admin.clone(), placeholder);
            let config = rowgate::demo::DemoConfig {
                admin,
                database,
                migrations,
                serve,
            };
            match runtime().block_on(rowgate::demo::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("rowgate demo: {error}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

async fn install(
    database: tokio_postgres::Config,
    policy: Policy,
    key_file: PathBuf,
    options: InstallOptions,
) -> ExitCode {
    let key = match IdentityKey::read(&key_file) {
        Ok(key) => key,
        Err(_) if !key_file.exists() => {
            let Ok(key) = IdentityKey::generate() else {
                eprintln!("cannot generate an identity key");
                return ExitCode::from(1);
            };
            if let Err(error) = write_key(&key_file, &key) {
                eprintln!("cannot write {}: {error}", key_file.display());
                return ExitCode::from(1);
            }
            println!("wrote a new identity key to {}", key_file.display());
            key
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let (client, connection) = match database.connect(tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("cannot connect: {error}");
            return ExitCode::from(1);
        }
    };
    tokio::spawn(connection);
    match rowgate::install::install(&client, &policy, &key, &options).await {
        Ok(report) => {
            for line in &report.changes {
                println!("{line}");
            }
            if report.changes.is_empty() {
                println!(
                    "policy {}: already installed, nothing changed",
                    report.version
                );
            }
            for note in &report.notes {
                println!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("install failed: {error}");
            ExitCode::from(1)
        }
    }
}

/// The key file is a secret: readable by its owner only.
fn write_key(path: &std::path::Path, key: &IdentityKey) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{}", key.to_hex())
}

fn load(dir: &std::path::Path) -> Option<Policy> {
    match Policy::load_dir(dir) {
        Ok(policy) => Some(policy),
        Err(error) => {
            eprintln!("policy error: {error}");
            None
        }
    }
}

fn rewrite(policy: &Policy, user: &str, sql: &str, limits: &Limits, json: bool) -> ExitCode {
    match pipeline::rewrite(sql, policy, limits) {
        Ok(rewritten) => {
            let filters: Vec<(String, String)> = rewritten
                .plan
                .ctes
                .iter()
                .filter_map(|c| {
                    policy
                        .table(&c.table)
                        .map(|t| (c.table.clone(), t.rule.describe()))
                })
                .collect();
            if json {
                let out = serde_json::json!({
                    "user_id": user,
                    "rewritten_sql": rewritten.sql,
                    "plan": rewritten.plan,
                    "tables": filters.iter().map(|(t, f)| serde_json::json!({"table": t, "filter": f})).collect::<Vec<_>>(),
                    "policy_version": policy.version,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!("{}\n", rewritten.sql);
                println!("-- caller: {user} (policy {})", policy.version);
                for (table, filter) in &filters {
                    println!("-- {table}: {filter}");
                }
                for r in &rewritten.plan.references {
                    println!(
                        "-- line {} column {}: {} -> {}",
                        r.line, r.column, r.written, r.cte
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                let out = serde_json::json!({"error": {"code": error.code(), "message": error.to_string(), "hint": error.hint()}});
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                eprintln!(
                    "refused ({}): {error}\nhint: {}",
                    error.code(),
                    error.hint()
                );
            }
            ExitCode::from(1)
        }
    }
}

fn print_grants(policy: &Policy) {
    println!(
        "policy {} from {} file(s)",
        policy.version,
        policy.files.len()
    );
    if let Some(exists) = &policy.subject.exists {
        println!("callers: those for whom `{}` finds a row", exists.text);
    }
    for (name, attribute) in &policy.subject.attributes {
        println!("attribute :{name} = {}", attribute.text);
    }
    for table in policy.tables.values() {
        let rule = match &table.rule {
            Rule::Rows(_) => format!("rows where {}", table.rule.describe()),
            Rule::Match { .. } => format!("rows of the view where {}", table.rule.describe()),
        };
        let columns = table
            .columns
            .as_ref()
            .map(|c| c.join(", "))
            .unwrap_or_else(|| "all columns".into());
        println!(
            "table {} (from {}): {rule}; {columns}",
            table.name, table.source
        );
    }
    if !policy.extra_functions.is_empty() {
        let extra: Vec<&str> = policy.extra_functions.iter().map(String::as_str).collect();
        println!("extra functions: {}", extra.join(", "));
    }
}
