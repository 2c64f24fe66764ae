//! Reading the audience: a CSV or Parquet file (polars), or a participant type's warehouse
//! table ([`super::warehouse`]).
//!
//! Only the id column and the strata columns are read. Text columns are dictionary-encoded while
//! they are converted (no per-row allocation); the id column is read as text and becomes integer
//! ids when every value is a canonical integer that fits in i64 (exact, never through floats).

use std::path::Path;

use polars::prelude as pl;
use polars::prelude::SerReader;

use super::data::{Column, ColumnData, Ids, NULL_CODE, Table, is_canonical_int};
use crate::error::{Error, Result};

/// Rows read to infer a CSV's column types.
const SAMPLE_ROWS: usize = 10_000;

/// The kind of an input file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    Parquet,
}

pub fn file_kind(path: &Path) -> Result<FileKind> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        Ok(FileKind::Parquet)
    } else if name.ends_with(".csv") || name.ends_with(".csv.gz") || name.ends_with(".csv.zst") {
        Ok(FileKind::Csv)
    } else {
        Err(Error::usage(format!(
            "{}: unknown file type; use a .csv (optionally .gz/.zst compressed) or .parquet file",
            path.display()
        )))
    }
}

/// Read `id_column` and the `strata` columns of a CSV or Parquet file.
pub fn read_file(path: &Path, id_column: &str, strata: &[String]) -> Result<Table> {
    let kind = file_kind(path)?;
    if !path.exists() {
        return Err(Error::runtime(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    let src = path.display().to_string();
    let bad = |e: pl::PolarsError| {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim().to_string();
        Error::invalid(format!(
            "{src}: cannot read as {}: {first}",
            if kind == FileKind::Csv {
                "CSV"
            } else {
                "Parquet"
            }
        ))
    };
    // CSV: a first look at up to 10,000 rows (the id as text) gives the header and the
    // inferred types, from which the full read's dtypes are chosen: integer ids as Int64 and
    // text strata as Categorical (u32 codes), so millions of rows cost a few bytes each.
    let (header, sample): (Vec<String>, Option<pl::DataFrame>) = match kind {
        FileKind::Csv => {
            let mut schema = pl::Schema::default();
            schema.with_column(id_column.into(), pl::DataType::String);
            let opts = pl::CsvReadOptions::default()
                .with_has_header(true)
                .with_n_rows(Some(SAMPLE_ROWS))
                .with_schema_overwrite(Some(std::sync::Arc::new(schema)))
                .with_infer_schema_length(Some(SAMPLE_ROWS));
            // Give polars only the first rows' bytes (an uncompressed file): asked for a few
            // rows of a big file, it would map and scan all of it.
            let df = match head_bytes(path, SAMPLE_ROWS) {
                Some(bytes) => opts
                    .into_reader_with_file_handle(std::io::Cursor::new(bytes))
                    .finish(),
                None => opts
                    .try_into_reader_with_file_path(Some(path.to_path_buf()))
                    .and_then(|r| r.finish()),
            }
            .map_err(bad)?;
            super::run::trace("CSV sample read");
            (
                df.get_column_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                Some(df),
            )
        }
        FileKind::Parquet => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut r = pl::ParquetReader::new(f);
            let schema = r.schema().map_err(bad)?;
            (schema.iter_names().map(|s| s.to_string()).collect(), None)
        }
    };
    let mut missing = Vec::new();
    if !header.iter().any(|h| h == id_column) {
        missing.push(format!(
            "{src}: no column named {id_column} for --id-column (columns: {})",
            header.join(", ")
        ));
    }
    for s in strata {
        if s == id_column {
            missing.push(format!(
                "{src}: {s} is the id column; its values are all distinct, so it cannot be a stratum (remove it from --strata/--metrics)"
            ));
        } else if !header.iter().any(|h| h == s) {
            missing.push(format!(
                "{src}: no column named {s} in --strata/--metrics (columns: {})",
                header.join(", ")
            ));
        }
    }
    if !missing.is_empty() {
        return Err(Error::Invalid(missing));
    }
    let mut wanted: Vec<String> = vec![id_column.to_string()];
    wanted.extend(strata.iter().filter(|s| *s != id_column).cloned());
    let df = match kind {
        FileKind::Csv => {
            let sample = sample.expect("CSV sample");
            let ids_are_ints = sample
                .column(id_column)
                .ok()
                .and_then(|c| c.as_materialized_series().str().ok().cloned())
                .is_some_and(|ca| {
                    ca.iter()
                        .all(|v| v.is_some_and(|v| is_canonical_int(v) && v.parse::<i64>().is_ok()))
                });
            let mut schema = pl::Schema::default();
            for s in strata {
                if sample
                    .column(s)
                    .is_ok_and(|c| c.dtype() == &pl::DataType::String)
                {
                    schema.with_column(
                        s.as_str().into(),
                        pl::DataType::from_categories(pl::Categories::global()),
                    );
                }
            }
            drop(sample);
            let read = |id_dtype: pl::DataType| {
                let mut schema = schema.clone();
                schema.with_column(id_column.into(), id_dtype);
                pl::CsvReadOptions::default()
                    .with_has_header(true)
                    .with_columns(Some(wanted.iter().map(|s| s.as_str().into()).collect()))
                    .with_schema_overwrite(Some(std::sync::Arc::new(schema)))
                    .with_infer_schema_length(Some(SAMPLE_ROWS))
                    .try_into_reader_with_file_path(Some(path.to_path_buf()))
                    .and_then(|r| r.finish())
            };
            // Ids that look like integers in the first rows but not further down: read as text.
            match ids_are_ints {
                true => read(pl::DataType::Int64)
                    .or_else(|_| read(pl::DataType::String))
                    .map_err(bad)?,
                false => read(pl::DataType::String).map_err(bad)?,
            }
        }
        FileKind::Parquet => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            pl::ParquetReader::new(f)
                .with_columns(Some(wanted.clone()))
                .finish()
                .map_err(bad)?
        }
    };
    super::run::trace("file parsed");
    from_dataframe(&df, &src, id_column, strata)
}

/// The bytes of the header and the first `rows` records of an uncompressed CSV file (records
/// found with the csv crate, so quoted newlines are respected); None for compressed files or
/// when the file cannot be read this way (the caller then lets polars read it).
fn head_bytes(path: &Path, rows: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    if !name.ends_with(".csv") {
        return None;
    }
    let f = std::fs::File::open(path).ok()?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::new(f));
    let mut rec = csv::ByteRecord::new();
    r.byte_headers().ok()?;
    for _ in 0..rows {
        if !r.read_byte_record(&mut rec).ok()? {
            break;
        }
    }
    let end = r.position().byte();
    let mut buf = Vec::with_capacity(end as usize);
    std::fs::File::open(path)
        .ok()?
        .take(end)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Convert a polars frame holding the id and strata columns.
pub fn from_dataframe(
    df: &pl::DataFrame,
    source: &str,
    id_column: &str,
    strata: &[String],
) -> Result<Table> {
    let get = |name: &str| -> Result<pl::Series> {
        df.column(name)
            .map(|c| c.as_materialized_series().clone())
            .map_err(|_| Error::invalid(format!("{source}: no column named {name}")))
    };
    let id = get(id_column)?;
    let strata_series: Vec<(String, pl::Series)> = strata
        .iter()
        .filter(|s| *s != id_column)
        .map(|s| Ok((s.clone(), get(s)?)))
        .collect::<Result<_>>()?;
    // Convert columns in parallel (the machine has few cores; columns are independent).
    let (ids, columns) = std::thread::scope(|sc| {
        let handles: Vec<_> = strata_series
            .iter()
            .map(|(name, s)| {
                sc.spawn(move || {
                    series_to_column(s).map(|data| Column {
                        name: name.clone(),
                        data,
                    })
                })
            })
            .collect();
        let ids = series_to_ids(&id, source, id_column);
        let cols: Vec<Result<Column>> = handles
            .into_iter()
            .map(|h| h.join().expect("column conversion panicked"))
            .collect();
        (ids, cols)
    });
    let columns = columns.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Table {
        source: source.to_string(),
        id_column: id_column.to_string(),
        ids: ids?,
        columns,
    })
}

