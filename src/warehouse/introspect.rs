//! Table introspection: the columns of a table in order, with the declared SQL type,
//! nullability, primary-key position and the [`DataType`] they map to
//! (docs/compatibility.md#data-types-and-introspection).
//!
//! Sources: SQLite `pragma_table_info`; PostgreSQL `pg_attribute` for a relation resolved with
//! `to_regclass` (so an unqualified name follows the connection's `search_path`; Redshift, which
//! lacks it, reads `information_schema.columns` without primary keys); MySQL/MariaDB
//! `information_schema.COLUMNS` (the DSN's database unless a schema is given).
//!
//! Type mapping follows the reference's order of checks (uuid, strings, boolean, bigint, other
//! integers, doubles, floats, numeric, date, timestamps, json, else `unsupported`), applied to
//! the declared type. Deliberate additions, so that a table created by xngin reads back with
//! the type it was created with:
//! * MySQL/MariaDB `tinyint(1)` (what `BOOLEAN` becomes) is `boolean`; `TIMESTAMP` (stored as
//!   UTC, an instant) is `timestamp with time zone`, `DATETIME` is without;
//! * PostgreSQL enum types are strings (as SQLAlchemy reflects them), domains map through their
//!   base type;
//! * SQLite follows SQLAlchemy's declared-type resolution (exact names, then affinity rules),
//!   plus `UUID` → `uuid` and `TIMESTAMPTZ` / `TIMESTAMP WITH TIME ZONE` → with time zone,
//!   which the affinity rules would call `numeric`.

use crate::datatype::DataType;
use crate::dsn::Dialect;
use crate::error::{Error, Result};
use crate::warehouse::{Value, Warehouse};

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The declared type as the database reports it (`character varying(20)`, `int(11)`, `TEXT`).
    pub sql_type: String,
    pub nullable: bool,
    pub primary_key: bool,
    /// 1-based position within the primary key (composite keys), if part of it.
    pub pk_position: Option<u32>,
    pub data_type: DataType,
}

/// Map a declared SQL type to a [`DataType`] for `dialect` (see the module docs).
pub fn data_type_for(dialect: Dialect, declared: &str) -> DataType {
    match dialect {
        Dialect::Sqlite => sqlite_type(declared),
        Dialect::Postgres => pg_type(declared, false),
        Dialect::Mysql => mysql_type(declared),
    }
}

/// `varchar(20) unsigned` → (`varchar`, `(20)`, rest) — the base name lower-cased, without
/// arguments or trailing words such as `unsigned`, `without time zone` kept separately.
fn base_name(t: &str) -> (String, String) {
    let lower = t.trim().to_lowercase();
    let (head, tail) = match lower.find('(') {
        Some(i) => {
            let close = lower[i..]
                .find(')')
                .map(|j| i + j + 1)
                .unwrap_or(lower.len());
            (
                format!("{}{}", &lower[..i], &lower[close..]),
                lower[i..close].to_string(),
            )
        }
        None => (lower.clone(), String::new()),
    };
    (head.split_whitespace().collect::<Vec<_>>().join(" "), tail)
}

fn pg_type(declared: &str, is_enum: bool) -> DataType {
    if is_enum {
        return DataType::CharacterVarying;
    }
    let (name, _) = base_name(declared);
    if name.ends_with("[]") {
        return DataType::Unsupported;
    }
    match name.as_str() {
        "uuid" => DataType::Uuid,
        "character varying" | "varchar" | "character" | "char" | "bpchar" | "text" | "name"
        | "citext" => DataType::CharacterVarying,
        "boolean" | "bool" => DataType::Boolean,
        "bigint" | "int8" | "bigserial" => DataType::Bigint,
        "integer" | "int" | "int4" | "smallint" | "int2" | "serial" | "smallserial" => {
            DataType::Integer
        }
        "double precision" | "float8" => DataType::DoublePrecision,
        "real" | "float4" | "float" => DataType::DoublePrecision,
        "numeric" | "decimal" => DataType::Numeric,
        "date" => DataType::Date,
        "timestamp with time zone" | "timestamptz" => DataType::TimestampWithTimeZone,
        "timestamp without time zone" | "timestamp" => DataType::TimestampWithoutTimeZone,
        "jsonb" => DataType::JsonbUnsupported,
        "json" => DataType::JsonUnsupported,
        _ => DataType::Unsupported,
    }
}

fn mysql_type(declared: &str) -> DataType {
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

/// SQLAlchemy's SQLite declared-type resolution, see the module docs and docs/compatibility.md.
fn sqlite_type(declared: &str) -> DataType {
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

fn text(v: &Value) -> String {
    v.to_text().unwrap_or_default()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Text(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "t" | "1"),
        _ => false,
    }
}

fn display_name(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(s) => format!("{s}.{table}"),
        None => table.to_string(),
    }
}

