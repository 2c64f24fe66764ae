//! Creating tables and bulk-loading rows, the fastest way each dialect offers inside one
//! transaction: PostgreSQL `COPY ... FROM STDIN` (text format), MySQL/MariaDB multi-row
//! `INSERT` batches, SQLite multi-row prepared `INSERT` batches.

use crate::input::names::*;
use indicatif::ProgressBar;

use super::dialect::{AtomicReplace, BulkLoad, SqlDialect};
use super::{Tx, Value};
use crate::datatype::DataType;
use crate::error::{Error, Result};

/// A column to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    pub not_null: bool,
    pub primary_key: bool,
    /// A collation for a text column (see [`SqlDialect::exact_key_collation_sql`]).
    pub collation: Option<String>,
}

impl ColumnDef {
    pub fn new(name: &str, data_type: DataType) -> Self {
        ColumnDef {
            name: name.into(),
            data_type,
            not_null: false,
            primary_key: false,
            collation: None,
        }
    }
    pub fn not_null(mut self) -> Self {
        self.not_null = true;
        self
    }
    pub fn primary_key(mut self) -> Self {
        self.primary_key = true;
        self.not_null = true;
        self
    }
}

/// `CREATE TABLE qualified (...)` with one line per column.
pub fn create_table_sql(
    dialect: &dyn SqlDialect,
    qualified: &str,
    columns: &[ColumnDef],
) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut s = format!(
                "{} {}",
                dialect.quote_ident(&c.name),
                dialect.ddl_type(c.data_type)
            );
            if let Some(name) = &c.collation {
                s.push_str(&dialect.collate_clause(name));
            }
            if c.not_null {
                s.push_str(" NOT NULL");
            }
            s
        })
        .collect();
    let pk: Vec<String> = columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| dialect.quote_ident(&c.name))
        .collect();
    if !pk.is_empty()
        && let Some(clause) = dialect.primary_key_clause(&pk)
    {
        parts.push(clause);
    }
    format!(
        "CREATE TABLE {qualified} (\n    {}\n)",
        parts.join(",\n    ")
    )
}

/// Insert every row of `rows` into `qualified` (whose columns are `columns`, in order) inside
/// `tx`. Returns the number of rows loaded. The first failing row aborts the load; the caller's
/// transaction then rolls back, so nothing of this load remains.
pub async fn insert_rows<I>(
    tx: &mut Tx,
    qualified: &str,
    columns: &[ColumnDef],
    rows: I,
    pb: &ProgressBar,
) -> Result<u64>
where
    I: Iterator<Item = Result<Vec<Value>>>,
{
    let dialect = tx.dialect();
    match dialect.bulk_load() {
        BulkLoad::Copy => copy_rows(tx, qualified, columns, rows, pb).await,
        BulkLoad::LoadJob => Err(Error::runtime(format!(
            "{}: rows are loaded with load jobs, not inside a transaction",
            dialect.product()
        ))),
        BulkLoad::InsertBatches { max_params } => {
            let per_batch = (max_params / columns.len().max(1)).clamp(1, 1000);
            let cols: Vec<String> = columns
                .iter()
                .map(|c| dialect.quote_ident(&c.name))
                .collect();
            let row_ph = format!("({})", vec!["?"; columns.len()].join(","));
            let head = format!("INSERT INTO {qualified} ({}) VALUES ", cols.join(", "));
            let full_sql = format!("{head}{}", vec![row_ph.as_str(); per_batch].join(","));
            let mut batch: Vec<Value> = Vec::with_capacity(per_batch * columns.len());
            let mut in_batch = 0usize;
            let mut total = 0u64;
            for row in rows {
                let row = row?;
                check_width(&row, columns, total)?;
                batch.extend(row);
                in_batch += 1;
                if in_batch == per_batch {
                    tx.execute(&full_sql, &batch).await?;
                    total += in_batch as u64;
                    pb.inc(in_batch as u64);
                    batch.clear();
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                let sql = format!("{head}{}", vec![row_ph.as_str(); in_batch].join(","));
                tx.execute(&sql, &batch).await?;
                total += in_batch as u64;
                pb.inc(in_batch as u64);
            }
            Ok(total)
        }
    }
}

fn check_width(row: &[Value], columns: &[ColumnDef], done: u64) -> Result<()> {
    if row.len() != columns.len() {
        return Err(Error::runtime(format!(
            "row {} has {} values but the table has {} columns",
            done + 1,
            row.len(),
            columns.len()
        )));
    }
    Ok(())
}

/// Encode rows into chunks of PostgreSQL's COPY text format (tab-separated, `\N` for NULL,
/// backslash escapes) of about 1 MiB each, with the number of rows in each chunk.
fn copy_chunks<'a, I>(
    rows: I,
    columns: &'a [ColumnDef],
) -> impl Iterator<Item = Result<(Vec<u8>, u64)>> + 'a
where
    I: Iterator<Item = Result<Vec<Value>>> + 'a,
{
    const CHUNK: usize = 1 << 20;
    let mut rows = rows;
    let mut total = 0u64;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
        let mut n = 0u64;
        while buf.len() < CHUNK {
            match rows.next() {
                None => {
                    done = true;
                    break;
                }
                Some(row) => {
                    let row = match row.and_then(|r| check_width(&r, columns, total).map(|_| r)) {
                        Ok(r) => r,
                        Err(e) => {
                            done = true;
                            return Some(Err(e));
                        }
                    };
                    for (i, v) in row.iter().enumerate() {
                        if i > 0 {
                            buf.push(b'\t');
                        }
                        encode_copy_text(v, &mut buf);
                    }
                    buf.push(b'\n');
                    total += 1;
                    n += 1;
                }
            }
        }
        if n == 0 { None } else { Some(Ok((buf, n))) }
    })
}

