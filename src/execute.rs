//! Stage "execute": run a rewritten query for one caller, inside the database's own fence.
//!
//! Each query gets a pooled connection (as the serving role), a READ ONLY transaction with a
//! server-side `statement_timeout`, a pinned `search_path` and the signed caller id set
//! locally, and is always rolled back. The caller check (`exists`) runs in the same round trip
//! as the setup, pipelined with the statement's preparation, so an unknown user costs nothing
//! more than a known one. Rows are fetched through a portal, `max_rows + 1` at most, so
//! `truncated` is exact and a huge result is never transferred.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::caller::{IdentityKey, SETTING};
use crate::refusal::{ErrorCode, Refusal};

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
}

impl Refusal for ExecuteError {
    fn code(&self) -> ErrorCode {
        match self {
            ExecuteError::UnknownUser => ErrorCode::UnknownUser,
            ExecuteError::QueryFailed { .. } => ErrorCode::QueryFailed,
            ExecuteError::Timeout(_) => ErrorCode::QueryTimeout,
            ExecuteError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
        }
    }

    fn hint(&self) -> String {
        match self {
            ExecuteError::UnknownUser => {
                "The application must send the id of a known user; the agent cannot fix this.".into()
            }
            ExecuteError::QueryFailed { .. } => {
                "Fix the query as PostgreSQL's message says; GET /v1/schema lists the tables and columns.".into()
            }
            ExecuteError::Timeout(_) => {
                "Make the query cheaper: filter earlier, aggregate, or add LIMIT.".into()
            }
            ExecuteError::Unavailable(_) => {
                "Try again later; the gateway reconnects by itself when the database is back.".into()
            }
        }
    }
}

fn classify(error: tokio_postgres::Error, timeout: Duration) -> ExecuteError {
    match error.as_db_error() {
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

    /// The setup batch: read-only fence, timeout, pinned names, the signed caller, and the
    /// caller check, in one simple-protocol message. Every value in it is ours (digits, hex).
    fn setup_sql(&self, user_id: &str, then: &str) -> String {
        format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL search_path = pg_catalog, public; \
             SET LOCAL {SETTING} = '{}'; {then}",
            self.config.statement_timeout.as_millis().max(1),
            self.key.sign(user_id),
        )
    }

    /// Runs `sql` (already rewritten) for `user_id`, returning at most `max_rows` rows.
    pub async fn run(
        &self,
        user_id: &str,
        sql: &str,
        max_rows: usize,
    ) -> Result<Output, ExecuteError> {
        // A hard stop a little after the server's own timeout, in case the server never answers.
        let limit = self.config.statement_timeout + Duration::from_secs(2);
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let result =
            tokio::time::timeout(limit, self.run_on(&mut client, user_id, sql, max_rows)).await;
        match result {
            Ok(output) => output,
            Err(_) => {
                // The connection is mid-query: never hand it to another request.
                let _ = deadpool_postgres::Object::take(client);
                Err(ExecuteError::Timeout(self.config.statement_timeout))
            }
        }
    }

    async fn run_on(
        &self,
        client: &mut deadpool_postgres::Object,
        user_id: &str,
        sql: &str,
        max_rows: usize,
    ) -> Result<Output, ExecuteError> {
        let timeout = self.config.statement_timeout;
        let err = |e| classify(e, timeout);
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(err)?;
        let setup = self.setup_sql(user_id, "SELECT rowgate.caller_exists()");
        // Pipelined: both requests leave before either answer comes back.
        let (setup, statement) = tokio::join!(tx.simple_query(&setup), tx.prepare(sql));
        if !caller_exists(&setup.map_err(err)?) {
            let _ = tx.rollback().await;
            return Err(ExecuteError::UnknownUser);
        }
        let statement = statement.map_err(err)?;
        let portal = tx.bind(&statement, &[]).await.map_err(err)?;
        let rows = tx
            .query_portal(&portal, (max_rows as i32).saturating_add(1))
            .await
            .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let truncated = rows.len() > max_rows;
        let mut rows = rows;
        rows.truncate(max_rows);
        Ok(Output {
            statement,
            rows,
            truncated,
        })
    }

    /// For a dry run: whether the caller exists, and its attribute values as the views see them.
    pub async fn attributes(&self, user_id: &str) -> Result<serde_json::Value, ExecuteError> {
        let timeout = self.config.statement_timeout;
        let err = |e| classify(e, timeout);
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(err)?;
        let setup = self.setup_sql(
            user_id,
            "SELECT rowgate.caller_exists(), rowgate.caller_attributes()::text",
        );
        let messages = tx.simple_query(&setup).await.map_err(err)?;
        let _ = tx.rollback().await;
        let row = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let Some(row) = row else {
            return Err(ExecuteError::UnknownUser);
        };
        if row.get(0) != Some("t") {
            return Err(ExecuteError::UnknownUser);
        }
        Ok(row
            .get(1)
            .and_then(|t| serde_json::from_str(t).ok())
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

fn caller_exists(messages: &[SimpleQueryMessage]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("t")))
}
