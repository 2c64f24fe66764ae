//! `xngin fields`: a participant type's filter, metric and strata fields, with what a UI needs to
//! offer filters on them (what the Python API served as /filters, /metrics, /strata;
//! filter classes in docs/compatibility.md#data-types-and-introspection).
//!
//! For filters: numeric-class fields (numbers, dates, timestamps) get their min and max;
//! discrete fields (strings, booleans, uuids, and any `*_id` field) get up to
//! [`MAX_DISTINCT`] sorted distinct non-null values; every filter gets its NULL count. One
//! aggregate query per table computes every min, max and NULL count at once; each discrete field
//! then needs one `SELECT DISTINCT`.

use crate::input::names::*;
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
    /// With `--cluster-column`: the clusters in which this field takes more than one value
    /// (NULL counting as a value); 0 means constant within every cluster, usable as a stratum of
    /// a cluster assignment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clusters_varying: Option<i64>,
    /// With `--cluster-column`, metrics: the ICC estimate (one-way ANOVA, docs/cluster.md), or
    /// null when it cannot be estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icc: Option<Option<f64>>,
}

/// Cluster-level summary of a participant type's table (`fields --cluster-column`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    pub cluster_column: String,
    /// Distinct non-null cluster ids.
    pub clusters: u64,
    /// Rows with a NULL cluster id.
    pub units_without_cluster: u64,
    pub min_cluster_size: u64,
    pub max_cluster_size: u64,
    /// Rows with a cluster id over clusters.
    pub avg_cluster_size: f64,
    /// Population standard deviation of the cluster sizes over their mean.
    pub cv: f64,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
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
                clusters_varying: None,
                icc: None,
            })
            .collect(),
        cluster: None,
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

/// Add cluster-level summaries to `report` (fields of `rp`): the clusters of `cluster_column`
/// and their sizes, each field's number of clusters in which it varies, and each metric's ICC.
/// One aggregate query for the sizes, one per field.
pub async fn add_cluster_summary(
    wh: &Warehouse,
    rp: &ResolvedParticipants,
    report: &mut FieldsReport,
    cluster_column: &str,
) -> Result<()> {
    if rp.sheet.column(cluster_column).is_none() {
        let names: Vec<&str> = rp
            .sheet
            .columns
            .iter()
            .map(|c| c.column_name.as_str())
            .collect();
        return Err(Error::invalid(format!(
            "{CLUSTER_COLUMN} {cluster_column}: no column {cluster_column:?} in the sheet for {} (fields: {})",
            rp.table_name,
            names.join(", ")
        )));
    }
    let table = wh.qualified(rp.schema_name.as_deref(), &rp.table_name);
    let c = wh.quote(cluster_column);
    let d = wh.dialect();
    let n = d.float_cast("COUNT(*)");
    let sql = format!(
        "SELECT SUM(CASE WHEN xnull = 0 THEN 1 ELSE 0 END), MIN(CASE WHEN xnull = 0 THEN xn END), \
         MAX(CASE WHEN xnull = 0 THEN xn END), SUM(CASE WHEN xnull = 0 THEN xn END), \
         SUM(CASE WHEN xnull = 0 THEN xn * xn END), SUM(CASE WHEN xnull = 1 THEN xn END) \
         FROM (SELECT CASE WHEN {c} IS NULL THEN 1 ELSE 0 END AS xnull, {n} AS xn FROM {table} GROUP BY {c}) g"
    );
    let rows = wh.fetch_all(&sql, &[]).await?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| Error::runtime("the cluster query returned no row"))?;
    let int = |i: usize| -> u64 {
        row.get(i)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .map_or(0, |x| x.round() as u64)
    };
    let (k, units, sum_sq) = (int(0), int(3), int(4));
    let (avg, cv) = if k > 0 && units > 0 {
        let (k128, n128) = (u128::from(k), u128::from(units));
        let spread = (k128 * u128::from(sum_sq)).saturating_sub(n128 * n128) as f64;
        (units as f64 / k as f64, spread.sqrt() / units as f64)
    } else {
        (0.0, 0.0)
    };
    report.cluster = Some(ClusterSummary {
        cluster_column: cluster_column.to_string(),
        clusters: k,
        units_without_cluster: int(5),
        min_cluster_size: int(1),
        max_cluster_size: int(2),
        avg_cluster_size: avg,
        cv,
    });
    for f in &mut report.fields {
        if f.field_name == cluster_column {
            continue;
        }
        let q = wh.quote(&f.field_name);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT {c} FROM {table} WHERE {c} IS NOT NULL GROUP BY {c} \
             HAVING COUNT(DISTINCT {q}) > 1 OR (COUNT({q}) > 0 AND COUNT({q}) < COUNT(*))) v"
        );
        let rows = wh.fetch_all(&sql, &[]).await?;
        f.clusters_varying = rows
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64);
        if report.kind == FieldKind::Metrics
            && let Some(t) = crate::power::baseline::metric_type_of(f.data_type)
        {
            let qa = crate::power::icc::cluster_anova(
                wh,
                &table,
                &f.field_name,
                t,
                cluster_column,
                "1=1",
                &[],
            )
            .await?;
            f.icc = Some(crate::power::icc::estimate(&qa.anova).ok().map(|e| e.icc));
        }
    }
    Ok(())
}

