//! Baselines (docs/statistics.md#baselines-from-the-warehouse): one aggregate query over the
//! filtered audience gives `available_n` (`count(*)`) and, per metric, the mean, the population
//! standard deviation (ddof = 0) and the non-null count. Values are cast to floating point first
//! (booleans through 0/1). The metric type comes from the sheet: boolean → binary, numbers →
//! numeric.
//!
//! PostgreSQL and MySQL/MariaDB use `STDDEV_POP`. SQLite has none, so there the query is two-pass
//! in one statement: a CTE holds the filtered rows and their means, and the variance is
//! `AVG((x − mean)²)` — no `Σx² − n·mean²` cancellation (a mean of 1e6 with σ = 1 would lose
//! twelve digits that way). The square root is taken in Rust (SQLite's `sqrt` needs the math
//! extension).

use super::analysis::{MetricSpec, MetricType};
use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::filters::{self, Filter};
use crate::input::names::*;
use crate::sheet::ConfigWorksheet;
use crate::warehouse::SqlDialect;
use crate::warehouse::Warehouse;

/// The effect asked for one metric: `NAME`, `NAME=pct:0.1` or `NAME=target:12.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRequest {
    pub name: String,
    pub pct_change: Option<f64>,
    pub target: Option<f64>,
}

/// Parse `--metric NAME[=pct:P|=target:T]`.
pub fn parse_metric_arg(arg: &str) -> Result<MetricRequest> {
    let usage = |why: &str| {
        Error::usage(format!(
            "{METRIC} {arg:?}: {why}; expected NAME, NAME=pct:0.1 (a relative change, +10 %) or NAME=target:12.5"
        ))
    };
    let (name, effect) = match arg.split_once('=') {
        Some((n, e)) => (n.trim(), Some(e.trim())),
        None => (arg.trim(), None),
    };
    if name.is_empty() {
        return Err(usage("missing metric name"));
    }
    let mut req = MetricRequest {
        name: name.to_string(),
        pct_change: None,
        target: None,
    };
    if let Some(effect) = effect {
        let (kind, value) = effect
            .split_once(':')
            .ok_or_else(|| usage("missing pct: or target:"))?;
        let v: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| usage("not a number"))?;
        match kind.trim().to_ascii_lowercase().as_str() {
            "pct" => req.pct_change = Some(v),
            "target" => req.target = Some(v),
            other => return Err(usage(&format!("unknown effect kind {other:?}"))),
        }
    }
    Ok(req)
}

/// Statistics of one metric over the filtered audience.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStats {
    pub name: String,
    pub metric_type: MetricType,
    /// Mean of the non-null values (None when there are none).
    pub mean: Option<f64>,
    /// Population standard deviation (numeric metrics only).
    pub stddev: Option<f64>,
    pub nonnull_n: i64,
}

/// The filtered audience: its size and each metric's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceStats {
    pub available_n: i64,
    pub metrics: Vec<MetricStats>,
}

/// The metric type of a sheet column, or why it cannot be a metric.
pub fn metric_type_of(t: DataType) -> Option<MetricType> {
    match t {
        DataType::Boolean => Some(MetricType::Binary),
        t if t.is_numeric() => Some(MetricType::Numeric),
        _ => None,
    }
}

