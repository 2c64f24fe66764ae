//! `xngin fields`: ranges, distinct values and NULL counts checked against SQL written here, on
//! the embedded testing warehouse and on a small table with known values (SQLite, PostgreSQL,
//! MariaDB).

use crate::common;
use common::unique;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value as J, json};
use xngin::dsn::Dsn;
use xngin::warehouse::{ConnectOptions, Value, Warehouse};

fn xngin() -> Command {
    let mut c = Command::cargo_bin("xngin").unwrap();
    for v in [
        "XNGIN_SETTINGS",
        "XNGIN_DATASOURCE",
        "XNGIN_SECRETS_SOURCE",
        "XNGIN_ECHO_SQL",
    ] {
        c.env_remove(v);
    }
    c
}

fn run_json(dir: &Path, args: &[&str]) -> J {
    let out = xngin().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn field<'a>(report: &'a J, name: &str) -> &'a J {
    report["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field_name"] == name)
        .unwrap_or_else(|| panic!("{name}"))
}

/// The built-in default: every filter of the bundled sheet, against queries written here.
#[tokio::test]
async fn testing_warehouse_filters_match_sql() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_json(
        dir.path(),
        &[
            "fields",
            "--participant-type",
            "test_participant_type",
            "--format",
            "json",
        ],
    );
    assert_eq!(report["datasource"], "testing");
    assert_eq!(report["kind"], "filters");

    let dsn = xngin::testing_dwh::default_warehouse().await.unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let table = wh.quote(xngin::testing_dwh::DEFAULT_TABLE);
    let sheet = xngin::settings::builtin_default_sheet().unwrap();
    let filters: Vec<_> = sheet.columns.iter().filter(|c| c.is_filter).collect();
    assert_eq!(report["fields"].as_array().unwrap().len(), filters.len());
    let total = wh
        .fetch_all(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap()
        .rows[0][0]
        .as_i64();
    assert_eq!(report["row_count"].as_i64(), total);
    assert!(total.unwrap() > 1000);

    let mut checked_numeric = 0;
    let mut checked_discrete = 0;
    for c in filters {
        let f = field(&report, &c.column_name);
        let q = wh.quote(&c.column_name);
        let nulls = wh
            .fetch_all(
                &format!("SELECT COUNT(*) FROM {table} WHERE {q} IS NULL"),
                &[],
            )
            .await
            .unwrap()
            .rows[0][0]
            .as_i64()
            .unwrap();
        assert_eq!(f["null_count"], nulls, "{}", c.column_name);
        match c.data_type.filter_class(&c.column_name) {
            xngin::datatype::FilterClass::Numeric => {
                // min/max by ordering, not by aggregate: a different query than the command's.
                let lo = wh
                    .fetch_all(
                        &format!(
                            "SELECT {q} FROM {table} WHERE {q} IS NOT NULL ORDER BY {q} ASC LIMIT 1"
                        ),
                        &[],
                    )
                    .await
                    .unwrap();
                let hi = wh
                    .fetch_all(&format!("SELECT {q} FROM {table} WHERE {q} IS NOT NULL ORDER BY {q} DESC LIMIT 1"), &[])
                    .await
                    .unwrap();
                assert_eq!(f["min"], lo.rows[0][0].to_json(), "{} min", c.column_name);
                assert_eq!(f["max"], hi.rows[0][0].to_json(), "{} max", c.column_name);
                assert!(f.get("distinct_values").is_none());
                assert_eq!(f["relations"], json!(["between"]));
                checked_numeric += 1;
            }
            xngin::datatype::FilterClass::Discrete => {
                let rows = wh
                    .fetch_all(
                        &format!(
                            "SELECT {q}, COUNT(*) FROM {table} WHERE {q} IS NOT NULL GROUP BY {q}"
                        ),
                        &[],
                    )
                    .await
                    .unwrap();
                let mut expected: Vec<J> = rows
                    .rows
                    .iter()
                    .map(|r| match (c.data_type, &r[0]) {
                        (xngin::datatype::DataType::Boolean, Value::Int(i)) => J::Bool(*i != 0),
                        (_, v) => v.to_json(),
                    })
                    .collect();
                expected.sort_by(|a, b| match (a, b) {
                    (J::Bool(x), J::Bool(y)) => x.cmp(y),
                    (J::Number(x), J::Number(y)) => {
                        x.as_f64().unwrap().total_cmp(&y.as_f64().unwrap())
                    }
                    _ => a.as_str().unwrap().cmp(b.as_str().unwrap()),
                });
                assert!(expected.len() <= 1000);
                assert_eq!(
                    f["distinct_values"],
                    J::Array(expected),
                    "{}",
                    c.column_name
                );
                assert_eq!(f["distinct_truncated"], false);
                assert_eq!(f["relations"], json!(["includes", "excludes"]));
                checked_discrete += 1;
            }
            _ => {}
        }
    }
    assert!(
        checked_numeric >= 3 && checked_discrete >= 3,
        "{checked_numeric} {checked_discrete}"
    );
    wh.close().await;

    // Metrics and strata: exactly the sheet's marked fields, without statistics.
    for (kind, pick) in [("metrics", 0), ("strata", 1)] {
        let r = run_json(
            dir.path(),
            &[
                "fields",
                "--participant-type",
                "TEST_PARTICIPANT_TYPE",
                "--kind",
                kind,
                "--format",
                "json",
            ],
        );
        let names: Vec<&str> = r["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field_name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = sheet
            .columns
            .iter()
            .filter(|c| if pick == 0 { c.is_metric } else { c.is_strata })
            .map(|c| c.column_name.as_str())
            .collect();
        assert_eq!(names, expected, "{kind}");
        assert!(r["fields"][0].get("min").is_none() && r.get("row_count").is_none());
    }
}

const SHEET: &str =
    "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric
id,integer,,Id,true,,,
code,character varying,,Code (1200 distinct),,,true,
school_id,integer,,School,,,true,
active,boolean,,Active?,,,true,
score,double precision,,Score,,,true,true
joined,date,,Joined,,,true,
region,character varying,,Region,,true,,
";

/// A table with known values: 1200 rows, ids 1..1200; `code` 1200 distinct values (truncated
/// to 1000); `school_id` i % 7 (discrete because of `_id`), NULL when i % 10 = 0; `active`
/// NULL when i % 3 = 0 else i % 2; `score` i / 4, NULL when i % 5 = 0; `joined` 2024-01-01 +
/// (i % 28) days.
async fn load_table(wh: &Warehouse, table: &str, boolean: &str) {
    let t = wh.qualified(None, table);
    wh.execute(&format!("DROP TABLE IF EXISTS {t}"), &[])
        .await
        .unwrap();
    wh.execute(
        &format!(
            "CREATE TABLE {t} (id INTEGER, code VARCHAR(20), school_id INTEGER, active {boolean}, score DOUBLE PRECISION, joined DATE, region VARCHAR(10))"
        ),
        &[],
    )
    .await
    .unwrap();
    let ph: Vec<String> = (1..=7).map(|n| wh.placeholder(n)).collect();
    let sql = format!("INSERT INTO {t} VALUES ({})", ph.join(", "));
    let mut tx = wh.begin().await.unwrap();
    for i in 1..=1200i64 {
        let d =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(i % 28);
        let params = [
            Value::Int(i),
            Value::Text(format!("c{i:05}")),
            if i % 10 == 0 {
                Value::Null
            } else {
                Value::Int(i % 7)
            },
            if i % 3 == 0 {
                Value::Null
            } else {
                Value::Bool(i % 2 == 1)
            },
            if i % 5 == 0 {
                Value::Null
            } else {
                Value::Float(i as f64 / 4.0)
            },
            Value::Date(d),
            Value::Text("north".into()),
        ];
        tx.execute(&sql, &params).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn settings_for(dir: &Path, dwh: &str, table: &str) -> PathBuf {
    std::fs::write(dir.join("sheet.csv"), SHEET).unwrap();
    let text = format!(
        "[[datasources]]\nid = \"known\"\n[datasources.config]\n{dwh}\n\
         [[datasources.config.participants]]\nparticipant_type = \"rows\"\ntable_name = \"{table}\"\n\
         sheet = {{ url = \"sheet.csv\", worksheet = \"rows\" }}\n"
    );
    let p = dir.join("known.settings.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn check_known(dir: &Path) {
    let r = run_json(
        dir,
        &[
            "--settings",
            "known.settings.toml",
            "fields",
            "--participant-type",
            "rows",
            "--format",
            "json",
        ],
    );
    assert_eq!(r["row_count"], 1200);
    let names: Vec<&str> = r["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["code", "school_id", "active", "score", "joined"]);
    let code = field(&r, "code");
    assert_eq!(code["null_count"], 0);
    assert_eq!(code["distinct_truncated"], true);
    let vals = code["distinct_values"].as_array().unwrap();
    assert_eq!(vals.len(), 1000);
    assert_eq!(vals[0], "c00001");
    assert_eq!(vals[999], "c01000");
    let school = field(&r, "school_id");
    assert_eq!(school["filter_class"], "discrete");
    assert_eq!(school["distinct_values"], json!([0, 1, 2, 3, 4, 5, 6]));
    assert_eq!(school["null_count"], 120);
    let active = field(&r, "active");
    assert_eq!(active["distinct_values"], json!([false, true]));
    assert_eq!(active["null_count"], 400);
    let score = field(&r, "score");
    assert_eq!(
        (score["min"].as_f64(), score["max"].as_f64()),
        (Some(0.25), Some(299.75))
    );
    assert_eq!(score["null_count"], 240);
    let joined = field(&r, "joined");
    assert_eq!(
        (joined["min"].as_str(), joined["max"].as_str()),
        (Some("2024-01-01"), Some("2024-01-28"))
    );
    assert_eq!(joined["null_count"], 0);

    // CSV and table renderings.
    let out = xngin()
        .current_dir(dir)
        .args([
            "--settings",
            "known.settings.toml",
            "fields",
            "--participant-type",
            "rows",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "field_name,data_type,description,filter_class,min,max,null_count,distinct_values,distinct_truncated"
    );
    assert!(
        csv.contains("\nscore,double precision,Score,numeric,0.25,299.75,240,,\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\nactive,boolean,Active?,discrete,,,400,\"[false,true]\",false\n"),
        "{csv}"
    );
    let out = xngin()
        .current_dir(dir)
        .args([
            "--settings",
            "known.settings.toml",
            "fields",
            "--participant-type",
            "rows",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("more than 1000") && table.contains("299.75"),
        "{table}"
    );
}

#[tokio::test]
async fn known_values_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("known.db");
    let wh = Warehouse::connect_with(
        &Dsn::sqlite_file(&db),
        ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap();
    load_table(&wh, "known_rows", "BOOLEAN").await;
    wh.close().await;
    settings_for(
        dir.path(),
        &format!(
            "type = \"sqlite_local\"\nsqlite_filename = \"{}\"",
            db.display()
        ),
        "known_rows",
    );
    check_known(dir.path());
}

#[tokio::test]
async fn known_values_postgres_and_mariadb() {
    for (var, boolean) in [
        ("XNGIN_TEST_POSTGRES_URL", "BOOLEAN"),
        ("XNGIN_TEST_MYSQL_URL", "BOOLEAN"),
    ] {
        let Ok(url) = std::env::var(var) else {
            eprintln!("skipped: {var} not set");
            continue;
        };
        let table = unique("xf_known");
        let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
            .await
            .unwrap();
        load_table(&wh, &table, boolean).await;
        let dir = tempfile::tempdir().unwrap();
        let url = if url.starts_with("postgres") && !url.contains("sslmode") {
            format!("{url}?sslmode=disable")
        } else {
            url
        };
        settings_for(
            dir.path(),
            &format!("type = \"remote\"\ndwh = \"{url}\""),
            &table,
        );
        check_known(dir.path());
        wh.execute(&format!("DROP TABLE {}", wh.qualified(None, &table)), &[])
            .await
            .unwrap();
        wh.close().await;
    }
}
