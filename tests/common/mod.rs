//! Shared harness for the tests that run against a real PostgreSQL 15 (127.0.0.1:5432, user
//! `postgres`, trust authentication, as DEVELOPERS.md and `.ci/run` set it up).
//!
//! [`TestDb::new`] makes a database of its own (`rg_http_<pid>_<n>`), runs `migrations/`, and
//! installs `policies/` with a serving role of its own (`rg_ag_<pid>_<n>`: roles are
//! cluster-wide and the tests run in parallel, in several test binaries at once). Dropping the
//! guard (or [`TestDb::teardown`]) removes both, panics included, so the suites can run twice in
//! a row and leave nothing behind.
//!
//! [`call`] sends one request through the real router (`tower::ServiceExt::oneshot`) and checks
//! what every answer must satisfy: never a 500, never a hang, errors in the contract's shape.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use rowgate::auth::ApiKeys;
use rowgate::caller::IdentityKey;
use rowgate::execute::ExecuteConfig;
use rowgate::http::AppState;
use rowgate::install::{install, InstallOptions};
use rowgate::parse::Limits;
use rowgate::policy::Policy;
use rowgate::server::{prepare, ServeConfig};
use serde_json::Value;
use tokio_postgres::{Client, Config, NoTls};
use tower::ServiceExt;

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn policies_dir() -> PathBuf {
    manifest_path("policies")
}

pub fn policy() -> Policy {
    Policy::load_dir(&policies_dir()).expect("the demo policy loads")
}

/// The superuser's connection settings, for database `dbname`.
pub fn admin_config(dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host(HOST)
        .port(PORT)
        .user("postgres")
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10));
    config
}

/// Connects, and drives the connection on the current runtime.
pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL ({config:?}): {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// PostgreSQL's own message, which tokio-postgres's `Display` leaves out ("db error").
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| format!("{} ({})", db.message(), db.code().code()))
        .unwrap_or_else(|| e.to_string())
}

/// The SQLSTATE of an error, or "" when it did not come from the server.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// `'text'` as a SQL literal.
pub fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A database and a serving role that exist for one test.
pub struct TestDb {
    pub name: String,
    pub role: String,
    pub password: String,
    pub key: IdentityKey,
    /// Superuser connection to the test database.
    pub admin: Client,
    torn_down: bool,
}

impl TestDb {
    /// Creates the database, runs the migrations, installs the demo policy.
    pub async fn new() -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("rg_http_{pid}_{n}");
        let role = format!("rg_ag_{pid}_{n}");
        // Whatever happens below, the guard cleans up what was made.
        let mut guard = Cleanup {
            name: name.clone(),
            role: role.clone(),
            armed: true,
        };
        let server = connect(&admin_config("postgres")).await;
        // A leftover of a killed run that had the same pid would make CREATE fail. Two calls:
        // neither statement may run inside a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            server
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
        }
        drop(server);
        let admin = connect(&admin_config(&name)).await;
        let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_path("migrations"))
            .expect("migrations/ exists")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no migrations found");
        for file in files {
            let sql = std::fs::read_to_string(&file).expect("migration is readable");
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {}", file.display(), db_message(&e)));
        }
        let key = IdentityKey::generate().expect("random key");
        let password = IdentityKey::generate().expect("random password").to_hex();
        let options = InstallOptions {
            agent_role: role.clone(),
            agent_password: Some(password.clone()),
        };
        install(&admin, &policy(), &key, &options)
            .await
            .unwrap_or_else(|e| panic!("install into {name}: {e}"));
        guard.armed = false;
        TestDb {
            name,
            role,
            password,
            key,
            admin,
            torn_down: false,
        }
    }

    /// Connection settings of the serving role for this database.
    pub fn agent_config(&self) -> Config {
        self.agent_config_at(PORT)
    }

    /// The same on another port (`Config::port` appends a port rather than replacing it).
    pub fn agent_config_at(&self, port: u16) -> Config {
        let mut config = Config::new();
        config
            .host(HOST)
            .port(port)
            .user(&self.role)
            .password(&self.password)
            .dbname(&self.name)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// A direct connection as the serving role (no gateway in between).
    pub async fn agent(&self) -> Client {
        connect(&self.agent_config()).await
    }

    /// The server's configuration with the tests' defaults: no API key, 1000 rows, 5 s timeout.
    pub fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            database: self.agent_config(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: ApiKeys::default(),
            policies: policies_dir(),
            key: self.key.clone(),
            max_rows: 1000,
            execute: ExecuteConfig {
                statement_timeout: Duration::from_secs(5),
                pool_wait: Duration::from_secs(5),
                pool_size: 4,
            },
            limits: Limits::default(),
            insecure: false,
            jwt: Default::default(),
            audit: Default::default(),
        }
    }

    pub async fn state_with(&self, config: &ServeConfig) -> Arc<AppState> {
        prepare(config)
            .await
            .unwrap_or_else(|e| panic!("prepare refused the test configuration: {e}"))
    }

    pub async fn router_with(&self, config: &ServeConfig) -> Router {
        rowgate::http::router(self.state_with(config).await)
    }

    /// The router with [`TestDb::serve_config`].
    pub async fn router(&self) -> Router {
        self.router_with(&self.serve_config()).await
    }

    /// Runs `sql` as the superuser and returns the rows as the gateway would encode them, and
    /// as a client reads them: through JSON text (serde_json's default float parser may be one
    /// ulp off the exact value, so both sides of a comparison must take the same path).
    pub async fn admin_rows(&self, sql: &str) -> Vec<Value> {
        let rows = self
            .admin
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("superuser query failed: {}\n{sql}", db_message(&e)));
        rowgate::encode::encode_rows(&rows)
            .expect("superuser rows encode")
            .into_iter()
            .map(|r| {
                let text = serde_json::to_string(&r).expect("row serializes");
                serde_json::from_str(&text).expect("row parses")
            })
            .collect()
    }

    /// One `i64` from the superuser.
    pub async fn admin_i64(&self, sql: &str) -> i64 {
        let row = self
            .admin
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("superuser query failed: {}\n{sql}", db_message(&e)));
        row.get(0)
    }

    /// Drops the database and the role now (instead of in `Drop`).
    pub async fn teardown(mut self) {
        self.torn_down = true;
        cleanup(self.name.clone(), self.role.clone()).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.torn_down {
            cleanup_blocking(self.name.clone(), self.role.clone());
        }
    }
}

