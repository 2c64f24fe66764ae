//! Reading a column-metadata sheet into a validated [`ConfigWorksheet`]
//! (docs/compatibility.md#column-metadata-sheets).
//!
//! Differences from the reference, all deliberate:
//! * every problem is reported, not only the first of each row: one line per problem,
//!   `SOURCE: row N, column C: message`, where N is the spreadsheet row (the header is row 1)
//!   and C the header of the column;
//! * duplicate names are reported plainly (on the row of the repeat, naming the first row);
//! * a numeric `data_type` cell is a row error;
//! * only `column_name` (or `field_name`), `data_type` and `is_unique_id` are required headers;
//!   `column_group`, `description` and the three other flags default to empty / false (so sheets
//!   of the later `field_name` era parse too);
//! * rows whose cells are all blank are skipped (spreadsheets often keep a few).
//!
//! Cells are strings (a CSV is never "numericised"): `1.0` is still not a boolean, as in the
//! reference, because it is not in the boolean word sets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::sheet::{ColumnDescriptor, ConfigWorksheet};

/// Words accepted as true in a boolean cell (after trimming and lower-casing).
pub const TRUE_WORDS: [&str; 5] = ["true", "t", "yes", "y", "1"];
/// Words accepted as false; an empty cell is false too.
pub const FALSE_WORDS: [&str; 6] = ["false", "f", "no", "n", "0", ""];

/// One problem found in a sheet. `row` is the spreadsheet row (header = 1); `column` the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetProblem {
    pub row: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

impl SheetProblem {
    fn new(row: Option<usize>, column: Option<&str>, message: impl Into<String>) -> Self {
        SheetProblem {
            row,
            column: column.map(str::to_string),
            message: message.into(),
        }
    }

    /// `SOURCE: row N, column C: message` (the parts that are known).
    pub fn render(&self, source: &str) -> String {
        match (&self.row, &self.column) {
            (Some(r), Some(c)) => format!("{source}: row {r}, column {c}: {}", self.message),
            (Some(r), None) => format!("{source}: row {r}: {}", self.message),
            (None, Some(c)) => format!("{source}: column {c}: {}", self.message),
            (None, None) => format!("{source}: {}", self.message),
        }
    }
}

/// A problem in a worksheet model (an inline schema in settings), located by column index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// Index into `columns`, when the problem belongs to one column.
    pub index: Option<usize>,
    /// The field of that column (`column_name`, `is_unique_id`), when it belongs to one.
    pub field: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for SchemaProblem {
    /// `columns[3].column_name: message`, `columns: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, self.field) {
            (Some(i), Some(field)) => write!(f, "columns[{i}].{field}: {}", self.message),
            (Some(i), None) => write!(f, "columns[{i}]: {}", self.message),
            (None, _) => write!(f, "columns: {}", self.message),
        }
    }
}