/// The cluster lines under the table.
fn cluster_lines(r: &FieldsReport) -> String {
    let Some(c) = &r.cluster else {
        return String::new();
    };
    format!(
        "clusters of {}: {} (sizes {} to {}, average {}, CV {}); rows without a cluster id: {}\n\
         \"varies in\": the clusters in which a field takes more than one value (0: constant within \
         clusters, usable as a stratum of assign {CLUSTER_COLUMN})\n",
        c.cluster_column,
        c.clusters,
        c.min_cluster_size,
        c.max_cluster_size,
        fmt_num(c.avg_cluster_size),
        fmt_num(c.cv),
        c.units_without_cluster
    )
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
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
    let mut head = if filters {
        vec![
            "field",
            "type",
            "class",
            "min",
            "max",
            "values",
            "nulls",
            "description",
        ]
    } else {
        vec!["field", "type", "description"]
    };
    let clustered = r.cluster.is_some();
    let metrics = r.kind == FieldKind::Metrics;
    if clustered {
        head.push("varies in");
        if metrics {
            head.push("ICC");
        }
    }
    t.set_header(head);
    let extra = |f: &FieldInfo| -> Vec<String> {
        let mut v = Vec::new();
        if clustered {
            v.push(
                f.clusters_varying
                    .map(|n| format!("{n} clusters"))
                    .unwrap_or_else(|| "-".into()),
            );
            if metrics {
                v.push(match f.icc {
                    Some(Some(x)) => format!("{x:.6}"),
                    _ => "-".into(),
                });
            }
        }
        v
    };
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
            let mut row = vec![
                f.field_name.clone(),
                f.data_type.to_string(),
                class.to_string(),
                cell(&f.min),
                cell(&f.max),
                values,
                f.null_count.map(|n| n.to_string()).unwrap_or_default(),
                f.description.clone(),
            ];
            row.extend(extra(f));
            t.add_row(row);
        } else {
            let mut row = vec![
                f.field_name.clone(),
                f.data_type.to_string(),
                f.description.clone(),
            ];
            row.extend(extra(f));
            t.add_row(row);
        }
    }
    format!("{t}\n{}", cluster_lines(r))
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

/// The fields report of a participant type: [`list_fields`] of `kind`, with the cluster-level
/// summary by `cluster_column` when given, over one connection.
pub async fn fields_report(
    rp: &ResolvedParticipants,
    kind: FieldKind,
    cluster_column: Option<&str>,
) -> Result<FieldsReport> {
    let wh = Warehouse::connect(&rp.dsn).await?;
    let res = async {
        let mut report = list_fields(&wh, rp, kind).await?;
        if let Some(col) = cluster_column {
            add_cluster_summary(&wh, rp, &mut report, col).await?;
        }
        Ok(report)
    }
    .await;
    wh.close().await;
    res
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
