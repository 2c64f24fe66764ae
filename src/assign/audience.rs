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
///
/// A file that cannot be opened (missing, a directory, no permission) is a runtime failure
/// (exit 1); a file that is read but is not valid input is invalid (exit 3), with the line.
pub fn read_file(path: &Path, id_column: &str, strata: &[String]) -> Result<Table> {
    read_columns(path, id_column, strata, None)
}

/// [`read_file`] of the columns `columns` (the strata, and the cluster column `cluster` when
/// given, which messages then name as `--cluster-column`).
pub fn read_columns(
    path: &Path,
    id_column: &str,
    columns: &[String],
    cluster: Option<&str>,
) -> Result<Table> {
    let kind = file_kind(path)?;
    check_readable(path)?;
    let src = path.display().to_string();
    let strata = columns;
    let table = match kind {
        FileKind::Csv => read_csv(path, &src, id_column, strata, cluster)?,
        FileKind::Parquet => read_parquet(path, &src, id_column, strata, cluster)?,
    };
    super::run::trace("file parsed");
    for n in mixed_number_notices(&table) {
        crate::output::notice(n);
    }
    Ok(table)
}

/// A runtime error unless `path` is a regular file this process can open.
fn check_readable(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::runtime(format!(
            "{}: is a directory, expected a file",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(Error::runtime(format!(
            "{}: not a regular file; give the path of a CSV or Parquet file",
            path.display()
        )));
    }
    std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// The id column and every stratum must be columns of the file; a stratum cannot be the id.
fn check_columns(
    src: &str,
    header: &[String],
    id_column: &str,
    strata: &[String],
    cluster: Option<&str>,
) -> Result<()> {
    let names = header.iter().map(String::as_str).collect();
    super::check_names(
        &super::Names {
            source: src,
            noun: "column",
            names,
        },
        id_column,
        strata,
        cluster,
    )
}

fn polars_error(src: &str, what: &str, e: pl::PolarsError) -> Error {
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or("").trim().to_string();
    Error::invalid(format!("{src}: cannot read as {what}: {first}"))
}

fn read_parquet(
    path: &Path,
    src: &str,
    id_column: &str,
    strata: &[String],
    cluster: Option<&str>,
) -> Result<Table> {
    let bad = |e| polars_error(src, "Parquet", e);
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = pl::ParquetReader::new(f);
    let schema = r.schema().map_err(bad)?;
    let header: Vec<String> = schema.iter_names().map(|s| s.to_string()).collect();
    check_columns(src, &header, id_column, strata, cluster)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = pl::ParquetReader::new(f)
        .with_columns(Some(wanted_columns(id_column, strata)))
        .finish()
        .map_err(bad)?;
    from_dataframe(&df, src, id_column, strata)
}

fn wanted_columns(id_column: &str, strata: &[String]) -> Vec<String> {
    let mut wanted: Vec<String> = vec![id_column.to_string()];
    wanted.extend(strata.iter().filter(|s| *s != id_column).cloned());
    wanted
}

/// Read a CSV file in two parts, each with polars:
///
/// * the sample: the header and the first [`SAMPLE_ROWS`] records, found with the csv crate
///   (which also checks them and gives the column names with proper quote handling), extended
///   by any long records right after them. Polars reads these bytes in one piece and infers the
///   column types from all of them.
/// * the rest of the file, read by polars with the types of the sample given (integer ids as
///   Int64, text strata as Categorical), so millions of rows cost a few bytes each.
///
/// Why two parts: polars finds the end of the first record it reads in steps of at most
/// 512 KiB, scanning the record from its start at each step, which is quadratic in the length
/// of a long record (a 64 MB field took seconds, 2 GB over ten minutes). Here polars reads the
/// sample from memory in one step, and the rest starts at a short record.
///
/// If the second part fails, the whole file is checked with the csv crate for a problem to
/// report with its line; a number column of the sample with other values further down is read
/// again as text (see [`mixed_number_notices`]).
fn read_csv(
    path: &Path,
    src: &str,
    id_column: &str,
    strata: &[String],
    cluster: Option<&str>,
) -> Result<Table> {
    let mut head = scan_csv(path, src, Some(SAMPLE_ROWS))?;
    super::run::trace("CSV sample scanned");
    // An empty file (or one holding only a newline or a byte-order mark) has no header names.
    if head.names.iter().all(|n| n.is_empty()) {
        return Err(Error::invalid(format!(
            "{src}: the file is empty (no header line); a participants CSV starts with a header naming its columns"
        )));
    }
    check_unique_names(src, &head.names)?;
    check_columns(src, &head.names, id_column, strata, cluster)?;
    let wanted = wanted_columns(id_column, strata);
    let index = |name: &str| {
        head.names
            .iter()
            .position(|h| h == name)
            .expect("columns checked")
    };
    let mut df = if head.rows == 0 {
        // A header without records: empty text columns.
        pl::DataFrame::new_infer_height(
            wanted
                .iter()
                .map(|w| pl::Column::new_empty(w.as_str().into(), &pl::DataType::String))
                .collect(),
        )
        .map_err(|e| polars_error(src, "CSV", e))?
    } else {
        read_sample(&head, src, index(id_column), &wanted, &index)?
    };
    super::run::trace("CSV sample read");
    // Where polars starts reading the rest: after this many lines.
    let newlines = head.bytes[..head.end as usize]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    head.bytes = Vec::new();
    // The types of the rest: integer ids (when every sampled id is a canonical integer that
    // fits in i64) as Int64, text strata as Categorical, other columns as inferred. A column
    // without values in the sample is read as text and settled below, like a number column
    // with other values further down.
    let categorical = pl::DataType::from_categories(pl::Categories::global());
    let mut types: Vec<(String, pl::DataType)> = Vec::with_capacity(wanted.len());
    let mut pending: Vec<(usize, pl::DataType)> = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let c = df.column(w).map_err(|e| polars_error(src, "CSV", e))?;
        let t = if w == id_column {
            let ints = c.as_materialized_series().str().is_ok_and(|ca| {
                ca.iter()
                    .all(|v| v.is_some_and(|v| is_canonical_int(v) && v.parse::<i64>().is_ok()))
            });
            if ints && head.rows > 0 {
                pl::DataType::Int64
            } else {
                pl::DataType::String
            }
        } else {
            match c.dtype() {
                _ if !c.is_empty() && c.null_count() == c.len() => {
                    pending.push((i, pl::DataType::Int64));
                    pl::DataType::String
                }
                pl::DataType::String | pl::DataType::Null => categorical.clone(),
                other => other.clone(),
            }
        };
        types.push((w.clone(), t));
    }
    if !head.eof {
        let read_rest = |types: &[(String, pl::DataType)]| {
            let mut schema = pl::Schema::default();
            for h in &head.names {
                let t = types
                    .iter()
                    .find(|(w, _)| w == h)
                    .map_or(pl::DataType::String, |(_, t)| t.clone());
                schema.with_column(h.as_str().into(), t);
            }
            pl::CsvReadOptions::default()
                .with_has_header(false)
                .with_skip_lines(newlines)
                .with_schema(Some(std::sync::Arc::new(schema)))
                .with_columns(Some(wanted.iter().map(|s| s.as_str().into()).collect()))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
        };
        // Polars reads a quoted field that is never closed as running to the end of the file,
        // without an error: count the quotes of the rest meanwhile (a fast pass; the sample
        // was checked record by record).
        let (rest, odd_quotes) = std::thread::scope(|sc| {
            let parity = sc.spawn(|| odd_quotes_after(path, head.end));
            let rest = read_rest(&types);
            (rest, parity.join().expect("quote count panicked"))
        });
        if odd_quotes? {
            scan_csv(path, src, None)?;
            return Err(Error::invalid(format!(
                "{src}: a quote (\") is never closed, on line {} or after; quote whole fields (\"a,b\") and double quotes inside them (\"\")",
                head.end_line
            )));
        }
        let rest = match rest {
            Ok(rest) => rest,
            Err(e) => {
                // Report a problem the csv crate finds, with its line; else read the columns
                // read as numbers or booleans as text, and settle them below.
                scan_csv(path, src, None)?;
                let before = pending.len();
                for (i, (_, t)) in types.iter_mut().enumerate() {
                    if *t != pl::DataType::String && *t != categorical {
                        pending.push((i, std::mem::replace(t, pl::DataType::String)));
                    }
                }
                if pending.len() == before {
                    return Err(polars_error(src, "CSV", e));
                }
                read_rest(&types).map_err(|e| polars_error(src, "CSV", e))?
            }
        };
        // Polars returns the projected columns in file order; the sample is in `wanted` order
        // (the strata sorted, then the cluster column), which need not be the file's: stack by
        // name.
        df = cast_columns(df, &types, src)?;
        let rest = rest
            .select(wanted.iter().map(|w| w.as_str()))
            .map_err(|e| polars_error(src, "CSV", e))?;
        df.vstack_mut(&rest)
            .map_err(|e| polars_error(src, "CSV", e))?;
    }
    for (i, target) in pending {
        types[i].1 = settle_type(&df, &types[i].0, &target, &categorical, id_column);
    }
    let df = cast_columns(df, &types, src)?;
    let mut table = from_dataframe(&df, src, id_column, strata)?;
    table.origin = Some(path.to_path_buf());
    Ok(table)
}

/// The type a column read as text takes when the sample said `target` (numbers or booleans):
/// `target` if every value converts, else Float64 for integers that turned out to have decimals,
/// else text. The id column stays text ([`series_to_ids`] decides).
fn settle_type(
    df: &pl::DataFrame,
    name: &str,
    target: &pl::DataType,
    categorical: &pl::DataType,
    id_column: &str,
) -> pl::DataType {
    if name == id_column {
        return pl::DataType::String;
    }
    let Ok(c) = df.column(name) else {
        return categorical.clone();
    };
    let s = c.as_materialized_series();
    let mut tries = vec![target.clone()];
    if *target == pl::DataType::Int64 {
        tries.push(pl::DataType::Float64);
    }
    tries
        .into_iter()
        .find(|t| s.strict_cast(t).is_ok())
        .unwrap_or_else(|| categorical.clone())
}

/// Cast the sample's columns to the types of the rest of the file.
fn cast_columns(
    mut df: pl::DataFrame,
    types: &[(String, pl::DataType)],
    src: &str,
) -> Result<pl::DataFrame> {
    let mut cols = Vec::with_capacity(types.len());
    for (name, t) in types {
        let c = df
            .column(name)
            .map_err(|e| polars_error(src, "CSV", e))?
            .cast(t)
            .map_err(|e| polars_error(src, "CSV", e))?;
        cols.push(c);
    }
    df = pl::DataFrame::new_infer_height(cols).map_err(|e| polars_error(src, "CSV", e))?;
    Ok(df)
}

/// Polars reads the sample (header and records scanned by [`scan_csv`]) from memory, in one
/// piece, inferring the types from every sampled record; the id column is read as text.
fn read_sample(
    head: &Scan,
    src: &str,
    id_index: usize,
    wanted: &[String],
    index: &dyn Fn(&str) -> usize,
) -> Result<pl::DataFrame> {
    // Without the header line polars names the columns column_1, column_2, …
    let polars_name = |i: usize| format!("column_{}", i + 1);
    let mut schema = pl::Schema::default();
    schema.with_column(polars_name(id_index).into(), pl::DataType::String);
    let bytes = &head.bytes[head.header_end as usize..head.end as usize];
    let mut df = pl::CsvReadOptions::default()
        .with_has_header(false)
        .with_infer_schema_length(None)
        .with_schema_overwrite(Some(std::sync::Arc::new(schema)))
        .with_columns(Some(
            wanted
                .iter()
                .map(|w| polars_name(index(w)).into())
                .collect(),
        ))
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| polars_error(src, "CSV", e))?;
    for w in wanted {
        df.rename(&polars_name(index(w)), w.as_str().into())
            .map_err(|e| polars_error(src, "CSV", e))?;
    }
    Ok(df)
}

