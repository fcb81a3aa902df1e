//! Stage "execute": run a rewritten query for one caller, inside the database's own fence.
//!
//! Each query gets a pooled connection (as the serving role), a READ ONLY transaction, the
//! signed caller id set locally, and is always rolled back. The connection's settings
//! (`statement_timeout`, `search_path`, `standard_conforming_strings`) are pinned when it is
//! opened, as startup options: because every request's transaction is rolled back, a setting
//! changed inside one (even a session-wide `set_config`) is undone before the next request, so
//! pinning them once is as strong as `SET LOCAL` per request, and saves three statements each
//! time. A connection whose request did not finish cleanly is closed, never reused.
//!
//! The caller check (`exists`) runs in the same round trip as the setup, pipelined with the
//! statement's preparation, so an unknown user costs nothing more than a known one. Rows are
//! read until `max_rows + 1`, so `truncated` is exact; what follows is discarded unread (the
//! statement timeout bounds how long the server produces it).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use std::future::Future;
use std::task::Poll;

use futures_util::future::maybe_done;
use futures_util::TryStreamExt;
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;

use crate::caller::IdentityKey;
use crate::refusal::{ErrorCode, Refusal};
use crate::reload::{version_from_comment, OutOfStep};

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("no such user")]
    UnknownUser,
    #[error("PostgreSQL refused the query: {message}")]
    QueryFailed { message: String, sqlstate: String },
    #[error("the query ran longer than the statement timeout ({0:?}) and was cancelled")]
    Timeout(Duration),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    OutOfStep(#[from] OutOfStep),
}

impl Refusal for ExecuteError {
    fn code(&self) -> ErrorCode {
        match self {
            ExecuteError::UnknownUser => ErrorCode::UnknownUser,
            ExecuteError::QueryFailed { .. } => ErrorCode::QueryFailed,
            ExecuteError::Timeout(_) => ErrorCode::QueryTimeout,
            ExecuteError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
            ExecuteError::OutOfStep(e) => e.code(),
        }
    }

    fn hint(&self) -> String {
        match self {
            ExecuteError::UnknownUser => {
                "The application must send the id of a known user; the agent cannot fix this."
                    .into()
            }
            ExecuteError::QueryFailed { sqlstate, .. } => query_failed_hint(sqlstate).into(),
            ExecuteError::Timeout(_) => {
                "Make the query cheaper: filter earlier, aggregate, or add LIMIT.".into()
            }
            ExecuteError::Unavailable(_) => {
                "Try again later; the gateway reconnects by itself when the database is back."
                    .into()
            }
            ExecuteError::OutOfStep(e) => e.hint(),
        }
    }
}

/// What to change, for the errors model-written SQL meets most (the BIRD predictions that
/// PostgreSQL rejects, CORPUS.md): PostgreSQL's message says what is wrong, this says how to fix
/// it. The SQLSTATE decides, never the message's text, which may quote a value.
fn query_failed_hint(sqlstate: &str) -> &'static str {
    match sqlstate {
        "42702" => "Qualify the column with its table's alias (t.column): more than one table in FROM has a column of that name.",
        "42703" => "Use a column that exists: GET /v1/schema lists each table's columns; a column of another table needs that table joined and its alias written before the column.",
        "42P01" => "Every alias the query uses must be defined in its FROM clause: add the table (FROM or JOIN) or use the alias it was given.",
        "42803" => "Every selected column outside an aggregate must be in GROUP BY: add it there or wrap it in an aggregate (min, max, count). Aggregates go in HAVING, not WHERE, and cannot be nested (aggregate in a subquery first).",
        "42883" | "42804" | "42846" => "A function or operator got a value of a type it does not take: cast it to the type meant (column::date, column::numeric, column::text). GET /v1/schema shows each column's type.",
        "22P02" | "22007" | "22008" => "A value could not be read as the type asked for: write literals in PostgreSQL's format (dates as 'YYYY-MM-DD', numbers without quotes) or filter out the values that do not convert.",
        "22012" => "Guard the divisor: write x / NULLIF(y, 0), which gives NULL instead of failing.",
        "42601" => "Fix the syntax as PostgreSQL's message says (a subquery in FROM needs an alias; UNION branches need the same number of columns).",
        _ => "Fix the query as PostgreSQL's message says; GET /v1/schema lists the tables and columns.",
    }
}

