//! One warehouse abstraction over sqlx for SQLite, PostgreSQL (and Redshift) and MySQL/MariaDB.
//!
//! Typed pools, not sqlx's `Any` driver: `Any` decodes only basic scalars, and introspection and
//! bulk loads need each driver's own types. Every statement built here quotes identifiers for its
//! dialect and binds values as parameters; `AssertSqlSafe` is used only on strings assembled from
//! quoted identifiers and placeholders.

pub mod bigquery;
pub mod dialect;
pub mod introspect;
pub mod load;
pub mod mysql;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod value;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, MySql, Postgres, Sqlite};

pub use dialect::{AtomicReplace, BulkLoad, SqlDialect, dialect_for};
pub use value::Value;

use crate::dsn::{Dsn, Engine, SqliteTarget};
use crate::error::{Error, Result};

static ECHO_SQL: AtomicBool = AtomicBool::new(false);

/// Print every statement to stderr before running it (`--echo-sql`).
pub fn set_echo_sql(on: bool) {
    ECHO_SQL.store(on, Ordering::Relaxed);
}

fn echo(sql: &str, params: &[Value]) {
    if ECHO_SQL.load(Ordering::Relaxed) {
        if params.is_empty() {
            crate::output::eprint_line(&format!("-- sql: {sql}"));
        } else {
            crate::output::eprint_line(&format!(
                "-- sql: {sql} -- {} bound parameter(s)",
                params.len()
            ));
        }
    }
}

/// The longest `XNGIN_CONNECT_TIMEOUT` accepted, in seconds (one day).
pub const MAX_CONNECT_TIMEOUT_SECS: f64 = 86_400.0;

/// How long to wait for a connection before giving up: `XNGIN_CONNECT_TIMEOUT` seconds, default
/// 10 (also when set but empty). A value that is not a number of seconds above 0 and at most a
/// day is a usage error.
pub fn connect_timeout() -> Result<Duration> {
    match std::env::var("XNGIN_CONNECT_TIMEOUT") {
        Ok(v) if !v.is_empty() => parse_connect_timeout(&v),
        _ => Ok(Duration::from_secs(10)),
    }
}

/// Parse a `XNGIN_CONNECT_TIMEOUT` value (seconds, e.g. `10` or `2.5`).
pub fn parse_connect_timeout(v: &str) -> Result<Duration> {
    let secs = v.trim().parse::<f64>().ok();
    match secs {
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_CONNECT_TIMEOUT_SECS => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(Error::usage(format!(
            "XNGIN_CONNECT_TIMEOUT={v:?} is not a number of seconds above 0 and at most {MAX_CONNECT_TIMEOUT_SECS} (e.g. 10 or 2.5); fix or unset it"
        ))),
    }
}

/// A connection failure in words: "connection refused" and the like for I/O errors, and a
/// plain sentence when the server does not speak the dialect's protocol (another kind of
/// server on the port), instead of the driver's internal message.
fn connect_reason(e: sqlx::Error, dsn: &Dsn) -> String {
    match &e {
        sqlx::Error::Protocol(_) | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => {
            let what = dsn.dialect().product();
            format!(
                "the server did not answer as a {what} server (is the port {} right?)",
                dsn.port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "default".into())
            )
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake (is it the right kind of server and port?)".into()
        }
        sqlx::Error::Io(io) => crate::error::io_reason(io),
        _ => {
            let reason = Error::from(e).to_string();
            reason
                .strip_prefix("database error: ")
                .unwrap_or(&reason)
                .to_string()
        }
    }
}

/// Open one connection directly (no pool retries), within `timeout`: a refused port or a
/// wrong server is reported at once instead of being retried until the timeout.
async fn probe<O>(o: &O, timeout: Duration) -> Result<(), sqlx::Error>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    use sqlx::Connection;
    match tokio::time::timeout(timeout, o.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Rows read back: column names and values in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Mysql(MySqlPool),
    /// No pool: each statement is a query job through the REST client.
    BigQuery(Box<bigquery::BigQuery>),
}

/// A connected warehouse.
#[derive(Clone)]
pub struct Warehouse {
    dsn: Dsn,
    pool: Pool,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Warehouse({})", self.dsn)
    }
}

/// Options for [`Warehouse::connect_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// SQLite: create the database file if it does not exist (loads); otherwise a missing file is
    /// an error rather than a silently created empty warehouse.
    pub create_sqlite: bool,
}

impl Warehouse {
    /// Connect to an existing warehouse.
    pub async fn connect(dsn: &Dsn) -> Result<Warehouse> {
        Self::connect_with(dsn, ConnectOptions::default()).await
    }