/// The list of valid `data_type` values, for messages.
fn data_type_choices() -> String {
    DataType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse a boolean cell (docs/compatibility.md#column-metadata-sheets).
pub fn parse_bool(cell: &str) -> std::result::Result<bool, String> {
    let norm = cell.trim().to_lowercase();
    if TRUE_WORDS.contains(&norm.as_str()) {
        Ok(true)
    } else if FALSE_WORDS.contains(&norm.as_str()) {
        Ok(false)
    } else {
        Err(format!(
            "Value '{cell}' cannot be converted to a boolean; use true or false \
             (also yes/no, y/n, t/f, 1/0; an empty cell is false)"
        ))
    }
}

/// Whether a cell looks like a number as a spreadsheet would read it (`5`, `1.0`, `1e3`).
fn looks_numeric(cell: &str) -> bool {
    let t = cell.trim();
    t.chars().any(|c| c.is_ascii_digit()) && (t.parse::<i64>().is_ok() || t.parse::<f64>().is_ok())
}

/// Parse a `data_type` cell: case-insensitive enum value; numbers are a plain error.
pub fn parse_data_type(cell: &str) -> std::result::Result<DataType, String> {
    if let Some(t) = DataType::parse(cell) {
        return Ok(t);
    }
    let t = cell.trim();
    if t.is_empty() {
        Err(format!(
            "data_type is empty; use one of: {}",
            data_type_choices()
        ))
    } else if looks_numeric(t) {
        Err(format!(
            "'{t}' is a number, not a DataType; use one of: {}",
            data_type_choices()
        ))
    } else {
        Err(format!(
            "'{t}' is not a valid DataType; use one of: {}",
            data_type_choices()
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    DataType,
    Group,
    Description,
    UniqueId,
    Strata,
    Filter,
    Metric,
}

fn known_field(header: &str) -> Option<Field> {
    Some(match header {
        "column_name" | "field_name" => Field::Name,
        "data_type" => Field::DataType,
        "column_group" => Field::Group,
        "description" => Field::Description,
        "is_unique_id" => Field::UniqueId,
        "is_strata" => Field::Strata,
        "is_filter" => Field::Filter,
        "is_metric" => Field::Metric,
        _ => return None,
    })
}

const REQUIRED: [(Field, &str); 3] = [
    (Field::Name, "column_name"),
    (Field::DataType, "data_type"),
    (Field::UniqueId, "is_unique_id"),
];

/// A sheet as a grid of cells: `cells[0]` is the header row. `pre` holds problems found while
/// reading (e.g. non-UTF-8 cells) that are reported with the rest.
pub(crate) struct Grid {
    pub cells: Vec<Vec<String>>,
    pub pre: Vec<SheetProblem>,
    /// Rows (1-based) whose cells could not be decoded; they are checked but never accepted.
    pub tainted: Vec<usize>,
}

/// Parse CSV bytes (UTF-8, optional BOM, LF or CRLF, RFC 4180 quoting) as a sheet named
/// `worksheet` (which becomes `table_name`). Errors name `source_label`.
pub fn parse_csv_bytes(
    source_label: &str,
    worksheet: &str,
    bytes: &[u8],
) -> Result<ConfigWorksheet> {
    let grid = csv_grid(bytes)?;
    parse_grid(source_label, worksheet, grid)
}

fn csv_grid(bytes: &[u8]) -> Result<Grid> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut grid = Grid {
        cells: Vec::new(),
        pre: Vec::new(),
        tainted: Vec::new(),
    };
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(Error::invalid(format!(
                    "line {line}: cannot read the CSV: {e}"
                )));
            }
        }
        let row_no = grid.cells.len() + 1;
        let line = rec.position().map(|p| p.line()).unwrap_or(row_no as u64);
        let mut row = Vec::with_capacity(rec.len());
        for (j, field) in rec.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(s) => row.push(s.to_string()),
                Err(e) => {
                    let column = grid
                        .cells
                        .first()
                        .and_then(|h| h.get(j))
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| format!("#{}", j + 1));
                    let bad = field.get(e.valid_up_to()).copied().unwrap_or(0);
                    grid.pre.push(SheetProblem::new(
                        Some(row_no),
                        Some(&column),
                        format!(
                            "the cell is not valid UTF-8 (line {line}, byte 0x{bad:02X} after '{}'); \
                             save the sheet as \"CSV UTF-8\"",
                            String::from_utf8_lossy(&field[..e.valid_up_to()])
                        ),
                    ));
                    if !grid.tainted.contains(&row_no) {
                        grid.tainted.push(row_no);
                    }
                    row.push(String::from_utf8_lossy(field).into_owned());
                }
            }
        }
        grid.cells.push(row);
    }
    Ok(grid)
}

/// Parse rows of cells read from Google Sheets (`cells[0]` = header; rows may be ragged).
pub fn parse_cells(
    source_label: &str,
    worksheet: &str,
    cells: Vec<Vec<String>>,
) -> Result<ConfigWorksheet> {
    parse_grid(
        source_label,
        worksheet,
        Grid {
            cells,
            pre: Vec::new(),
            tainted: Vec::new(),
        },
    )
}

struct Column {
    header: String,
    field: Option<Field>,
}