fn classify(error: tokio_postgres::Error, timeout: Duration) -> ExecuteError {
    if error.is_closed() {
        return ExecuteError::Unavailable(error.to_string());
    }
    match error.as_db_error() {
        // The server going away (shutdown, terminated backend, connection trouble, out of
        // resources) is not the query's fault.
        Some(db)
            if matches!(db.severity(), "FATAL" | "PANIC")
                || ["08", "53", "57P"]
                    .iter()
                    .any(|p| db.code().code().starts_with(p)) =>
        {
            ExecuteError::Unavailable(db.message().to_string())
        }
        Some(db) if *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED => {
            ExecuteError::Timeout(timeout)
        }
        // The message only: DETAIL and HINT may quote row values.
        Some(db) => ExecuteError::QueryFailed {
            message: db.message().to_string(),
            sqlstate: db.code().code().to_string(),
        },
        None => ExecuteError::Unavailable(error.to_string()),
    }
}

fn pool_error(error: PoolError) -> ExecuteError {
    match error {
        PoolError::Timeout(_) => {
            ExecuteError::Unavailable("no database connection became free in time".into())
        }
        other => ExecuteError::Unavailable(other.to_string()),
    }
}

#[derive(Debug, Clone)]
pub struct ExecuteConfig {
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection before `database_unavailable`.
    pub pool_wait: Duration,
    pub pool_size: usize,
}

impl Default for ExecuteConfig {
    fn default() -> Self {
        ExecuteConfig {
            statement_timeout: Duration::from_secs(5),
            pool_wait: Duration::from_secs(5),
            pool_size: 16,
        }
    }
}

/// The result of a query: typed columns and at most `max_rows` rows.
pub struct Output {
    /// The prepared statement: its `columns()` name and type the result.
    pub statement: tokio_postgres::Statement,
    pub rows: Vec<tokio_postgres::Row>,
    pub truncated: bool,
}

#[derive(Clone)]
pub struct Executor {
    pool: Pool,
    key: IdentityKey,
    config: ExecuteConfig,
}

