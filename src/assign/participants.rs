//! Reading a participant type's audience from its warehouse for the local run: the id, strata
//! and cluster columns of the rows that pass the filters, streamed row by row into typed
//! columns (docs/architecture.md#assign), so the client holds the columns and never the result
//! set as rows of dynamic values.

use super::data::{Column, ColumnData, Ids, Table};
use super::output::AudienceRecord;
use super::warehouse::{Target, live_columns, sheet_id_and_strata};
use crate::audience::ParticipantAudience;
use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::warehouse::{Value, Warehouse};

/// Read the audience of a participant type: the unique id and the `columns` (strata, then the
/// cluster column) of the rows that pass the filters.
pub async fn read_participants(
    aud: &ParticipantAudience,
    columns: &[String],
    cluster_column: Option<&String>,
) -> Result<(Table, AudienceRecord, Target)> {
    let resolved = &aud.participants;
    let sheet = &resolved.sheet;
    let label = aud.label();
    let id = sheet_id_and_strata(
        sheet,
        &label,
        aud.id_column.as_ref(),
        columns,
        cluster_column,
    )?;
    let condition = aud.condition(resolved.dsn.dialect(), 1)?;
    let wh = Warehouse::connect(&resolved.dsn).await?;
    let res = read(&wh, aud, &label, &id, columns, condition).await;
    wh.close().await;
    let (table, n) = res?;
    let rec = AudienceRecord {
        participant_type: Some(resolved.participant_type.clone()),
        datasource: Some(resolved.datasource_id.clone()),
        table: Some(aud.table_shown()),
        input_file: None,
        id_column: id,
        filters: aud.filters_json(),
        audience_rows: n as u64,
    };
    Ok((
        table,
        rec,
        Target {
            dsn: resolved.dsn.clone(),
            schema: resolved.schema_name.clone(),
        },
    ))
}

async fn read(
    wh: &Warehouse,
    aud: &ParticipantAudience,
    label: &str,
    id: &str,
    columns: &[String],
    condition: Option<(String, Vec<Value>)>,
) -> Result<(Table, usize)> {
    let resolved = &aud.participants;
    live_columns(wh, resolved, label, id, columns).await?;
    let cols: Vec<String> = std::iter::once(id)
        .chain(columns.iter().map(String::as_str))
        .map(|c| wh.quote(c))
        .collect();
    let (where_sql, params) = match condition {
        Some((w, p)) => (format!(" WHERE {w}"), p),
        None => (String::new(), Vec::new()),
    };
    let sql = format!(
        "SELECT {} FROM {}{where_sql}",
        cols.join(", "),
        wh.qualified(resolved.schema_name.as_deref(), &resolved.table_name)
    );
    let pb = crate::output::progress(None, "reading");
    let mut ids = IdBuilder::default();
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|c| ColumnBuilder::new(resolved.sheet.column(c).map(|c| c.data_type)))
        .collect();
    let mut n = 0usize;
    let streamed = wh
        .fetch_each(&sql, &params, |row| {
            let mut row = row.into_iter();
            ids.push(row.next().unwrap_or(Value::Null), n);
            for (b, v) in builders.iter_mut().zip(row) {
                b.push(v);
            }
            n += 1;
            if n.is_multiple_of(65_536) {
                pb.set_position(n as u64);
            }
            Ok(())
        })
        .await;
    pb.finish_and_clear();
    streamed?;
    if n < 2 {
        let why = if aud.filters.is_empty() {
            ""
        } else {
            " after the filters"
        };
        return Err(Error::invalid(format!(
            "{label}: {n} participant(s){why} in table {}; an assignment needs at least 2{}",
            resolved.table_name,
            if why.is_empty() {
                ""
            } else {
                " (widen the filters)"
            }
        )));
    }
    let source = format!("{label} (table {})", resolved.table_name);
    let ids = ids.finish(&source, id)?;
    let columns = columns
        .iter()
        .zip(builders)
        .map(|(name, b)| Column {
            name: name.clone(),
            data: b.finish(),
        })
        .collect();
    Ok((
        Table {
            source,
            id_column: id.to_string(),
            ids,
            columns,
            origin: None,
        },
        n,
    ))
}

/// The id column as it streams in: integers while every id is an integer, else text; the rows
/// whose id is NULL (the first five, and how many).
#[derive(Default)]
struct IdBuilder {
    ints: Vec<i64>,
    texts: Option<Vec<String>>,
    null_rows: Vec<usize>,
    nulls: usize,
}

impl IdBuilder {
    fn push(&mut self, v: Value, row: usize) {
        if v.is_null() {
            self.nulls += 1;
            if self.null_rows.len() < 5 {
                self.null_rows.push(row);
            }
            return;
        }
        match (&mut self.texts, v) {
            (None, Value::Int(i)) => self.ints.push(i),
            (None, other) => {
                let mut t: Vec<String> = self.ints.drain(..).map(|i| i.to_string()).collect();
                t.push(other.to_text().unwrap_or_default());
                self.texts = Some(t);
            }
            (Some(t), other) => t.push(other.to_text().unwrap_or_default()),
        }
    }

