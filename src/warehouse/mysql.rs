//! MySQL / MariaDB: backtick quoting, `?` placeholders, DDL that commits implicitly (atomic
//! replace by `RENAME TABLE` under a staging lock), multi-row `INSERT` loads, text compared as
//! bytes where the default collation would ignore case, `information_schema` introspection.

use crate::datatype::DataType;
use crate::dsn::Engine;
use crate::warehouse::Value;
use crate::warehouse::dialect::{AtomicReplace, BulkLoad, SqlDialect};
use crate::warehouse::introspect::base_name;

/// MySQL / MariaDB.
#[derive(Debug, Clone, Copy)]
pub struct Mysql;

impl SqlDialect for Mysql {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn product(&self) -> &'static str {
        "MySQL/MariaDB"
    }

    fn quote_ident(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    /// MySQL has no UUID type (CHAR(36)) and no time-zone-aware timestamp other than
    /// TIMESTAMP, which stores UTC.
    fn ddl_type(&self, t: DataType) -> &'static str {
        use DataType::*;
        match t {
            Boolean => "BOOLEAN",
            CharacterVarying => "VARCHAR(255)",
            Integer => "INTEGER",
            Bigint => "BIGINT",
            DoublePrecision => "DOUBLE",
            Numeric => "DECIMAL(38,10)",
            Date => "DATE",
            TimestampWithoutTimeZone => "DATETIME(6)",
            TimestampWithTimeZone => "TIMESTAMP(6)",
            Uuid => "CHAR(36)",
            JsonbUnsupported | JsonUnsupported => "JSON",
            Unsupported => "TEXT",
        }
    }

    fn long_text_type(&self) -> &'static str {
        "LONGTEXT"
    }

    /// A MySQL schema is a database.
    fn create_schema_sql(&self, schema: &str) -> String {
        format!("CREATE DATABASE IF NOT EXISTS {}", self.quote_ident(schema))
    }

    fn transactional_ddl(&self) -> bool {
        false
    }

    fn bulk_load(&self) -> BulkLoad {
        // Stay well under the limit of 65535 bound parameters.
        BulkLoad::InsertBatches { max_params: 60_000 }
    }

    fn atomic_replace(&self) -> AtomicReplace {
        AtomicReplace::RenameTableWithStagingLock
    }

    fn named_lock_sql(&self) -> Option<(&'static str, &'static str)> {
        Some(("SELECT GET_LOCK(?, 0)", "SELECT RELEASE_LOCK(?)"))
    }

    fn tables_like_sql(&self, schema: Option<&str>, pattern: &str) -> Option<(String, Vec<Value>)> {
        Some(match schema {
            Some(s) => (
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ?".into(),
                vec![Value::Text(s.into()), Value::Text(pattern.into())],
            ),
            None => (
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = database() AND TABLE_NAME LIKE ?".into(),
                vec![Value::Text(pattern.into())],
            ),
        })
    }

    fn text_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS CHAR)")
    }

    fn float_cast(&self, expr: &str) -> String {
        format!("({expr} * 1e0)")
    }

    /// The default collations ignore case and trailing spaces (`Bob` = `bob ` there): compare the
    /// UTF-8 bytes. Converting to utf8mb4 first makes non-ASCII values of a column in another
    /// character set (latin1) match the parameters, which arrive as utf8mb4. NULL stays NULL.
    fn exact_text(&self, col: &str) -> String {
        format!("CAST(CONVERT({col} USING utf8mb4) AS BINARY)")
    }

    /// The default collations equate `Bob`, `bob` and `bob ` (and `utf8mb4_bin` still pads
    /// trailing spaces), so two participants' ids could collide in an assignment table's primary
    /// key. `utf8mb4_0900_bin` (MySQL 8) and `utf8mb4_nopad_bin` (MariaDB 10.2+) compare bytes.
    fn exact_key_collation_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
             WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin') \
             ORDER BY COLLATION_NAME LIMIT 1",
        )
    }

    fn column_collation_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?",
        )
    }

    /// `*_bin` collations other than the `0900` and `nopad` ones still pad trailing spaces.
    fn collation_is_exact(&self, name: &str) -> bool {
        name.ends_with("_0900_bin") || name.ends_with("_nopad_bin") || name == "binary"
    }

    fn collate_clause(&self, name: &str) -> String {
        format!(" CHARACTER SET utf8mb4 COLLATE {}", self.quote_ident(name))
    }

    fn lower_matches_regex(&self, col: &str, p: &str) -> Option<String> {
        Some(format!("LOWER({col}) REGEXP {p}"))
    }

    /// Placeholders are positional (`?`): the query's seed comes first in its text.
    fn keyed_assignment_sql(
        &self,
        a: &crate::assign::pushdown::Audience,
        design: &crate::assign::Design,
        n_rows: u64,
        _first: usize,
    ) -> Option<(String, Vec<Value>)> {
        Some(crate::assign::pushdown::mysql_assignment(a, design, n_rows))
    }

    fn order_bytes(&self, expr: &str) -> String {
        self.exact_text(expr)
    }

    /// `CONV` returns text; as UNSIGNED its `SUM` is an exact DECIMAL.
    fn hex_word(&self, hex: &str, i: usize) -> Option<String> {
        Some(format!(
            "CAST(CONV(SUBSTR({hex}, {}, 8), 16, 10) AS UNSIGNED)",
            8 * i + 1
        ))
    }

    fn md5_hex(&self, expr: &str) -> Option<String> {
        Some(format!("LOWER(MD5({expr}))"))
    }

    /// MySQL has no percentile aggregate (MariaDB only as a window function).
    fn percentile_cont(&self, _p: f64, _expr: &str) -> Option<String> {
        None
    }

    /// No native boolean or time-zone types: booleans stored as integers, timestamps with or
    /// without time zone as each other.
    fn loose_type_compatibility(&self, sheet: DataType, live: DataType) -> bool {
        use DataType::*;
        matches!(
            (sheet, live),
            (Boolean, Integer | Bigint)
                | (TimestampWithoutTimeZone, TimestampWithTimeZone)
                | (TimestampWithTimeZone, TimestampWithoutTimeZone)
        )
    }

    fn data_type_of(&self, declared: &str, _is_enum: bool) -> DataType {
        declared_type(declared)
    }

    fn table_exists_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        match schema {
            Some(s) => (
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?".into(),
                vec![Value::Text(s.into()), Value::Text(table.into())],
            ),
            None => (
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = database() AND TABLE_NAME = ?".into(),
                vec![Value::Text(table.into())],
            ),
        }
    }

    fn list_tables_sql(&self, schema: Option<&str>) -> (String, Vec<Value>) {
        match schema {
            Some(s) => (
                "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?".into(),
                vec![Value::Text(s.into())],
            ),
            None => (
                "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = database()".into(),
                vec![],
            ),
        }
    }

    fn columns_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        let base = "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), \
               CAST(c.IS_NULLABLE AS CHAR) = 'NO', CAST(COALESCE(k.ORDINAL_POSITION, 0) AS SIGNED), 0 \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.TABLE_SCHEMA = c.TABLE_SCHEMA \
               AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME \
               AND k.CONSTRAINT_NAME = 'PRIMARY' \
             WHERE c.TABLE_NAME = ? AND c.TABLE_SCHEMA = ";
        match schema {
            Some(s) => (
                format!("{base}? ORDER BY c.ORDINAL_POSITION"),
                vec![Value::Text(table.into()), Value::Text(s.into())],
            ),
            None => (
                format!("{base}database() ORDER BY c.ORDINAL_POSITION"),
                vec![Value::Text(table.into())],
            ),
        }
    }
}

fn declared_type(declared: &str) -> DataType {
    let (name, args) = base_name(declared);
    let name = name
        .trim_end_matches(" zerofill")
        .trim_end_matches(" unsigned")
        .trim_end_matches(" signed");
    match name {
        "uuid" => DataType::Uuid,
        "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext" | "enum" | "set"
        | "nvarchar" | "nchar" => DataType::CharacterVarying,
        "bool" | "boolean" => DataType::Boolean,
        "tinyint" if args == "(1)" => DataType::Boolean,
        "bigint" => DataType::Bigint,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" => DataType::Integer,
        "double" | "double precision" | "real" => DataType::DoublePrecision,
        "float" => DataType::DoublePrecision,
        "decimal" | "numeric" | "dec" | "fixed" => DataType::Numeric,
        "date" => DataType::Date,
        "timestamp" => DataType::TimestampWithTimeZone,
        "datetime" => DataType::TimestampWithoutTimeZone,
        "json" => DataType::JsonUnsupported,
        _ => DataType::Unsupported,
    }
}