impl Executor {
    pub fn new(
        pg: tokio_postgres::Config,
        key: IdentityKey,
        config: ExecuteConfig,
    ) -> Result<Executor, String> {
        let pg = pinned(pg, config.statement_timeout);
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_wait))
            .create_timeout(Some(config.pool_wait))
            .recycle_timeout(Some(config.pool_wait))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        Ok(Executor { pool, key, config })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `sql` (already rewritten under the policy of version `policy_version`) for
    /// `user_id`, returning at most `max_rows` rows.
    pub async fn run(
        &self,
        user_id: &str,
        policy_version: &str,
        sql: &str,
        max_rows: usize,
    ) -> Result<Output, ExecuteError> {
        // A hard stop a little after the server's own timeout, in case the server never answers.
        let limit = self.config.statement_timeout + Duration::from_secs(2);
        let lease = Lease::new(self.pool.get().await.map_err(pool_error)?);
        let result = tokio::time::timeout(
            limit,
            self.run_on(lease.client()?, user_id, policy_version, sql, max_rows),
        )
        .await;
        match result {
            // A broken connection must not go back to the pool (the lease closes it).
            Ok(Err(error @ ExecuteError::Unavailable(_))) => Err(error),
            Ok(Ok((output, Ended::RolledBack))) => {
                lease.release();
                Ok(output)
            }
            Ok(Ok((output, Ended::Open))) => {
                lease.roll_back();
                Ok(output)
            }
            Ok(Err(error)) => {
                lease.roll_back();
                Err(error)
            }
            // The connection is mid-query: never hand it to another request.
            Err(_) => Err(ExecuteError::Timeout(self.config.statement_timeout)),
        }
    }

    /// One round trip for a statement this connection has prepared before, two otherwise (the
    /// preparation first: cached per connection, so a repeated query skips parsing and
    /// planning; the plan does not depend on the caller, as the views read the id at execution
    /// time), and one more on a connection's first request, which prepares [`ENTER`]. The round trip carries, pipelined: the fence, the signed caller (as a bind
    /// parameter, so it never appears in `pg_stat_activity`, where other sessions of the
    /// serving role could copy it) with the caller and version checks, and the query itself.
    ///
    /// The query is sent before the checks are answered, so for an unknown caller or a stale
    /// policy it may run; its rows are then never read, and the transaction is rolled back.
    /// When the caller check raises (no valid caller), the transaction is aborted and the query
    /// does not run at all.
    async fn run_on(
        &self,
        client: &deadpool_postgres::Object,
        user_id: &str,
        policy_version: &str,
        sql: &str,
        max_rows: usize,
    ) -> Result<(Output, Ended), ExecuteError> {
        let timeout = self.config.statement_timeout;
        let err = |e| classify(e, timeout);
        let signed = self.key.sign(user_id);
        let enter = prepare_enter(client).await.map_err(err)?;
        let prepared = client.prepare_cached(sql).await;
        if client.statement_cache.size() > STATEMENT_CACHE_LIMIT {
            // Agents write endless variations; keep the server-side statements bounded.
            client.statement_cache.clear();
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&signed];
        let statement = match prepared {
            Ok(statement) => statement,
            Err(error) => {
                // Caller problems come first, as for any other query.
                let (fence, identity) =
                    tokio::join!(client.batch_execute(BEGIN), client.query(&enter, &params));
                fence.map_err(err)?;
                entered(&identity.map_err(err)?, policy_version)?;
                return Err(err(error));
            }
        };
        let mut rollback = std::pin::pin!(maybe_done(client.batch_execute("ROLLBACK")));
        let (fence, identity, stream, ()) = tokio::join!(
            client.batch_execute(BEGIN),
            client.query(&enter, &params),
            client.query_raw(&statement, std::iter::empty::<&str>()),
            // Polled once, to queue it behind the query in the same write: the transaction ends
            // as soon as the query has run, without a round trip of its own.
            std::future::poll_fn(|cx| {
                let _ = rollback.as_mut().poll(cx);
                Poll::Ready(())
            }),
        );
        fence.map_err(err)?;
        entered(&identity.map_err(err)?, policy_version)?;
        let stream = stream.map_err(err)?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(row) = stream.try_next().await.map_err(err)? {
            if rows.len() == max_rows {
                // One row past the limit proves truncation; the rest is discarded unread.
                truncated = true;
                break;
            }
            rows.push(row);
        }
        // After a truncated read the server is still sending rows, and the rollback's answer
        // comes only after them: leave it to the lease, off the request's path.
        let ended = if truncated {
            Ended::Open
        } else {
            rollback.as_mut().await;
            match rollback.as_mut().take_output() {
                Some(Ok(())) => Ended::RolledBack,
                _ => Ended::Open,
            }
        };
        let output = Output {
            statement,
            rows,
            truncated,
        };
        Ok((output, ended))
    }

    /// For a dry run: whether the caller exists, and its attribute values as the views see them.
    pub async fn attributes(
        &self,
        user_id: &str,
        policy_version: &str,
    ) -> Result<serde_json::Value, ExecuteError> {
        let timeout = self.config.statement_timeout;
        let err = |e| classify(e, timeout);
        let lease = Lease::new(self.pool.get().await.map_err(pool_error)?);
        let client = lease.client()?;
        let signed = self.key.sign(user_id);
        let enter = prepare_enter(client).await.map_err(err)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&signed];
        let (fence, identity, answer) = tokio::join!(
            client.batch_execute(BEGIN),
            client.query(&enter, &params),
            client.query_typed("SELECT rowgate.caller_attributes()::text", &[]),
        );
        let checked = fence.and_then(|()| Ok((identity?, answer?))).map_err(err);
        if !matches!(checked, Err(ExecuteError::Unavailable(_))) {
            lease.roll_back();
        }
        let (identity, answer) = checked?;
        entered(&identity, policy_version)?;
        let attributes: Option<String> = answer.first().and_then(|row| row.get(0));
        Ok(attributes
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Readiness: the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), ExecuteError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| classify(e, self.config.statement_timeout))?;
        Ok(())
    }
}

/// Prepared statements kept per connection before the cache is emptied.
const STATEMENT_CACHE_LIMIT: usize = 256;

const BEGIN: &str = "BEGIN TRANSACTION READ ONLY";