    fn finish(self, source: &str, id: &str) -> Result<Ids> {
        if self.nulls > 0 {
            let shown: Vec<String> = self.null_rows.iter().map(|r| (r + 1).to_string()).collect();
            return Err(Error::invalid(format!(
                "{source}: the id column {id} is NULL in {} row(s) (rows {}{}); every participant needs an id",
                self.nulls,
                shown.join(", "),
                if self.nulls > 5 { ", ..." } else { "" }
            )));
        }
        Ok(match self.texts {
            None => Ids::Int(self.ints),
            Some(t) => Ids::from_strings(t),
        })
    }
}

/// One stratum or cluster column as it streams in, kept in the narrowest form its values so
/// far allow. The result is what the column's values decide as a whole (guided by the sheet's
/// type): booleans (also 0/1 integers of a boolean field), integers, floats (integers mixed
/// with floats), else text. Columns of one SQL type arrive as one kind of value; mixed kinds
/// (SQLite's dynamic typing) fall back to keeping the values and deciding at the end.
struct ColumnBuilder {
    dt: Option<DataType>,
    acc: Acc,
}

enum Acc {
    Nulls(usize),
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(TextBuilder),
    Mixed(Vec<Value>),
}

/// Dictionary-encoded text as it streams in: one copy of each distinct value.
#[derive(Default)]
struct TextBuilder {
    codes: Vec<u32>,
    index: std::collections::HashMap<String, u32, super::audience::FxBuild>,
    levels: Vec<String>,
}

impl TextBuilder {
    fn push(&mut self, v: Option<String>) {
        let code = match v {
            None => super::NULL_CODE,
            Some(s) => match self.index.get(&s) {
                Some(&c) => c,
                None => {
                    let c = self.levels.len() as u32;
                    self.levels.push(s.clone());
                    self.index.insert(s, c);
                    c
                }
            },
        };
        self.codes.push(code);
    }

    fn of(values: Vec<Value>) -> TextBuilder {
        let mut t = TextBuilder::default();
        for v in values {
            t.push(v.to_text());
        }
        t
    }
}

impl ColumnBuilder {
    fn new(dt: Option<DataType>) -> ColumnBuilder {
        ColumnBuilder {
            dt,
            acc: Acc::Nulls(0),
        }
    }

    fn push(&mut self, v: Value) {
        let acc = std::mem::replace(&mut self.acc, Acc::Nulls(0));
        self.acc = match (acc, v) {
            (Acc::Nulls(n), Value::Null) => Acc::Nulls(n + 1),
            (Acc::Nulls(n), Value::Bool(b)) => Acc::Bool(nulls_then(n, b)),
            (Acc::Nulls(n), Value::Int(i)) => Acc::Int(nulls_then(n, i)),
            (Acc::Nulls(n), Value::Float(f)) => Acc::Float(nulls_then(n, f)),
            (Acc::Nulls(n), other) => {
                let mut t = TextBuilder::of(vec![Value::Null; n]);
                t.push(other.to_text());
                Acc::Text(t)
            }
            (Acc::Bool(mut v), Value::Null) => {
                v.push(None);
                Acc::Bool(v)
            }
            (Acc::Bool(mut v), Value::Bool(b)) => {
                v.push(Some(b));
                Acc::Bool(v)
            }
            (Acc::Int(mut v), Value::Null) => {
                v.push(None);
                Acc::Int(v)
            }
            (Acc::Int(mut v), Value::Int(i)) => {
                v.push(Some(i));
                Acc::Int(v)
            }
            (Acc::Float(mut v), Value::Null) => {
                v.push(None);
                Acc::Float(v)
            }
            (Acc::Float(mut v), Value::Float(f)) => {
                v.push(Some(f));
                Acc::Float(v)
            }
            // Text absorbs everything: a column with any text value is read as text.
            (Acc::Text(mut v), other) => {
                v.push(other.to_text());
                Acc::Text(v)
            }
            (acc, other @ (Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_))) => {
                let mut v = acc.into_values();
                v.push(other);
                Acc::Mixed(v)
            }
            (acc, other) => {
                let mut t = TextBuilder::of(acc.into_values());
                t.push(other.to_text());
                Acc::Text(t)
            }
        };
    }

    fn finish(self) -> ColumnData {
        let boolean = self.dt == Some(DataType::Boolean);
        match self.acc {
            Acc::Nulls(n) if boolean => ColumnData::Bool(vec![None; n]),
            Acc::Nulls(n) => super::audience::text_column(std::iter::repeat_n(None, n)),
            Acc::Bool(v) => ColumnData::Bool(v),
            Acc::Int(v) if boolean && v.iter().flatten().all(|i| matches!(i, 0 | 1)) => {
                ColumnData::Bool(v.into_iter().map(|i| i.map(|x| x != 0)).collect())
            }
            Acc::Int(v) => ColumnData::Int(v),
            Acc::Float(v) => ColumnData::Float(v),
            Acc::Text(t) => super::data::sorted_text(t.codes, t.levels),
            Acc::Mixed(v) => decide(&v, boolean),
        }
    }
}

