//! `xngin fields`: a participant type's filter, metric and strata fields, with what a UI needs to
//! offer filters on them (what the Python API served as /filters, /metrics, /strata;
//! filter classes in docs/compatibility.md#data-types-and-introspection).
//!
//! For filters: numeric-class fields (numbers, dates, timestamps) get their min and max;
//! discrete fields (strings, booleans, uuids, and any `*_id` field) get up to
//! [`MAX_DISTINCT`] sorted distinct non-null values; every filter gets its NULL count. One
//! aggregate query per table computes every min, max and NULL count at once; each discrete field
//! then needs one `SELECT DISTINCT`.

use std::cmp::Ordering;

use serde::Serialize;

use crate::datatype::{DataType, FilterClass};
use crate::error::{Error, Result};
use crate::settings::ResolvedParticipants;
use crate::sheet::ColumnDescriptor;
use crate::warehouse::{Value, Warehouse};

/// At most this many distinct values are listed per discrete field.
pub const MAX_DISTINCT: usize = 1000;

/// Which role's fields to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Filters,
    Metrics,
    Strata,
}

impl FieldKind {
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Filters => "filters",
            FieldKind::Metrics => "metrics",
            FieldKind::Strata => "strata",
        }
    }
    fn selects(self, c: &ColumnDescriptor) -> bool {
        match self {
            FieldKind::Filters => c.is_filter,
            FieldKind::Metrics => c.is_metric,
            FieldKind::Strata => c.is_strata,
        }
    }
}

/// One field. The filter parts are present only for `--kind filters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldInfo {
    pub field_name: String,
    pub data_type: DataType,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_class: Option<FilterClass>,
    /// Relations a filter on this field may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relations: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    /// Sorted distinct non-null values (discrete fields), at most [`MAX_DISTINCT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_values: Option<Vec<serde_json::Value>>,
    /// True when the field has more than [`MAX_DISTINCT`] distinct values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_count: Option<i64>,
}

/// The fields of one participant type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldsReport {
    pub datasource: String,
    pub participant_type: String,
    pub table_name: String,
    pub kind: FieldKind,
    /// Rows in the table (filters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count: Option<i64>,
    pub fields: Vec<FieldInfo>,
}

/// Order values for listing: NULL first, then booleans, numbers (numerically), text (by bytes),
/// then the rest by their text form.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            _ => 3,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => a
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&b.as_f64().unwrap_or(f64::NAN)),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::TimestampTz(x), Value::TimestampTz(y)) => x.cmp(y),
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_text().cmp(&b.to_text())),
    }
}

/// A value as the sheet's type says it is: SQLite/MySQL return booleans as 0/1.
fn typed_json(v: &Value, t: DataType) -> serde_json::Value {
    match (t, v) {
        (DataType::Boolean, Value::Int(i)) => serde_json::Value::Bool(*i != 0),
        // Big integers stay exact in JSON; floats that are whole stay floats.
        _ => v.to_json(),
    }
}

/// List the fields of `rp` marked for `kind`; for filters, query `wh` for ranges, distinct
/// values and NULL counts.
pub async fn list_fields(
    wh: &Warehouse,
    rp: &ResolvedParticipants,
    kind: FieldKind,
) -> Result<FieldsReport> {
    let selected: Vec<&ColumnDescriptor> = rp
        .sheet
        .columns
        .iter()
        .filter(|c| kind.selects(c))
        .collect();
    let mut report = FieldsReport {
        datasource: rp.datasource_id.clone(),
        participant_type: rp.participant_type.clone(),
        table_name: rp.table_name.clone(),
        kind,
        row_count: None,
        fields: selected
            .iter()
            .map(|c| FieldInfo {
                field_name: c.column_name.clone(),
                data_type: c.data_type,
                description: c.description.clone(),
                filter_class: None,
                relations: None,
                min: None,
                max: None,
                distinct_values: None,
                distinct_truncated: None,
                null_count: None,
            })
            .collect(),
    };
    if kind != FieldKind::Filters || selected.is_empty() {
        return Ok(report);
    }
    let table = wh.qualified(rp.schema_name.as_deref(), &rp.table_name);
    if !wh
        .table_exists(rp.schema_name.as_deref(), &rp.table_name)
        .await?
    {
        return Err(Error::runtime(format!(
            "table '{}' of participant type '{}' does not exist in {}",
            rp.table_name,
            rp.participant_type,
            wh.dsn()
        )));
    }

    // One aggregate query: row count, then per field NULL count (and min/max when numeric).
    let mut exprs = vec!["COUNT(*)".to_string()];
    let mut slots = Vec::new(); // per field: (null idx, Option<(min idx, max idx)>)
    for c in &selected {
        let q = wh.quote(&c.column_name);
        let class = c.data_type.filter_class(&c.column_name);
        let null_idx = exprs.len();
        exprs.push(format!("COUNT(*) - COUNT({q})"));
        let mm = if class == FilterClass::Numeric {
            let i = exprs.len();
            exprs.push(format!("MIN({q})"));
            exprs.push(format!("MAX({q})"));
            Some((i, i + 1))
        } else {
            None
        };
        slots.push((null_idx, mm));
    }
    let sql = format!("SELECT {} FROM {table}", exprs.join(", "));
    let rows = wh.fetch_all(&sql, &[]).await?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| Error::runtime("the aggregate query returned no row"))?;
    report.row_count = row[0].as_i64();

    for ((c, info), (null_idx, mm)) in selected.iter().zip(report.fields.iter_mut()).zip(slots) {
        let class = c.data_type.filter_class(&c.column_name);
        info.filter_class = Some(class);
        info.relations = Some(match class {
            FilterClass::Discrete => vec!["includes", "excludes"],
            FilterClass::Numeric => vec!["between"],
            FilterClass::Unknown => vec![],
        });
        info.null_count = row[null_idx].as_i64();
        if let Some((lo, hi)) = mm {
            info.min = Some(typed_json(&row[lo], c.data_type));
            info.max = Some(typed_json(&row[hi], c.data_type));
        }
        if class == FilterClass::Discrete {
            let q = wh.quote(&c.column_name);
            let sql = format!(
                "SELECT DISTINCT {q} FROM {table} WHERE {q} IS NOT NULL ORDER BY {q} LIMIT {}",
                MAX_DISTINCT + 1
            );
            let mut vals: Vec<Value> = wh
                .fetch_all(&sql, &[])
                .await?
                .rows
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            vals.sort_by(compare_values);
            vals.dedup();
            let truncated = vals.len() > MAX_DISTINCT;
            vals.truncate(MAX_DISTINCT);
            info.distinct_values = Some(vals.iter().map(|v| typed_json(v, c.data_type)).collect());
            info.distinct_truncated = Some(truncated);
        }
    }
    Ok(report)
}

