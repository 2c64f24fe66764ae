//! The columnar input of an assignment: participant ids and the candidate strata columns.
//!
//! Text columns are dictionary-encoded (one `u32` code per row into a level list) so that
//! millions of rows cost no per-row allocation; numbers and booleans are kept typed.

use std::cmp::Ordering;

/// The code of a NULL in a [`ColumnData::Text`] column.
pub const NULL_CODE: u32 = u32::MAX;

/// Participant ids, non-null and unique (checked by [`Ids::sorted_order`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// Integer ids (sorted numerically, kept exact).
    Int(Vec<i64>),
    /// Text ids. `numeric` is true when every id is a canonical decimal integer (some beyond
    /// the i64 range): they then sort numerically, exactly, without going through floats.
    Text { values: Vec<String>, numeric: bool },
}

impl Ids {
    /// Build ids from text, choosing integer ids when every value is a canonical integer
    /// (`0`, `-12`, `17`; not `007` or `+5`, whose text would change).
    pub fn from_strings(values: Vec<String>) -> Ids {
        if values.iter().all(|s| is_canonical_int(s)) {
            let parsed: Option<Vec<i64>> = values.iter().map(|s| s.parse::<i64>().ok()).collect();
            match parsed {
                Some(v) => Ids::Int(v),
                None => Ids::Text {
                    values,
                    numeric: true,
                },
            }
        } else {
            Ids::Text {
                values,
                numeric: false,
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Ids::Int(v) => v.len(),
            Ids::Text { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_integer(&self) -> bool {
        matches!(self, Ids::Int(_) | Ids::Text { numeric: true, .. })
    }

    /// The id of row `i` as text (as written to outputs).
    pub fn text(&self, i: usize) -> String {
        match self {
            Ids::Int(v) => v[i].to_string(),
            Ids::Text { values, .. } => values[i].clone(),
        }
    }

    /// Write the id of row `i` into `out`.
    pub fn write_text(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Ids::Int(v) => {
                let mut b = itoa_buf();
                out.extend_from_slice(format_i64(v[i], &mut b));
            }
            Ids::Text { values, .. } => out.extend_from_slice(values[i].as_bytes()),
        }
    }

    /// Compare the ids of rows `a` and `b` in output order.
    pub fn cmp_rows(&self, a: usize, b: usize) -> Ordering {
        match self {
            Ids::Int(v) => v[a].cmp(&v[b]),
            Ids::Text {
                values,
                numeric: true,
            } => cmp_int_text(&values[a], &values[b]),
            Ids::Text {
                values,
                numeric: false,
            } => values[a].as_bytes().cmp(values[b].as_bytes()),
        }
    }

    /// Row indices sorted by id (numeric order for integer ids, byte order for text ids), or
    /// the duplicates found ([`Table::sorted_order`] turns them into a message).
    pub fn sorted_order(&self) -> std::result::Result<Vec<u32>, Duplicates> {
        let n = self.len();
        let mut order: Vec<u32> = match self {
            Ids::Int(v) => {
                if v.is_sorted() {
                    (0..n as u32).collect()
                } else {
                    let mut pairs: Vec<(i64, u32)> =
                        v.iter().enumerate().map(|(i, x)| (*x, i as u32)).collect();
                    pairs.sort_unstable();
                    pairs.into_iter().map(|p| p.1).collect()
                }
            }
            _ => {
                let mut o: Vec<u32> = (0..n as u32).collect();
                o.sort_unstable_by(|a, b| self.cmp_rows(*a as usize, *b as usize).then(a.cmp(b)));
                o
            }
        };
        // Equal ids are adjacent, in row order: the first two rows of each duplicated id.
        let mut dups = Duplicates::default();
        for w in order.windows(2) {
            if self.cmp_rows(w[0] as usize, w[1] as usize) == Ordering::Equal {
                dups.count += 1;
                let new_id = dups.pairs.last().is_none_or(|&(a, _)| {
                    self.cmp_rows(a as usize, w[0] as usize) != Ordering::Equal
                });
                if dups.pairs.len() < 5 && new_id {
                    dups.pairs.push((w[0], w[1]));
                }
            }
        }
        if dups.count > 0 {
            return Err(dups);
        }
        order.shrink_to_fit();
        Ok(order)
    }
}

/// Duplicate ids: how many rows repeat an earlier id, and up to five (first row, second row)
/// pairs with distinct ids, in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Duplicates {
    pub count: usize,
    pub pairs: Vec<(u32, u32)>,
}

/// `-?(0|[1-9][0-9]*)`.
pub fn is_canonical_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && (d == "0" || !d.starts_with('0'))
        && s != "-0"
}

/// Numeric comparison of two canonical integer strings of any length.
pub fn cmp_int_text(a: &str, b: &str) -> Ordering {
    let (na, da) = match a.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, a),
    };
    let (nb, db) = match b.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, b),
    };
    match (na, nb) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => da.len().cmp(&db.len()).then_with(|| da.cmp(db)),
        (true, true) => db.len().cmp(&da.len()).then_with(|| db.cmp(da)),
    }
}