/// Run the aggregate query for `metrics` over `table` filtered by `filters`.
pub async fn audience_stats(
    wh: &Warehouse,
    schema: Option<&str>,
    table: &str,
    sheet: &ConfigWorksheet,
    metrics: &[String],
    filters: &[Filter],
) -> Result<AudienceStats> {
    let mut errors = Vec::new();
    let mut typed = Vec::new();
    for name in metrics {
        match sheet.column(name) {
            None => {
                let known: Vec<&str> = sheet.metrics().map(|c| c.column_name.as_str()).collect();
                errors.push(format!(
                    "{METRIC} {name}: no column {name:?} in the sheet for {}; metric fields: {}",
                    sheet.table_name,
                    if known.is_empty() { "(none marked is_metric)".to_string() } else { known.join(", ") }
                ));
            }
            Some(col) => match metric_type_of(col.data_type) {
                None => errors.push(format!(
                    "{METRIC} {name}: column type {} cannot be a metric (numbers or booleans only)",
                    col.data_type
                )),
                Some(_) if !col.is_metric => errors.push(format!(
                    "{METRIC} {name}: column {name:?} is not marked is_metric in the sheet for {} (set is_metric to TRUE there)",
                    sheet.table_name
                )),
                Some(t) => typed.push((name.clone(), t)),
            },
        }
    }
    let resolved = filters::resolve_into(filters, sheet, &mut errors)?;
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let dialect = wh.dialect();
    let (clause, params) = filters::where_clause_resolved(dialect, &resolved, 1);
    let sql = aggregate_sql(dialect, &wh.qualified(schema, table), &typed, &clause);
    let rows = wh.fetch_all(&sql, &params).await?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| Error::runtime("the aggregate query returned no row"))?;
    let available_n = row.first().and_then(|v| v.as_i64()).unwrap_or(0);
    let mut out = Vec::new();
    for (i, (name, t)) in typed.iter().enumerate() {
        let base = 1 + 3 * i;
        let mean = row.get(base).and_then(|v| v.as_f64());
        let nonnull_n = row.get(base + 1).and_then(|v| v.as_i64()).unwrap_or(0);
        let spread = row.get(base + 2).and_then(|v| v.as_f64());
        let stddev = match t {
            MetricType::Binary => None,
            _ if dialect.variance_needs_two_pass() => spread.map(|var| var.max(0.0).sqrt()),
            _ => spread,
        };
        out.push(MetricStats {
            name: name.clone(),
            metric_type: *t,
            mean,
            stddev,
            nonnull_n,
        });
    }
    Ok(AudienceStats {
        available_n,
        metrics: out,
    })
}

/// The aggregate statement: `count(*)`, then per metric `avg`, `count`, and the population
/// stddev (PostgreSQL/MySQL) or variance (SQLite, two-pass).
pub fn aggregate_sql(
    dialect: &dyn SqlDialect,
    qualified: &str,
    metrics: &[(String, MetricType)],
    clause: &str,
) -> String {
    let q = |s: &str| dialect.quote_ident(s);
    // Booleans may need a detour through INTEGER (PostgreSQL).
    let float_expr = |name: &str, t: MetricType| match t {
        MetricType::Numeric => dialect.float_cast(&q(name)),
        _ => dialect.bool_to_float(&q(name)),
    };
    match dialect.variance_needs_two_pass() {
        true => {
            let inner: Vec<String> = metrics
                .iter()
                .enumerate()
                .map(|(i, (n, t))| format!("{} AS m{i}", float_expr(n, *t)))
                .collect();
            let select_f = if inner.is_empty() {
                "1 AS one".to_string()
            } else {
                inner.join(", ")
            };
            let means: Vec<String> = (0..metrics.len())
                .map(|i| format!("AVG(m{i}) AS a{i}"))
                .collect();
            let means = if means.is_empty() {
                "1 AS one".to_string()
            } else {
                means.join(", ")
            };
            let mut cols = vec!["COUNT(*)".to_string()];
            for i in 0..metrics.len() {
                cols.push(format!("AVG(f.m{i})"));
                cols.push(format!("COUNT(f.m{i})"));
                cols.push(format!("AVG((f.m{i} - a.a{i}) * (f.m{i} - a.a{i}))"));
            }
            format!(
                "WITH f AS (SELECT {select_f} FROM {qualified} WHERE {clause}), a AS (SELECT {means} FROM f) \
                 SELECT {} FROM f CROSS JOIN a",
                cols.join(", ")
            )
        }
        false => {
            let mut cols = vec!["COUNT(*)".to_string()];
            for (n, t) in metrics {
                let x = float_expr(n, *t);
                cols.push(format!("AVG({x})"));
                cols.push(format!("COUNT({})", q(n)));
                cols.push(format!("STDDEV_POP({x})"));
            }
            format!("SELECT {} FROM {qualified} WHERE {clause}", cols.join(", "))
        }
    }
}

