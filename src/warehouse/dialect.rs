//! The SQL dialect layer: everything that differs between warehouses, as one trait with one
//! implementation per warehouse (`sqlite.rs`, `postgres.rs`, `mysql.rs`). Code outside
//! `src/warehouse/` asks the dialect ([`crate::warehouse::Warehouse::dialect`]) and never
//! matches on the kind of database. Adding a warehouse means one more file implementing
//! [`SqlDialect`] plus its tests (docs/architecture.md).

use crate::datatype::DataType;
use crate::dsn::Engine;
use crate::warehouse::Value;

/// How rows are bulk-loaded inside a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkLoad {
    /// PostgreSQL `COPY ... FROM STDIN` (text format).
    Copy,
    /// Multi-row `INSERT ... VALUES (?,..),(?,..)` batches, staying under `max_params` bound
    /// parameters per statement.
    InsertBatches { max_params: usize },
    /// A load job of newline-delimited JSON through the warehouse's API (BigQuery), outside
    /// any transaction.
    LoadJob,
}

/// How a loaded table replaces an existing one atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicReplace {
    /// Create the staging table, load it, drop the old table and rename the staging table, all in
    /// one transaction (transactional DDL: PostgreSQL, SQLite).
    RenameInTransaction,
    /// DDL commits implicitly (MySQL/MariaDB): create and load the staging table, then swap with
    /// one multi-table `RENAME TABLE`, holding a named lock on the staging tables meanwhile so
    /// that abandoned ones can be told apart and removed.
    RenameTableWithStagingLock,
    /// No transactions (BigQuery): load the staging table with one atomic load job, then
    /// `CREATE OR REPLACE TABLE target AS SELECT * FROM staging` (one statement) and drop the
    /// staging table.
    CreateOrReplaceFromStaging,
}

/// What a warehouse's SQL looks like. Every method returns SQL text or a capability; the
/// executor ([`crate::warehouse::Warehouse`]) runs it.
pub trait SqlDialect: Send + Sync + std::fmt::Debug {
    /// The DSN kind this dialect belongs to.
    fn engine(&self) -> Engine;