fn null_rows_error(source: &str, id_column: &str, nulls: &[usize], total_nulls: usize) -> Error {
    let rows: Vec<String> = nulls.iter().map(|r| (r + 1).to_string()).collect();
    Error::invalid(format!(
        "{source}: the id column {id_column} is empty (NULL) in {total_nulls} row(s) (data rows {}{}); every participant needs an id",
        rows.join(", "),
        if total_nulls > nulls.len() {
            ", ..."
        } else {
            ""
        }
    ))
}

fn series_to_ids(s: &pl::Series, source: &str, id_column: &str) -> Result<Ids> {
    use pl::DataType as D;
    let nulls = s.null_count();
    if nulls > 0 {
        let mask = s.is_null();
        let rows: Vec<usize> = mask
            .iter()
            .enumerate()
            .filter(|(_, v)| *v == Some(true))
            .map(|(i, _)| i)
            .take(5)
            .collect();
        return Err(null_rows_error(source, id_column, &rows, nulls));
    }
    let conv = |e: pl::PolarsError| {
        Error::invalid(format!(
            "{source}: cannot read the id column {id_column}: {e}"
        ))
    };
    match s.dtype() {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => {
            let c = s.cast(&D::Int64).map_err(conv)?;
            Ok(Ids::Int(
                c.i64().map_err(conv)?.into_no_null_iter().collect(),
            ))
        }
        D::String => {
            let ca = s.str().map_err(conv)?;
            // Fast path: canonical integers that fit in i64, without allocating strings.
            let mut ints: Vec<i64> = Vec::with_capacity(ca.len());
            let mut all_int = true;
            for v in ca.iter().map(Option::unwrap_or_default) {
                match (is_canonical_int(v), v.parse::<i64>()) {
                    (true, Ok(x)) => ints.push(x),
                    _ => {
                        all_int = false;
                        break;
                    }
                }
            }
            if all_int {
                return Ok(Ids::Int(ints));
            }
            drop(ints);
            Ok(Ids::from_strings(
                ca.iter()
                    .map(Option::unwrap_or_default)
                    .map(str::to_string)
                    .collect(),
            ))
        }
        D::Float32 | D::Float64 => {
            let c = s.cast(&D::Float64).map_err(conv)?;
            let mut out = Vec::with_capacity(c.len());
            for (i, v) in c.f64().map_err(conv)?.into_no_null_iter().enumerate() {
                if v.fract() != 0.0 || v.abs() > 9_007_199_254_740_991.0 {
                    return Err(Error::invalid(format!(
                        "{source}: the id {v} (data row {}) in {id_column} is not an integer that a float can hold exactly; store ids as integers or text",
                        i + 1
                    )));
                }
                out.push(v as i64);
            }
            Ok(Ids::Int(out))
        }
        _ => {
            let c = s.cast(&D::String).map_err(conv)?;
            Ok(Ids::from_strings(
                c.str()
                    .map_err(conv)?
                    .iter()
                    .map(Option::unwrap_or_default)
                    .map(str::to_string)
                    .collect(),
            ))
        }
    }
}

