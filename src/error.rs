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
    /// A power check found at least one metric without enough units (exit 4).
    #[error("{0}")]
    Insufficient(String),
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
            Error::Runtime(_) => 1,
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
        let msg = match &e {
            sqlx::Error::Database(db) => format!("database error: {}", db.message()),
            sqlx::Error::PoolTimedOut => {
                "timed out connecting to the database (check the host, port and network)".into()
            }
            sqlx::Error::Io(io) => format!("database connection failed: {}", io_reason(io)),
            other => format!("database error: {other}"),
        };
        Error::Runtime(crate::dsn::scrub_secrets(&msg))
    }
}
