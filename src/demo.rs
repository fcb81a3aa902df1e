//! `rowgate demo`: a working, secure gateway from nothing, in one command.
//!
//! Creates the demo database from scratch through `DATABASE_URL`'s server (an administrator
//! connection), runs `migrations/`, installs the permission views with a fresh identity key
//! and a fresh random password for the serving role, and serves as that role.

use std::path::{Path, PathBuf};

use crate::caller::IdentityKey;
use crate::install::{self, InstallOptions};
use crate::policy::Policy;
use crate::server::{self, ServeConfig, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("database error while {doing}: {source}")]
    Database {
        doing: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("install failed: {0}")]
    Install(String),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Setup(String),
}

async fn connect(
    config: &tokio_postgres::Config,
    doing: &str,
) -> Result<tokio_postgres::Client, DemoError> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|source| DemoError::Database {
            doing: doing.into(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "admin connection closed");
        }
    });
    Ok(client)
}

/// Drops and re-creates `database`, runs every `*.sql` of `migrations` in name order.
pub async fn create_database(
    admin: &tokio_postgres::Config,
    database: &str,
    migrations: &Path,
) -> Result<tokio_postgres::Client, DemoError> {
    let client = connect(admin, "connecting as administrator").await?;
    let name = crate::sql::ident(database).to_string();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .map_err(|source| DemoError::Database {
                doing: sql.clone(),
                source,
            })?;
    }
    let mut config = admin.clone();
    config.dbname(database);
    let client = connect(&config, "connecting to the new database").await?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(migrations)
        .map_err(|source| DemoError::Io {
            path: migrations.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file).map_err(|source| DemoError::Io {
            path: file.clone(),
            source,
        })?;
        client
            .batch_execute(&sql)
            .await
            .map_err(|source| DemoError::Database {
                doing: format!("running {}", file.display()),
                source,
            })?;
        println!("ran {}", file.display());
    }
    Ok(client)
}

pub struct DemoConfig {
    pub admin: tokio_postgres::Config,
    pub database: String,
    pub migrations: PathBuf,
    pub serve: ServeConfig,
}

pub async fn run(mut config: DemoConfig) -> Result<(), DemoError> {
    let policy = Policy::load_dir(&config.serve.policies)?;
    let client = create_database(&config.admin, &config.database, &config.migrations).await?;
    let key = IdentityKey::generate().map_err(|e| DemoError::Setup(e.to_string()))?;
    let password = IdentityKey::generate()
        .map_err(|e| DemoError::Setup(e.to_string()))?
        .to_hex();
    let options = InstallOptions {
        agent_role: "rowgate_agent".into(),
        agent_password: Some(password.clone()),
    };
    let report = install::install(&client, &policy, &key, &options)
        .await
        .map_err(|e| DemoError::Install(e.to_string()))?;
    for line in report.changes.iter() {
        println!("install: {line}");
    }
    for note in &report.notes {
        println!("install: note: {note}");
    }
    let mut agent = config.admin.clone();
    agent
        .dbname(&config.database)
        .user(&options.agent_role)
        .password(password);
    config.serve.database = agent;
    config.serve.key = key;
    print_curl(&config.serve);
    Ok(server::serve(config.serve).await?)
}

fn print_curl(serve: &ServeConfig) {
    let base = format!("http://{}", serve.bind);
    let auth = if serve.api_keys.is_empty() {
        String::new()
    } else {
        " -H 'Authorization: Bearer <key>'".into()
    };
    println!("\nrowgate demo is ready on {base} (serving as rowgate_agent). Try:\n");
    println!("curl -s{auth} '{base}/v1/schema?user_id=bob&format=text'");
    println!(
        "curl -s{auth} {base}/v1/query -H 'Content-Type: application/json' -d '{{\"user_id\": \"bob\", \"sql\": \"SELECT department, count(*), sum(amount) FROM invoices GROUP BY 1 ORDER BY 1\"}}'"
    );
    println!(
        "curl -s{auth} {base}/v1/query -H 'Content-Type: application/json' -d '{{\"user_id\": \"anne\", \"sql\": \"SELECT sum(amount) FROM invoices WHERE department = '\\''Operations'\\''\", \"dry_run\": true}}'"
    );
    println!(
        "curl -s{auth} {base}/v1/query -H 'Content-Type: application/json' -d '{{\"user_id\": \"carol\", \"sql\": \"SELECT * FROM permissions\"}}'\n"
    );
}