impl Warehouse {
    /// The columns of `schema.table` (or `table` in the default schema / search path), in table
    /// order. A missing table is a runtime error listing the known tables:
    /// `The table 't' does not exist. Known tables: a, b`.
    pub async fn columns(&self, schema: Option<&str>, table: &str) -> Result<Vec<ColumnInfo>> {
        let cols = self.columns_if_exists(schema, table).await?;
        if !cols.is_empty() {
            return Ok(cols);
        }
        let known = self.list_tables(schema).await?;
        let name = display_name(schema, table);
        Err(Error::runtime(if known.is_empty() {
            format!("The table '{name}' does not exist; the database does not contain any tables.")
        } else {
            format!(
                "The table '{name}' does not exist. Known tables: {}",
                known.join(", ")
            )
        }))
    }

    /// The columns, or an empty list when there is no such table.
    pub async fn columns_if_exists(
        &self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Vec<ColumnInfo>> {
        let dialect = self.dialect();
        let rows = match dialect {
            Dialect::Sqlite => {
                let (sql, params) = match schema {
                    Some(s) => (
                        r#"SELECT name, type, "notnull", pk, 0 FROM pragma_table_info(?1, ?2) ORDER BY cid"#,
                        vec![Value::Text(table.into()), Value::Text(s.into())],
                    ),
                    None => (
                        r#"SELECT name, type, "notnull", pk, 0 FROM pragma_table_info(?1) ORDER BY cid"#,
                        vec![Value::Text(table.into())],
                    ),
                };
                self.fetch_all(sql, &params).await?
            }
            Dialect::Postgres if self.dsn().redshift => {
                // Redshift lacks to_regclass and array functions on pg_index: the plain
                // information schema (no primary-key information; pass --unique-id-col or
                // name the key `id`).
                let base = "SELECT column_name::text, data_type::text, is_nullable::text = 'NO', 0::int8, false \
                     FROM information_schema.columns WHERE table_name = $1 AND table_schema = ";
                let (sql, params) = match schema {
                    Some(s) => (
                        format!("{base}$2 ORDER BY ordinal_position"),
                        vec![Value::Text(table.into()), Value::Text(s.into())],
                    ),
                    None => (
                        format!("{base}current_schema() ORDER BY ordinal_position"),
                        vec![Value::Text(table.into())],
                    ),
                };
                self.fetch_all(&sql, &params).await?
            }
            Dialect::Postgres => {
                let sql = "SELECT a.attname::text, \
                     (CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) \
                           ELSE format_type(a.atttypid, a.atttypmod) END)::text, \
                     a.attnotnull, \
                     COALESCE(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0)::int8, \
                     (CASE WHEN t.typtype = 'd' THEN bt.typtype ELSE t.typtype END)::text = 'e' \
                   FROM pg_attribute a \
                   JOIN pg_type t ON t.oid = a.atttypid \
                   LEFT JOIN pg_type bt ON bt.oid = t.typbasetype \
                   LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
                   WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                   ORDER BY a.attnum";
                self.fetch_all(sql, &[Value::Text(self.qualified(schema, table))])
                    .await?
            }
            Dialect::Mysql => {
                let base = "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), \
                       CAST(c.IS_NULLABLE AS CHAR) = 'NO', CAST(COALESCE(k.ORDINAL_POSITION, 0) AS SIGNED), 0 \
                     FROM information_schema.COLUMNS c \
                     LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.TABLE_SCHEMA = c.TABLE_SCHEMA \
                       AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME \
                       AND k.CONSTRAINT_NAME = 'PRIMARY' \
                     WHERE c.TABLE_NAME = ? AND c.TABLE_SCHEMA = ";
                let (sql, params) = match schema {
                    Some(s) => (
                        format!("{base}? ORDER BY c.ORDINAL_POSITION"),
                        vec![Value::Text(table.into()), Value::Text(s.into())],
                    ),
                    None => (
                        format!("{base}database() ORDER BY c.ORDINAL_POSITION"),
                        vec![Value::Text(table.into())],
                    ),
                };
                self.fetch_all(&sql, &params).await?
            }
        };
        let mut out = Vec::with_capacity(rows.rows.len());
        for r in &rows.rows {
            let name = text(&r[0]);
            let sql_type = text(&r[1]);
            let not_null = truthy(&r[2]);
            let pk = r[3].as_i64().unwrap_or(0);
            let is_enum = truthy(&r[4]);
            let data_type = match dialect {
                Dialect::Postgres => pg_type(&sql_type, is_enum),
                d => data_type_for(d, &sql_type),
            };
            out.push(ColumnInfo {
                name,
                sql_type,
                nullable: !not_null,
                primary_key: pk > 0,
                pk_position: (pk > 0).then_some(pk as u32),
                data_type,
            });
        }
        Ok(out)
    }

    /// The tables and views of `schema` (default: the DSN's database / the search path),
    /// sorted by name.
    pub async fn list_tables(&self, schema: Option<&str>) -> Result<Vec<String>> {
        let rows = match self.dialect() {
            Dialect::Sqlite => {
                let master = match schema {
                    Some(s) => format!("{}.sqlite_master", self.quote(s)),
                    None => "sqlite_master".into(),
                };
                let sql = format!(
                    "SELECT name FROM {master} WHERE type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                );
                self.fetch_all(&sql, &[]).await?
            }
            Dialect::Postgres => match schema {
                Some(s) => {
                    self.fetch_all(
                        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('r','v','m','p','f') AND n.nspname = $1",
                        &[Value::Text(s.into())],
                    )
                    .await?
                }
                None => {
                    self.fetch_all(
                        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('r','v','m','p','f') AND n.nspname = ANY (current_schemas(false))",
                        &[],
                    )
                    .await?
                }
            },
            Dialect::Mysql => match schema {
                Some(s) => {
                    self.fetch_all(
                        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                        &[Value::Text(s.into())],
                    )
                    .await?
                }
                None => {
                    self.fetch_all(
                        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = database()",
                        &[],
                    )
                    .await?
                }
            },
        };
        let mut names: Vec<String> = rows
            .rows
            .iter()
            .filter_map(|r| r.first())
            .map(text)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn sqlite_affinity_rules() {
        let cases = [
            ("INTEGER", Integer),
            ("integer", Integer),
            ("BIGINT", Bigint),
            ("INT8", Integer),
            ("UNSIGNED BIG INT", Integer),
            ("TINYINT", Integer),
            ("TEXT", CharacterVarying),
            ("VARCHAR(20)", CharacterVarying),
            ("NATIVE CHARACTER(70)", CharacterVarying),
            ("CLOB", CharacterVarying),
            ("BLOB", Unsupported),
            ("", Unsupported),
            ("REAL", DoublePrecision),
            ("DOUBLE PRECISION", DoublePrecision),
            ("FLOAT", DoublePrecision),
            ("NUMERIC", Numeric),
            ("DECIMAL(10,5)", Numeric),
            ("BOOLEAN", Boolean),
            ("BOOL", Boolean),
            ("DATE", Date),
            ("DATETIME", TimestampWithoutTimeZone),
            ("TIMESTAMP", TimestampWithoutTimeZone),
            ("TIMESTAMPTZ", TimestampWithTimeZone),
            ("UUID", Uuid),
            ("JSON", JsonUnsupported),
            ("TIME", Unsupported),
            ("MONEY", Numeric),
            ("POINT", Integer),
            ("GEOMETRY", Numeric),
            ("CHARINT", Integer),
        ];
        for (decl, want) in cases {
            assert_eq!(data_type_for(Dialect::Sqlite, decl), want, "{decl}");
        }
    }

    #[test]
    fn postgres_and_mysql_types() {
        let pg = [
            ("uuid", Uuid),
            ("character varying(20)", CharacterVarying),
            ("character(1)", CharacterVarying),
            ("text", CharacterVarying),
            ("boolean", Boolean),
            ("bigint", Bigint),
            ("integer", Integer),
            ("smallint", Integer),
            ("double precision", DoublePrecision),
            ("real", DoublePrecision),
            ("numeric(10,2)", Numeric),
            ("date", Date),
            ("timestamp(3) without time zone", TimestampWithoutTimeZone),
            ("timestamp with time zone", TimestampWithTimeZone),
            ("jsonb", JsonbUnsupported),
            ("json", JsonUnsupported),
            ("integer[]", Unsupported),
            ("interval", Unsupported),
            ("bytea", Unsupported),
        ];
        for (decl, want) in pg {
            assert_eq!(data_type_for(Dialect::Postgres, decl), want, "{decl}");
        }
        let my = [
            ("varchar(255)", CharacterVarying),
            ("char(36)", CharacterVarying),
            ("longtext", CharacterVarying),
            ("enum('a','b')", CharacterVarying),
            ("tinyint(1)", Boolean),
            ("tinyint(4)", Integer),
            ("int(11)", Integer),
            ("int", Integer),
            ("bigint(20) unsigned", Bigint),
            ("double", DoublePrecision),
            ("float", DoublePrecision),
            ("decimal(38,10)", Numeric),
            ("date", Date),
            ("datetime(6)", TimestampWithoutTimeZone),
            ("timestamp(6)", TimestampWithTimeZone),
            ("json", JsonUnsupported),
            ("uuid", Uuid),
            ("blob", Unsupported),
        ];
        for (decl, want) in my {
            assert_eq!(data_type_for(Dialect::Mysql, decl), want, "{decl}");
        }
    }
}