/// Two columns with the same name are an error naming both.
fn check_unique_names(src: &str, names: &[String]) -> Result<()> {
    let mut errs = Vec::new();
    for (j, n) in names.iter().enumerate() {
        if let Some(i) = names[..j].iter().position(|m| m == n) {
            errs.push(format!(
                "{src}: line 1: columns {} and {} are both named {n}; give every column its own name",
                i + 1,
                j + 1
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errs))
    }
}

/// A CSV record at least this long is read with the sample, never as the first record of the
/// rest of the file (see [`read_csv`]). Polars looks for the end of that first record in reads
/// of 32 KiB, 128 KiB, then 512 KiB more each time, rescanning from its start: below 1 MiB that
/// is a few passes at most; wide files (records of tens of KiB) do not grow the sample.
const LONG_RECORD: u64 = 1 << 20;

/// What [`scan_csv`] found.
struct Scan {
    /// The column names, unquoted by the csv crate (`"g""x"` is `g"x`).
    names: Vec<String>,
    /// Offsets in the (decompressed) text: after the header, and after the last record read.
    header_end: u64,
    end: u64,
    /// The line at `end`.
    end_line: u64,
    /// Data records read.
    rows: usize,
    /// The records read are all there are.
    eof: bool,
    /// With a sample: the text from its start, at least up to `end`.
    bytes: Vec<u8>,
}

/// A reader of a CSV file's text from offset `from`: gzip and zstd files (recognised by their
/// first bytes, as polars does) are decompressed.
fn open_csv(path: &Path, from: u64) -> Result<Box<dyn std::io::Read>> {
    use std::io::{Read, Seek};
    let io = |e| Error::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match f.read(&mut magic[n..]).map_err(io)? {
            0 => break,
            k => n += k,
        }
    }
    f.rewind().map_err(io)?;
    let mut r: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            f,
        ))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(f).map_err(io)?),
        _ => {
            f.seek(std::io::SeekFrom::Start(from)).map_err(io)?;
            return Ok(Box::new(f));
        }
    };
    std::io::copy(&mut (&mut r).take(from), &mut std::io::sink()).map_err(io)?;
    Ok(r)
}