/// PostgreSQL: stream the rows through `COPY ... FROM STDIN`, encoding on this task.
async fn copy_rows<I>(
    tx: &mut Tx,
    qualified: &str,
    columns: &[ColumnDef],
    rows: I,
    pb: &ProgressBar,
) -> Result<u64>
where
    I: Iterator<Item = Result<Vec<Value>>>,
{
    let chunks = futures::stream::iter(copy_chunks(rows, columns));
    send_copy(tx, qualified, columns, chunks, pb).await
}

/// PostgreSQL: like [`copy_rows`], but the rows are produced and encoded on their own thread
/// while this task sends the previous chunk, so generating or parsing rows overlaps with the
/// server's work (a bounded channel of four chunks keeps memory flat).
async fn copy_rows_pipelined<I>(
    tx: &mut Tx,
    qualified: &str,
    columns: &[ColumnDef],
    rows: I,
    pb: &ProgressBar,
) -> Result<u64>
where
    I: Iterator<Item = Result<Vec<Value>>> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<(Vec<u8>, u64)>>(4);
    let cols = columns.to_vec();
    let producer = std::thread::spawn(move || {
        for chunk in copy_chunks(rows, &cols) {
            if sender.blocking_send(chunk).is_err() {
                break; // the sender side gave up (a COPY error): stop producing
            }
        }
    });
    let chunks = futures::stream::poll_fn(|cx| receiver.poll_recv(cx));
    let result = send_copy(tx, qualified, columns, chunks, pb).await;
    drop(receiver);
    let _ = producer.join();
    result
}

/// Run `COPY qualified (columns) FROM STDIN` with the chunks of `chunks`; aborts the COPY on
/// the first error so that the transaction rolls back.
async fn send_copy<S>(
    tx: &mut Tx,
    qualified: &str,
    columns: &[ColumnDef],
    chunks: S,
    pb: &ProgressBar,
) -> Result<u64>
where
    S: futures::Stream<Item = Result<(Vec<u8>, u64)>>,
{
    use futures::StreamExt;
    let mut chunks = std::pin::pin!(chunks);
    let cols: Vec<String> = columns
        .iter()
        .map(|c| tx.dialect().quote_ident(&c.name))
        .collect();
    let sql = format!("COPY {qualified} ({}) FROM STDIN", cols.join(", "));
    super::echo(&sql, &[]);
    let conn = tx.pg_conn().expect("PostgreSQL transaction");
    let mut copy = conn.copy_in_raw(&sql).await?;
    let mut total = 0u64;
    while let Some(chunk) = chunks.next().await {
        let step = match chunk {
            Ok((buf, n)) => copy.send(buf).await.map(|_| n).map_err(Error::from),
            Err(e) => Err(e),
        };
        match step {
            Ok(n) => {
                total += n;
                pb.inc(n);
            }
            Err(e) => {
                let _ = copy.abort("xngin: load aborted").await;
                return Err(e);
            }
        }
    }
    let n = copy.finish().await?;
    Ok(n.max(total))
}

