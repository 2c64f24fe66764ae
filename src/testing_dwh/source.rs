//! Where `create-testing-dwh` takes rows from: the bundled fixture, a `.csv`/`.csv.zst` file, or
//! the generator. CSV rows are streamed (never the whole file in memory) and typed per column:
//! by the testing warehouse's schema when the header is exactly its columns, otherwise by types
//! inferred in a first pass over the file.

use crate::input::names::*;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::{FIXTURE, column_defs, generate};
use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::warehouse::Value;
use crate::warehouse::load::ColumnDef;

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The bundled `fixtures/testing_dwh.csv.zst` (compiled in).
    Fixture,
    /// A `.csv` or `.csv.zst` file.
    File(PathBuf),
    /// `rows` synthetic rows from the generator with `seed`.
    Synthetic { rows: u64, seed: u64 },
}

/// Typed columns and a stream of rows.
pub struct TableData {
    pub columns: Vec<ColumnDef>,
    pub rows: Box<dyn Iterator<Item = Result<Vec<Value>>> + Send>,
    /// The number of rows when known in advance (for the progress bar).
    pub len: Option<u64>,
}

/// Open a source; `nrows` limits how many data rows are read.
pub fn open_source(src: &Source, nrows: Option<u64>) -> Result<TableData> {
    match src {
        Source::Synthetic { rows, seed } => {
            let n = nrows.map_or(*rows, |m| m.min(*rows));
            Ok(TableData {
                columns: column_defs(),
                rows: Box::new(generate::rows(n, *seed).map(Ok)),
                len: Some(n),
            })
        }
        Source::Fixture => {
            let label = "bundled fixture testing_dwh.csv.zst";
            let open = move || -> Result<Box<dyn Read + Send>> {
                let dec = zstd::Decoder::new(FIXTURE)
                    .map_err(|e| Error::runtime(format!("{label}: {e}")))?;
                Ok(Box::new(dec))
            };
            csv_source(label.into(), Box::new(open), nrows)
        }
        Source::File(path) => {
            let name = path.to_string_lossy().to_string();
            let zst = name.ends_with(".csv.zst");
            if !zst && !name.ends_with(".csv") {
                return Err(Error::usage(format!(
                    "{SRC} {name}: must end in .csv or .csv.zst"
                )));
            }
            if !path.is_file() {
                return Err(Error::usage(format!("{SRC} {name}: no such file")));
            }
            let p = path.clone();
            let open = move || -> Result<Box<dyn Read + Send>> {
                let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
                if zst {
                    let dec = zstd::Decoder::new(f).map_err(|e| Error::io(&p, e))?;
                    Ok(Box::new(dec))
                } else {
                    Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
                }
            };
            csv_source(name, Box::new(open), nrows)
        }
    }
}

type Opener = Box<dyn Fn() -> Result<Box<dyn Read + Send>> + Send>;

fn csv_reader(r: Box<dyn Read + Send>) -> csv::Reader<Box<dyn Read + Send>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(r)
}

fn csv_error(label: &str, e: csv::Error) -> Error {
    use csv::ErrorKind;
    let line = e.position().map(|p| p.line());
    match e.kind() {
        ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Error::runtime(format!(
            "{label}: line {}: {len} fields, but the header has {expected_len}; fix the row or its quoting",
            line.unwrap_or(0)
        )),
        ErrorKind::Utf8 { pos, err } => Error::runtime(format!(
            "{label}: line {}, field {}: not valid UTF-8; convert the file to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)",
            pos.as_ref().map(|p| p.line()).or(line).unwrap_or(0),
            err.field() + 1
        )),
        ErrorKind::Io(io) => Error::runtime(format!(
            "{label}: cannot read: {} (is the file a complete .csv.zst?)",
            crate::error::io_reason(io)
        )),
        _ => Error::runtime(format!("{label}: {e}")),
    }
}

fn csv_source(label: String, open: Opener, nrows: Option<u64>) -> Result<TableData> {
    let mut rdr = csv_reader(open()?);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(&label, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(Error::runtime(format!(
            "{label}: the file is empty; expected a header row"
        )));
    }
    if let Some(dup) = header
        .iter()
        .enumerate()
        .find(|(i, h)| header[..*i].contains(h))
    {
        return Err(Error::runtime(format!(
            "{label}: line 1: column '{}' appears twice in the header",
            dup.1
        )));
    }
    let known = column_defs();
    let columns = if header
        .iter()
        .map(String::as_str)
        .eq(known.iter().map(|c| c.name.as_str()))
    {
        known
    } else {
        infer_columns(&label, &header, csv_reader(open()?), nrows)?
    };
    let types: Vec<DataType> = columns.iter().map(|c| c.data_type).collect();
    let names: Vec<String> = header.clone();
    let limit = nrows.unwrap_or(u64::MAX);
    let mut record = csv::ByteRecord::new();
    let mut read = 0u64;
    let rows = std::iter::from_fn(move || {
        if read >= limit {
            return None;
        }
        match rdr.read_byte_record(&mut record) {
            Ok(false) => None,
            Err(e) => {
                read = limit;
                Some(Err(csv_error(&label, e)))
            }
            Ok(true) => {
                read += 1;
                let line = record.position().map_or(read + 1, |p| p.line());
                let row: Result<Vec<Value>> = record
                    .iter()
                    .zip(&types)
                    .zip(&names)
                    .enumerate()
                    .map(|(i, ((cell, t), name))| {
                        let cell = utf8_cell(&label, line, i, cell)?;
                        parse_cell(cell, *t).ok_or_else(|| {
                            Error::runtime(format!(
                                "{label}: line {line}, column {name}: '{cell}' is not a valid {t}; fix the value or leave it empty for NULL"
                            ))
                        })
                    })
                    .collect();
                if row.is_err() {
                    read = limit;
                }
                Some(row)
            }
        }
    });
    Ok(TableData {
        columns,
        rows: Box::new(rows),
        len: None,
    })
}