/// Passes bytes through, keeping a copy of those from offset `base` on (all of them when
/// `keep`, else only the current record's, see [`Tee::forget_before`]).
struct Tee<R> {
    inner: R,
    bytes: Vec<u8>,
    base: u64,
    keep: bool,
}

impl<R> Tee<R> {
    /// Drop the copied bytes before offset `at` (unless keeping everything).
    fn forget_before(&mut self, at: u64) {
        // Only when most of the copy is stale, so each byte is moved O(1) times.
        let k = (at.saturating_sub(self.base) as usize).min(self.bytes.len());
        if !self.keep && k > 0 && k >= self.bytes.len() / 2 {
            self.bytes.drain(..k);
            self.base += k as u64;
        }
    }

    fn range(&self, from: u64, to: u64) -> &[u8] {
        let a = (from.saturating_sub(self.base) as usize).min(self.bytes.len());
        let b = (to.saturating_sub(self.base) as usize).min(self.bytes.len());
        &self.bytes[a..b]
    }
}

impl<R: std::io::Read> std::io::Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn csv_reader<R: std::io::Read>(r: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(r)
}

/// Read the header and the records of a CSV file with the csv crate, checking each record: it
/// is UTF-8, has no more fields than the header, and has no unmatched quote. With `sample`,
/// stop after that many records (and any long ones right after them) and keep the text read;
/// else read to the end. Linear in the size of the file.
fn scan_csv(path: &Path, src: &str, sample: Option<usize>) -> Result<Scan> {
    let tee = Tee {
        inner: open_csv(path, 0)?,
        bytes: Vec::new(),
        base: 0,
        keep: sample.is_some(),
    };
    let mut r = csv_reader(tee);
    let io = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => Error::io(path, e),
        other => Error::runtime(format!("{src}: cannot read: {other:?}")),
    };
    let header = r.byte_headers().map_err(io)?.clone();
    let header_end = r.position().byte();
    let header_line = header.position().map_or(1, |p| p.line());
    let header_start = header.position().map_or(0, |p| p.byte());
    check_record(
        src,
        &header,
        None,
        header_line,
        r.get_ref().range(header_start, header_end),
    )?;
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0usize;
    let (end, end_line, eof) = loop {
        let before = r.position().clone();
        r.get_mut().forget_before(before.byte());
        if !r.read_byte_record(&mut rec).map_err(io)? {
            break (before.byte(), before.line(), true);
        }
        let end = r.position().byte();
        let pos = rec.position().expect("a record read has a position");
        if sample.is_some_and(|k| rows >= k) && end - pos.byte() < LONG_RECORD {
            break (pos.byte(), pos.line(), false);
        }
        let raw = r.get_ref().range(pos.byte(), end);
        check_record(src, &rec, Some(names.len()), pos.line(), raw)?;
        rows += 1;
    };
    let bytes = std::mem::take(&mut r.get_mut().bytes);
    // The csv crate ends a record at the \r of a \r\n and skips the \n when it reads the next
    // one: the offsets handed to polars must be past it, at the start of a line.
    let past_lf = |at: u64| at + u64::from(bytes.get(at as usize) == Some(&b'\n'));
    let (header_end, end) = match sample {
        Some(_) => (past_lf(header_end), past_lf(end)),
        None => (header_end, end),
    };
    Ok(Scan {
        names,
        header_end,
        end,
        end_line,
        rows,
        eof,
        bytes,
    })
}

