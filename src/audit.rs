//! The audit trail: one JSON line per decision, written before the query runs, and one line for
//! its outcome, to stdout or to an append-only file. Never the result data, never a literal of
//! the query: queries are recorded by a fingerprint, the SHA-256 of the query with every
//! literal replaced by `?`.
//!
//! Writes happen on a dedicated thread fed by a bounded channel, so a slow disk never blocks the
//! async runtime; a request waits (asynchronously) for its line to be written. The trail is
//! fail-closed: a decision line that cannot be written refuses the query with
//! `audit_unavailable` before it runs, and an outcome line that cannot be written withholds the
//! rows, so no answer carrying data leaves without both lines on record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlparser::ast::{Value, ValueWithSpan, VisitMut, VisitorMut};
use tokio::sync::{mpsc, oneshot};

use crate::parse::{self, Limits};
use crate::refusal::{ErrorCode, Refusal};

/// Lines waiting for the writer. Past this, requests wait for room (backpressure, not loss).
const QUEUE: usize = 1024;

/// Where the trail goes: `off`, `stdout`, or a file path (`ROWGATE_AUDIT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuditSink {
    #[default]
    Off,
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for AuditSink {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<AuditSink, Self::Err> {
        Ok(match text.trim() {
            "off" | "" => AuditSink::Off,
            "stdout" | "-" => AuditSink::Stdout,
            path => AuditSink::File(PathBuf::from(path)),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot start the audit writer: {0}")]
    Thread(std::io::Error),
    #[error("the audit trail cannot be written ({0}), so the query was not answered")]
    Write(String),
    #[error("the audit writer has stopped, so the query was not answered")]
    Closed,
}

impl Refusal for AuditError {
    fn code(&self) -> ErrorCode {
        ErrorCode::AuditUnavailable
    }

    fn hint(&self) -> String {
        "Nothing is wrong with the query: retry later. The operator must make the audit sink (ROWGATE_AUDIT) writable again.".into()
    }
}

struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A handle on the writer thread; cheap to clone. `Audit::off()` records nothing.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    queue: Option<mpsc::Sender<Job>>,
}

impl Audit {
    pub fn off() -> Audit {
        Audit { queue: None }
    }

    /// Opens the sink (a file now, so a bad path stops start-up) and starts the writer thread,
    /// which ends when the last handle is dropped.
    pub fn start(sink: &AuditSink) -> Result<Audit, AuditError> {
        let mut writer = match sink {
            AuditSink::Off => return Ok(Audit::off()),
            AuditSink::Stdout => Writer::Stdout,
            AuditSink::File(path) => Writer::File(AppendFile::open(path)?),
        };
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("rowgate-audit".into())
            .spawn(move || {
                while let Some(job) = jobs.blocking_recv() {
                    let written = writer.write(&job.line).map_err(|e| e.to_string());
                    if let Err(error) = &written {
                        tracing::error!(%error, "audit line not written");
                    }
                    let _ = job.done.send(written);
                }
            })
            .map_err(AuditError::Thread)?;
        Ok(Audit { queue: Some(queue) })
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Writes one record as a line and waits until it is written (not fsynced: the line is
    /// in the kernel's hands, which survives a crash of rowgate but not of the machine).
    pub async fn record<T: Serialize>(&self, record: &T) -> Result<(), AuditError> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError::Write(e.to_string()))?;
        line.push(b'\n');
        let (done, written) = oneshot::channel();
        queue
            .send(Job { line, done })
            .await
            .map_err(|_| AuditError::Closed)?;
        written
            .await
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Write)
    }
}

enum Writer {
    Stdout,
    File(AppendFile),
}

impl Writer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            // One locked write per line, so log lines on stdout never interleave inside it.
            Writer::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Writer::File(file) => file.write(line),
        }
    }
}

/// A file opened with O_APPEND, reopened when it was moved away (log rotation by rename), so
/// rotation needs no signal and loses no line.
struct AppendFile {
    path: PathBuf,
    file: File,
}

impl AppendFile {
    fn open(path: &Path) -> Result<AppendFile, AuditError> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|error| AuditError::Open {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(AppendFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.moved() {
            if let Ok(reopened) = AppendFile::open(&self.path) {
                *self = reopened;
            }
        }
        self.file.write_all(line)
    }

    #[cfg(unix)]
    fn moved(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(now), Ok(open)) => now.ino() != open.ino() || now.dev() != open.dev(),
            _ => true,
        }
    }

    #[cfg(not(unix))]
    fn moved(&self) -> bool {
        !self.path.exists()
    }
}