/// Cleans up after a `TestDb::new` that did not finish.
struct Cleanup {
    name: String,
    role: String,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            cleanup_blocking(self.name.clone(), self.role.clone());
        }
    }
}

/// Drop runs inside the test's runtime, which cannot block on itself: do the work on a thread
/// with a runtime of its own and wait for it.
fn cleanup_blocking(name: String, role: String) {
    let done = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for the clean-up")
            .block_on(cleanup(name, role))
    })
    .join();
    if done.is_err() && !std::thread::panicking() {
        panic!("could not clean up a test database");
    }
}

/// `DROP OWNED BY` inside the database (the role's grants there), then the database (its
/// connections with it), then the role.
async fn cleanup(name: String, role: String) {
    let server = connect(&admin_config("postgres")).await;
    let role_ident = format!("\"{role}\"");
    // Sessions of the role hold locks that DROP OWNED would wait for.
    let _ = server
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await;
    let exists: bool = server
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(false);
    let role_exists: bool = server
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(false);
    if exists && role_exists {
        if let Ok((client, connection)) = admin_config(&name).connect(NoTls).await {
            let task = tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!(
                    "SET lock_timeout = '5s'; DROP OWNED BY {role_ident}"
                ))
                .await;
            drop(client);
            let _ = task.await;
        }
    }
    let mut problems = Vec::new();
    if let Err(e) = server
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
    {
        problems.push(format!("DROP DATABASE {name}: {}", db_message(&e)));
    }
    // The views' owner (`<role>_owner`) and roles a test made for itself (`<role>_<tag>`),
    // after the database: their only objects and grants were there. By name, so that a test
    // that failed before dropping its own roles leaves none behind either.
    let mut roles = vec![role.clone()];
    if let Ok(rows) = server
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1 || '_')",
            &[&role],
        )
        .await
    {
        roles.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    for role in roles {
        if let Err(e) = server
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .await
        {
            problems.push(format!("DROP ROLE {role}: {}", db_message(&e)));
        }
    }
    if !problems.is_empty() && !std::thread::panicking() {
        panic!("clean-up failed: {}", problems.join("; "));
    }
}

// ---------------------------------------------------------------------------------------------
// Calling the router
// ---------------------------------------------------------------------------------------------

