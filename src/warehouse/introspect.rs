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

/// `varchar(20) unsigned` → (`varchar`, `(20)`, rest) — the base name lower-cased, without
/// arguments or trailing words such as `unsigned`, `without time zone` kept separately.
pub(super) fn base_name(t: &str) -> (String, String) {
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
        Err(Error::NoSuchTable {
            table: display_name(schema, table),
            known,
        })
    }

    /// The columns, or an empty list when there is no such table.
    pub async fn columns_if_exists(
        &self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Vec<ColumnInfo>> {
        let dialect = self.dialect();
        if let Some(bq) = self.bigquery() {
            // The table's schema from the API (no primary keys on BigQuery: pass
            // --unique-id-col or name the key `id`).
            let fields = bq.table_fields(table).await?.unwrap_or_default();
            return Ok(fields
                .into_iter()
                .map(|(name, sql_type, required)| ColumnInfo {
                    data_type: dialect.data_type_of(&sql_type, false),
                    name,
                    sql_type,
                    nullable: !required,
                    primary_key: false,
                    pk_position: None,
                })
                .collect());
        }
        let (sql, params) = dialect.columns_sql(schema, table);
        let rows = self.fetch_all(&sql, &params).await?;
        let mut out = Vec::with_capacity(rows.rows.len());
        for r in &rows.rows {
            let name = text(&r[0]);
            let sql_type = text(&r[1]);
            let not_null = truthy(&r[2]);
            let pk = r[3].as_i64().unwrap_or(0);
            let is_enum = truthy(&r[4]);
            let data_type = dialect.data_type_of(&sql_type, is_enum);
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
        if let Some(bq) = self.bigquery() {
            let mut names = bq.list_tables().await?;
            names.sort();
            names.dedup();
            return Ok(names);
        }
        let (sql, params) = self.dialect().list_tables_sql(schema);
        let rows = self.fetch_all(&sql, &params).await?;
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
    use crate::dsn::Engine;
    use crate::warehouse::dialect_for;
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
            assert_eq!(
                dialect_for(Engine::Sqlite).data_type_of(decl, false),
                want,
                "{decl}"
            );
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
            assert_eq!(
                dialect_for(Engine::Postgres).data_type_of(decl, false),
                want,
                "{decl}"
            );
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
            assert_eq!(
                dialect_for(Engine::Mysql).data_type_of(decl, false),
                want,
                "{decl}"
            );
        }
    }
}