/// Sets the signed caller for the transaction and checks it, in one statement. The target list
/// is evaluated in order, so `caller_exists()` sees the caller just set; were it ever evaluated
/// first, `caller_id()` would raise (no caller yet) and the request fail: closed, not open.
/// The third column is the policy version `rowgate install` stamped on schema `rowgate`, read
/// in the request's own snapshot: a query never runs against views of another policy than the
/// one it was rewritten under, not even in the seconds before the reload poll notices.
/// (`obj_description()` would say the same, but is a SQL function planned on every call.)
const ENTER: &str = "SELECT pg_catalog.set_config('rowgate.caller', $1, true), \
     rowgate.caller_exists(), \
     (SELECT d.description FROM pg_catalog.pg_description AS d \
      WHERE d.objoid = 'rowgate'::pg_catalog.regnamespace \
        AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objsubid = 0)";

/// [`ENTER`], prepared once per connection (a round trip then, none after). Prepared before
/// the request's messages are sent, so that the server runs them in the order they are sent:
/// BEGIN, ENTER, then the query's preparation, whose failure must not pre-empt the caller check.
async fn prepare_enter(
    client: &deadpool_postgres::Object,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    client.prepare_typed_cached(ENTER, &[Type::TEXT]).await
}

/// What [`ENTER`] answered: the installed policy must be the request's, and the caller known.
fn entered(rows: &[tokio_postgres::Row], policy_version: &str) -> Result<(), ExecuteError> {
    let Some(row) = rows.first() else {
        return Err(ExecuteError::UnknownUser);
    };
    let installed = version_from_comment(row.get::<_, Option<&str>>(2));
    if installed.as_deref() != Some(policy_version) {
        return Err(OutOfStep {
            loaded: policy_version.to_string(),
            installed,
        }
        .into());
    }
    if !row.get::<_, bool>(1) {
        return Err(ExecuteError::UnknownUser);
    }
    Ok(())
}

/// The connection's configuration with rowgate's settings appended to any startup options the
/// operator gave (later `-c` wins). `standard_conforming_strings` because the printed SQL
/// assumes it: with it off, a printed `'a\'` would end a string somewhere else than the
/// rewriter thinks. `search_path` so no schema the serving role could create objects in (it has
/// none; defense in depth) comes before `pg_catalog`.
fn pinned(mut pg: tokio_postgres::Config, timeout: Duration) -> tokio_postgres::Config {
    let ours = format!(
        "-c statement_timeout={} -c search_path=pg_catalog,public \
         -c standard_conforming_strings=on -c default_transaction_read_only=on",
        timeout.as_millis().max(1)
    );
    let options = match pg.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    pg.options(&options);
    pg
}

/// Whether a request's transaction is known to be over.
enum Ended {
    RolledBack,
    Open,
}

/// A pooled connection lent to one request. Unless the request hands it back through
/// [`Lease::roll_back`], dropping the lease closes the connection: a request cancelled by its
/// client, timed out or broken leaves a transaction (or a running query) behind, which must
/// never meet the next request.
struct Lease {
    object: Option<deadpool_postgres::Object>,
}

impl Lease {
    fn new(object: deadpool_postgres::Object) -> Lease {
        Lease {
            object: Some(object),
        }
    }

    /// The connection. Only `roll_back` and `drop` take it, and both end the lease, so this
    /// cannot fail in practice; it answers an error rather than panic all the same.
    fn client(&self) -> Result<&deadpool_postgres::Object, ExecuteError> {
        self.object
            .as_ref()
            .ok_or_else(|| ExecuteError::Unavailable("the connection was already returned".into()))
    }

    /// Hands the connection back to the pool: its transaction is known to be over.
    fn release(mut self) {
        drop(self.object.take());
    }

    /// Rolls back off the request's path: the answer does not wait for it, and the connection
    /// returns to the pool only once the transaction is gone (or is closed if that fails).
    fn roll_back(mut self) {
        if let Some(object) = self.object.take() {
            tokio::spawn(async move {
                if object.batch_execute("ROLLBACK").await.is_err() {
                    let _ = deadpool_postgres::Object::take(object);
                }
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            let _ = deadpool_postgres::Object::take(object);
        }
    }
}