/// `n` NULLs, then `x`.
fn nulls_then<T>(n: usize, x: T) -> Vec<Option<T>> {
    let mut v: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    v.push(Some(x));
    v
}

impl Acc {
    /// The values kept so far, as they arrived (never called on `Text`, which absorbs
    /// every later value).
    fn into_values(self) -> Vec<Value> {
        match self {
            Acc::Nulls(n) => vec![Value::Null; n],
            Acc::Bool(v) => v
                .into_iter()
                .map(|x| x.map_or(Value::Null, Value::Bool))
                .collect(),
            Acc::Int(v) => v
                .into_iter()
                .map(|x| x.map_or(Value::Null, Value::Int))
                .collect(),
            Acc::Float(v) => v
                .into_iter()
                .map(|x| x.map_or(Value::Null, Value::Float))
                .collect(),
            Acc::Text(t) => t
                .codes
                .iter()
                .map(|&c| {
                    t.levels
                        .get(c as usize)
                        .map_or(Value::Null, |s| Value::Text(s.clone()))
                })
                .collect(),
            Acc::Mixed(v) => v,
        }
    }
}

/// A column decided from all its values at once (guided by the sheet's type): booleans when a
/// boolean field holds only booleans and 0/1; booleans, integers, or floats (integers mixed with
/// floats) when every non-null value is of that kind and one exists; else the values as text.
/// The streaming builder gives the same result; it calls this for columns of mixed kinds.
fn decide(vals: &[Value], boolean: bool) -> ColumnData {
    let all = |f: fn(&Value) -> bool| vals.iter().all(|v| v.is_null() || f(v));
    let some = vals.iter().any(|v| !v.is_null());
    if boolean && all(|v| matches!(v, Value::Bool(_) | Value::Int(0 | 1))) {
        return ColumnData::Bool(vals.iter().map(|v| v.as_i64().map(|x| x != 0)).collect());
    }
    if some && all(|v| matches!(v, Value::Bool(_))) {
        return ColumnData::Bool(vals.iter().map(|v| v.as_i64().map(|x| x != 0)).collect());
    }
    if some && all(|v| matches!(v, Value::Int(_))) {
        return ColumnData::Int(vals.iter().map(Value::as_i64).collect());
    }
    if some && all(|v| matches!(v, Value::Int(_) | Value::Float(_))) {
        return ColumnData::Float(
            vals.iter()
                .map(|v| if v.is_null() { None } else { v.as_f64() })
                .collect(),
        );
    }
    let texts: Vec<Option<String>> = vals.iter().map(Value::to_text).collect();
    super::audience::text_column(texts.iter().map(|t| t.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => (-2i64..3).prop_map(Value::Int),
            1 => (-2i64..3).prop_map(|i| Value::Float(i as f64 / 2.0)),
            1 => "[ab]{0,2}".prop_map(Value::Text),
            1 => Just(Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())),
        ]
    }

    /// Runs of one kind with NULLs, as warehouse columns arrive, and arbitrary mixes.
    fn column() -> impl Strategy<Value = Vec<Value>> {
        prop_oneof![
            (value(), proptest::collection::vec(any::<bool>(), 0..20)).prop_map(|(v, nulls)| {
                nulls
                    .into_iter()
                    .map(|n| if n { Value::Null } else { v.clone() })
                    .collect()
            }),
            proptest::collection::vec(value(), 0..20),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Streaming a column gives what deciding over all its values at once gives.
        #[test]
        fn streamed_column_equals_whole_column(vals in column(), boolean in any::<bool>()) {
            let dt = boolean.then_some(DataType::Boolean);
            let mut b = ColumnBuilder::new(dt);
            for v in vals.clone() {
                b.push(v);
            }
            prop_assert_eq!(b.finish(), decide(&vals, boolean));
        }

        /// Ids: integers stay integers, anything else makes every id text; NULL ids are named.
        #[test]
        fn streamed_ids(vals in proptest::collection::vec(value(), 2..20)) {
            let mut b = IdBuilder::default();
            for (i, v) in vals.iter().enumerate() {
                b.push(v.clone(), i);
            }
            let got = b.finish("t", "id");
            let nulls: Vec<usize> = (0..vals.len()).filter(|&i| vals[i].is_null()).collect();
            if let Some(first) = nulls.first() {
                let msg = got.unwrap_err().to_string();
                prop_assert!(msg.contains(&format!("NULL in {} row(s) (rows {}", nulls.len(), first + 1)), "{}", msg);
            } else if vals.iter().all(|v| matches!(v, Value::Int(_))) {
                prop_assert_eq!(got.unwrap(), Ids::Int(vals.iter().filter_map(Value::as_i64).collect()));
            } else {
                prop_assert_eq!(
                    got.unwrap(),
                    Ids::from_strings(vals.iter().map(|v| v.to_text().unwrap()).collect())
                );
            }
        }
    }
}