/// Metric specs for the analysis from the audience statistics and the requested effects.
pub fn metric_specs(stats: &AudienceStats, requests: &[MetricRequest]) -> Vec<MetricSpec> {
    stats
        .metrics
        .iter()
        .zip(requests)
        .map(|(s, r)| MetricSpec {
            name: s.name.clone(),
            metric_type: s.metric_type,
            baseline: s.mean,
            target: r.target,
            pct_change: r.pct_change,
            stddev: s.stddev,
            available_n: Some(stats.available_n),
            available_nonnull_n: Some(s.nonnull_n),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_args() {
        assert_eq!(
            parse_metric_arg("income=pct:0.1").unwrap(),
            MetricRequest {
                name: "income".into(),
                pct_change: Some(0.1),
                target: None
            }
        );
        assert_eq!(
            parse_metric_arg("x=target:12.5").unwrap().target,
            Some(12.5)
        );
        assert_eq!(parse_metric_arg("x").unwrap().target, None);
        for bad in ["=pct:1", "x=pct", "x=pct:abc", "x=delta:1", "x=pct:inf"] {
            let e = parse_metric_arg(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn sqlite_query_is_two_pass() {
        let sql = aggregate_sql(
            &crate::warehouse::sqlite::Sqlite,
            "\"t\"",
            &[
                ("inc".into(), MetricType::Numeric),
                ("ok".into(), MetricType::Binary),
            ],
            "1=1",
        );
        assert_eq!(
            sql,
            "WITH f AS (SELECT CAST(\"inc\" AS REAL) AS m0, CAST(\"ok\" AS REAL) AS m1 FROM \"t\" WHERE 1=1), \
             a AS (SELECT AVG(m0) AS a0, AVG(m1) AS a1 FROM f) SELECT COUNT(*), AVG(f.m0), COUNT(f.m0), \
             AVG((f.m0 - a.a0) * (f.m0 - a.a0)), AVG(f.m1), COUNT(f.m1), AVG((f.m1 - a.a1) * (f.m1 - a.a1)) \
             FROM f CROSS JOIN a"
        );
    }
}

/// The `--metric` requests of a warehouse power check, checked before anything is read: at
/// least one, and each with an effect unless a desired size asks for the minimum detectable
/// effect.
pub fn metric_requests(args: &[String], desired_n: Option<i64>) -> Result<Vec<MetricRequest>> {
    if args.is_empty() {
        return Err(Error::usage(format!(
            "{PARTICIPANT_TYPE} needs at least one {METRIC} NAME[=pct:P|=target:T]"
        )));
    }
    let requests = args
        .iter()
        .map(|m| parse_metric_arg(m))
        .collect::<Result<Vec<_>>>()?;
    if desired_n.is_none()
        && let Some(r) = requests
            .iter()
            .find(|r| r.pct_change.is_none() && r.target.is_none())
    {
        return Err(Error::usage(format!(
            "{METRIC} {}: give the effect to detect as {0}=pct:0.1 or {0}=target:12.5 (or use {DESIRED_N} for the minimum detectable effect)",
            r.name
        )));
    }
    Ok(requests)
}

/// A cluster design whose inputs come from the warehouse: the cluster column, and the ICC,
/// average size and CV given instead of estimated.
#[derive(Debug, Clone, Default)]
pub struct ClusterRequest {
    pub column: String,
    pub icc: Option<f64>,
    pub avg_cluster_size: Option<f64>,
    pub cv: Option<f64>,
}

/// The metrics' baselines from the audience and, for a cluster design, each metric's cluster
/// inputs: one connection, the aggregate queries of [`audience_stats`] and
/// [`super::icc::warehouse_inputs`].
pub async fn warehouse_metrics(
    aud: &crate::audience::ParticipantAudience,
    requests: &[MetricRequest],
    cluster: Option<&ClusterRequest>,
) -> Result<(Vec<MetricSpec>, Option<Vec<super::icc::ClusterInputs>>)> {
    let rp = &aud.participants;
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let wh = Warehouse::connect(&rp.dsn).await?;
    let res = async {
        let stats = audience_stats(
            &wh,
            rp.schema_name.as_deref(),
            &rp.table_name,
            &rp.sheet,
            &names,
            &aud.filters,
        )
        .await?;
        let inputs = match cluster {
            Some(c) => Some(
                super::icc::warehouse_inputs(
                    &wh,
                    rp.schema_name.as_deref(),
                    &rp.table_name,
                    &rp.sheet,
                    &names,
                    &c.column,
                    &aud.filters,
                    (c.icc, c.avg_cluster_size, c.cv),
                )
                .await?,
            ),
            None => None,
        };
        Ok((metric_specs(&stats, requests), inputs))
    }
    .await;
    wh.close().await;
    res
}