/// Text in PostgreSQL's COPY text format: backslash, tab, newline and carriage return escaped.
pub fn copy_escape(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// One value in PostgreSQL's COPY text format.
fn encode_copy_text(v: &Value, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    use std::io::Write;
    // Formatting straight into the buffer: no per-value String on the hot path.
    fn time(out: &mut Vec<u8>, t: &chrono::NaiveDateTime) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let micros = t.nanosecond() / 1000;
        if micros > 0 {
            let _ = write!(out, ".{micros:06}");
        }
    }
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
        Value::Float(f) if f.is_infinite() => {
            out.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Text(s) => copy_escape(s, out),
        Value::Uuid(u) => {
            let mut buf = uuid::Uuid::encode_buffer();
            out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
        }
        Value::Date(d) => {
            let _ = write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
        }
        Value::Timestamp(t) => time(out, t),
        Value::TimestampTz(t) => {
            time(out, &t.naive_utc());
            out.extend_from_slice(b"+00");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes() {
        let mut out = Vec::new();
        encode_copy_text(&Value::Text("a\tb\\c\nd".into()), &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd");
        out.clear();
        encode_copy_text(&Value::Null, &mut out);
        assert_eq!(out, b"\\N");
        out.clear();
        encode_copy_text(&Value::Text("\\N".into()), &mut out);
        assert_eq!(out, b"\\\\N");
    }

    #[test]
    fn copy_text_typed_values() {
        let enc = |v: Value| {
            let mut out = Vec::new();
            encode_copy_text(&v, &mut out);
            String::from_utf8(out).unwrap()
        };
        let d = chrono::NaiveDate::from_ymd_opt(2024, 3, 5).unwrap();
        let t = d.and_hms_micro_opt(7, 8, 9, 120).unwrap();
        assert_eq!(enc(Value::Date(d)), "2024-03-05");
        assert_eq!(enc(Value::Timestamp(t)), "2024-03-05 07:08:09.000120");
        assert_eq!(
            enc(Value::Timestamp(d.and_hms_opt(0, 0, 1).unwrap())),
            "2024-03-05 00:00:01"
        );
        assert_eq!(
            enc(Value::TimestampTz(t.and_utc())),
            "2024-03-05 07:08:09.000120+00"
        );
        assert_eq!(enc(Value::Float(0.1)), "0.1");
        assert_eq!(enc(Value::Float(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(enc(Value::Int(-42)), "-42");
        let u: uuid::Uuid = "9bd6e6b8-8b1c-4e8d-9b9a-1f0f4d6c2a01".parse().unwrap();
        assert_eq!(enc(Value::Uuid(u)), "9bd6e6b8-8b1c-4e8d-9b9a-1f0f4d6c2a01");
    }

    #[test]
    fn staging_names_fit_in_63_bytes_at_a_character_boundary() {
        let name = format!("{}_{:08}", "日".repeat(18), 1);
        assert_eq!(name.len(), 63);
        let base = truncate_bytes(&name, STAGING_BASE_BYTES);
        assert_eq!(base, "日".repeat(13)); // 39 bytes: the 14th character would cross 40
        let old = format!("{base}{STAGING_MARK}old_0123abcd");
        assert!(
            old.len() <= crate::warehouse::postgres::MAX_IDENT_BYTES,
            "{}",
            old.len()
        );
        assert_eq!(truncate_bytes("short", 40), "short");
        assert_eq!(
            staging_suffix(&format!("{base}{STAGING_MARK}0123abcd")),
            Some("0123abcd")
        );
        assert_eq!(staging_suffix("t__xngin_old_0123abcd"), Some("0123abcd"));
        assert_eq!(staging_suffix("t__xngin_0123abc"), None);
        assert_eq!(staging_suffix("t__xngin_0123abcz"), None);
        assert_eq!(staging_suffix("__xngin_0123abcd"), None);
        assert_eq!(staging_suffix("t"), None);
    }

    #[test]
    fn ddl_is_quoted_and_typed() {
        let cols = [
            ColumnDef::new("id", DataType::Bigint).primary_key(),
            ColumnDef::new("we\"ird", DataType::Uuid),
        ];
        let sql = create_table_sql(
            &crate::warehouse::postgres::Postgres { redshift: false },
            "\"s\".\"t\"",
            &cols,
        );
        assert_eq!(
            sql,
            "CREATE TABLE \"s\".\"t\" (\n    \"id\" BIGINT NOT NULL,\n    \"we\"\"ird\" UUID,\n    PRIMARY KEY (\"id\")\n)"
        );
        assert!(
            create_table_sql(&crate::warehouse::mysql::Mysql, "`t`", &cols)
                .contains("`we\"ird` CHAR(36)")
        );
    }
}

/// What to do when the target table already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// Refuse (exit 1, naming the flags that would proceed).
    Fail,
    /// Leave it as it is and load nothing (`--allow-existing`).
    Keep,
    /// Replace it atomically (`--replace`).
    Replace,
}

/// The result of [`load_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    AlreadyExists,
    Loaded(u64),
}

/// Create `schema.table` with `columns` and load `rows` into it, all or nothing.
///
/// The rows go into a staging table that is swapped in at the end: in one transaction on
/// PostgreSQL and SQLite (whose DDL is transactional), and with one atomic `RENAME TABLE` on
/// MySQL/MariaDB (whose DDL commits implicitly; the staging table is dropped on failure). A bad
/// row or a lost connection in the middle leaves an existing table exactly as it was.
///
/// A killed run leaves nothing on PostgreSQL and SQLite (its transaction rolls back). On
/// MySQL/MariaDB it can leave its staging table `BASE__xngin_XXXXXXXX`; each run holds a named
/// lock (`xngin_staging_XXXXXXXX`) for its staging tables while it works, and every load first
/// drops the staging tables whose lock is free, i.e. whose run is gone — never those of a run
/// in progress.
pub async fn load_table<I>(
    wh: &super::Warehouse,
    schema: Option<&str>,
    table: &str,
    columns: &[ColumnDef],
    rows: I,
    if_exists: IfExists,
    pb: &ProgressBar,
) -> Result<LoadOutcome>
where
    I: Iterator<Item = Result<Vec<Value>>> + Send + 'static,
{
    let dialect = wh.dialect();
    crate::dsn::check_ident("table name", table)?;
    if let Some(s) = schema {
        crate::dsn::check_ident("schema name", s)?;
        if !dialect.has_schemas() {
            return Err(Error::usage(format!(
                "{SCHEMA_NAME}: {}; leave it out",
                dialect.no_schemas_reason()
            )));
        }
    }
    let target = wh.qualified(schema, table);
    let exists = wh.table_exists(schema, table).await?;
    if exists {
        match if_exists {
            IfExists::Keep => return Ok(LoadOutcome::AlreadyExists),
            IfExists::Fail => {
                return Err(Error::runtime(format!(
                    "table {target} already exists; pass {REPLACE} to replace it atomically, or {ALLOW_EXISTING} to keep it"
                )));
            }
            IfExists::Replace => {}
        }
    }
    if let Some(s) = schema {
        wh.execute(&dialect.create_schema_sql(s), &[]).await?;
    }
    // A staging name unique to this run, within PostgreSQL's 63-byte and MySQL's 64-character
    // limits (cut at a character boundary, counting bytes).
    let suffix = format!("{:08x}", rand::random::<u32>());
    let base = truncate_bytes(table, STAGING_BASE_BYTES);
    let staging_name = format!("{base}{STAGING_MARK}{suffix}");
    let staging = wh.qualified(schema, &staging_name);
    // MySQL/MariaDB: the staging table outlives a killed run (DDL is not transactional). This
    // run holds a named lock for its staging tables while it works; staging tables whose lock is
    // free belong to runs that are gone and are dropped here.
    let strategy = dialect.atomic_replace();
    let lock = if strategy == AtomicReplace::RenameTableWithStagingLock {
        remove_abandoned_staging(wh, schema).await;
        Some(StagingLock::acquire(wh, &suffix).await?)
    } else {
        None
    };
    let ddl = create_table_sql(dialect, &staging, columns);
    match strategy {
        AtomicReplace::CreateOrReplaceFromStaging => {
            let bq = wh.bigquery().ok_or_else(|| {
                Error::runtime(format!(
                    "{}: no load-job client for this warehouse",
                    wh.dsn()
                ))
            })?;
            bq.create_dataset_if_missing().await?;
            let result: Result<u64> = async {
                let n = load_job(bq, dialect, &staging_name, columns, rows, pb).await?;
                // One statement swaps the loaded rows in; a plain CREATE TABLE when the run must
                // not replace a table another run created meanwhile.
                let create = if exists || if_exists == IfExists::Replace {
                    "CREATE OR REPLACE TABLE"
                } else {
                    "CREATE TABLE"
                };
                wh.execute(
                    &format!("{create} {target} AS SELECT * FROM {staging}"),
                    &[],
                )
                .await
                .map_err(|e| concurrent(e, &target))?;
                Ok(n)
            }
            .await;
            let dropped = bq.drop_table(&staging_name).await;
            let n = result?;
            dropped?;
            Ok(LoadOutcome::Loaded(n))
        }
        AtomicReplace::RenameInTransaction => {
            let mut tx = wh.begin().await?;
            tx.execute(&ddl, &[]).await?;
            let n = if dialect.bulk_load() == BulkLoad::Copy {
                copy_rows_pipelined(&mut tx, &staging, columns, rows, pb).await?
            } else {
                insert_rows(&mut tx, &staging, columns, rows, pb).await?
            };
            // SQLite runs one writer at a time: a concurrent run may have created the table
            // while this one waited for the lock. Look again, inside the transaction.
            let exists_now = if dialect.single_writer() && !exists {
                let (sql, params) = dialect.table_exists_sql(schema, table);
                super::count_is_positive(&tx.fetch_all(&sql, &params).await?)
            } else {
                exists
            };
            if exists_now && !exists {
                match if_exists {
                    // The transaction rolls back when dropped: nothing of this run remains.
                    IfExists::Keep => return Ok(LoadOutcome::AlreadyExists),
                    IfExists::Fail => {
                        return Err(Error::runtime(format!(
                            "another run created the table {target} while this run was loading it, so this run changed nothing; \
                             pass {REPLACE} to replace it, or {ALLOW_EXISTING} to keep it"
                        )));
                    }
                    IfExists::Replace => {}
                }
            }
            if exists_now {
                tx.execute(&format!("DROP TABLE {target}"), &[])
                    .await
                    .map_err(|e| concurrent(e, &target))?;
            }
            tx.execute(
                &format!(
                    "ALTER TABLE {staging} RENAME TO {}",
                    dialect.quote_ident(table)
                ),
                &[],
            )
            .await
            .map_err(|e| concurrent(e, &target))?;
            if columns.iter().any(|c| c.primary_key)
                && let Some(sql) =
                    dialect.rename_primary_key_index_sql(schema, &staging_name, table)
            {
                tx.execute(&sql, &[]).await?;
            }
            tx.commit().await.map_err(|e| concurrent(e, &target))?;
            Ok(LoadOutcome::Loaded(n))
        }
        AtomicReplace::RenameTableWithStagingLock => {
            let lock = lock.expect("MySQL staging lock");
            if let Err(e) = wh.execute(&ddl, &[]).await {
                lock.release().await;
                return Err(e);
            }
            let result: Result<u64> = async {
                let mut tx = wh.begin().await?;
                let n = insert_rows(&mut tx, &staging, columns, rows, pb).await?;
                tx.commit().await?;
                if exists {
                    let old = wh.qualified(schema, &format!("{base}{STAGING_MARK}old_{suffix}"));
                    wh.execute(
                        &format!("RENAME TABLE {target} TO {old}, {staging} TO {target}"),
                        &[],
                    )
                    .await
                    .map_err(|e| concurrent(e, &target))?;
                    wh.execute(&format!("DROP TABLE IF EXISTS {old}"), &[])
                        .await?;
                } else {
                    wh.execute(&format!("RENAME TABLE {staging} TO {target}"), &[])
                        .await
                        .map_err(|e| concurrent(e, &target))?;
                }
                Ok(n)
            }
            .await;
            if result.is_err() {
                let _ = wh
                    .execute(&format!("DROP TABLE IF EXISTS {staging}"), &[])
                    .await;
            }
            lock.release().await;
            result.map(LoadOutcome::Loaded)
        }
    }
}

/// A staging table name for `table`, unique to this run: `BASE__xngin_XXXXXXXX`.
pub(crate) fn staging_name(table: &str) -> String {
    let suffix = format!("{:08x}", rand::random::<u32>());
    format!(
        "{}{STAGING_MARK}{suffix}",
        truncate_bytes(table, STAGING_BASE_BYTES)
    )
}

/// How long a BigQuery staging table outlives a run killed before dropping it: well beyond the
/// longest job a run waits for (6 hours).
pub(crate) const STAGING_EXPIRY: chrono::TimeDelta = chrono::TimeDelta::days(2);

/// BigQuery: write the rows as newline-delimited JSON to a temporary file and load it into the
/// new staging table `table` with one (atomic) load job, then set it to expire after
/// [`STAGING_EXPIRY`]. Returns the rows loaded.
pub(crate) async fn load_job<I>(
    bq: &super::bigquery::BigQuery,
    dialect: &dyn SqlDialect,
    table: &str,
    columns: &[ColumnDef],
    rows: I,
    pb: &ProgressBar,
) -> Result<u64>
where
    I: Iterator<Item = Result<Vec<Value>>>,
{
    use std::io::Write;
    let file = tempfile::tempfile()
        .map_err(|e| Error::runtime(format!("cannot create a temporary file for the load: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let mut total = 0u64;
    for row in rows {
        let row = row?;
        check_width(&row, columns, total)?;
        let obj: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .zip(&row)
            .map(|(c, v)| (c.name.clone(), v.to_json()))
            .collect();
        serde_json::to_writer(&mut out, &obj)
            .map_err(|e| Error::runtime(format!("cannot write the load file: {e}")))?;
        out.write_all(b"\n")
            .map_err(|e| Error::runtime(format!("cannot write the load file: {e}")))?;
        total += 1;
    }
    let mut file = out
        .into_inner()
        .map_err(|e| Error::runtime(format!("cannot write the load file: {}", e.error())))?;
    std::io::Seek::rewind(&mut file)
        .map_err(|e| Error::runtime(format!("cannot read the load file back: {e}")))?;
    let load_cols: Vec<super::bigquery::LoadColumn> = columns
        .iter()
        .map(|c| super::bigquery::LoadColumn {
            name: c.name.clone(),
            bq_type: dialect.ddl_type(c.data_type).to_string(),
            required: c.not_null,
        })
        .collect();
    let n = bq
        .load_ndjson(table, &load_cols, file, super::bigquery::WriteMode::Empty)
        .await?;
    // A safety net for a run killed before it drops its staging table: BigQuery deletes the
    // table by itself later. Best effort: the run drops the table anyway, and a service account
    // allowed to load can normally also patch, so a refusal here must not fail the load.
    let _ = bq
        .expire_table(table, chrono::Utc::now() + STAGING_EXPIRY)
        .await;
    pb.inc(total);
    Ok(n)
}

/// Staging tables are named `BASE__xngin_XXXXXXXX` (8 hex digits, random per run), and the
/// table a MySQL replace moves aside `BASE__xngin_old_XXXXXXXX`.
const STAGING_MARK: &str = "__xngin_";
/// BASE is the target name cut to this many bytes: `BASE__xngin_old_XXXXXXXX` then stays within
/// 63 bytes, PostgreSQL's identifier limit (which MySQL's 64 characters also allow).
const STAGING_BASE_BYTES: usize = 40;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Is `name` one of our staging tables (see [`STAGING_MARK`])? Returns its random suffix.
pub fn staging_suffix(name: &str) -> Option<&str> {
    let i = name.rfind(STAGING_MARK)?;
    let rest = &name[i + STAGING_MARK.len()..];
    let suffix = rest.strip_prefix("old_").unwrap_or(rest);
    (i > 0 && suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit())).then_some(suffix)
}

/// The MySQL/MariaDB named lock held by the run that owns the staging tables of `suffix`.
fn staging_lock_name(suffix: &str) -> String {
    format!("xngin_staging_{suffix}")
}

/// A swap that failed because another run created, replaced or dropped the same table meanwhile.
fn concurrent(e: Error, target: &str) -> Error {
    match e {
        Error::Conflict(raw) => Error::runtime(format!(
            "another run is loading the table {target} at the same time, so this run changed nothing \
             ({raw}); wait for it to finish, then run again"
        )),
        other => other,
    }
}

/// MySQL/MariaDB: a named lock, held on its own connection for as long as this run has staging
/// tables. The server releases it when the connection ends, so a killed run's lock is free.
struct StagingLock {
    tx: super::Tx,
    name: String,
    release_sql: &'static str,
}

impl StagingLock {
    async fn acquire(wh: &super::Warehouse, suffix: &str) -> Result<StagingLock> {
        let name = staging_lock_name(suffix);
        let (get_sql, release_sql) = wh.dialect().named_lock_sql().ok_or_else(|| {
            Error::runtime(format!(
                "{} has no named locks for staging tables",
                wh.dialect().product()
            ))
        })?;
        let mut tx = wh.begin().await?;
        let got = tx.fetch_all(get_sql, &[Value::Text(name.clone())]).await?;
        if got
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64)
            != Some(1)
        {
            return Err(Error::runtime(format!(
                "could not take the lock {name} for this run's staging table; run again"
            )));
        }
        Ok(StagingLock {
            tx,
            name,
            release_sql,
        })
    }

    async fn release(mut self) {
        let _ = self
            .tx
            .fetch_all(self.release_sql, &[Value::Text(self.name.clone())])
            .await;
        let _ = self.tx.rollback().await;
    }
}

/// MySQL/MariaDB: drop the staging tables in `schema` (or the current database) whose run is
/// gone, i.e. whose named lock this session can take. A run in progress holds its lock, so its
/// staging tables are left alone. Best effort: failures are ignored. Returns the names dropped.
pub async fn remove_abandoned_staging(wh: &super::Warehouse, schema: Option<&str>) -> Vec<String> {
    let pattern = format!("%{}%", STAGING_MARK.replace('_', "\\_"));
    let Some((sql, params)) = wh.dialect().tables_like_sql(schema, &pattern) else {
        return Vec::new();
    };
    let Ok(listed) = wh.fetch_all(&sql, &params).await else {
        return Vec::new();
    };
    let mut dropped = Vec::new();
    for row in listed.rows {
        let Some(name) = row.first().and_then(Value::to_text) else {
            continue;
        };
        let Some(suffix) = staging_suffix(&name) else {
            continue;
        };
        let Ok(lock) = StagingLock::acquire(wh, suffix).await else {
            continue; // its run is still working
        };
        let sql = format!("DROP TABLE IF EXISTS {}", wh.qualified(schema, &name));
        if wh.execute(&sql, &[]).await.is_ok() {
            dropped.push(name);
        }
        lock.release().await;
    }
    if !dropped.is_empty() {
        crate::output::notice(format!(
            "removed {} staging table(s) left by an interrupted run: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    dropped
}
