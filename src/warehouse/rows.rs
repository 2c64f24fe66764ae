//! Binding [`Value`]s as parameters and decoding rows into [`Value`]s, per driver.

use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Column, MySql, Postgres, Row, Sqlite, TypeInfo, ValueRef};

pub(crate) fn column_names<R: Row>(row: &R) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_string()).collect()
}

use super::{Rows, Value};
use crate::error::{Error, Result};

/// A NULL parameter declared with type OID 0 ("unspecified"), so that PostgreSQL infers its type
/// from the statement: `INSERT` into a `double precision` column, `x IS NULL`, ... A `text`
/// NULL would be refused there ("column is of type double precision but expression is of type
/// text").
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

pub(crate) fn bind_pg<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    params: &[Value],
) -> Query<'q, Postgres, PgArguments> {
    for p in params {
        q = match p.clone() {
            // An untyped NULL: PostgreSQL infers the type from the context.
            Value::Null => q.bind(UntypedNull),
            Value::Bool(b) => q.bind(b),
            Value::Int(i) => q.bind(i),
            Value::Float(f) => q.bind(f),
            Value::Text(s) => q.bind(s),
            Value::Uuid(u) => q.bind(u),
            Value::Date(d) => q.bind(d),
            Value::Timestamp(t) => q.bind(t),
            Value::TimestampTz(t) => q.bind(t),
        };
    }
    q
}

pub(crate) fn bind_mysql<'q>(
    mut q: Query<'q, MySql, MySqlArguments>,
    params: &[Value],
) -> Query<'q, MySql, MySqlArguments> {
    for p in params {
        q = match p.clone() {
            Value::Null => q.bind(None::<String>),
            Value::Bool(b) => q.bind(b),
            Value::Int(i) => q.bind(i),
            Value::Float(f) => q.bind(f),
            Value::Text(s) => q.bind(s),
            Value::Uuid(u) => q.bind(u.to_string()),
            Value::Date(d) => q.bind(d),
            Value::Timestamp(t) => q.bind(t),
            Value::TimestampTz(t) => q.bind(t.naive_utc()),
        };
    }
    q
}

pub(crate) fn bind_sqlite<'q>(
    mut q: Query<'q, Sqlite, SqliteArguments>,
    params: &[Value],
) -> Query<'q, Sqlite, SqliteArguments> {
    for p in params {
        q = match p {
            Value::Null => q.bind(None::<String>),
            Value::Bool(b) => q.bind(*b),
            Value::Int(i) => q.bind(*i),
            Value::Float(f) => q.bind(*f),
            Value::Text(s) => q.bind(s.clone()),
            // SQLite has no date or uuid types: ISO text, as the testing warehouse stores them.
            other => q.bind(other.to_text()),
        };
    }
    q
}

fn columns_of<R: Row>(rows: &[R]) -> Vec<String> {
    rows.first()
        .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_default()
}

fn decode_err(col: &str, ty: &str, e: sqlx::Error) -> Error {
    Error::runtime(format!("cannot read column '{col}' of type {ty}: {e}"))
}

pub(crate) fn decode_pg(rows: Vec<PgRow>) -> Result<Rows> {
    let columns = columns_of(&rows);
    let rows = rows.iter().map(decode_pg_row).collect::<Result<_>>()?;
    Ok(Rows { columns, rows })
}

/// One row's values, decoded by each column's type.
pub(crate) fn decode_pg_row(row: &PgRow) -> Result<Vec<Value>> {
    {
        let mut vals = Vec::with_capacity(row.len());
        for (i, col) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                vals.push(Value::Null);
                continue;
            }
            let ty = col.type_info().name().to_string();
            let e = |e| decode_err(col.name(), &ty, e);
            vals.push(match ty.as_str() {
                "BOOL" => Value::Bool(row.try_get(i).map_err(e)?),
                "INT2" => Value::Int(row.try_get::<i16, _>(i).map_err(e)? as i64),
                "INT4" => Value::Int(row.try_get::<i32, _>(i).map_err(e)? as i64),
                "INT8" => Value::Int(row.try_get(i).map_err(e)?),
                "FLOAT4" => Value::Float(row.try_get::<f32, _>(i).map_err(e)? as f64),
                "FLOAT8" => Value::Float(row.try_get(i).map_err(e)?),
                "NUMERIC" => {
                    let d: rust_decimal::Decimal = row.try_get(i).map_err(e)?;
                    decimal_value(d)
                }
                "UUID" => Value::Uuid(row.try_get(i).map_err(e)?),
                "DATE" => Value::Date(row.try_get(i).map_err(e)?),
                "TIMESTAMP" => Value::Timestamp(row.try_get(i).map_err(e)?),
                "TIMESTAMPTZ" => Value::TimestampTz(row.try_get(i).map_err(e)?),
                _ => Value::Text(row.try_get(i).map_err(e)?),
            });
        }
        Ok(vals)
    }
}