pub(crate) fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// "00", "01", …, "99": two digits per division in [`format_i64`].
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
    5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// Format an i64 into `buf` without allocating; returns the digits. Every unit key hashes its
/// id's text, and every output row writes it: two digits per division halve the divisions.
pub(crate) fn format_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// One candidate stratum column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Dictionary-encoded text: `codes[row]` indexes `levels`; [`NULL_CODE`] is NULL.
    Text {
        codes: Vec<u32>,
        levels: Vec<String>,
    },
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Text { codes, .. } => codes.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Int(v) => v.len(),
            ColumnData::Float(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Real-numeric (integers and floats; booleans are not numeric here).
    pub fn is_numeric(&self) -> bool {
        matches!(self, ColumnData::Int(_) | ColumnData::Float(_))
    }

    pub fn is_null(&self, i: usize) -> bool {
        match self {
            ColumnData::Text { codes, .. } => codes[i] == NULL_CODE,
            ColumnData::Bool(v) => v[i].is_none(),
            ColumnData::Int(v) => v[i].is_none(),
            ColumnData::Float(v) => v[i].is_none_or(f64::is_nan),
        }
    }

    /// Append the original value of row `i` as text (nothing for NULL).
    pub fn write_text(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            ColumnData::Text { codes, levels } => {
                if codes[i] != NULL_CODE {
                    out.extend_from_slice(levels[codes[i] as usize].as_bytes())
                }
            }
            ColumnData::Bool(v) => {
                if let Some(b) = v[i] {
                    out.extend_from_slice(if b { b"true" } else { b"false" })
                }
            }
            ColumnData::Int(v) => {
                if let Some(x) = v[i] {
                    let mut b = itoa_buf();
                    out.extend_from_slice(format_i64(x, &mut b));
                }
            }
            ColumnData::Float(v) => {
                if let Some(x) = v[i].filter(|x| !x.is_nan()) {
                    out.extend_from_slice(x.to_string().as_bytes())
                }
            }
        }
    }

    /// The original value of row `i` as text (`None` for NULL).
    pub fn text(&self, i: usize) -> Option<String> {
        if self.is_null(i) {
            return None;
        }
        let mut v = Vec::new();
        self.write_text(i, &mut v);
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Keep only the rows in `rows` (in that order).
    pub fn take(&self, rows: &[u32]) -> ColumnData {
        match self {
            ColumnData::Text { codes, levels } => ColumnData::Text {
                codes: rows.iter().map(|r| codes[*r as usize]).collect(),
                levels: levels.clone(),
            },
            ColumnData::Bool(v) => ColumnData::Bool(rows.iter().map(|r| v[*r as usize]).collect()),
            ColumnData::Int(v) => ColumnData::Int(rows.iter().map(|r| v[*r as usize]).collect()),
            ColumnData::Float(v) => {
                ColumnData::Float(rows.iter().map(|r| v[*r as usize]).collect())
            }
        }
    }

    /// Dictionary-encode text values (`None` = NULL); levels sorted.
    pub fn text_from<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ColumnData {
        let mut map: std::collections::HashMap<&'a str, u32> = std::collections::HashMap::new();
        let mut levels: Vec<String> = Vec::new();
        let codes = values
            .into_iter()
            .map(|v| match v {
                None => NULL_CODE,
                Some(s) => *map.entry(s).or_insert_with(|| {
                    levels.push(s.to_string());
                    (levels.len() - 1) as u32
                }),
            })
            .collect();
        sorted_text(codes, levels)
    }
}