/// One record's checks (the header's with `fields` None), naming its line.
fn check_record(
    src: &str,
    rec: &csv::ByteRecord,
    fields: Option<usize>,
    line: u64,
    raw: &[u8],
) -> Result<()> {
    if rec.iter().any(|f| std::str::from_utf8(f).is_err()) {
        return Err(Error::invalid(format!(
            "{src}: line {line} is not valid UTF-8 text; save the file with UTF-8 encoding"
        )));
    }
    if let Some(m) = fields
        && rec.len() > m
    {
        return Err(Error::invalid(format!(
            "{src}: line {line} has {} fields but the header has {m}; quote values that contain a comma (\"a,b\") or remove the extra fields",
            rec.len()
        )));
    }
    // A quoted field holds an even number of quote characters ("a ""b"" c"); an odd count
    // is a quote never closed (the record then runs to the end of the file) or a stray one.
    if raw.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
        return Err(Error::invalid(format!(
            "{src}: line {line} has a quote (\") that is never closed; quote whole fields (\"a,b\") and double quotes inside them (\"\")"
        )));
    }
    Ok(())
}

/// Whether the text from offset `from` on holds an odd number of quote characters.
fn odd_quotes_after(path: &Path, from: u64) -> Result<bool> {
    use std::io::Read;
    let io = |e| Error::io(path, e);
    let mut r = open_csv(path, from)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut odd = false;
    loop {
        let n = r.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(odd);
        }
        odd ^= buf[..n].iter().filter(|&&b| b == b'"').count() % 2 == 1;
    }
}

