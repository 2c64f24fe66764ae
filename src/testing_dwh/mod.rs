//! The testing warehouse: a deterministic synthetic population with the reference's column set
//! (docs/compatibility.md#testing-warehouse), the bundled fixture made from it, loading
//! it (or any CSV) into a warehouse, and the embedded default SQLite warehouse.
//!
//! Regenerate the fixture byte-identically with
//! `xngin create-testing-dwh --rows 100000 --seed 42 --export-csv fixtures/testing_dwh.csv.zst`.

mod default;
pub mod generate;
pub mod source;

use crate::input::names::*;
use std::io::Write;
use std::path::Path;

pub use default::{
    DEFAULT_TABLE, data_version, default_db_path, default_warehouse, default_warehouse_at,
};
pub use source::{Source, TableData, open_source};

use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::warehouse::Value;
use crate::warehouse::load::ColumnDef;

/// The bundled fixture, compiled into the binary so the default warehouse needs no files.
pub static FIXTURE: &[u8] = include_bytes!("../../fixtures/testing_dwh.csv.zst");

/// The testing warehouse's columns, in CSV order.
pub const COLUMNS: [(&str, DataType); 23] = [
    ("id", DataType::Bigint),
    ("gender", DataType::CharacterVarying),
    ("ethnicity", DataType::CharacterVarying),
    ("first_name", DataType::CharacterVarying),
    ("last_name", DataType::CharacterVarying),
    ("income", DataType::DoublePrecision),
    ("potential_0", DataType::DoublePrecision),
    ("potential_1", DataType::Bigint),
    ("is_recruited", DataType::Boolean),
    ("is_registered", DataType::Boolean),
    ("is_onboarded", DataType::Boolean),
    ("is_engaged", DataType::Boolean),
    ("is_retained", DataType::Boolean),
    ("is_onboarded_onetime", DataType::Boolean),
    ("baseline_income", DataType::DoublePrecision),
    ("current_income", DataType::DoublePrecision),
    ("uuid_filter", DataType::Uuid),
    ("sample_date", DataType::Date),
    ("sample_timestamp", DataType::TimestampWithoutTimeZone),
    ("timestamp_with_tz", DataType::TimestampWithTimeZone),
    ("school_id", DataType::Bigint),
    ("school_district", DataType::CharacterVarying),
    ("school_type", DataType::CharacterVarying),
];

/// Column definitions for DDL: `id` is the primary key, `timestamp_with_tz` NOT NULL.
pub fn column_defs() -> Vec<ColumnDef> {
    COLUMNS
        .iter()
        .map(|(name, t)| {
            let c = ColumnDef::new(name, *t);
            match *name {
                "id" => c.primary_key(),
                "timestamp_with_tz" => c.not_null(),
                _ => c,
            }
        })
        .collect()
}

/// Write rows as CSV (header first; NULL as an empty field; booleans `true`/`false`).
pub fn write_csv<W: Write>(
    w: W,
    columns: &[ColumnDef],
    rows: impl Iterator<Item = Vec<Value>>,
) -> Result<u64> {
    let mut out = csv::WriterBuilder::new().from_writer(w);
    let err = |e: csv::Error| Error::runtime(format!("writing CSV: {e}"));
    out.write_record(columns.iter().map(|c| c.name.as_str()))
        .map_err(err)?;
    let mut n = 0;
    for row in rows {
        out.write_record(row.iter().map(|v| v.to_text().unwrap_or_default()))
            .map_err(err)?;
        n += 1;
    }
    out.flush()
        .map_err(|e| Error::runtime(format!("writing CSV: {e}")))?;
    Ok(n)
}

/// Write `n` generated rows to `path` (`.csv`, or `.csv.zst` compressed at level 19), atomically.
pub fn export_csv(path: &Path, n: u64, seed: u64, replace: bool) -> Result<u64> {
    let name = path.to_string_lossy();
    let zst = name.ends_with(".csv.zst");
    if !zst && !name.ends_with(".csv") {
        return Err(Error::usage(format!(
            "{EXPORT_CSV} {name}: the file name must end in .csv or .csv.zst"
        )));
    }
    let mut count = 0;
    crate::output::write_atomic(path, replace, |w| {
        let cols = column_defs();
        if zst {
            let mut enc = zstd::Encoder::new(w, 19).map_err(|e| Error::io(path, e))?;
            count = write_csv(&mut enc, &cols, generate::rows(n, seed))?;
            enc.finish().map_err(|e| Error::io(path, e))?;
        } else {
            count = write_csv(w, &cols, generate::rows(n, seed))?;
        }
        Ok(())
    })?;
    Ok(count)
}

/// What `create-testing-dwh` loads and where.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub dsn: crate::dsn::Dsn,
    pub source: Source,
    pub nrows: Option<u64>,
    pub schema: Option<String>,
    pub table: String,
    pub if_exists: crate::warehouse::load::IfExists,
}

/// Load the testing warehouse (or a CSV, or synthetic rows) into `opts.dsn`, atomically.
pub async fn create(opts: &CreateOptions) -> Result<crate::warehouse::load::LoadOutcome> {
    use crate::warehouse::{ConnectOptions, Warehouse};
    if opts.nrows == Some(0) {
        return Err(Error::usage(format!("{NROWS} must be at least 1")));
    }
    // Open the source first: a missing or malformed file fails before anything connects.
    let data = open_source(&opts.source, opts.nrows)?;
    let wh = Warehouse::connect_with(
        &opts.dsn,
        ConnectOptions {
            create_sqlite: true,
        },
    )
    .await?;
    let pb = crate::output::progress(data.len, "Loading");
    let result = crate::warehouse::load::load_table(
        &wh,
        opts.schema.as_deref(),
        &opts.table,
        &data.columns,
        data.rows,
        opts.if_exists,
        &pb,
    )
    .await;
    pb.finish_and_clear();
    wh.close().await;
    result
}