    pub async fn connect_with(dsn: &Dsn, opts: ConnectOptions) -> Result<Warehouse> {
        let timeout = connect_timeout()?;
        let fail = |e: sqlx::Error| {
            Error::runtime(format!(
                "cannot connect to {dsn}: {}",
                connect_reason(e, dsn)
            ))
        };
        let pool = match dsn.engine {
            Engine::Sqlite => {
                let mut o = match dsn.sqlite.as_ref() {
                    Some(SqliteTarget::File(p)) => {
                        if !opts.create_sqlite && !p.exists() {
                            return Err(Error::runtime(format!(
                                "cannot connect to {dsn}: the SQLite file {} does not exist",
                                p.display()
                            )));
                        }
                        SqliteConnectOptions::new()
                            .filename(p)
                            .create_if_missing(opts.create_sqlite)
                    }
                    _ => SqliteConnectOptions::from_str("sqlite::memory:").map_err(fail)?,
                };
                o = o.busy_timeout(Duration::from_secs(30));
                // One connection for :memory: (each connection would be its own database).
                let max = if matches!(dsn.sqlite, Some(SqliteTarget::Memory)) {
                    1
                } else {
                    4
                };
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(timeout)
                    .connect_with(o)
                    .await
                    .map_err(fail)?;
                Pool::Sqlite(pool)
            }
            Engine::Postgres => {
                let mut o = PgConnectOptions::new_without_pgpass()
                    .host(dsn.host.as_deref().unwrap_or("localhost"))
                    .port(dsn.port.unwrap_or(5432));
                if let Some(u) = &dsn.user {
                    o = o.username(u);
                }
                if let Some(p) = dsn.password() {
                    o = o.password(p);
                }
                if let Some(d) = &dsn.database {
                    o = o.database(d);
                }
                let ssl = match dsn.sslmode.as_deref() {
                    Some("disable") => PgSslMode::Disable,
                    Some("allow") => PgSslMode::Allow,
                    Some("require") => PgSslMode::Require,
                    Some("verify-ca") => PgSslMode::VerifyCa,
                    Some("verify-full") => PgSslMode::VerifyFull,
                    _ => PgSslMode::Prefer,
                };
                o = o.ssl_mode(ssl);
                if let Some(sp) = &dsn.search_path {
                    o = o.options([("search_path", sp.as_str())]);
                }
                probe(&o, timeout).await.map_err(fail)?;
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(timeout)
                    .connect_with(o)
                    .await
                    .map_err(fail)?;
                Pool::Postgres(pool)
            }
            Engine::Mysql => {
                let mut o = MySqlConnectOptions::new()
                    .host(dsn.host.as_deref().unwrap_or("localhost"))
                    .port(dsn.port.unwrap_or(3306))
                    .charset("utf8mb4");
                if let Some(u) = &dsn.user {
                    o = o.username(u);
                }
                if let Some(p) = dsn.password() {
                    o = o.password(p);
                }
                if let Some(d) = &dsn.database {
                    o = o.database(d);
                }
                let ssl = match dsn.sslmode.as_deref() {
                    Some("disable") => MySqlSslMode::Disabled,
                    Some("require") => MySqlSslMode::Required,
                    Some("verify-ca") => MySqlSslMode::VerifyCa,
                    Some("verify-full") => MySqlSslMode::VerifyIdentity,
                    _ => MySqlSslMode::Preferred,
                };
                o = o.ssl_mode(ssl);
                probe(&o, timeout).await.map_err(fail)?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(timeout)
                    .connect_with(o)
                    .await
                    .map_err(fail)?;
                Pool::Mysql(pool)
            }
            Engine::BigQuery => {
                let target = dsn.bigquery.as_ref().ok_or_else(|| {
                    Error::usage(format!("{dsn}: a BigQuery DSN needs a project and dataset"))
                })?;
                Pool::BigQuery(Box::new(bigquery::BigQuery::connect(target).await?))
            }
        };
        Ok(Warehouse {
            dsn: dsn.clone(),
            pool,
        })
    }

    /// A warehouse over an already connected BigQuery client (tests and tools that point the
    /// client at an API root of their own, as [`bigquery::BigQuery::connect_to`] does).
    pub fn from_bigquery(bq: bigquery::BigQuery) -> Warehouse {
        Warehouse {
            dsn: Dsn::bigquery(bq.target().clone()),
            pool: Pool::BigQuery(Box::new(bq)),
        }
    }

