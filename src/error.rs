//! Typed errors for the library, each carrying the exit code the CLI returns for it.
//!
//! Exit codes (docs/architecture.md#errors-and-exit-codes): 0 ok; 1 runtime failure (I/O, data);
//! 2 usage error; 3 the input was read but is invalid (settings, sheet, filters, design);
//! 4 `power --fail-on-insufficient` found a metric without enough units.
//!
//! Messages are complete one-line sentences that name the file / row / field and, where there
//! is one, the fix. They never contain a password or a resolved secret: build them from
//! [`crate::dsn::Dsn`]'s `Display`, which redacts, and never from a DSN as written (use
//! [`crate::dsn::redact_dsn_text`]). As a second line of defence the binary masks every known
//! secret ([`crate::dsn::scrub_secrets`]) in everything it prints.

use std::path::Path;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument the user gave cannot be used as given (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The input was read but is invalid; one entry per problem, all reported together (exit 3).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// A runtime failure: connection, I/O, data problem (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// The database failed a statement (a lost connection, a killed session, a value a table
    /// refuses) (exit 1): callers that were writing name what was not written.
    #[error("{0}")]
    Database(String),
    /// A power check found at least one metric without enough units (exit 4).
    #[error("{0}")]
    Insufficient(String),
    /// The database refused a write because another session holds or just wrote the same
    /// object: a duplicate key or table, a deadlock, a lock timeout, a serialization failure
    /// (exit 1). Callers that know the table and experiment turn it into a sentence naming them.
    #[error("{0}")]
    Conflict(String),
    /// A table the command reads does not exist (exit 1); `known` lists the tables that do, so
    /// a caller can add a hint (a schema-qualified name, say) without parsing the message.
    #[error("{}", no_such_table_message(.table, .known))]
    NoSuchTable { table: String, known: Vec<String> },
}

fn no_such_table_message(table: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!("The table '{table}' does not exist; the database does not contain any tables.")
    } else {
        format!(
            "The table '{table}' does not exist. Known tables: {}",
            known.join(", ")
        )
    }
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(vec![msg.into()])
    }
    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }
    /// An I/O error on `path`, phrased as `PATH: what went wrong`.
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        Error::Runtime(format!("{}: {}", path.display(), io_reason(&err)))
    }

    /// The process exit code for this error (docs/architecture.md#errors-and-exit-codes).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Runtime(_)
            | Error::Database(_)
            | Error::Conflict(_)
            | Error::NoSuchTable { .. } => 1,
            Error::Usage(_) => 2,
            Error::Invalid(_) => 3,
            Error::Insufficient(_) => 4,
        }
    }

    /// Each line of the message (an `Invalid` error holds one line per problem).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Error::Invalid(v) => v.clone(),
            other => other.to_string().lines().map(str::to_string).collect(),
        }
    }
}

/// A short, lower-case reason for an I/O error, without Rust's `(os error N)` suffix.
pub fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        AlreadyExists => "already exists".into(),
        IsADirectory => "is a directory, expected a file".into(),
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the server".into(),
        _ => {
            let s = err.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

impl From<sqlx::Error> for Error {
    /// Database errors are runtime failures. sqlx's messages carry no password (the DSN is never
    /// part of them), but the server's own text is kept since it names the table or column;
    /// known secrets and URL credentials in it are masked all the same.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && is_conflict(db.as_ref())
        {
            return Error::Conflict(crate::dsn::scrub_secrets(&format!(
                "database error: {}",
                db.message()
            )));
        }
        let msg = match &e {
            sqlx::Error::Database(db) => format!("database error: {}", db.message()),
            sqlx::Error::PoolTimedOut => {
                "timed out connecting to the database (check the host, port and network)".into()
            }
            sqlx::Error::Io(io) => format!("database connection failed: {}", io_reason(io)),
            other => format!("database error: {other}"),
        };
        Error::Database(crate::dsn::scrub_secrets(&msg))
    }
}

/// Does this database error mean another session holds or just wrote the same object? Unique
/// violations, "table already exists", deadlocks, lock timeouts, serialization failures and
/// SQLite's busy/locked codes.
fn is_conflict(db: &dyn sqlx::error::DatabaseError) -> bool {
    if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
        return true;
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // ER_TABLE_EXISTS_ERROR, ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK
        return matches!(my.number(), 1050 | 1205 | 1213);
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_BUSY and SQLITE_LOCKED with their extended codes.
        return db
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
    }
    // PostgreSQL: duplicate_table, serialization_failure, deadlock_detected, lock_not_available.
    matches!(
        db.code().as_deref(),
        Some("42P07" | "40001" | "40P01" | "55P03")
    )
}