/// A text column with its dictionary sorted by bytes (codes rewritten in place), so that codes
/// order like their values.
pub fn sorted_text(mut codes: Vec<u32>, levels: Vec<String>) -> ColumnData {
    if levels.is_sorted_by(|a, b| a < b) {
        return ColumnData::Text { codes, levels };
    }
    let mut idx: Vec<usize> = (0..levels.len()).collect();
    idx.sort_by(|a, b| levels[*a].cmp(&levels[*b]));
    let mut map = vec![0u32; levels.len()];
    for (new, &old) in idx.iter().enumerate() {
        map[old] = new as u32;
    }
    for c in codes.iter_mut() {
        if *c != NULL_CODE {
            *c = map[*c as usize];
        }
    }
    let mut levels: Vec<Option<String>> = levels.into_iter().map(Some).collect();
    let sorted: Vec<String> = idx
        .iter()
        .map(|&i| levels[i].take().expect("each level once"))
        .collect();
    ColumnData::Text {
        codes,
        levels: sorted,
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// The audience: ids plus the columns that may be used as strata.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Where the rows came from, for messages (`participants.csv`, `table people`).
    pub source: String,
    pub id_column: String,
    pub ids: Ids,
    pub columns: Vec<Column>,
    /// The CSV file the rows were read from, row `i` being its `i`-th data record, so that
    /// messages can name lines; `None` for other sources and after [`Table::take`].
    pub origin: Option<std::path::PathBuf>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Keep only the rows in `rows` (in that order).
    pub fn take(&self, rows: &[u32]) -> Table {
        let ids = match &self.ids {
            Ids::Int(v) => Ids::Int(rows.iter().map(|r| v[*r as usize]).collect()),
            Ids::Text { values, numeric } => Ids::Text {
                values: rows.iter().map(|r| values[*r as usize].clone()).collect(),
                numeric: *numeric,
            },
        };
        Table {
            source: self.source.clone(),
            id_column: self.id_column.clone(),
            ids,
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: c.data.take(rows),
                })
                .collect(),
            origin: None,
        }
    }

    /// The lines of the CSV file the table was read from on which the given rows start, for
    /// messages; `None` for other sources or when the file cannot be read again. One pass over
    /// the file: only for error paths and notices.
    pub fn lines(&self, rows: &[u32]) -> Option<Vec<u64>> {
        let path = self.origin.as_ref()?;
        super::audience::record_lines(path, rows).ok()
    }

    /// Where row `i` is, for messages: `participant id X (line N)`, the line when known.
    pub fn describe_row(&self, i: u32) -> String {
        match self.lines(&[i]) {
            Some(l) => format!(
                "participant id {} (line {})",
                self.ids.text(i as usize),
                l[0]
            ),
            None => format!("participant id {}", self.ids.text(i as usize)),
        }
    }

    /// Row indices sorted by id; duplicate ids are an error naming the source, up to five of
    /// the ids and, for a CSV file, their lines.
    pub fn sorted_order(&self) -> crate::Result<Vec<u32>> {
        self.ids.sorted_order().map_err(|d| {
            let rows: Vec<u32> = d.pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
            let lines = self.lines(&rows);
            let examples: Vec<String> = d
                .pairs
                .iter()
                .enumerate()
                .map(|(k, &(a, _))| {
                    let id = self.ids.text(a as usize);
                    match &lines {
                        Some(l) => format!("{id} on lines {} and {}", l[2 * k], l[2 * k + 1]),
                        None => id,
                    }
                })
                .collect();
            crate::Error::invalid(format!(
                "{}: the id column {} has {} duplicate value(s) (e.g. {}); participant ids must be unique",
                self.source,
                self.id_column,
                d.count,
                examples.join(if lines.is_some() { "; " } else { ", " })
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ids_sort_numerically_and_exactly() {
        let ids = Ids::from_strings(vec![
            "10".into(),
            "2".into(),
            "9007199254740993".into(),
            "9007199254740992".into(),
        ]);
        assert!(matches!(ids, Ids::Int(_)));
        let o = ids.sorted_order().unwrap();
        assert_eq!(o, vec![1, 0, 3, 2]);
        let big = Ids::from_strings(vec![
            "99999999999999999999".into(),
            "-3".into(),
            "99999999999999999998".into(),
        ]);
        assert!(matches!(big, Ids::Text { numeric: true, .. }));
        assert_eq!(big.sorted_order().unwrap(), vec![1, 2, 0]);
        let text = Ids::from_strings(vec!["b".into(), "007".into(), "a".into()]);
        assert!(matches!(text, Ids::Text { numeric: false, .. }));
        assert_eq!(text.sorted_order().unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn duplicates_are_listed_with_source_and_rows() {
        let ids = Ids::Int(vec![3, 1, 3, 2, 1]);
        assert_eq!(
            ids.sorted_order().unwrap_err(),
            Duplicates {
                count: 2,
                pairs: vec![(1, 4), (0, 2)]
            }
        );
        let t = Table {
            source: "people".into(),
            id_column: "pid".into(),
            ids,
            columns: vec![],
            origin: None,
        };
        let e = t.sorted_order().unwrap_err().to_string();
        assert_eq!(
            e,
            "people: the id column pid has 2 duplicate value(s) (e.g. 1, 3); participant ids must be unique"
        );
    }

    #[test]
    fn formats_integers() {
        let mut b = itoa_buf();
        assert_eq!(
            format_i64(i64::MIN, &mut b),
            i64::MIN.to_string().as_bytes()
        );
        assert_eq!(format_i64(0, &mut b), b"0");
        assert_eq!(format_i64(-42, &mut b), b"-42");
        // Every digit count, both signs, the powers of ten and their neighbours.
        let mut vals = vec![i64::MAX, i64::MIN + 1];
        let mut p: i64 = 1;
        for _ in 0..19 {
            vals.extend([p - 1, p, p + 1, -p, -p + 1, p * 7 + 3]);
            p = p.saturating_mul(10);
        }
        vals.extend(-1234..1234);
        for v in vals {
            assert_eq!(format_i64(v, &mut b), v.to_string().as_bytes(), "{v}");
        }
    }
}