    pub fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    /// The SQL dialect this warehouse speaks.
    pub fn dialect(&self) -> &'static dyn SqlDialect {
        self.dsn.dialect()
    }

    /// Quote one identifier for this warehouse's dialect.
    pub fn quote(&self, ident: &str) -> String {
        self.dialect().quote_ident(ident)
    }

    /// `schema.table` (or `table`), quoted.
    pub fn qualified(&self, schema: Option<&str>, table: &str) -> String {
        self.dialect().qualified_in(&self.dsn, schema, table)
    }

    /// The REST client, when this is a BigQuery warehouse.
    pub(crate) fn bigquery(&self) -> Option<&bigquery::BigQuery> {
        match &self.pool {
            Pool::BigQuery(bq) => Some(bq),
            _ => None,
        }
    }

    /// The REST client of a BigQuery warehouse (tests and tools: listing tables, load jobs).
    pub fn bigquery_client(&self) -> Option<&bigquery::BigQuery> {
        self.bigquery()
    }

    /// The placeholder for the `n`-th (1-based) bound parameter.
    pub fn placeholder(&self, n: usize) -> String {
        self.dialect().placeholder(n)
    }

    /// A connection from the pool, for one statement.
    async fn acquire(&self) -> Result<PooledConn> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => PooledConn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => PooledConn::Postgres(p.acquire().await?),
            Pool::Mysql(p) => PooledConn::Mysql(p.acquire().await?),
            Pool::BigQuery(_) => {
                return Err(Error::runtime(
                    "BigQuery statements run as jobs, not on a pooled connection",
                ));
            }
        })
    }

    /// Run a statement; returns the number of rows affected.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        if let Some(bq) = self.bigquery() {
            // The client echoes each query it runs.
            return bq.execute(sql, params).await;
        }
        let mut c = self.acquire().await?;
        exec::execute(c.conn(), sql, params).await
    }

    /// Run a query and read every row.
    pub async fn fetch_all(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        if let Some(bq) = self.bigquery() {
            // The client echoes each query it runs.
            return bq.fetch_all(sql, params).await;
        }
        let mut c = self.acquire().await?;
        exec::fetch_all(c.conn(), sql, params).await
    }

    /// Run a query and hand each row to `f` as it arrives, without holding the result set in
    /// memory (large audiences, exports). Returns the column names (empty when there were no
    /// rows). An error from `f` stops the query.
    pub async fn fetch_each<F>(&self, sql: &str, params: &[Value], f: F) -> Result<Vec<String>>
    where
        F: FnMut(Vec<Value>) -> Result<()>,
    {
        if let Some(bq) = self.bigquery() {
            // The client echoes each query it runs.
            return bq.fetch_each(sql, params, f).await;
        }
        let mut c = self.acquire().await?;
        exec::fetch_each(c.conn(), sql, params, f).await
    }

    /// Start a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        echo("BEGIN", &[]);
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin().await?),
            Pool::Postgres(p) => TxInner::Postgres(p.begin().await?),
            Pool::Mysql(p) => TxInner::Mysql(p.begin().await?),
            Pool::BigQuery(_) => {
                return Err(Error::runtime(format!(
                    "{}: BigQuery has no transactions; this operation is not supported there",
                    self.dsn
                )));
            }
        };
        Ok(Tx {
            dialect: self.dialect(),
            inner,
        })
    }

    /// Does `schema.table` exist (a table or a view)? Without a schema: the current
    /// database / search path.
    pub async fn table_exists(&self, schema: Option<&str>, table: &str) -> Result<bool> {
        if let Some(bq) = self.bigquery() {
            if schema.is_some_and(|s| s != bq.target().dataset) {
                return Err(Error::usage(format!(
                    "{}: a BigQuery table is looked up in the DSN's dataset; leave the schema out",
                    self.dsn
                )));
            }
            return bq.table_exists(table).await;
        }
        let (sql, params) = self.dialect().table_exists_sql(schema, table);
        let n = self.fetch_all(&sql, &params).await?;
        Ok(count_is_positive(&n))
    }

    /// Where the DSN names a container that must already exist and that connecting does not
    /// prove (BigQuery's dataset: authenticating says nothing about it): a sentence saying it
    /// is missing, else `None`.
    pub async fn missing_container(&self) -> Result<Option<String>> {
        let Some(bq) = self.bigquery() else {
            return Ok(None);
        };
        let t = bq.target();
        Ok((!bq.dataset_exists().await?).then(|| {
            format!(
                "dataset '{}' does not exist in BigQuery project '{}' (or the service account cannot see it); \
                 check dataset_id and project_id, or create the dataset",
                t.dataset, t.project
            )
        }))
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
            Pool::BigQuery(_) => {}
        }
    }
}

/// Is the first value of the first row a count above 0?
pub(crate) fn count_is_positive(rows: &Rows) -> bool {
    rows.rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0
}

/// `match` over a per-driver enum (`Pool`, `PooledConn`, `TxInner`, `Conn`), binding the
/// driver's value to `$c` and its bind/decode functions (`rows::sqlite`, ...) to `$drv`, so
/// that each operation is written once.
macro_rules! on_driver {
    ($e:expr, $Enum:ident, |$c:ident, $drv:ident| $body:expr) => {
        match $e {
            $Enum::Sqlite($c) => {
                #[allow(unused_imports)]
                use rows::sqlite as $drv;
                $body
            }
            $Enum::Postgres($c) => {
                #[allow(unused_imports)]
                use rows::postgres as $drv;
                $body
            }
            $Enum::Mysql($c) => {
                #[allow(unused_imports)]
                use rows::mysql as $drv;
                $body
            }
        }
    };
}