pub(crate) fn parse_grid(source: &str, worksheet: &str, grid: Grid) -> Result<ConfigWorksheet> {
    let Grid {
        cells,
        pre,
        tainted,
    } = grid;
    let mut problems = pre;
    let fail = |problems: Vec<SheetProblem>| -> Error {
        Error::Invalid(problems.iter().map(|p| p.render(source)).collect())
    };
    let Some(header_row) = cells.first() else {
        problems.push(SheetProblem::new(
            None,
            None,
            "the sheet is empty; it needs a header row (column_name, data_type, column_group, \
             description, is_unique_id, is_strata, is_filter, is_metric) and one row per warehouse column",
        ));
        return Err(fail(problems));
    };

    // Header.
    let mut columns: Vec<Column> = Vec::with_capacity(header_row.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut field_at: HashMap<u8, usize> = HashMap::new();
    let mut name_header = "column_name".to_string();
    for (j, raw) in header_row.iter().enumerate() {
        let h = raw.trim().to_string();
        let mut field = known_field(&h);
        if !h.is_empty() {
            if let Some(&first) = seen.get(&h) {
                problems.push(SheetProblem::new(
                    Some(1),
                    Some(&h),
                    format!(
                        "the header '{h}' appears twice (columns {} and {}); keep one",
                        first + 1,
                        j + 1
                    ),
                ));
                columns.push(Column {
                    header: h,
                    field: None,
                });
                continue;
            }
            seen.insert(h.clone(), j);
        }
        if let Some(f) = field {
            if let Some(&first) = field_at.get(&(f as u8)) {
                problems.push(SheetProblem::new(
                    Some(1),
                    Some(&h),
                    format!(
                        "the sheet has both '{}' and '{h}' headers; keep one of them",
                        columns[first].header
                    ),
                ));
                field = None;
            } else {
                field_at.insert(f as u8, j);
                if f == Field::Name {
                    name_header = h.clone();
                }
            }
        }
        columns.push(Column { header: h, field });
    }
    let header_names: Vec<&str> = columns.iter().map(|c| c.header.as_str()).collect();
    for (f, name) in REQUIRED {
        if !field_at.contains_key(&(f as u8)) {
            let also = if f == Field::Name {
                " (or field_name)"
            } else {
                ""
            };
            let near = header_names.iter().find(|h| {
                h.eq_ignore_ascii_case(name)
                    || (f == Field::Name && h.eq_ignore_ascii_case("field_name"))
            });
            let hint = match near {
                Some(h) => {
                    format!("; rename the header '{h}' to '{name}' (header names are lower-case)")
                }
                None => format!(
                    "; the header row has: {}; it needs column_name, data_type and is_unique_id",
                    header_names.join(", ")
                ),
            };
            problems.push(SheetProblem::new(
                Some(1),
                None,
                format!("missing required column '{name}'{also}{hint}"),
            ));
        }
    }
    // The unique-id count is only meaningful when both the names and the flags can be read.
    let has_unique_header = field_at.contains_key(&(Field::UniqueId as u8))
        && field_at.contains_key(&(Field::Name as u8));

    // Rows.
    let mut out: Vec<ColumnDescriptor> = Vec::new();
    let mut first_row_of: HashMap<String, usize> = HashMap::new();
    let mut unique_rows: Vec<(usize, String)> = Vec::new();
    let mut unique_unknown = false;
    let mut data_rows = 0usize;
    for (i, row) in cells.iter().enumerate().skip(1) {
        let row_no = i + 1;
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        data_rows += 1;
        let mut ok = !tainted.contains(&row_no);
        if row.len() > columns.len() {
            let extra_cells = &row[columns.len()..];
            if extra_cells.iter().any(|c| !c.trim().is_empty()) {
                problems.push(SheetProblem::new(
                    Some(row_no),
                    None,
                    format!(
                        "the row has {} cells but the header has {}; remove the extra cells or give them a header",
                        row.len(),
                        columns.len()
                    ),
                ));
                ok = false;
            }
        }
        let mut name: Option<String> = None;
        let mut data_type: Option<DataType> = None;
        let mut desc = ColumnDescriptor {
            column_name: String::new(),
            data_type: DataType::Unsupported,
            column_group: String::new(),
            description: String::new(),
            is_unique_id: false,
            is_strata: false,
            is_filter: false,
            is_metric: false,
            extra: BTreeMap::new(),
        };
        for (j, col) in columns.iter().enumerate() {
            let cell = row.get(j).map(String::as_str).unwrap_or("");
            let Some(field) = col.field else {
                if col.header.is_empty() {
                    if !cell.trim().is_empty() {
                        problems.push(SheetProblem::new(
                            Some(row_no),
                            Some(&format!("#{}", j + 1)),
                            format!("'{cell}' is in a column without a header; name the column in row 1 or clear it"),
                        ));
                        ok = false;
                    }
                } else if seen.get(&col.header).is_none_or(|&first| first == j) {
                    desc.extra.insert(col.header.clone(), cell.to_string());
                }
                continue;
            };
            let h = col.header.as_str();
            let flag = |target: &mut bool, problems: &mut Vec<SheetProblem>| match parse_bool(cell)
            {
                Ok(b) => {
                    *target = b;
                    true
                }
                Err(m) => {
                    problems.push(SheetProblem::new(Some(row_no), Some(h), m));
                    false
                }
            };
            match field {
                Field::Name => {
                    let n = cell.trim();
                    if n.is_empty() {
                        problems.push(SheetProblem::new(
                            Some(row_no),
                            Some(h),
                            format!("{h} is empty; every row needs the name of a warehouse column"),
                        ));
                        ok = false;
                    } else {
                        name = Some(n.to_string());
                    }
                }
                Field::DataType => match parse_data_type(cell) {
                    Ok(t) => data_type = Some(t),
                    Err(m) => {
                        problems.push(SheetProblem::new(Some(row_no), Some(h), m));
                        ok = false;
                    }
                },
                Field::Group => desc.column_group = cell.to_string(),
                Field::Description => desc.description = cell.to_string(),
                Field::UniqueId => {
                    if !flag(&mut desc.is_unique_id, &mut problems) {
                        ok = false;
                        unique_unknown = true;
                    }
                }
                Field::Strata => ok &= flag(&mut desc.is_strata, &mut problems),
                Field::Filter => ok &= flag(&mut desc.is_filter, &mut problems),
                Field::Metric => ok &= flag(&mut desc.is_metric, &mut problems),
            }
        }
        if let Some(n) = &name {
            if let Some(&first) = first_row_of.get(n) {
                problems.push(SheetProblem::new(
                    Some(row_no),
                    Some(&name_header),
                    format!("Duplicate '{name_header}' value '{n}' (first on row {first}); each column may appear once"),
                ));
                ok = false;
            } else {
                first_row_of.insert(n.clone(), row_no);
            }
        }
        if desc.is_unique_id {
            unique_rows.push((row_no, name.clone().unwrap_or_else(|| "(no name)".into())));
        }
        if let (true, Some(n), Some(t)) = (ok, name, data_type) {
            desc.column_name = n;
            desc.data_type = t;
            out.push(desc);
        }
    }

    if data_rows == 0 {
        problems.push(SheetProblem::new(
            None,
            None,
            "The sheet does not have any data rows; add one row per warehouse column under the header",
        ));
    } else if has_unique_header {
        if unique_rows.len() > 1 {
            let names: Vec<String> = unique_rows
                .iter()
                .map(|(r, n)| format!("{n} (row {r})"))
                .collect();
            problems.push(SheetProblem::new(
                None,
                Some("is_unique_id"),
                format!(
                    "There are {} columns marked as the unique ID, but there should only be one: {}",
                    unique_rows.len(),
                    names.join(", ")
                ),
            ));
        } else if unique_rows.is_empty() && !unique_unknown {
            problems.push(SheetProblem::new(
                None,
                Some("is_unique_id"),
                "There are no columns marked as unique ID; set is_unique_id to true on the row of the \
                 column that identifies a participant",
            ));
        }
    }

    if !problems.is_empty() {
        // Row order (stable: within a row, reading problems first); sheet-wide problems last.
        problems.sort_by_key(|p| p.row.unwrap_or(usize::MAX));
        return Err(fail(problems));
    }
    Ok(ConfigWorksheet {
        table_name: worksheet.to_string(),
        columns: out,
    })
}

/// Every problem of a worksheet model (inline schemas in settings; sheets parsed elsewhere):
/// no columns, empty names, duplicate names, not exactly one unique id.
pub fn worksheet_problems(ws: &ConfigWorksheet) -> Vec<SchemaProblem> {
    let mut problems = Vec::new();
    if ws.columns.is_empty() {
        problems.push(SchemaProblem {
            index: None,
            field: None,
            message: "a schema needs at least one column".into(),
        });
        return problems;
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, c) in ws.columns.iter().enumerate() {
        if c.column_name.trim().is_empty() {
            problems.push(SchemaProblem {
                index: Some(i),
                field: Some("column_name"),
                message: "the name is empty; give the name of a warehouse column".into(),
            });
            continue;
        }
        if let Some(&f) = first.get(c.column_name.as_str()) {
            problems.push(SchemaProblem {
                index: Some(i),
                field: Some("column_name"),
                message: format!(
                    "Duplicate 'column_name' value '{}' (also columns[{f}]); each column may appear once",
                    c.column_name
                ),
            });
        } else {
            first.insert(&c.column_name, i);
        }
    }
    let uids: Vec<(usize, &str)> = ws
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_unique_id)
        .map(|(i, c)| (i, c.column_name.as_str()))
        .collect();
    match uids.len() {
        0 => problems.push(SchemaProblem {
            index: None,
            field: None,
            message:
                "There are no columns marked as unique ID; set is_unique_id = true on the column \
                      that identifies a participant"
                    .into(),
        }),
        1 => {}
        k => {
            let names: Vec<String> = uids
                .iter()
                .map(|(i, n)| format!("{n} (columns[{i}])"))
                .collect();
            problems.push(SchemaProblem {
                index: None,
                field: None,
                message: format!(
                    "There are {k} columns marked as the unique ID, but there should only be one: {}",
                    names.join(", ")
                ),
            });
        }
    }
    problems
}