    /// The dialect's short name (`sqlite`, `postgres`, `mysql`).
    fn name(&self) -> &'static str {
        self.engine().name()
    }

    /// The product, for messages (`PostgreSQL`, `MySQL/MariaDB`, `SQLite`).
    fn product(&self) -> &'static str;

    /// Quote an identifier: any string becomes one identifier (so `x; DROP TABLE y` is a strange
    /// table name, never SQL). Default: `"` doubled. NUL bytes cannot be represented and are
    /// refused by [`crate::dsn::check_ident`].
    fn quote_ident(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    /// `schema.table`, each part quoted.
    fn qualified(&self, schema: Option<&str>, table: &str) -> String {
        match schema {
            Some(s) => format!("{}.{}", self.quote_ident(s), self.quote_ident(table)),
            None => self.quote_ident(table),
        }
    }

    /// `schema.table` for a connection to `dsn`: where the DSN names a default container that
    /// statements must spell out (BigQuery's project and dataset). Default: [`Self::qualified`].
    fn qualified_in(&self, _dsn: &crate::dsn::Dsn, schema: Option<&str>, table: &str) -> String {
        self.qualified(schema, table)
    }

    /// The placeholder for the `n`-th (1-based) bound parameter. Default: `?`.
    fn placeholder(&self, _n: usize) -> String {
        "?".to_string()
    }

    /// The DDL type of a DataType: real types, not everything-as-text.
    fn ddl_type(&self, t: DataType) -> &'static str;

    /// The DDL type for long text (JSON documents such as a design record).
    fn long_text_type(&self) -> &'static str {
        "TEXT"
    }

    /// The table constraint declaring the primary key over the (quoted) columns `cols`, or
    /// `None` where a key cannot be declared as an enforced constraint. Default:
    /// `PRIMARY KEY (a, b)`.
    fn primary_key_clause(&self, cols: &[String]) -> Option<String> {
        Some(format!("PRIMARY KEY ({})", cols.join(", ")))
    }

    /// A query returning the name of a collation that compares text keys by their exact
    /// bytes (no case folding, no trailing-space padding), where the engine's default
    /// collation does not; `None` where text keys already compare by bytes.
    fn exact_key_collation_sql(&self) -> Option<&'static str> {
        None
    }

    /// A query (parameters: the schema or NULL for the current one, the table, the column)
    /// returning a text column's collation, on engines with
    /// [`SqlDialect::exact_key_collation_sql`]; and whether a collation name compares bytes.
    fn column_collation_sql(&self) -> Option<&'static str> {
        None
    }

    fn collation_is_exact(&self, _name: &str) -> bool {
        true
    }

    /// The DDL suffix giving a text column the collation `name` (from
    /// [`SqlDialect::exact_key_collation_sql`]).
    fn collate_clause(&self, name: &str) -> String {
        format!(" COLLATE {}", self.quote_ident(name))
    }

    /// Can a table name carry a schema (`schema.table`)?
    fn has_schemas(&self) -> bool {
        true
    }

    /// Why a schema-qualified name is refused where [`Self::has_schemas`] is false.
    fn no_schemas_reason(&self) -> String {
        format!("{} has no schemas", self.product())
    }

    /// `CREATE SCHEMA IF NOT EXISTS s` (or the dialect's equivalent).
    fn create_schema_sql(&self, schema: &str) -> String {
        format!("CREATE SCHEMA IF NOT EXISTS {}", self.quote_ident(schema))
    }

    /// Are there transactions at all ([`crate::warehouse::Warehouse::begin`])?
    fn has_transactions(&self) -> bool {
        true
    }

    /// Does DDL (CREATE/DROP/RENAME) take part in transactions?
    fn transactional_ddl(&self) -> bool {
        true
    }

    /// A `CREATE TABLE` made safe against a concurrent run creating the same table between this
    /// run's check and its transaction. Default: unchanged (the race is reported as a conflict).
    fn create_table_racing(&self, ddl: String) -> String {
        ddl
    }

    /// Is there at most one writer at a time, so that a run waiting for the write lock must look
    /// again for a table another run may have created meanwhile?
    fn single_writer(&self) -> bool {
        false
    }

    /// How rows are bulk-loaded.
    fn bulk_load(&self) -> BulkLoad;

    /// The most bound parameters one statement may carry (SQLite's default
    /// `SQLITE_MAX_VARIABLE_NUMBER`, the 16-bit count of the PostgreSQL and MySQL protocols,
    /// BigQuery's 10,000 query parameters per query).
    fn max_bound_params(&self) -> usize {
        65_535
    }

    /// For dialects without client-held transactions ([`Self::has_transactions`] false): the
    /// statements as one multi-statement script that runs them in one transaction, all or
    /// nothing (BigQuery `BEGIN TRANSACTION; ...; COMMIT TRANSACTION;`). `None` elsewhere.
    fn transaction_script(&self, _statements: &[String]) -> Option<String> {
        None
    }

    /// Inside a [`Self::transaction_script`]: a statement that fails the script (rolling it
    /// back) with `message` when the query `count_sql` counts more than 0 rows. `message` is a
    /// fixed text of ours, never input.
    fn fail_if_any_sql(&self, _count_sql: &str, _message: &str) -> Option<String> {
        None
    }

    /// How a loaded table replaces an existing one.
    fn atomic_replace(&self) -> AtomicReplace {
        AtomicReplace::RenameInTransaction
    }

    /// For [`AtomicReplace::RenameTableWithStagingLock`]: the statements taking (without
    /// waiting; 1 when taken) and releasing a named session lock, each with the lock name as
    /// its one parameter.
    fn named_lock_sql(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// For [`AtomicReplace::RenameTableWithStagingLock`]: a query listing the table names of
    /// `schema` (default: the current database) that match the `LIKE` pattern `pattern`.
    fn tables_like_sql(
        &self,
        _schema: Option<&str>,
        _pattern: &str,
    ) -> Option<(String, Vec<Value>)> {
        None
    }

    /// After renaming the staging table `staging_name` to `table` (in `schema`): the statement
    /// that gives its primary-key index the conventional name, if the dialect names indexes
    /// after their table.
    fn rename_primary_key_index_sql(
        &self,
        _schema: Option<&str>,
        _staging_name: &str,
        _table: &str,
    ) -> Option<String> {
        None
    }

    /// `CAST(expr AS <text>)`.
    fn text_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    /// `expr` as a double-precision float.
    fn float_cast(&self, expr: &str) -> String;

    /// A float column's value with NaN read as NULL (the local run reads NaN as a missing
    /// value). Default: the value itself (engines whose floats hold no NaN).
    fn float_nan_to_null(&self, expr: &str) -> String {
        expr.to_string()
    }

    /// A boolean (or numeric) column as a float, 1.0 for true. Default: [`Self::float_cast`].
    fn bool_to_float(&self, expr: &str) -> String {
        self.float_cast(expr)
    }

    /// Does the dialect lack `STDDEV_POP`, so that the variance is computed in two passes
    /// (mean, then mean squared deviation) and the square root taken by the caller?
    fn variance_needs_two_pass(&self) -> bool {
        false
    }

    /// The operand compared when testing a text column for membership (`IN`, `NOT IN`):
    /// dialects whose default collation ignores case or trailing spaces compare exact bytes.
    /// Default: the column itself.
    fn exact_text(&self, col: &str) -> String {
        col.to_string()
    }

    /// `LOWER(col)` matches the regular expression bound at placeholder `p`; `None` when the
    /// dialect has no regular expressions (the caller then builds the test from `instr`).
    fn lower_matches_regex(&self, col: &str, p: &str) -> Option<String>;

    /// The lowercase hexadecimal MD5 digest of `expr`, if the dialect has one.
    fn md5_hex(&self, expr: &str) -> Option<String>;

    /// The keyed assignment of docs/assignment-algorithm.md computed by this engine: one query
    /// over the audience `a` returning `participant_id, arm_id, stratum_id, c0, c1, …` and its
    /// parameters, numbered from `first` (the relation's own parameters follow them, numbered
    /// from `first` + their count). `None` when this engine does not compute it
    /// (`assign --in-warehouse` then refuses).
    fn keyed_assignment_sql(
        &self,
        _a: &crate::assign::pushdown::Audience,
        _design: &crate::assign::Design,
        _n_rows: u64,
        _first: usize,
    ) -> Option<(String, Vec<Value>)> {
        None
    }

    /// The 32-bit word `i` (0 = most significant) of a digest, as an integer that sums exactly
    /// (the input fingerprint's `unit_key_sum` from aggregates); `digest` is the column holding
    /// [`SqlDialect::digest_row`] of the 32 lowercase hex digits.
    fn hex_word(&self, _digest: &str, _i: usize) -> Option<String> {
        None
    }

    /// The per-row value, in a subquery's select list, that [`SqlDialect::hex_word`] reads the
    /// words of the 32 hex digits `hex` from, evaluated once per row (not inlined into each
    /// word's reference). Default: `hex` itself.
    fn digest_row(&self, hex: &str) -> String {
        hex.to_string()
    }

    /// `expr` (text) as an `ORDER BY` key that orders by the bytes of its UTF-8 text.
    fn order_bytes(&self, expr: &str) -> String {
        expr.to_string()
    }

    /// A statement, first in a transaction, that makes all of its queries read one snapshot
    /// (`None`: the engine's default isolation already does).
    fn snapshot_transaction_sql(&self) -> Option<&'static str> {
        None
    }

    /// The continuous percentile `p` (0..=1) of `expr` as an aggregate, if the dialect has one.
    fn percentile_cont(&self, p: f64, expr: &str) -> Option<String>;

    /// Beyond the same type, integer with integer and numeric with numeric: is a live column of
    /// type `live` an acceptable storage for a sheet's `sheet` type in this dialect (booleans
    /// stored as integers, dates as text, ...)?
    fn loose_type_compatibility(&self, sheet: DataType, live: DataType) -> bool;

    /// The [`DataType`] of a declared column type; `is_enum` when the database reports an
    /// enumerated type.
    fn data_type_of(&self, declared: &str, is_enum: bool) -> DataType;

    /// A query counting the tables and views named `table` (in `schema`, or the current database
    /// / search path).
    fn table_exists_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>);

    /// A query listing the table and view names of `schema` (default: the current database /
    /// search path), one per row.
    fn list_tables_sql(&self, schema: Option<&str>) -> (String, Vec<Value>);

    /// A query returning, per column of `table` in order: name, declared type, NOT NULL
    /// (truthy), 1-based primary-key position (0 when not in the key), is-an-enum (truthy).
    fn columns_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>);
}