/// An answer: status, headers, the body as text, and as JSON (`Value::Null` if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Asserts a 200 and returns the JSON body.
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "expected 200, got {self:#?}");
        &self.json
    }

    /// Asserts an error answer: the status, the code, and the contract's shape
    /// `{"error": {"code", "message", "hint"}}` with a message and a hint.
    pub fn error(&self, status: StatusCode, code: &str) -> &Value {
        assert_eq!(
            (self.status, self.code()),
            (status, Some(code)),
            "expected {status} {code}, got {self:#?}"
        );
        let error = &self.json["error"];
        let object = error.as_object().expect("error is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["code", "hint", "message"], "error shape: {self:#?}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "the error has a message: {self:#?}"
        );
        assert!(
            error["hint"].as_str().is_some_and(|m| !m.is_empty()),
            "the error has a hint: {self:#?}"
        );
        error
    }

    pub fn code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }

    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }

    pub fn hint(&self) -> &str {
        self.json["error"]["hint"].as_str().unwrap_or("")
    }

    /// The rows of a query answer.
    pub fn rows(&self) -> &Vec<Value> {
        self.ok()["rows"].as_array().expect("rows is an array")
    }
}

/// The longest any single call may take before the test calls it a hang.
pub const CALL_LIMIT: Duration = Duration::from_secs(30);

/// Sends one request through the router. Never a 500, never a hang.
pub async fn call(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::builder().method(method.clone()).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.into()).expect("request builds");
    let response = tokio::time::timeout(CALL_LIMIT, router.clone().oneshot(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} did not answer within {CALL_LIMIT:?}"))
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body can be read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let reply = Reply {
        status,
        headers,
        text,
        json,
    };
    assert!(
        !reply.status.is_server_error()
            || reply.status == StatusCode::SERVICE_UNAVAILABLE
            || reply.status == StatusCode::GATEWAY_TIMEOUT,
        "{method} {path} answered {reply:#?}"
    );
    assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply
}

/// `POST /v1/query` with a JSON body.
pub async fn post_query(router: &Router, body: &Value) -> Reply {
    call(
        router,
        Method::POST,
        "/v1/query",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Runs `sql` for `user` through the gateway.
pub async fn query(router: &Router, user: &str, sql: &str) -> Reply {
    post_query(router, &serde_json::json!({"user_id": user, "sql": sql})).await
}

/// Runs `sql` for `user` and returns the rows, asserting a 200.
pub async fn rows(router: &Router, user: &str, sql: &str) -> Vec<Value> {
    let reply = query(router, user, sql).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{user}: {sql}\nanswered {reply:#?}"
    );
    reply.rows().clone()
}

pub async fn get(router: &Router, path: &str) -> Reply {
    call(router, Method::GET, path, &[], Body::empty()).await
}

pub fn content_type(reply: &Reply) -> &str {
    reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The hand-written rule of each demo table for `user` (DESIGN.md, "Demo database"), as a
/// derived table over the base table with the view's columns in the view's order: what the
/// gateway must return is compared with this, run as the superuser.
pub fn reference_table(table: &str, user: &str) -> String {
    let u = lit(user);
    let roles = format!("SELECT role FROM public.user_roles WHERE user_id = {u}");
    let departments =
        format!("SELECT department FROM public.permissions WHERE allowed_role IN ({roles})");
    let folders = format!("SELECT folder_id FROM public.folder_access WHERE role IN ({roles})");
    let (columns, rule) = match table {
        "invoices" | "transactions" => ("*", format!("department IN ({departments})")),
        // The policy hides customers.email.
        "customers" => (
            "id, name, department, active, created_at",
            format!("department IN ({departments})"),
        ),
        "orders" => ("*", format!("user_id = {u}")),
        "order_items" => (
            "*",
            format!("order_id IN (SELECT id FROM public.orders WHERE user_id = {u})"),
        ),
        "folders" => ("*", format!("id IN ({folders})")),
        "documents" => ("*", format!("folder_id IN ({folders})")),
        "blocks" => (
            "*",
            format!(
                "document_id IN (SELECT d.id FROM public.documents d WHERE d.folder_id IN ({folders}))"
            ),
        ),
        "items" => (
            "*",
            format!(
                "tenant_id = (SELECT tenant_id FROM public.app_users WHERE id = {u}) \
                 AND id IN (SELECT item_id FROM public.item_users WHERE user_id = {u})"
            ),
        ),
        other => panic!("no reference rule for {other}"),
    };
    format!("(SELECT {columns} FROM public.{table} WHERE {rule})")
}