/// Infer each column's type from every non-empty cell: boolean, bigint, double precision, uuid,
/// date, timestamp, timestamp with time zone, else character varying.
fn infer_columns(
    label: &str,
    header: &[String],
    mut rdr: csv::Reader<Box<dyn Read + Send>>,
    nrows: Option<u64>,
) -> Result<Vec<ColumnDef>> {
    const CANDIDATES: [DataType; 7] = [
        DataType::Boolean,
        DataType::Bigint,
        DataType::DoublePrecision,
        DataType::Uuid,
        DataType::Date,
        DataType::TimestampWithoutTimeZone,
        DataType::TimestampWithTimeZone,
    ];
    // For each column, the candidates still possible (bit i = CANDIDATES[i]).
    let mut possible = vec![(1u8 << CANDIDATES.len()) - 1; header.len()];
    let mut seen = vec![false; header.len()];
    let mut record = csv::ByteRecord::new();
    let mut n = 0u64;
    while nrows.is_none_or(|m| n < m)
        && rdr
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(label, e))?
    {
        n += 1;
        let line = record.position().map_or(n + 1, |p| p.line());
        for (i, cell) in record.iter().enumerate() {
            let cell = utf8_cell(label, line, i, cell)?;
            if cell.is_empty() || possible[i] == 0 {
                continue;
            }
            seen[i] = true;
            for (b, t) in CANDIDATES.iter().enumerate() {
                if possible[i] & (1 << b) != 0 && parse_cell(cell, *t).is_none() {
                    possible[i] &= !(1 << b);
                }
            }
        }
    }
    Ok(header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = if !seen[i] {
                DataType::CharacterVarying
            } else {
                (0..CANDIDATES.len())
                    .find(|b| possible[i] & (1 << b) != 0)
                    .map_or(DataType::CharacterVarying, |b| CANDIDATES[b])
            };
            ColumnDef::new(name, t)
        })
        .collect())
}

fn utf8_cell<'a>(label: &str, line: u64, field: usize, cell: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(cell).map_err(|_| {
        Error::runtime(format!(
            "{label}: line {line}, field {}: not valid UTF-8; convert the file to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)",
            field + 1
        ))
    })
}

/// Parse one CSV cell as `t`; an empty cell is NULL. `None` when the text is not a valid `t`.
pub fn parse_cell(cell: &str, t: DataType) -> Option<Value> {
    if cell.is_empty() {
        return Some(Value::Null);
    }
    let s = cell.trim();
    Some(match t {
        DataType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" | "t" => Value::Bool(true),
            "false" | "f" => Value::Bool(false),
            _ => return None,
        },
        DataType::Integer | DataType::Bigint => Value::Int(s.parse().ok()?),
        DataType::DoublePrecision | DataType::Numeric => {
            let f: f64 = s.parse().ok()?;
            // "inf"/"nan" parse in Rust but are not numbers a warehouse column should get from a CSV.
            if !f.is_finite() {
                return None;
            }
            Value::Float(f)
        }
        DataType::Uuid => Value::Uuid(uuid::Uuid::try_parse(s).ok()?),
        DataType::Date => Value::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?),
        DataType::TimestampWithoutTimeZone => Value::Timestamp(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
                .ok()?,
        ),
        DataType::TimestampWithTimeZone => Value::TimestampTz(
            DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
                .or_else(|_| DateTime::parse_from_rfc3339(s))
                .ok()?
                .with_timezone(&Utc),
        ),
        _ => Value::Text(cell.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        assert_eq!(parse_cell("", DataType::Bigint), Some(Value::Null));
        assert_eq!(parse_cell("12", DataType::Bigint), Some(Value::Int(12)));
        assert_eq!(parse_cell("1.5", DataType::Bigint), None);
        assert_eq!(
            parse_cell("True", DataType::Boolean),
            Some(Value::Bool(true))
        );
        assert_eq!(parse_cell("inf", DataType::DoublePrecision), None);
        assert!(matches!(
            parse_cell("2024-03-01 10:00:00+00:00", DataType::TimestampWithTimeZone),
            Some(Value::TimestampTz(_))
        ));
        assert!(matches!(
            parse_cell("2024-03-01 10:00:00.5", DataType::TimestampWithoutTimeZone),
            Some(Value::Timestamp(_))
        ));
    }

    #[test]
    fn inference_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "a,b,c,d\n1,2.5,hello,true\n2,,world,false\n").unwrap();
        let data = open_source(&Source::File(p.clone()), None).unwrap();
        let types: Vec<_> = data.columns.iter().map(|c| c.data_type).collect();
        assert_eq!(
            types,
            [
                DataType::Bigint,
                DataType::DoublePrecision,
                DataType::CharacterVarying,
                DataType::Boolean
            ]
        );
        let rows: Vec<_> = data.rows.collect::<Result<_>>().unwrap();
        assert_eq!(
            rows[1],
            vec![
                Value::Int(2),
                Value::Null,
                Value::Text("world".into()),
                Value::Bool(false)
            ]
        );

        std::fs::write(&p, "a,b\n1,2\n3\n").unwrap();
        let e = open_source(&Source::File(p.clone()), None).err().unwrap();
        assert!(
            e.to_string()
                .contains("line 3: 1 fields, but the header has 2"),
            "{e}"
        );

        let bad = dir.path().join("x.txt");
        std::fs::write(&bad, "a\n").unwrap();
        assert_eq!(
            open_source(&Source::File(bad), None)
                .err()
                .unwrap()
                .exit_code(),
            2
        );
    }
}