/// The dialect of a DSN kind.
pub fn dialect_for(engine: Engine) -> &'static dyn SqlDialect {
    match engine {
        Engine::Sqlite => &super::sqlite::Sqlite,
        Engine::Postgres => &super::postgres::Postgres { redshift: false },
        Engine::Mysql => &super::mysql::Mysql,
        Engine::BigQuery => &super::bigquery::BigQuerySql,
    }
}

/// The dialect of a DSN (Redshift is PostgreSQL without some catalog functions).
pub fn dialect_for_dsn(dsn: &crate::dsn::Dsn) -> &'static dyn SqlDialect {
    match dsn.engine {
        Engine::Postgres if dsn.redshift => &super::postgres::Postgres { redshift: true },
        e => dialect_for(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_has_its_own_dialect() {
        for e in [Engine::Sqlite, Engine::Postgres, Engine::Mysql] {
            assert_eq!(dialect_for(e).engine(), e);
            assert_eq!(dialect_for(e).name(), e.name());
        }
    }

    #[test]
    fn quoting_makes_any_string_one_identifier() {
        assert_eq!(
            dialect_for(Engine::Postgres).quote_ident("x\"; DROP TABLE y"),
            "\"x\"\"; DROP TABLE y\""
        );
        assert_eq!(dialect_for(Engine::Mysql).quote_ident("a`b"), "`a``b`");
        assert_eq!(
            dialect_for(Engine::Sqlite).qualified(Some("s"), "t"),
            "\"s\".\"t\""
        );
    }

    #[test]
    fn placeholders_are_numbered_on_postgres_only() {
        assert_eq!(dialect_for(Engine::Postgres).placeholder(3), "$3");
        assert_eq!(dialect_for(Engine::Mysql).placeholder(3), "?");
        assert_eq!(dialect_for(Engine::Sqlite).placeholder(3), "?");
    }

    #[test]
    fn md5_and_percentile_where_the_dialect_has_them() {
        let pg = dialect_for(Engine::Postgres);
        let my = dialect_for(Engine::Mysql);
        let lite = dialect_for(Engine::Sqlite);
        assert_eq!(pg.md5_hex("x").as_deref(), Some("md5(x)"));
        assert_eq!(my.md5_hex("x").as_deref(), Some("LOWER(MD5(x))"));
        assert_eq!(lite.md5_hex("x"), None);
        assert_eq!(
            pg.percentile_cont(0.5, "x").as_deref(),
            Some("percentile_cont(0.5) WITHIN GROUP (ORDER BY x)")
        );
        assert_eq!(lite.percentile_cont(0.5, "x"), None);
    }

    #[test]
    fn bigquery_speaks_googlesql_without_transactions() {
        let bq = dialect_for(Engine::BigQuery);
        assert_eq!(bq.quote_ident("a`b"), "`a\\`b`");
        assert_eq!(bq.placeholder(2), "?");
        assert_eq!(bq.ddl_type(DataType::Bigint), "INT64");
        assert_eq!(bq.ddl_type(DataType::TimestampWithTimeZone), "TIMESTAMP");
        assert_eq!(bq.ddl_type(DataType::TimestampWithoutTimeZone), "DATETIME");
        assert_eq!(bq.text_cast("c"), "CAST(c AS STRING)");
        assert_eq!(bq.bool_to_float("c"), "CAST(CAST(c AS INT64) AS FLOAT64)");
        assert_eq!(bq.md5_hex("x").as_deref(), Some("TO_HEX(MD5(x))"));
        assert_eq!(
            bq.hex_word("h", 1).as_deref(),
            Some("CAST(CONCAT('0x', SUBSTR(h, 9, 8)) AS INT64)")
        );
        assert_eq!(bq.order_bytes("s"), "s", "STRING compares by code point");
        assert_eq!(
            bq.lower_matches_regex("c", "?").as_deref(),
            Some("REGEXP_CONTAINS(LOWER(c), ?)")
        );
        assert!(!bq.has_transactions() && !bq.transactional_ddl());
        assert_eq!(bq.bulk_load(), BulkLoad::LoadJob);
        assert_eq!(
            bq.atomic_replace(),
            AtomicReplace::CreateOrReplaceFromStaging
        );
        assert_eq!(bq.primary_key_clause(&["`a`".into()]), None);
        assert_eq!(
            bq.create_table_racing("CREATE TABLE `p.d.t` (x INT64)".into()),
            "CREATE TABLE IF NOT EXISTS `p.d.t` (x INT64)"
        );
        assert_eq!(
            bq.transaction_script(&[
                "DELETE FROM t WHERE x".into(),
                "INSERT INTO t SELECT 1".into()
            ])
            .as_deref(),
            Some(
                "BEGIN TRANSACTION;\nDELETE FROM t WHERE x;\nINSERT INTO t SELECT 1;\nCOMMIT TRANSACTION;"
            )
        );
        assert_eq!(
            bq.fail_if_any_sql("SELECT COUNT(*) FROM t", "it's \\ here")
                .as_deref(),
            Some("SELECT IF((SELECT COUNT(*) FROM t) > 0, ERROR('it\\'s \\\\ here'), 0)")
        );
        let pg = dialect_for(Engine::Postgres);
        assert_eq!(
            pg.primary_key_clause(&["\"a\"".into()]).as_deref(),
            Some("PRIMARY KEY (\"a\")")
        );
        assert_eq!(pg.transaction_script(&[]), None);
        for (decl, want) in [
            ("INTEGER", DataType::Bigint),
            ("INT64", DataType::Bigint),
            ("STRING", DataType::CharacterVarying),
            ("FLOAT", DataType::DoublePrecision),
            ("BOOLEAN", DataType::Boolean),
            ("NUMERIC(10, 2)", DataType::Numeric),
            ("DATE", DataType::Date),
            ("DATETIME", DataType::TimestampWithoutTimeZone),
            ("TIMESTAMP", DataType::TimestampWithTimeZone),
            ("JSON", DataType::JsonUnsupported),
            ("ARRAY<INT64>", DataType::Unsupported),
            ("BYTES", DataType::Unsupported),
        ] {
            assert_eq!(bq.data_type_of(decl, false), want, "{decl}");
        }
        let dsn = crate::dsn::Dsn::parse("bigquery://my-project/my_data").unwrap();
        assert_eq!(bq.qualified_in(&dsn, None, "t"), "`my-project.my_data.t`");
        assert_eq!(
            bq.qualified_in(&dsn, Some("other"), "t"),
            "`my-project.other.t`"
        );
        // The other dialects ignore the DSN.
        let pg = crate::dsn::Dsn::parse("postgres://u@h/db").unwrap();
        assert_eq!(
            pg.dialect().qualified_in(&pg, Some("s"), "t"),
            "\"s\".\"t\""
        );
    }

    #[test]
    fn text_and_float_casts_per_dialect() {
        let pg = dialect_for(Engine::Postgres);
        let my = dialect_for(Engine::Mysql);
        let lite = dialect_for(Engine::Sqlite);
        assert_eq!(pg.text_cast("c"), "CAST(c AS TEXT)");
        assert_eq!(my.text_cast("c"), "CAST(c AS CHAR)");
        assert_eq!(pg.float_cast("c"), "CAST(c AS DOUBLE PRECISION)");
        assert_eq!(
            pg.bool_to_float("c"),
            "CAST(CAST(c AS INTEGER) AS DOUBLE PRECISION)"
        );
        assert_eq!(my.bool_to_float("c"), "(c * 1e0)");
        assert_eq!(lite.float_cast("c"), "CAST(c AS REAL)");
        // NaN is NULL where floats hold it (PostgreSQL), the value itself elsewhere.
        assert_eq!(
            pg.float_nan_to_null("c"),
            "NULLIF(c, CAST('NaN' AS DOUBLE PRECISION))"
        );
        assert_eq!(my.float_nan_to_null("c"), "c");
        assert!(lite.variance_needs_two_pass() && !pg.variance_needs_two_pass());
        assert!(!my.transactional_ddl() && pg.transactional_ddl() && lite.transactional_ddl());
    }
}