/// Validate a worksheet model: `Ok` or `Error::Invalid` with one line per problem
/// (`columns[3].column_name: message`).
pub fn validate_worksheet(ws: &ConfigWorksheet) -> Result<()> {
    let problems = worksheet_problems(ws);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(
            problems.iter().map(|p| p.to_string()).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: Result<ConfigWorksheet>) -> Vec<String> {
        match r {
            Err(Error::Invalid(v)) => v,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    const HEAD: &str = "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n";

    #[test]
    fn parses_a_good_sheet() {
        let csv = format!(
            "{HEAD}id,integer,,Unique,TRUE,,,\ngender,Character Varying,g,\"Gender, self-reported\",,yes,Y,0\n"
        );
        let ws = parse_csv_bytes("s.csv", "people", csv.as_bytes()).unwrap();
        assert_eq!(ws.table_name, "people");
        assert_eq!(ws.columns.len(), 2);
        assert_eq!(ws.unique_id().unwrap().column_name, "id");
        let g = ws.column("gender").unwrap();
        assert_eq!(g.data_type, DataType::CharacterVarying);
        assert_eq!(g.description, "Gender, self-reported");
        assert_eq!(g.column_group, "g");
        assert!(g.is_strata && g.is_filter && !g.is_metric && !g.is_unique_id);
        assert!(g.extra.is_empty());
    }

    #[test]
    fn boolean_word_sets() {
        for w in ["true", "T", " Yes ", "y", "1", "TRUE"] {
            assert_eq!(parse_bool(w), Ok(true), "{w}");
        }
        for w in ["false", "F", "no", "N", "0", "", "  "] {
            assert_eq!(parse_bool(w), Ok(false), "{w}");
        }
        for w in ["maybe", "1.0", "2", "ja"] {
            assert!(
                parse_bool(w)
                    .unwrap_err()
                    .starts_with(&format!("Value '{w}' cannot be converted"))
            );
        }
    }

    #[test]
    fn every_error_is_reported_together() {
        let csv = format!(
            "{HEAD}id,integer,,,true,,,\nid,integer,,,,maybe,,\nx,varchar,,,,,,\ny,5,,,true,,,\n,boolean,,,,,,\n"
        );
        let got = lines(parse_csv_bytes("s.csv", "t", csv.as_bytes()));
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].starts_with(
            "s.csv: row 3, column is_strata: Value 'maybe' cannot be converted to a boolean"
        ));
        assert_eq!(
            got[1],
            "s.csv: row 3, column column_name: Duplicate 'column_name' value 'id' (first on row 2); each column may appear once"
        );
        assert!(got[2].starts_with("s.csv: row 4, column data_type: 'varchar' is not a valid DataType; use one of: boolean, character varying,"));
        assert!(
            got[3].starts_with("s.csv: row 5, column data_type: '5' is a number, not a DataType")
        );
        assert_eq!(
            got[4],
            "s.csv: row 6, column column_name: column_name is empty; every row needs the name of a warehouse column"
        );
        assert_eq!(
            got[5],
            "s.csv: column is_unique_id: There are 2 columns marked as the unique ID, but there should only be one: id (row 2), y (row 5)"
        );
    }

    #[test]
    fn schema_problems() {
        let mut ws = parse_csv_bytes(
            "s",
            "t",
            format!("{HEAD}id,integer,,,1,,,\nb,integer,,,,,,\n").as_bytes(),
        )
        .unwrap();
        assert!(validate_worksheet(&ws).is_ok());
        ws.columns[1].column_name = "id".into();
        ws.columns[1].is_unique_id = true;
        let Err(Error::Invalid(v)) = validate_worksheet(&ws) else {
            panic!()
        };
        assert_eq!(
            v,
            vec![
                "columns[1].column_name: Duplicate 'column_name' value 'id' (also columns[0]); each column may appear once",
                "columns: There are 2 columns marked as the unique ID, but there should only be one: id (columns[0]), id (columns[1])",
            ]
        );
        ws.columns.clear();
        assert_eq!(
            validate_worksheet(&ws).unwrap_err().lines(),
            vec!["columns: a schema needs at least one column"]
        );
    }
}
