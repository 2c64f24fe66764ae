//! Cluster designs: the ICC aggregate query on SQLite, PostgreSQL and MariaDB against the pure
//! computation over the same rows.

use crate::common;

use xngin::datatype::DataType;
use xngin::dsn::Dsn;
use xngin::filters::{Relation, ResolvedFilter, where_clause_resolved};
use xngin::power::MetricType;
use xngin::power::icc::{Anova, cluster_anova, estimate};
use xngin::warehouse::load::{ColumnDef, create_table_sql, insert_rows};
use xngin::warehouse::{Value, Warehouse};

/// One test row: cluster id (None = NULL), region, score (None = NULL), flag.
type Row = (Option<String>, &'static str, Option<f64>, bool);

/// Deterministic rows: 30 schools of 1 … 30 pupils, scores near 1e6 with a school effect, a few
/// NULL scores and a few pupils without a school.
fn rows() -> Vec<Row> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for s in 0..30u64 {
        let size = 1 + (s * 7) % 30;
        let effect = (next() % 2001) as f64 / 100.0 - 10.0;
        for i in 0..size {
            let noise = (next() % 4001) as f64 / 100.0 - 20.0;
            let region = if s % 3 == 0 { "north" } else { "south" };
            let score = if i % 11 == 5 {
                None
            } else {
                Some(1e6 + effect + noise)
            };
            let flag = (next() % 100) as f64 / 100.0 < 0.3 + effect / 40.0;
            out.push((Some(format!("s{s:02}")), region, score, flag));
        }
    }
    for i in 0..4 {
        out.push((None, "south", Some(1e6 + f64::from(i)), i % 2 == 0));
    }
    out
}

/// The pure computation over the rows the query should see.
fn expected(rows: &[Row], region: &str, binary: bool) -> (Anova, u64) {
    let mut pairs = Vec::new();
    let mut no_cluster = 0;
    for (c, r, score, flag) in rows {
        if *r != region {
            continue;
        }
        let y = if binary {
            Some(f64::from(u8::from(*flag)))
        } else {
            *score
        };
        match (c, y) {
            (Some(c), Some(y)) => pairs.push((c.clone(), y)),
            (None, Some(_)) => no_cluster += 1,
            _ => {}
        }
    }
    (Anova::from_pairs(&pairs), no_cluster)
}

async fn check_icc_query(wh: &Warehouse) {
    let table = common::unique("xngin_icc");
    let qualified = wh.qualified(None, &table);
    let columns = [
        ColumnDef::new("school id", DataType::CharacterVarying),
        ColumnDef::new("region", DataType::CharacterVarying),
        ColumnDef::new("score", DataType::DoublePrecision),
        ColumnDef::new("passed", DataType::Boolean),
    ];
    wh.execute(&create_table_sql(wh.dialect(), &qualified, &columns), &[])
        .await
        .unwrap();
    let data = rows();
    let mut tx = wh.begin().await.unwrap();
    insert_rows(
        &mut tx,
        &qualified,
        &columns,
        data.iter().map(|(c, r, s, f)| {
            Ok(vec![
                c.clone().map_or(Value::Null, Value::Text),
                Value::Text(r.to_string()),
                s.map_or(Value::Null, Value::Float),
                Value::Bool(*f),
            ])
        }),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let filter = ResolvedFilter {
        field_name: "region".into(),
        data_type: DataType::CharacterVarying,
        relation: Relation::Includes,
        values: vec![Some(Value::Text("south".into()))],
    };
    let (clause, params) = where_clause_resolved(wh.dialect(), &[filter], 1);
    for (metric, metric_type) in [
        ("score", MetricType::Numeric),
        ("passed", MetricType::Binary),
    ] {
        let got = cluster_anova(
            wh,
            &qualified,
            metric,
            metric_type,
            "school id",
            &clause,
            &params,
        )
        .await
        .unwrap();
        let (want, no_cluster) = expected(&data, "south", metric_type == MetricType::Binary);
        assert_eq!(got.units_without_cluster, no_cluster, "{metric}");
        assert_eq!(got.anova.clusters, want.clusters, "{metric}");
        assert_eq!(got.anova.units, want.units, "{metric}");
        assert_eq!(got.anova.sum_sq_sizes, want.sum_sq_sizes, "{metric}");
        let (g, w) = (estimate(&got.anova).unwrap(), estimate(&want).unwrap());
        for (name, a, b) in [
            ("icc", g.icc, w.icc),
            ("msb", g.msb, w.msb),
            ("msw", g.msw, w.msw),
            ("n0", g.n0, w.n0),
            ("cv", g.cv, w.cv),
            ("avg_cluster_size", g.avg_cluster_size, w.avg_cluster_size),
        ] {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1e-300),
                "{:?} {metric} {name}: {a} vs {b}",
                wh.dialect()
            );
        }
    }
    // A filter that keeps nobody: no clusters, nothing to estimate, no error from the query.
    let none = ResolvedFilter {
        field_name: "region".into(),
        data_type: DataType::CharacterVarying,
        relation: Relation::Includes,
        values: vec![Some(Value::Text("west".into()))],
    };
    let (clause, params) = where_clause_resolved(wh.dialect(), &[none], 1);
    let empty = cluster_anova(
        wh,
        &qualified,
        "score",
        MetricType::Numeric,
        "school id",
        &clause,
        &params,
    )
    .await
    .unwrap();
    assert_eq!((empty.anova.clusters, empty.anova.units), (0, 0));
    assert!(estimate(&empty.anova).is_err());
    wh.execute(&format!("DROP TABLE {qualified}"), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn icc_query_equals_the_pure_estimate_sqlite() {
    let wh = Warehouse::connect(&Dsn::parse("sqlite::memory:").unwrap())
        .await
        .unwrap();
    check_icc_query(&wh).await;
}

#[tokio::test]
async fn icc_query_equals_the_pure_estimate_postgres() {
    let Some(url) = common::pg_url("icc_query_equals_the_pure_estimate_postgres") else {
        return;
    };
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_icc_query(&wh).await;
}

#[tokio::test]
async fn icc_query_equals_the_pure_estimate_mysql() {
    let Some(url) = common::mysql_url("icc_query_equals_the_pure_estimate_mysql") else {
        return;
    };
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_icc_query(&wh).await;
}