/// A pooled connection of any driver.
enum PooledConn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
    Mysql(sqlx::pool::PoolConnection<MySql>),
}

impl PooledConn {
    fn conn(&mut self) -> Conn<'_> {
        on_driver!(self, PooledConn, |c, _d| Conn::from(&mut **c))
    }
}

/// One connection (pooled or inside a transaction) that statements run on.
enum Conn<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
    Mysql(&'a mut sqlx::MySqlConnection),
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}
impl<'a> From<&'a mut sqlx::PgConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::PgConnection) -> Self {
        Conn::Postgres(c)
    }
}
impl<'a> From<&'a mut sqlx::MySqlConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::MySqlConnection) -> Self {
        Conn::Mysql(c)
    }
}

/// The executor: every statement of [`Warehouse`] and [`Tx`] runs here, written once for all
/// drivers (binding [`Value`]s as parameters, decoding rows into [`Value`]s).
mod exec {
    use super::{AssertSqlSafe, Conn, Result, Rows, Value, echo, rows};

    pub(super) async fn execute(conn: Conn<'_>, sql: &str, params: &[Value]) -> Result<u64> {
        echo(sql, params);
        Ok(on_driver!(conn, Conn, |c, drv| drv::bind(
            sqlx::query(AssertSqlSafe(sql)),
            params
        )
        .execute(c)
        .await?
        .rows_affected()))
    }

    pub(super) async fn fetch_all(conn: Conn<'_>, sql: &str, params: &[Value]) -> Result<Rows> {
        echo(sql, params);
        on_driver!(conn, Conn, |c, drv| drv::decode(
            drv::bind(sqlx::query(AssertSqlSafe(sql)), params)
                .fetch_all(c)
                .await?
        ))
    }

    pub(super) async fn fetch_each<F>(
        conn: Conn<'_>,
        sql: &str,
        params: &[Value],
        mut f: F,
    ) -> Result<Vec<String>>
    where
        F: FnMut(Vec<Value>) -> Result<()>,
    {
        use futures::TryStreamExt;
        echo(sql, params);
        let mut columns = Vec::new();
        on_driver!(conn, Conn, |c, drv| {
            let q = drv::bind(sqlx::query(AssertSqlSafe(sql)), params);
            let mut stream = q.fetch(c);
            while let Some(row) = stream.try_next().await? {
                if columns.is_empty() {
                    columns = rows::column_names(&row);
                }
                f(drv::decode_row(&row)?)?;
            }
        });
        Ok(columns)
    }
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
    Mysql(sqlx::Transaction<'static, MySql>),
}

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    dialect: &'static dyn SqlDialect,
    inner: TxInner,
}

impl Tx {
    pub fn dialect(&self) -> &'static dyn SqlDialect {
        self.dialect
    }

    fn conn(&mut self) -> Conn<'_> {
        on_driver!(&mut self.inner, TxInner, |t, _d| Conn::from(&mut **t))
    }

    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        exec::execute(self.conn(), sql, params).await
    }

    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Rows> {
        exec::fetch_all(self.conn(), sql, params).await
    }

    /// [`Warehouse::fetch_each`] inside the transaction: each row handed to `f` as it
    /// arrives.
    pub async fn fetch_each<F>(&mut self, sql: &str, params: &[Value], f: F) -> Result<Vec<String>>
    where
        F: FnMut(Vec<Value>) -> Result<()>,
    {
        exec::fetch_each(self.conn(), sql, params, f).await
    }

    pub async fn commit(self) -> Result<()> {
        echo("COMMIT", &[]);
        on_driver!(self.inner, TxInner, |t, _d| t.commit().await?);
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        echo("ROLLBACK", &[]);
        on_driver!(self.inner, TxInner, |t, _d| t.rollback().await?);
        Ok(())
    }

    /// PostgreSQL only: the transaction's connection, for `COPY ... FROM STDIN`.
    pub(crate) fn pg_conn(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.inner {
            TxInner::Postgres(t) => Some(&mut **t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_must_be_seconds_above_zero_and_at_most_a_day() {
        assert_eq!(
            parse_connect_timeout("10").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            parse_connect_timeout(" 2.5 ").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(
            parse_connect_timeout("86400").unwrap(),
            Duration::from_secs(86_400)
        );
        for bad in ["inf", "1e20", "abc", "-1", "0", "NaN", "", "86401"] {
            let e = parse_connect_timeout(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().starts_with("XNGIN_CONNECT_TIMEOUT="), "{e}");
        }
    }
}
