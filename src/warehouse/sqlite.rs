//! SQLite: `"` quoting, `?` placeholders, no schemas (attached databases aside), transactional
//! DDL with one writer at a time, multi-row `INSERT` loads, no regular expressions, MD5 or
//! `STDDEV_POP` (variance in two passes), `pragma_table_info` introspection.

use crate::datatype::DataType;
use crate::dsn::Engine;
use crate::warehouse::Value;
use crate::warehouse::dialect::{BulkLoad, SqlDialect};

/// SQLite.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl SqlDialect for Sqlite {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn product(&self) -> &'static str {
        "SQLite"
    }

    /// Dates and timestamps are stored as ISO text under a DATE/TIMESTAMP declared type, which
    /// introspection reads back as such.
    fn ddl_type(&self, t: DataType) -> &'static str {
        use DataType::*;
        match t {
            Boolean => "BOOLEAN",
            CharacterVarying => "TEXT",
            Integer => "INTEGER",
            Bigint => "BIGINT",
            DoublePrecision => "REAL",
            Numeric => "NUMERIC",
            Date => "DATE",
            TimestampWithoutTimeZone | TimestampWithTimeZone => "TIMESTAMP",
            Uuid | JsonbUnsupported | JsonUnsupported | Unsupported => "TEXT",
        }
    }

    fn has_schemas(&self) -> bool {
        false
    }

    /// `CREATE TABLE IF NOT EXISTS`: a concurrent run may create the table between this run's
    /// check and its transaction; SQLite then waits for that run's commit (one writer at a time)
    /// and this run finds the table.
    fn create_table_racing(&self, ddl: String) -> String {
        match ddl.strip_prefix("CREATE TABLE ") {
            Some(rest) => format!("CREATE TABLE IF NOT EXISTS {rest}"),
            None => ddl,
        }
    }

    fn single_writer(&self) -> bool {
        true
    }

    fn max_bound_params(&self) -> usize {
        32_766
    }

    fn bulk_load(&self) -> BulkLoad {
        // Stay well under the limit of 32766 bound parameters.
        BulkLoad::InsertBatches { max_params: 32_000 }
    }

    fn float_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS REAL)")
    }

    fn variance_needs_two_pass(&self) -> bool {
        true
    }

    fn lower_matches_regex(&self, _col: &str, _p: &str) -> Option<String> {
        None
    }

    fn md5_hex(&self, _expr: &str) -> Option<String> {
        None
    }

    fn percentile_cont(&self, _p: f64, _expr: &str) -> Option<String> {
        None
    }

    /// Dynamic typing: booleans stored as integers, dates and timestamps as text or as each
    /// other.
    fn loose_type_compatibility(&self, sheet: DataType, live: DataType) -> bool {
        use DataType::*;
        let temporal =
            |t: DataType| matches!(t, Date | TimestampWithoutTimeZone | TimestampWithTimeZone);
        match (sheet, live) {
            (Boolean, Integer | Bigint) => true,
            (s, CharacterVarying) => temporal(s),
            (s, l) => temporal(s) && temporal(l),
        }
    }

    fn data_type_of(&self, declared: &str, _is_enum: bool) -> DataType {
        declared_type(declared)
    }

    fn table_exists_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        let sql = match schema {
            Some(s) => format!(
                "SELECT count(*) FROM {}.sqlite_master WHERE type IN ('table','view') AND name = ?1",
                self.quote_ident(s)
            ),
            None => {
                "SELECT count(*) FROM sqlite_master WHERE type IN ('table','view') AND name = ?1"
                    .into()
            }
        };
        (sql, vec![Value::Text(table.into())])
    }

    fn list_tables_sql(&self, schema: Option<&str>) -> (String, Vec<Value>) {
        let master = match schema {
            Some(s) => format!("{}.sqlite_master", self.quote_ident(s)),
            None => "sqlite_master".into(),
        };
        (
            format!(
                "SELECT name FROM {master} WHERE type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            ),
            vec![],
        )
    }

    fn columns_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        match schema {
            Some(s) => (
                r#"SELECT name, type, "notnull", pk, 0 FROM pragma_table_info(?1, ?2) ORDER BY cid"#.into(),
                vec![Value::Text(table.into()), Value::Text(s.into())],
            ),
            None => (
                r#"SELECT name, type, "notnull", pk, 0 FROM pragma_table_info(?1) ORDER BY cid"#.into(),
                vec![Value::Text(table.into())],
            ),
        }
    }
}

/// SQLAlchemy's SQLite declared-type resolution, see the module docs and docs/compatibility.md.
fn declared_type(declared: &str) -> DataType {
    let upper = declared.trim().to_uppercase();
    // `([\w ]+)(\(.*?\))?`: the leading words, without arguments.
    let name: String = upper
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ' ')
        .collect();
    let name = name.trim();
    let exact = match name {
        "BIGINT" => Some(DataType::Bigint),
        "BLOB" => Some(DataType::Unsupported),
        "BOOL" | "BOOLEAN" => Some(DataType::Boolean),
        "CHAR" | "NCHAR" | "NVARCHAR" | "TEXT" | "VARCHAR" => Some(DataType::CharacterVarying),
        "DATE" => Some(DataType::Date),
        "DATETIME" | "TIMESTAMP" => Some(DataType::TimestampWithoutTimeZone),
        "DOUBLE" | "FLOAT" | "REAL" => Some(DataType::DoublePrecision),
        "DECIMAL" | "NUMERIC" => Some(DataType::Numeric),
        "INT" | "INTEGER" | "SMALLINT" => Some(DataType::Integer),
        "JSON" => Some(DataType::JsonUnsupported),
        "TIME" => Some(DataType::Unsupported),
        // Additions (module docs).
        "UUID" => Some(DataType::Uuid),
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => Some(DataType::TimestampWithTimeZone),
        _ => None,
    };
    if let Some(t) = exact {
        return t;
    }
    if name.contains("INT") {
        DataType::Integer
    } else if name.contains("CHAR") || name.contains("CLOB") || name.contains("TEXT") {
        DataType::CharacterVarying
    } else if name.contains("BLOB") || name.is_empty() {
        DataType::Unsupported
    } else if name.contains("REAL") || name.contains("FLOA") || name.contains("DOUB") {
        DataType::DoublePrecision
    } else {
        DataType::Numeric
    }
}