/// NUMERIC/DECIMAL: whole numbers that fit stay exact integers, the rest become f64.
fn decimal_value(d: rust_decimal::Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    if d.fract().is_zero()
        && let Some(i) = d.to_i64()
        && d.scale() == 0
    {
        return Value::Int(i);
    }
    Value::Float(d.to_f64().unwrap_or(f64::NAN))
}

pub(crate) fn decode_mysql(rows: Vec<MySqlRow>) -> Result<Rows> {
    let columns = columns_of(&rows);
    let rows = rows.iter().map(decode_mysql_row).collect::<Result<_>>()?;
    Ok(Rows { columns, rows })
}

/// One row's values, decoded by each column's type.
pub(crate) fn decode_mysql_row(row: &MySqlRow) -> Result<Vec<Value>> {
    {
        let mut vals = Vec::with_capacity(row.len());
        for (i, col) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                vals.push(Value::Null);
                continue;
            }
            let ty = col.type_info().name().to_string();
            let e = |e| decode_err(col.name(), &ty, e);
            vals.push(match ty.as_str() {
                "BOOLEAN" => Value::Bool(row.try_get(i).map_err(e)?),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                    Value::Int(row.try_get(i).map_err(e)?)
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED"
                | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
                    let u: u64 = row.try_get(i).map_err(e)?;
                    i64::try_from(u)
                        .map(Value::Int)
                        .unwrap_or(Value::Text(u.to_string()))
                }
                "FLOAT" => Value::Float(row.try_get::<f32, _>(i).map_err(e)? as f64),
                "DOUBLE" => Value::Float(row.try_get(i).map_err(e)?),
                "DECIMAL" => decimal_value(row.try_get(i).map_err(e)?),
                "DATE" => Value::Date(row.try_get(i).map_err(e)?),
                "DATETIME" => Value::Timestamp(row.try_get(i).map_err(e)?),
                "TIMESTAMP" => Value::TimestampTz(row.try_get(i).map_err(e)?),
                "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                    let b: Vec<u8> = row.try_get(i).map_err(e)?;
                    Value::Text(String::from_utf8_lossy(&b).into_owned())
                }
                _ => Value::Text(row.try_get(i).map_err(e)?),
            });
        }
        Ok(vals)
    }
}

pub(crate) fn decode_sqlite(rows: Vec<SqliteRow>) -> Result<Rows> {
    let columns = columns_of(&rows);
    let rows = rows.iter().map(decode_sqlite_row).collect::<Result<_>>()?;
    Ok(Rows { columns, rows })
}

/// One row's values, decoded by each column's type.
pub(crate) fn decode_sqlite_row(row: &SqliteRow) -> Result<Vec<Value>> {
    {
        let mut vals = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                vals.push(Value::Null);
                continue;
            }
            // SQLite is dynamically typed: decode by the storage class of this value.
            let ty = raw.type_info().name().to_string();
            drop(raw);
            let name = row.columns()[i].name().to_string();
            let e = |e| decode_err(&name, &ty, e);
            vals.push(match ty.as_str() {
                "INTEGER" | "BOOLEAN" => Value::Int(row.try_get(i).map_err(e)?),
                "REAL" | "NUMERIC" => Value::Float(row.try_get(i).map_err(e)?),
                "BLOB" => {
                    let b: Vec<u8> = row.try_get(i).map_err(e)?;
                    Value::Text(String::from_utf8_lossy(&b).into_owned())
                }
                _ => Value::Text(row.try_get(i).map_err(e)?),
            });
        }
        Ok(vals)
    }
}

/// Each driver's bind/decode functions under the same names, for the executor's dispatch.
pub(crate) mod sqlite {
    pub(crate) use super::{
        bind_sqlite as bind, decode_sqlite as decode, decode_sqlite_row as decode_row,
    };
}
pub(crate) mod postgres {
    pub(crate) use super::{bind_pg as bind, decode_pg as decode, decode_pg_row as decode_row};
}
pub(crate) mod mysql {
    pub(crate) use super::{
        bind_mysql as bind, decode_mysql as decode, decode_mysql_row as decode_row,
    };
}