fn series_to_column(s: &pl::Series) -> Result<ColumnData> {
    use pl::DataType as D;
    let conv =
        |e: pl::PolarsError| Error::invalid(format!("cannot read the column {}: {e}", s.name()));
    Ok(match s.dtype() {
        D::Boolean => ColumnData::Bool(s.bool().map_err(conv)?.iter().collect()),
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => {
            let c = s.cast(&D::Int64).map_err(conv)?;
            ColumnData::Int(c.i64().map_err(conv)?.iter().collect())
        }
        D::Float32 | D::Float64 | D::UInt64 => {
            let c = s.cast(&D::Float64).map_err(conv)?;
            ColumnData::Float(c.f64().map_err(conv)?.iter().collect())
        }
        D::String => text_column(s.str().map_err(conv)?.iter()),
        D::Categorical(_, mapping) => {
            let phys = s.cat32().map_err(conv)?.physical();
            // Global category codes -> this column's own levels, in order of appearance.
            let mut local: Vec<u32> = Vec::new();
            let mut levels: Vec<String> = Vec::new();
            let codes = phys
                .iter()
                .map(|c| match c {
                    None => NULL_CODE,
                    Some(c) => {
                        let c = c as usize;
                        if c >= local.len() {
                            local.resize(c + 1, NULL_CODE);
                        }
                        if local[c] == NULL_CODE {
                            local[c] = levels.len() as u32;
                            levels
                                .push(mapping.cat_to_str(c as u32).unwrap_or_default().to_string());
                        }
                        local[c]
                    }
                })
                .collect();
            super::data::sorted_text(codes, levels)
        }
        _ => {
            let c = s.cast(&D::String).map_err(conv)?;
            text_column(c.str().map_err(conv)?.iter())
        }
    })
}