/// The rule that decided a table's rows (the policy's own text, never the agent's).
#[derive(Debug, Clone, Serialize)]
pub struct AppliedRule {
    pub table: String,
    pub rule: String,
}

/// Allowed or refused, with what decided it. An allowed decision is written before the query
/// runs; a refused one is the request's only line.
#[derive(Debug, Serialize)]
pub struct Decision<'a> {
    /// Always `"decision"`: tells the two kinds of line apart (and from log lines on stdout).
    pub audit: &'static str,
    pub decision_id: &'a str,
    pub time: String,
    /// `query` for `/v1/query`, the MCP tool's name for `/mcp`.
    pub endpoint: &'a str,
    /// The authenticated caller; `null` when the request was refused before that was known.
    pub caller: Option<&'a str>,
    pub policy_version: &'a str,
    /// See [`fingerprint`]; `null` when the SQL did not parse or was never read.
    pub fingerprint: Option<&'a str>,
    pub dry_run: bool,
    pub tables: &'a [AppliedRule],
    /// `allow` or `refuse`.
    pub decision: &'static str,
    pub code: Option<ErrorCode>,
}

/// What became of an allowed decision.
#[derive(Debug, Serialize)]
pub struct Outcome<'a> {
    /// Always `"outcome"`.
    pub audit: &'static str,
    pub decision_id: &'a str,
    pub time: String,
    /// `ok` or `error`.
    pub outcome: &'static str,
    pub code: Option<ErrorCode>,
    pub rows: usize,
    pub truncated: bool,
    pub duration_ms: f64,
}

/// The current time as the trail writes it: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The SHA-256 (hex) of the query with every literal replaced by `?`, so that the same query
/// shape with other values has the same fingerprint and no value reaches the trail. `None`
/// when the SQL does not parse: then nothing about its text is recorded (a hash of raw text
/// could be confirmed by guessing the values in it).
pub fn fingerprint(sql: &str, limits: &Limits) -> Option<String> {
    let mut statements = parse::parse(sql, limits).ok()?;
    let _ = statements.visit(&mut Literals);
    let text = statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Some(hex::encode(Sha256::digest(text.as_bytes())))
}

/// Replaces every literal (strings of every quoting, numbers, booleans) by a placeholder.
struct Literals;

impl VisitorMut for Literals {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(value.value, Value::Null | Value::Placeholder(_)) {
            value.value = Value::Placeholder("?".into());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(sql: &str) -> String {
        let mut statements = parse::parse(sql, &Limits::default()).unwrap();
        let _ = statements.visit(&mut Literals);
        statements[0].to_string()
    }

    #[test]
    fn literals_of_every_kind_become_placeholders() {
        let sql = "SELECT 'secret', E'esc\\n', $$dollar$$, 42, 1.5e3, true, DATE '2024-01-02', \
                   INTERVAL '3 days', x'ff', NULL, $1 FROM t WHERE email = 'a@b.example' \
                   AND salary > 123456 AND name LIKE 'x%' ESCAPE '!' LIMIT 10 OFFSET 5";
        let printed = print(sql);
        for literal in [
            "secret", "esc", "dollar", "42", "1.5", "true", "2024", "3 days", "ff", "a@b",
            "123456", "x%", "'!'", "10", "5",
        ] {
            assert!(!printed.contains(literal), "{literal} survived: {printed}");
        }
        assert!(
            printed.contains("NULL") && printed.contains("$1"),
            "{printed}"
        );
        assert!(printed.contains("email = ?"), "{printed}");
    }

    #[test]
    fn fingerprints_ignore_values_but_not_shape() {
        let limits = Limits::default();
        let a = fingerprint("SELECT * FROM t WHERE salary = 100000", &limits);
        let b = fingerprint("select *  from t where salary = 5", &limits);
        let c = fingerprint("SELECT * FROM t WHERE bonus = 100000", &limits);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_deref().map(str::len), Some(64));
        assert_eq!(fingerprint("SELECT FROM WHERE 'x", &limits), None);
    }

    #[test]
    fn sinks_parse() {
        assert_eq!("off".parse(), Ok(AuditSink::Off));
        assert_eq!("stdout".parse(), Ok(AuditSink::Stdout));
        assert_eq!(
            "/var/log/rowgate.jsonl".parse(),
            Ok(AuditSink::File("/var/log/rowgate.jsonl".into()))
        );
    }
}