/// The line on which each of the given data records (0-based, in file order) starts.
pub fn record_lines(path: &Path, rows: &[u32]) -> Result<Vec<u64>> {
    let mut wanted: Vec<u32> = rows.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found = std::collections::HashMap::new();
    let mut r = csv_reader(open_csv(path, 0)?);
    let mut rec = csv::ByteRecord::new();
    let io = |e: csv::Error| Error::runtime(format!("{}: {e}", path.display()));
    r.byte_headers().map_err(io)?;
    let mut i = 0u32;
    for &w in &wanted {
        while i <= w {
            if !r.read_byte_record(&mut rec).map_err(io)? {
                return Err(Error::runtime(format!(
                    "{}: fewer records than before; was the file changed?",
                    path.display()
                )));
            }
            i += 1;
        }
        found.insert(w, rec.position().map_or(0, |p| p.line()));
    }
    Ok(rows.iter().map(|r| found[r]).collect())
}

/// Is this text a number (as polars reads numbers: `12`, `-1.5`, `1e3`, `inf`, `NaN`)?
fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// A text column whose values are mostly numbers is kept as text (categories): the rule is
/// that a column is numeric only if every value in it is a number, wherever the other values
/// are in the file (so the result does not depend on the order of the rows, and matches how the
/// Python tool's pandas reads such a column). A notice names the first value that is not a
/// number and where it is, so that a typo in a numeric column is not silently a category.
pub fn mixed_number_notices(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for c in &table.columns {
        let ColumnData::Text { codes, levels } = &c.data else {
            continue;
        };
        let numeric: Vec<bool> = levels.iter().map(|l| is_number(l)).collect();
        if !numeric.contains(&true) {
            continue; // no value is a number: no notice, and no pass over the rows
        }
        let (mut numbers, mut others) = (0usize, 0usize);
        let mut first_other: Option<usize> = None;
        for (i, &code) in codes.iter().enumerate() {
            if code == NULL_CODE {
                continue;
            }
            if numeric[code as usize] {
                numbers += 1;
            } else {
                others += 1;
                first_other.get_or_insert(i);
            }
        }
        if let Some(i) = first_other
            && numbers > others
        {
            out.push(format!(
                "{}: column {} is read as text, not as numbers: {others} of its {} values are not numbers, the first `{}` for {}; correct them (leave a missing value empty) to use {} as numbers",
                table.source,
                c.name,
                numbers + others,
                levels[codes[i] as usize],
                table.describe_row(i as u32),
                c.name
            ));
        }
    }
    out
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
        origin: None,
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
    use crate::input::names::*;

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
            lines[0].ends_with(&format!(
                "no column named pid for {ID_COLUMN} (columns: id, g, income, flag, other)"
            )),
            "{lines:?}"
        );
        assert!(lines[1].contains(&format!("no column named nope in {STRATA}/{METRICS}")));
        assert_eq!(e.exit_code(), 3);
    }

    /// `n` records `id,g,x` with a 600 KB quoted field in record 1 and in the record right
    /// after the sample, and `tail` appended.
    #[test]
    fn strata_named_out_of_alphabetical_order_read_past_the_sample() {
        // A release build failed on such a file (5M rows, bench/assign_vs_python.sh) with
        // "unable to vstack, column names don't match": the rest of the file came back in
        // another column order than the sample's. Debug builds (smaller polars chunks) did not
        // fail; this test pins the expected result.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        let mut s = String::from("id,gender,region,district,age\n");
        for i in 0..SAMPLE_ROWS + 500 {
            let g = ["female", "male", ""][i % 3];
            let r = ["north", "south", "east", "west", ""][i % 5];
            s += &format!("{i},{g},{r},district_{:02},{}\n", i % 50, 18 + i % 70);
        }
        std::fs::write(&path, s).unwrap();
        let strata = ["gender", "region", "district"].map(String::from);
        let t = read_file(&path, "id", &strata).unwrap();
        assert_eq!(t.len(), SAMPLE_ROWS + 500);
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["gender", "region", "district"]);
        let last = SAMPLE_ROWS + 499;
        let text = |c: usize| {
            let mut v = Vec::new();
            t.columns[c].data.write_text(last, &mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            (text(0), text(1), text(2)),
            (
                ["female", "male", ""][last % 3].to_string(),
                ["north", "south", "east", "west", ""][last % 5].to_string(),
                format!("district_{:02}", last % 50)
            )
        );
    }

    fn big_csv(n: usize, tail: &str) -> String {
        // Longer than polars' 512 KiB read step; q (right after the sample) longer than
        // LONG_RECORD, so it is read with the sample.
        let long = |c: &str| {
            let n = if c == "q" { 1_100_000 } else { 600_000 };
            format!("\"{}\"\"{c}\"", c.repeat(n))
        };
        let mut s = String::from("id,g,x\n");
        for i in 1..=n {
            let g = match i {
                1 => long("p"),
                i if i == SAMPLE_ROWS + 1 => long("q"),
                _ => ["a", "b"][i % 2].to_string(),
            };
            s += &format!("{i},{g},{}\n", i % 7);
        }
        s + tail
    }

    #[test]
    fn compressed_csv_reads_like_plain_csv() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let text = big_csv(SAMPLE_ROWS + 50, "");
        let plain = dir.path().join("p.csv");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("p.csv.gz");
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
        let zst = dir.path().join("p.csv.zst");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 1).unwrap()).unwrap();
        let strata = ["g".to_string(), "x".to_string()];
        let t = read_file(&plain, "id", &strata).unwrap();
        assert_eq!(t.len(), SAMPLE_ROWS + 50);
        let g = &t.column("g").unwrap().data;
        assert_eq!(g.text(0).unwrap(), format!("{}\"p", "p".repeat(600_000)));
        assert_eq!(
            g.text(SAMPLE_ROWS).unwrap(),
            format!("{}\"q", "q".repeat(1_100_000))
        );
        assert_eq!(g.text(SAMPLE_ROWS + 1).as_deref(), Some("a"));
        assert!(matches!(t.column("x").unwrap().data, ColumnData::Int(_)));
        for p in [gz, zst] {
            let c = read_file(&p, "id", &strata).unwrap();
            assert_eq!((c.ids, c.columns), (t.ids.clone(), t.columns.clone()));
        }
    }

    #[test]
    fn polars_never_starts_the_rest_at_a_long_record() {
        // The mechanism that keeps reading linear: records of LONG_RECORD or more right after
        // the sample join it (polars reads the sample in one piece), so the rest starts at a
        // short record.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let text = big_csv(SAMPLE_ROWS + 5, "");
        std::fs::write(&p, &text).unwrap();
        let head = scan_csv(&p, "p.csv", Some(SAMPLE_ROWS)).unwrap();
        assert_eq!(head.rows, SAMPLE_ROWS + 1);
        assert!(!head.eof);
        let rest = &text.as_bytes()[head.end as usize..];
        assert!(rest.starts_with(format!("{},a,", SAMPLE_ROWS + 2).as_bytes()));
        assert_eq!(head.names, ["id", "g", "x"]);
    }

    #[test]
    fn crlf_line_ends_read_like_lf() {
        let dir = tempfile::tempdir().unwrap();
        let text = big_csv(SAMPLE_ROWS + 30, "");
        let lf = dir.path().join("lf.csv");
        std::fs::write(&lf, &text).unwrap();
        let crlf = dir.path().join("crlf.csv");
        std::fs::write(&crlf, text.replace('\n', "\r\n")).unwrap();
        let strata = ["g".to_string(), "x".to_string()];
        let a = read_file(&lf, "id", &strata).unwrap();
        let b = read_file(&crlf, "id", &strata).unwrap();
        assert_eq!(a.len(), SAMPLE_ROWS + 30);
        assert_eq!((a.ids, a.columns), (b.ids, b.columns));
    }

    #[test]
    fn types_that_change_after_the_sample() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let n = SAMPLE_ROWS + 20;
        // Integer ids, then a text id; an integer column, then a decimal; a short record (a
        // missing value, as pandas reads it).
        let tail = format!("x{},a,2.5\n{},b\n", n + 1, n + 2);
        std::fs::write(&p, big_csv(n, &tail)).unwrap();
        let t = read_file(&p, "id", &["x".to_string()]).unwrap();
        assert_eq!(t.len(), n + 2);
        assert!(matches!(&t.ids, Ids::Text { numeric: false, .. }));
        assert_eq!(t.ids.text(n), format!("x{}", n + 1));
        assert_eq!(t.ids.text(0), "1");
        let ColumnData::Float(x) = &t.column("x").unwrap().data else {
            panic!("x is not a float column");
        };
        assert_eq!((x[0], x[n], x[n + 1]), (Some(1.0), Some(2.5), None));
    }

    #[test]
    fn column_empty_in_the_sample_takes_the_type_of_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let mut s = String::from("id,late,word\n");
        for i in 1..=SAMPLE_ROWS + 10 {
            let v = if i > SAMPLE_ROWS {
                (i % 3).to_string()
            } else {
                String::new()
            };
            s += &format!("{i},{v},{v}\n");
        }
        s += &format!("{},1,x\n", SAMPLE_ROWS + 11);
        std::fs::write(&p, s).unwrap();
        let t = read_file(&p, "id", &["late".into(), "word".into()]).unwrap();
        let ColumnData::Int(late) = &t.column("late").unwrap().data else {
            panic!("late is not an integer column");
        };
        assert_eq!(
            (late[0], late[SAMPLE_ROWS]),
            (None, Some(((SAMPLE_ROWS + 1) % 3) as i64))
        );
        assert!(matches!(
            t.column("word").unwrap().data,
            ColumnData::Text { .. }
        ));
    }

    #[test]
    fn notice_only_for_text_columns_of_mostly_numbers() {
        let col = |name: &str, v: &[Option<&str>]| Column {
            name: name.into(),
            data: ColumnData::text_from(v.iter().copied()),
        };
        let t = Table {
            source: "p.csv".into(),
            id_column: "id".into(),
            ids: Ids::Int(vec![10, 11, 12, 13]),
            columns: vec![
                col("score", &[Some("1.5"), None, Some("n/a"), Some("2")]),
                col("grade", &[Some("K"), Some("1"), Some("K"), Some("2")]),
                col("name", &[Some("ann"), Some("7"), Some("bob"), Some("cy")]),
            ],
            origin: None,
        };
        assert_eq!(
            mixed_number_notices(&t),
            vec![
                "p.csv: column score is read as text, not as numbers: 1 of its 3 values are not numbers, the first `n/a` for participant id 12; correct them (leave a missing value empty) to use score as numbers"
            ]
        );
    }

    #[test]
    fn empty_file_is_refused_as_having_no_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.csv");
        for content in ["", "\n", "\u{feff}", "\r\n"] {
            std::fs::write(&p, content).unwrap();
            let e = read_csv(&p, "empty.csv", "id", &[], None).unwrap_err();
            assert_eq!(e.exit_code(), 3);
            assert_eq!(
                e.to_string(),
                "empty.csv: the file is empty (no header line); a participants CSV starts with a header naming its columns",
                "{content:?}"
            );
        }
    }

    #[test]
    fn header_only_file_is_an_empty_audience() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        std::fs::write(&p, "id,g\n").unwrap();
        let t = read_file(&p, "id", &["g".to_string()]).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.column("g").unwrap().data.len(), 0);
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