/// Dictionary-encode text with a fast hasher.
pub fn text_column<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ColumnData {
    let mut map: std::collections::HashMap<&'a str, u32, FxBuild> =
        std::collections::HashMap::default();
    let mut levels: Vec<String> = Vec::new();
    let (lo, _) = values.size_hint();
    let mut codes = Vec::with_capacity(lo);
    // Remember the last value: runs of equal values are common.
    let mut last: Option<(&'a str, u32)> = None;
    for v in values {
        let code = match v {
            None => NULL_CODE,
            Some(s) => match last {
                Some((l, c)) if l == s => c,
                _ => {
                    let c = *map.entry(s).or_insert_with(|| {
                        levels.push(s.to_string());
                        (levels.len() - 1) as u32
                    });
                    last = Some((s, c));
                    c
                }
            },
        };
        codes.push(code);
    }
    super::data::sorted_text(codes, levels)
}

/// FxHash (the rustc hasher): fast, not DoS-resistant — fine for dictionary-encoding columns.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);
pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_with_big_ids_nulls_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        std::fs::write(
            &p,
            "id,g,income,flag,other\n9007199254740993,m,1.5,true,x\n2,,2.5,false,y\n10,f,,true,z\n",
        )
        .unwrap();
        let t = read_file(&p, "id", &["flag".into(), "g".into(), "income".into()]).unwrap();
        assert_eq!(t.ids, Ids::Int(vec![9007199254740993, 2, 10]));
        assert_eq!(t.column("g").unwrap().data.text(1), None);
        assert_eq!(t.column("g").unwrap().data.text(2).as_deref(), Some("f"));
        assert!(matches!(
            t.column("income").unwrap().data,
            ColumnData::Float(_)
        ));
        assert!(matches!(
            t.column("flag").unwrap().data,
            ColumnData::Bool(_)
        ));
        assert!(t.column("other").is_none());

        let e = read_file(&p, "pid", &["nope".into()]).unwrap_err();
        let lines = e.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(
                "no column named pid for --id-column (columns: id, g, income, flag, other)"
            ),
            "{lines:?}"
        );
        assert!(lines[1].contains("no column named nope in --strata/--metrics"));
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn null_and_text_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        std::fs::write(&p, "id,g\na,1\n,2\nc,3\n,4\n").unwrap();
        let e = read_file(&p, "id", &[]).unwrap_err().to_string();
        assert!(e.ends_with("the id column id is empty (NULL) in 2 row(s) (data rows 2, 4); every participant needs an id"), "{e}");
        std::fs::write(&p, "id,g\n007,1\n7,2\n").unwrap();
        let t = read_file(&p, "id", &[]).unwrap();
        assert_eq!(
            t.ids,
            Ids::Text {
                values: vec!["007".into(), "7".into()],
                numeric: false
            }
        );
    }
}