fn cell(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Human table: one row per field.
pub fn render_table(r: &FieldsReport) -> String {
    let mut t = crate::output::table();
    let filters = r.kind == FieldKind::Filters;
    if filters {
        t.set_header(vec![
            "field",
            "type",
            "class",
            "min",
            "max",
            "values",
            "nulls",
            "description",
        ]);
    } else {
        t.set_header(vec!["field", "type", "description"]);
    }
    for f in &r.fields {
        if filters {
            let values = match &f.distinct_values {
                None => String::new(),
                Some(v) => {
                    let shown: Vec<String> =
                        v.iter().take(8).map(|x| cell(&Some(x.clone()))).collect();
                    let more = if f.distinct_truncated == Some(true) {
                        format!(" … (more than {MAX_DISTINCT})")
                    } else if v.len() > 8 {
                        format!(" … ({} in all)", v.len())
                    } else {
                        String::new()
                    };
                    format!("{}{more}", shown.join(", "))
                }
            };
            let class = match f.filter_class {
                Some(FilterClass::Discrete) => "discrete",
                Some(FilterClass::Numeric) => "numeric",
                _ => "unknown",
            };
            t.add_row(vec![
                f.field_name.clone(),
                f.data_type.to_string(),
                class.to_string(),
                cell(&f.min),
                cell(&f.max),
                values,
                f.null_count.map(|n| n.to_string()).unwrap_or_default(),
                f.description.clone(),
            ]);
        } else {
            t.add_row(vec![
                f.field_name.clone(),
                f.data_type.to_string(),
                f.description.clone(),
            ]);
        }
    }
    format!("{t}\n")
}

/// CSV: one row per field; `distinct_values` is a JSON array.
pub fn render_csv(r: &FieldsReport) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::runtime(format!("cannot write CSV: {e}"));
    w.write_record([
        "field_name",
        "data_type",
        "description",
        "filter_class",
        "min",
        "max",
        "null_count",
        "distinct_values",
        "distinct_truncated",
    ])
    .map_err(io)?;
    for f in &r.fields {
        let class = f.filter_class.map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        });
        w.write_record([
            f.field_name.clone(),
            f.data_type.to_string(),
            f.description.clone(),
            class.unwrap_or_default(),
            cell(&f.min),
            cell(&f.max),
            f.null_count.map(|n| n.to_string()).unwrap_or_default(),
            f.distinct_values
                .as_ref()
                .map(|v| serde_json::Value::Array(v.clone()).to_string())
                .unwrap_or_default(),
            f.distinct_truncated
                .map(|b| b.to_string())
                .unwrap_or_default(),
        ])
        .map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::runtime(format!("cannot write CSV: {e}")))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        let mut v = vec![
            Value::Text("b".into()),
            Value::Int(10),
            Value::Float(2.5),
            Value::Text("B".into()),
            Value::Int(-1),
        ];
        v.sort_by(compare_values);
        assert_eq!(
            v,
            vec![
                Value::Int(-1),
                Value::Float(2.5),
                Value::Int(10),
                Value::Text("B".into()),
                Value::Text("b".into())
            ]
        );
    }
}
