//! PostgreSQL (and Redshift): `$n` placeholders, transactional DDL, `COPY ... FROM STDIN`
//! loads, `to_regclass` / `pg_attribute` introspection (Redshift, which lacks them, reads the
//! information schema without primary keys).

use crate::datatype::DataType;
use crate::dsn::Engine;
use crate::warehouse::Value;
use crate::warehouse::dialect::{AtomicReplace, BulkLoad, SqlDialect};
use crate::warehouse::introspect::base_name;

/// PostgreSQL; `redshift` when the host is a Redshift cluster.
#[derive(Debug, Clone, Copy)]
pub struct Postgres {
    pub redshift: bool,
}

/// PostgreSQL's longest identifier, in bytes.
pub(crate) const MAX_IDENT_BYTES: usize = 63;

impl SqlDialect for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn product(&self) -> &'static str {
        if self.redshift {
            "Redshift"
        } else {
            "PostgreSQL"
        }
    }

    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    fn ddl_type(&self, t: DataType) -> &'static str {
        use DataType::*;
        match t {
            Boolean => "BOOLEAN",
            CharacterVarying => "VARCHAR",
            Integer => "INTEGER",
            Bigint => "BIGINT",
            DoublePrecision => "DOUBLE PRECISION",
            Numeric => "NUMERIC",
            Date => "DATE",
            TimestampWithoutTimeZone => "TIMESTAMP",
            TimestampWithTimeZone => "TIMESTAMPTZ",
            Uuid => "UUID",
            JsonbUnsupported => "JSONB",
            JsonUnsupported | Unsupported => "TEXT",
        }
    }

    fn bulk_load(&self) -> BulkLoad {
        BulkLoad::Copy
    }

    fn atomic_replace(&self) -> AtomicReplace {
        AtomicReplace::RenameInTransaction
    }

    fn rename_primary_key_index_sql(
        &self,
        schema: Option<&str>,
        staging_name: &str,
        table: &str,
    ) -> Option<String> {
        // Keep the conventional index name instead of the staging one (PostgreSQL cuts both at
        // 63 bytes, as done here).
        use crate::warehouse::load::truncate_bytes;
        let old = self.qualified(
            schema,
            truncate_bytes(&format!("{staging_name}_pkey"), MAX_IDENT_BYTES),
        );
        let new = self.quote_ident(&format!("{}_pkey", truncate_bytes(table, 58)));
        Some(format!("ALTER INDEX IF EXISTS {old} RENAME TO {new}"))
    }

    fn float_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS DOUBLE PRECISION)")
    }

    /// NaN equals NaN in PostgreSQL (and sorts above every number).
    fn float_nan_to_null(&self, expr: &str) -> String {
        format!("NULLIF({expr}, CAST('NaN' AS DOUBLE PRECISION))")
    }

    /// Booleans cannot be cast to a float directly: through INTEGER.
    fn bool_to_float(&self, expr: &str) -> String {
        self.float_cast(&format!("CAST({expr} AS INTEGER)"))
    }

    fn lower_matches_regex(&self, col: &str, p: &str) -> Option<String> {
        Some(format!("lower({col}) ~ {p}"))
    }

    fn md5_hex(&self, expr: &str) -> Option<String> {
        Some(format!("md5({expr})"))
    }

    fn keyed_assignment_sql(
        &self,
        a: &crate::assign::pushdown::Audience,
        design: &crate::assign::Design,
        n_rows: u64,
        first: usize,
    ) -> Option<(String, Vec<Value>)> {
        Some(crate::assign::pushdown::postgres_assignment_from(
            a, design, n_rows, first,
        ))
    }

    /// The digest is a `bit(128)`: word `i` is its bits 32i.. (a shift and a truncating cast).
    /// Not on Redshift: the keyed query binds arrays and uses `generate_series`, which Redshift
    /// lacks on its leader node (docs/assignment-algorithm.md §10), so `--in-warehouse` is
    /// refused there before connecting.
    fn hex_word(&self, digest: &str, i: usize) -> Option<String> {
        (!self.redshift).then(|| format!("({digest} << {})::bit(32)::bigint", 32 * i))
    }

    /// The hex digits as one `bit(128)` per row. PostgreSQL inlines a simple subquery into every
    /// reference; a set-returning function in its select list (one element: one row per row)
    /// keeps it a subquery. `OFFSET 0` would too, but keeps the scan off parallel workers: the
    /// fingerprint query over 1M rows took 1.65 s with `OFFSET 0` and text words, 1.1 s with this
    /// and text words, 1.7 s inlined.
    fn digest_row(&self, hex: &str) -> String {
        format!("unnest(ARRAY[('x' || {hex})::bit(128)])")
    }

    fn order_bytes(&self, expr: &str) -> String {
        format!("{expr} COLLATE \"C\"")
    }

    fn snapshot_transaction_sql(&self) -> Option<&'static str> {
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    }

    fn percentile_cont(&self, p: f64, expr: &str) -> Option<String> {
        Some(format!(
            "percentile_cont({p}) WITHIN GROUP (ORDER BY {expr})"
        ))
    }

    /// PostgreSQL has real boolean, uuid and timestamp types: nothing loose.
    fn loose_type_compatibility(&self, _sheet: DataType, _live: DataType) -> bool {
        false
    }

    fn data_type_of(&self, declared: &str, is_enum: bool) -> DataType {
        declared_type(declared, is_enum)
    }

    fn table_exists_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        // to_regclass resolves through the search path when no schema is given.
        (
            "SELECT count(*) FROM (SELECT to_regclass($1) AS r) t WHERE r IS NOT NULL".into(),
            vec![Value::Text(self.qualified(schema, table))],
        )
    }

    fn list_tables_sql(&self, schema: Option<&str>) -> (String, Vec<Value>) {
        match schema {
            Some(s) => (
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r','v','m','p','f') AND n.nspname = $1"
                    .into(),
                vec![Value::Text(s.into())],
            ),
            None => (
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r','v','m','p','f') AND n.nspname = ANY (current_schemas(false))"
                    .into(),
                vec![],
            ),
        }
    }

    fn columns_sql(&self, schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        if self.redshift {
            // Redshift lacks to_regclass and array functions on pg_index: the plain
            // information schema (no primary-key information; pass --unique-id-col or
            // name the key `id`).
            let base = "SELECT column_name::text, data_type::text, is_nullable::text = 'NO', 0::int8, false \
                 FROM information_schema.columns WHERE table_name = $1 AND table_schema = ";
            return match schema {
                Some(s) => (
                    format!("{base}$2 ORDER BY ordinal_position"),
                    vec![Value::Text(table.into()), Value::Text(s.into())],
                ),
                None => (
                    format!("{base}current_schema() ORDER BY ordinal_position"),
                    vec![Value::Text(table.into())],
                ),
            };
        }
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
        (sql.into(), vec![Value::Text(self.qualified(schema, table))])
    }
}

fn declared_type(declared: &str, is_enum: bool) -> DataType {
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
