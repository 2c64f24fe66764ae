//! `assign --in-warehouse`: the assignment computed by the warehouse equals the local one row
//! for row, with the same design record (balance F and p included); what is not supported is
//! refused with exit 2; the experiment guard and `--replace` work as for the local write.

use std::path::Path;

use crate::common::{self, mysql_url, pg_url};
use xngin::dsn::Dsn;
use xngin::warehouse::{Value, Warehouse};

/// A sheet for a view with text ids over the testing table.
const TEXT_SHEET: &str =
    "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric
pid,character varying,,Id,true,,,
gender,character varying,,Gender,,true,true,
ethnicity,character varying,,Ethnicity,,true,true,
is_engaged,boolean,,Engaged?,,true,true,
current_income,double precision,,Income,,,true,true
";

fn settings(dir: &Path, url: &str, table: &str, view: &str) {
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testing_sheet.csv"),
        dir.join("sheet.csv"),
    )
    .unwrap();
    std::fs::write(dir.join("text.csv"), TEXT_SHEET).unwrap();
    let text = format!(
        "[[datasources]]\nid = \"pg\"\n[datasources.config]\ntype = \"remote\"\ndwh = \"{url}\"\n\
         [[datasources.config.participants]]\nparticipant_type = \"people\"\ntable_name = \"{table}\"\n\
         sheet = {{ url = \"sheet.csv\", worksheet = \"people\" }}\n\
         [[datasources.config.participants]]\nparticipant_type = \"textids\"\ntable_name = \"{view}\"\n\
         sheet = {{ url = \"text.csv\", worksheet = \"textids\" }}\n"
    );
    std::fs::write(dir.join("s.toml"), text).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::xngin(dir)
        .current_dir(dir)
        .args(["--settings", "s.toml", "assign"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        common::stdout(&out),
        common::stderr(&out),
    )
}

/// The design record without the fields that differ between two runs of one draw.
fn record(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["created_at"] = serde_json::Value::Null;
    for k in ["table", "file", "design_file"] {
        v["outputs"][k] = serde_json::Value::Null;
    }
    v
}

async fn rows(wh: &Warehouse, table: &str, exp: &str, strata: &[&str]) -> Vec<Vec<Option<String>>> {
    let mut cols = vec!["participant_id", "arm_id", "arm_name", "stratum_id"];
    cols.extend(strata);
    let sel: Vec<String> = cols
        .iter()
        .map(|c| wh.dialect().text_cast(&wh.quote(c)))
        .collect();
    let r = wh
        .fetch_all(
            &format!(
                "SELECT {} FROM {} WHERE experiment_id = {} ORDER BY 1",
                sel.join(", "),
                wh.quote(table),
                wh.placeholder(1)
            ),
            &[Value::Text(exp.into())],
        )
        .await
        .unwrap();
    r.rows
        .iter()
        .map(|row| row.iter().map(Value::to_text).collect())
        .collect()
}

#[tokio::test]
async fn in_warehouse_assignment_equals_the_local_one_on_postgres() {
    let Some(url) = pg_url("in_warehouse_assignment_equals_the_local_one_on_postgres") else {
        return;
    };
    let url = if url.contains("sslmode") {
        url
    } else {
        format!("{url}?sslmode=disable")
    };
    identity(&url).await;
}

#[tokio::test]
async fn in_warehouse_assignment_equals_the_local_one_on_mysql() {
    let Some(url) = mysql_url("in_warehouse_assignment_equals_the_local_one_on_mysql") else {
        return;
    };
    identity(&url).await;
}

/// The local and the in-warehouse runs of a few designs write the same rows and records.
async fn identity(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = common::unique("inwh_src");
    let view = format!("{table}_v");
    let (local_t, wh_t) = (common::unique("inwh_local"), common::unique("inwh_wh"));
    let out = common::xngin(d)
        .args([
            "create-testing-dwh",
            "--dsn",
            url,
            "--table-name",
            &table,
            "--nrows",
            "4000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let wh = Warehouse::connect(&Dsn::parse(url).unwrap()).await.unwrap();
    wh.execute(
        &format!(
            "CREATE VIEW {} AS SELECT CONCAT('P-', id) AS pid, gender, NULLIF(ethnicity, 'Asian') AS ethnicity, is_engaged, current_income FROM {}",
            wh.quote(&view),
            wh.quote(&table)
        ),
        &[],
    )
    .await
    .unwrap();
    settings(d, url, &table, &view);

    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "people",
            vec![
                "--strata",
                "gender,ethnicity,is_engaged",
                "--arm-weights",
                "1,2,3",
            ],
            vec!["ethnicity", "gender", "is_engaged"],
        ),
        (
            "people",
            vec![
                "--strata",
                "gender,ethnicity",
                "--misfit-strategy",
                "global",
                "--arm-weights",
                "1,1,3",
            ],
            vec!["ethnicity", "gender"],
        ),
        (
            "people",
            vec![
                "--strata",
                "gender,is_engaged",
                "--misfit-strategy",
                "none",
                "--arm-weights",
                "2,3,5",
            ],
            vec!["gender", "is_engaged"],
        ),
        // A unique-valued stratum is dropped, as locally.
        (
            "people",
            vec!["--strata", "first_name,gender"],
            vec!["first_name", "gender"],
        ),
        // No strata: complete random assignment with exact counts.
        ("people", vec![], vec![]),
        (
            "people",
            vec![
                "--strata",
                "ethnicity",
                "--filter",
                "gender includes Female",
            ],
            vec!["ethnicity"],
        ),
        (
            "textids",
            vec![
                "--strata",
                "gender,ethnicity,is_engaged",
                "--arm-weights",
                "1,2,3",
            ],
            vec!["ethnicity", "gender", "is_engaged"],
        ),
        // A sample: the smallest unit keys of the filtered audience.
        (
            "textids",
            vec![
                "--strata",
                "ethnicity,is_engaged",
                "--sample-size",
                "777",
                "--filter",
                "gender includes Male",
            ],
            vec!["ethnicity", "is_engaged"],
        ),
        (
            "people",
            vec![
                "--strata",
                "gender",
                "--sample-size",
                "1001",
                "--misfit-strategy",
                "global",
            ],
            vec!["gender"],
        ),
        // Numeric metrics: income (4% NULL) binned and tested by its bins; current_income and
        // the bigint potential_1 (no NULL) binned and tested by their values.
        (
            "people",
            vec!["--strata", "gender,ethnicity", "--metrics", "income"],
            vec!["ethnicity", "gender", "income"],
        ),
        (
            "people",
            vec![
                "--strata",
                "gender",
                "--metrics",
                "current_income,potential_1",
                "--arm-weights",
                "1,2,3",
                "--misfit-strategy",
                "global",
            ],
            vec!["current_income", "gender", "potential_1"],
        ),
        // A date stratum: its text (YYYY-MM-DD), NULL its own level, as locally.
        (
            "people",
            vec![
                "--strata",
                "sample_date,is_engaged",
                "--arm-weights",
                "1,1,2",
            ],
            vec!["is_engaged", "sample_date"],
        ),
    ];
    let mut tables = Vec::new();
    for (i, (ptype, extra, strata)) in cases.iter().enumerate() {
        let exp = format!("e{i}");
        let seed = (1000 + i * 7919).to_string();
        let mut args = vec![
            "--participant-type",
            ptype,
            "--arms",
            "c,t1,t2",
            "--seed",
            &seed,
            "--experiment-id",
            &exp,
            "--format",
            "json",
            "-q",
        ];
        args.extend(extra.iter());
        // One table pair per case (each case writes its own strata columns).
        let (local_t, wh_t) = (format!("{local_t}_{i}"), format!("{wh_t}_{i}"));
        tables.extend([local_t.clone(), wh_t.clone()]);
        let (f_local, f_wh, f_stream) = (
            format!("local{i}.csv"),
            format!("wh{i}.csv"),
            format!("stream{i}.csv"),
        );
        let mut local = args.clone();
        local.extend(["--write-table", &local_t, "--output", &f_local]);
        let mut inwh = args.clone();
        inwh.extend(["--write-table", &wh_t, "--in-warehouse", "--output", &f_wh]);
        // Without a table: the rows streamed out of the warehouse into the file.
        let mut stream = args.clone();
        stream.extend(["--in-warehouse", "--output", &f_stream]);
        let (c1, o1, e1) = run(d, &local);
        assert_eq!(c1, 0, "case {i} local: {e1}");
        let (c2, o2, e2) = run(d, &inwh);
        assert_eq!(c2, 0, "case {i} in warehouse: {e2}");
        let (c3, o3, e3) = run(d, &stream);
        assert_eq!(c3, 0, "case {i} streamed: {e3}");
        let (r1, r2) = (record(&o1), record(&o2));
        common::same_record(&r1, &r2, &format!("case {i}"));
        let mut r3 = record(&o3);
        r3["outputs"]["table"] = serde_json::Value::Null;
        common::same_record(&r1, &r3, &format!("case {i}: the streamed run"));
        let local_bytes = std::fs::read(d.join(&f_local)).unwrap();
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_wh)).unwrap(),
            "case {i}: files"
        );
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_stream)).unwrap(),
            "case {i}: streamed file"
        );
        // The record beside the file names it by its hash, as the local one does.
        let beside: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.join(format!("{f_stream}.design.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            beside["outputs"]["file_sha256"],
            record(&o1)["outputs"]["file_sha256"]
        );
        assert_eq!(
            rows(&wh, &local_t, &exp, strata).await,
            rows(&wh, &wh_t, &exp, strata).await,
            "case {i}: rows differ"
        );
        // The design record stored beside the rows is the one printed.
        let stored = wh
            .fetch_all(
                &format!(
                    "SELECT design FROM xngin_experiments WHERE experiment_id = {} AND assignment_table = {}",
                    wh.placeholder(1),
                    wh.placeholder(2)
                ),
                &[Value::Text(exp.clone()), Value::Text(wh_t.clone())],
            )
            .await
            .unwrap();
        let stored = stored.rows[0][0].to_text().unwrap();
        common::same_record(&record(&stored), &r2, &format!("case {i}: stored record"));
        if !strata.is_empty() && *ptype == "people" && i == 0 {
            assert!(r2["balance"][0]["p_value"].is_f64(), "{r2}");
        }
    }

    // The guard: the same experiment again is refused and leaves the rows; --replace redraws.
    let wh_t = format!("{wh_t}_0");
    let before = rows(&wh, &wh_t, "e0", &[]).await;
    let guard = [
        "--participant-type",
        "people",
        "--arms",
        "c,t1,t2",
        "--seed",
        "9",
        "--experiment-id",
        "e0",
        "--strata",
        "gender",
        "--write-table",
        &wh_t,
        "--in-warehouse",
        "-q",
    ];
    let (c, _, e) = run(d, &guard);
    assert_eq!(c, 3, "{e}");
    assert!(
        e.contains("already holds") && e.contains("--replace"),
        "{e}"
    );
    assert_eq!(rows(&wh, &wh_t, "e0", &[]).await, before);
    let mut replace = guard.to_vec();
    replace.push("--replace");
    let (c, _, e) = run(d, &replace);
    assert_eq!(c, 0, "{e}");
    assert_ne!(rows(&wh, &wh_t, "e0", &[]).await, before);

    // A failure after the rows are inserted (here the design record's insert, into an
    // xngin_experiments whose `design` column cannot hold it) leaves no row of the experiment.
    let schema = common::unique("inwh_fail");
    wh.execute(&wh.dialect().create_schema_sql(&schema), &[])
        .await
        .unwrap();
    let broken = wh.qualified(Some(&schema), "xngin_experiments");
    wh.execute(
        &format!(
            "CREATE TABLE {broken} (experiment_id VARCHAR(255), assignment_table VARCHAR(255), \
             created_at VARCHAR(64), tool_version VARCHAR(64), seed VARCHAR(64), design INTEGER)"
        ),
        &[],
    )
    .await
    .unwrap();
    let into = format!("{schema}.fail");
    let (c, _, e) = run(
        d,
        &[
            "--participant-type",
            "people",
            "--arms",
            "a,b",
            "--seed",
            "1",
            "--experiment-id",
            "boom",
            "--strata",
            "gender",
            "--write-table",
            &into,
            "--in-warehouse",
            "-q",
        ],
    );
    assert_ne!(c, 0, "{e}");
    let left = wh
        .fetch_all(
            &format!(
                "SELECT count(*) FROM {}",
                wh.qualified(Some(&schema), "fail")
            ),
            &[],
        )
        .await
        .map(|r| r.rows[0][0].as_i64().unwrap_or(0))
        .unwrap_or(0); // PostgreSQL: the table itself was rolled back
    assert_eq!(left, 0, "{e}");
    let drop_schema = if url.starts_with("mysql") || url.starts_with("mariadb") {
        format!("DROP DATABASE {}", wh.quote(&schema))
    } else {
        format!("DROP SCHEMA {} CASCADE", wh.quote(&schema))
    };
    wh.execute(&drop_schema, &[]).await.unwrap();

    // Not supported yet: refused with exit 2, nothing written.
    for (extra, needle) in [
        (vec!["--strata", "gender", "--output", "out.parquet"], "CSV"),
        (
            vec!["--strata", "gender", "--cluster-column", "ethnicity"],
            "cluster designs are assigned locally",
        ),
    ] {
        let mut args = vec![
            "--participant-type",
            "people",
            "--arms",
            "a,b",
            "--seed",
            "1",
            "--experiment-id",
            "refused",
            "--write-table",
            &wh_t,
            "--in-warehouse",
        ];
        args.extend(extra);
        let (c, _, e) = run(d, &args);
        assert_eq!(c, 2, "{e}");
        assert!(e.contains(needle) && e.lines().count() == 1, "{e}");
        assert!(rows(&wh, &wh_t, "refused", &[]).await.is_empty());
    }

    common::drop_assignment_tables(&wh, &tables).await;
    wh.execute(&format!("DROP VIEW IF EXISTS {}", wh.quote(&view)), &[])
        .await
        .unwrap();
    wh.execute(&format!("DROP TABLE IF EXISTS {}", wh.quote(&table)), &[])
        .await
        .unwrap();
    wh.close().await;
}

#[tokio::test]
async fn strata_numeric_in_the_warehouse_equal_the_local_bins_on_postgres() {
    let Some(url) = pg_url("strata_numeric_in_the_warehouse_equal_the_local_bins_on_postgres")
    else {
        return;
    };
    let url = if url.contains("sslmode") {
        url
    } else {
        format!("{url}?sslmode=disable")
    };
    numeric_strata(&url).await;
}

#[tokio::test]
async fn strata_numeric_in_the_warehouse_equal_the_local_bins_on_mysql() {
    let Some(url) = mysql_url("strata_numeric_in_the_warehouse_equal_the_local_bins_on_mysql")
    else {
        return;
    };
    numeric_strata(&url).await;
}

const NUM_SHEET: &str =
    "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric
id,bigint,,Id,true,,,
g,character varying,,G,,true,true,
age,integer,,Age,,true,true,
score,double precision,,Score,,true,true,true
few,integer,,Few,,true,true,
one,integer,,One,,true,true,
w,double precision,,W,,true,true,
big,bigint,,Big,,true,true,
amount,numeric,,Amount,,true,true,
";

/// Numeric strata (integers with NULLs and ties, floats with and without NULLs, fewer distinct
/// values than quantiles, a single value, bigints beyond 2^53 that f64 merges, NaN on
/// PostgreSQL) mixed with a text stratum, every misfit strategy, a sample, a filter and more
/// quantiles than values: the warehouse writes the local run's rows, file and record.
async fn numeric_strata(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = common::unique("strata_src");
    let wh = Warehouse::connect(&Dsn::parse(url).unwrap()).await.unwrap();
    wh.execute(
        &format!(
            "CREATE TABLE {} (id BIGINT PRIMARY KEY, g VARCHAR(20), age INTEGER, score DOUBLE PRECISION, \
             few INTEGER, one INTEGER, w DOUBLE PRECISION, big BIGINT)",
            wh.quote(&table)
        ),
        &[],
    )
    .await
    .unwrap();
    let n = 1500u64;
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        h
    };
    for chunk in (1..=n).collect::<Vec<_>>().chunks(100) {
        let mut vals = Vec::new();
        let mut params = Vec::new();
        for &id in chunk {
            let r = next();
            // (PostgreSQL types a parameter by its column: INTEGER ones are bound as BIGINT.)
            let ph: Vec<String> = (0..8)
                .map(|i| {
                    let p = wh.placeholder(params.len() + 1 + i);
                    if url.starts_with("postgres") && [2, 4, 5].contains(&i) {
                        format!("CAST({p} AS BIGINT)")
                    } else {
                        p
                    }
                })
                .collect();
            vals.push(format!("({})", ph.join(", ")));
            let g = ["a", "b", "c", ""][(r % 4) as usize];
            params.extend([
                Value::Int(id as i64),
                if g.is_empty() {
                    Value::Null
                } else {
                    Value::Text(g.into())
                },
                if r % 17 == 0 {
                    Value::Null
                } else {
                    Value::Int(18 + (r >> 8) as i64 % 50)
                },
                Value::Float(((r >> 16) % 10_007) as f64 / 7.0 - 300.0),
                Value::Int(1 + ((r >> 24) % 3) as i64),
                Value::Int(5),
                if r % 11 == 0 {
                    Value::Null
                } else {
                    Value::Float(((r >> 32) % 1000) as f64 / 8.0)
                },
                Value::Int((1i64 << 53) + ((r >> 40) % 4) as i64),
            ]);
        }
        wh.execute(
            &format!(
                "INSERT INTO {} VALUES {}",
                wh.quote(&table),
                vals.join(", ")
            ),
            &params,
        )
        .await
        .unwrap();
    }
    wh.execute(
        &format!("ALTER TABLE {} ADD amount NUMERIC(10, 2)", wh.quote(&table)),
        &[],
    )
    .await
    .unwrap();
    let pg = url.starts_with("postgres");
    if pg {
        // NaN: a missing value to the local run.
        wh.execute(
            &format!(
                "UPDATE {} SET w = 'NaN' WHERE id % 50 = 7",
                wh.quote(&table)
            ),
            &[],
        )
        .await
        .unwrap();
    }
    std::fs::write(d.join("nums.csv"), NUM_SHEET).unwrap();
    std::fs::write(
        d.join("s.toml"),
        format!(
            "[[datasources]]\nid = \"wh\"\n[datasources.config]\ntype = \"remote\"\ndwh = \"{url}\"\n\
             [[datasources.config.participants]]\nparticipant_type = \"nums\"\ntable_name = \"{table}\"\n\
             sheet = {{ url = \"nums.csv\", worksheet = \"nums\" }}\n"
        ),
    )
    .unwrap();

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "--strata",
                "g,age,score",
                "--arms",
                "a,b",
                "--arm-weights",
                "1,2",
            ],
            vec!["age", "g", "score"],
        ),
        (
            vec!["--strata", "few,one,score,w", "--misfit-strategy", "global"],
            vec!["few", "one", "score", "w"],
        ),
        (
            vec![
                "--strata",
                "age,g,score",
                "--misfit-strategy",
                "none",
                "--quantiles",
                "3",
            ],
            vec!["age", "g", "score"],
        ),
        (
            vec![
                "--strata",
                "g",
                "--metrics",
                "score",
                "--sample-size",
                "301",
            ],
            vec!["g", "score"],
        ),
        // More quantiles than a list of ranks holds (order statistics streamed), and more than
        // few has values (each its own bin).
        (
            vec!["--strata", "score,few", "--quantiles", "1000"],
            vec!["few", "score"],
        ),
        (
            vec!["--strata", "big,g", "--arm-weights", "1,1,2"],
            vec!["big", "g"],
        ),
        (
            vec![
                "--strata",
                "w,age",
                "--filter",
                "g includes a",
                "--quantiles",
                "5",
            ],
            vec!["age", "w"],
        ),
    ];
    let mut tables = Vec::new();
    for (i, (extra, strata)) in cases.iter().enumerate() {
        let exp = format!("n{i}");
        let seed = (77 + i * 1031).to_string();
        let arms = if extra.contains(&"--arms") {
            vec![]
        } else {
            vec!["--arms", "c,t1,t2"]
        };
        let mut args = vec![
            "--participant-type",
            "nums",
            "--seed",
            &seed,
            "--experiment-id",
            &exp,
            "--format",
            "json",
            "-q",
        ];
        args.extend(arms);
        args.extend(extra.iter());
        let (local_t, wh_t) = (common::unique("strata_local"), common::unique("strata_wh"));
        tables.extend([local_t.clone(), wh_t.clone()]);
        let (f_local, f_wh, f_stream) = (
            format!("local{i}.csv"),
            format!("wh{i}.csv"),
            format!("stream{i}.csv"),
        );
        let mut local = args.clone();
        local.extend(["--write-table", &local_t, "--output", &f_local]);
        let mut inwh = args.clone();
        inwh.extend(["--write-table", &wh_t, "--in-warehouse", "--output", &f_wh]);
        let mut stream = args.clone();
        stream.extend(["--in-warehouse", "--output", &f_stream]);
        let (c1, o1, e1) = run(d, &local);
        assert_eq!(c1, 0, "case {i} local: {e1}");
        let (c2, o2, e2) = run(d, &inwh);
        assert_eq!(c2, 0, "case {i} in warehouse: {e2}");
        let (c3, o3, e3) = run(d, &stream);
        assert_eq!(c3, 0, "case {i} streamed: {e3}");
        let (r1, r2) = (record(&o1), record(&o2));
        common::same_record(&r1, &r2, &format!("case {i}"));
        let mut r3 = record(&o3);
        r3["outputs"]["table"] = serde_json::Value::Null;
        common::same_record(&r1, &r3, &format!("case {i}: the streamed run"));
        let local_bytes = std::fs::read(d.join(&f_local)).unwrap();
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_wh)).unwrap(),
            "case {i}: files"
        );
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_stream)).unwrap(),
            "case {i}: streamed file"
        );
        let (a, b) = (
            rows(&wh, &local_t, &exp, strata).await,
            rows(&wh, &wh_t, &exp, strata).await,
        );
        assert_eq!(a.len(), b.len(), "case {i}: rows");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "case {i}: rows differ");
        }
        // A numeric stratum without NULLs is tested by its values (one column), one with
        // NULLs by its bins: age's 4 bins and NULL, g's 3 values and NULL, score: 4 + 3 + 1.
        if i == 0 {
            assert_eq!(
                r2["strata_used"],
                serde_json::json!(["age", "g", "score"]),
                "{r2}"
            );
            assert!(r2["balance"][0]["p_value"].is_f64(), "{r2}");
            assert_eq!(r2["balance"][0]["numerator_df"], 8, "{r2}");
        }
    }
    // NUMERIC/DECIMAL strata are refused (exit 2), nothing computed.
    let (c, _, e) = run(
        d,
        &[
            "--participant-type",
            "nums",
            "--arms",
            "a,b",
            "--seed",
            "1",
            "--strata",
            "amount,g",
            "--in-warehouse",
            "--output",
            "dec.csv",
        ],
    );
    assert_eq!(c, 2, "{e}");
    assert!(
        e.contains("amount") && e.contains("NUMERIC/DECIMAL") && e.lines().count() == 1,
        "{e}"
    );
    assert!(!d.join("dec.csv").exists());
    // An infinite value is refused as the local run refuses it (PostgreSQL stores infinity).
    if pg {
        wh.execute(
            &format!(
                "UPDATE {} SET score = 'Infinity' WHERE id = 3",
                wh.quote(&table)
            ),
            &[],
        )
        .await
        .unwrap();
        let args = [
            "--participant-type",
            "nums",
            "--arms",
            "a,b",
            "--strata",
            "score",
            "--in-warehouse",
            "--output",
            "inf.csv",
        ];
        let (c, _, e) = run(d, &args);
        assert_eq!(c, 3, "{e}");
        assert!(e.contains("score") && e.contains("infinite"), "{e}");
        let local = [
            "--participant-type",
            "nums",
            "--arms",
            "a,b",
            "--strata",
            "score",
            "--output",
            "inf2.csv",
        ];
        let (c, _, e) = run(d, &local);
        assert_eq!(c, 3, "{e}");
    }
    common::drop_assignment_tables(&wh, tables.iter().chain([&table])).await;
    wh.close().await;
}

/// `--in-warehouse` on SQLite (here the embedded default warehouse), a local engine: the local
/// algorithm assigns (a notice says so) and the table is written in one transaction, so the
/// file, the design record and the rows written equal the local run's byte for byte, numeric
/// strata included; the experiment guard and `--replace` work as for the local write.
#[tokio::test]
async fn in_warehouse_on_sqlite_is_the_local_run() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    let run = |args: &[&str]| {
        let out = common::xngin(d)
            .current_dir(d)
            .args(["assign", "--participant-type", "test_participant_type"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            common::stdout(&out),
            common::stderr(&out),
        )
    };
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "--strata",
            "gender,ethnicity,is_engaged",
            "--arm-weights",
            "1,2,3",
        ],
        vec!["--strata", "gender,income", "--misfit-strategy", "global"],
        vec![
            "--strata",
            "ethnicity",
            "--misfit-strategy",
            "none",
            "--arm-weights",
            "2,3,5",
        ],
        vec![],
        vec![
            "--strata",
            "ethnicity,is_engaged",
            "--filter",
            "gender includes Male",
            "--sample-size",
            "777",
        ],
    ];
    let mut wh = None;
    for (i, extra) in cases.iter().enumerate() {
        let exp = format!("bq_e{i}");
        let seed = (3000 + i * 7919).to_string();
        let (local_t, wh_t) = (format!("bq_local{i}"), format!("bq_wh{i}"));
        let (f_local, f_wh) = (format!("local{i}.csv"), format!("wh{i}.csv"));
        let mut args = vec![
            "--arms",
            "c,t1,t2",
            "--seed",
            &seed,
            "--experiment-id",
            &exp,
            "--format",
            "json",
        ];
        args.extend(extra.iter());
        let mut local = args.clone();
        local.extend(["--write-table", &local_t, "--output", &f_local]);
        let mut inwh = args.clone();
        inwh.extend(["--in-warehouse", "--write-table", &wh_t, "--output", &f_wh]);
        let (c1, o1, e1) = run(&local);
        assert_eq!(c1, 0, "case {i} local: {e1}");
        let (c2, o2, e2) = run(&inwh);
        assert_eq!(c2, 0, "case {i} in warehouse: {e2}");
        assert!(
            e2.contains(
                "SQLite is a local engine: --in-warehouse assigns with the local algorithm"
            ),
            "{e2}"
        );
        assert!(!e1.contains("SQLite is a local engine"), "{e1}");
        let local_bytes = std::fs::read(d.join(&f_local)).unwrap();
        assert!(local_bytes.len() > 5000, "case {i}");
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_wh)).unwrap(),
            "case {i}: files"
        );
        assert_eq!(record(&o1), record(&o2), "case {i}: design records");
        let wh = match &wh {
            Some(w) => w,
            None => wh.insert(
                Warehouse::connect(&Dsn::sqlite_file(&d.join("testing_dwh.db")))
                    .await
                    .unwrap(),
            ),
        };
        let printed: serde_json::Value = serde_json::from_str(&o2).unwrap();
        let strata: Vec<&str> = printed["strata_requested"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let (a, b) = (
            rows(wh, &local_t, &exp, &strata).await,
            rows(wh, &wh_t, &exp, &strata).await,
        );
        assert!(a.len() > 700, "case {i}");
        assert_eq!(a, b, "case {i}: rows written");
    }
    let wh = wh.unwrap();
    // The guard and --replace.
    let before = rows(&wh, "bq_wh0", "bq_e0", &[]).await;
    let guard = [
        "--arms",
        "c,t1,t2",
        "--seed",
        "9",
        "--experiment-id",
        "bq_e0",
        "--strata",
        "gender",
        "--write-table",
        "bq_wh0",
        "--in-warehouse",
        "-q",
    ];
    let (c, _, e) = run(&guard);
    assert_eq!(c, 3, "{e}");
    assert!(
        e.contains("already holds") && e.contains("--replace"),
        "{e}"
    );
    assert_eq!(rows(&wh, "bq_wh0", "bq_e0", &[]).await, before);
    let mut replace = guard.to_vec();
    replace.push("--replace");
    let (c, _, e) = run(&replace);
    assert_eq!(c, 0, "{e}");
    assert_ne!(rows(&wh, "bq_wh0", "bq_e0", &[]).await, before);
    wh.close().await;
}

/// Text ids that differ only by case or a trailing space (`p1`, `P1`, `p1 `) are different
/// participants: MySQL/MariaDB's default collations equate them, so the assignment table's
/// text keys get a byte-comparing collation and all of them are written, locally and in the
/// warehouse; experiment ids `E` and `e` are different experiments.
#[tokio::test]
async fn ids_differing_by_case_or_trailing_space_are_all_written_on_mysql() {
    let Some(url) = mysql_url("ids_differing_by_case_or_trailing_space_are_all_written_on_mysql")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = common::unique("inwh_case_src");
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    wh.execute(
        &format!(
            "CREATE TABLE {} (pid VARCHAR(20) NOT NULL, gender VARCHAR(10), ethnicity VARCHAR(20), \
             is_engaged BOOLEAN, current_income DOUBLE)",
            wh.quote(&src)
        ),
        &[],
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.extend([format!("p{i}"), format!("P{i}"), format!("p{i} ")]);
    }
    for (i, id) in ids.iter().enumerate() {
        wh.execute(
            &format!(
                "INSERT INTO {} VALUES (?, ?, 'x', TRUE, 1.5)",
                wh.quote(&src)
            ),
            &[
                Value::Text(id.clone()),
                Value::Text(if i % 2 == 0 { "F" } else { "M" }.into()),
            ],
        )
        .await
        .unwrap();
    }
    settings(d, &url, &src, &src);
    let (local_t, wh_t) = (common::unique("inwh_case_l"), common::unique("inwh_case_w"));
    // One run into table `t` as experiment `exp` (in the warehouse or not).
    let assign = |t: &str, exp: &str, in_warehouse: bool| {
        let mut args = vec![
            "--participant-type",
            "textids",
            "--arms",
            "c,t",
            "--strata",
            "gender",
            "--seed",
            "7",
            "--experiment-id",
            exp,
            "--write-table",
            t,
            "-q",
        ];
        args.extend(in_warehouse.then_some("--in-warehouse"));
        run(d, &args)
    };
    for (t, exp, in_warehouse) in [
        (&local_t, "E", false),
        (&local_t, "e", false),
        (&wh_t, "E", true),
    ] {
        let (code, _, err) = assign(t, exp, in_warehouse);
        assert_eq!(code, 0, "{t} {exp}: {err}");
    }
    for (t, exp) in [(&local_t, "E"), (&local_t, "e"), (&wh_t, "E")] {
        let got = rows(&wh, t, exp, &[]).await;
        let mut written: Vec<String> = got.iter().map(|r| r[0].clone().unwrap()).collect();
        written.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(written, want, "{t} {exp}");
    }
    assert_eq!(
        rows(&wh, &local_t, "E", &[]).await,
        rows(&wh, &wh_t, "E", &[]).await
    );
    // A table created outside xngin with the default (case-insensitive) collation: the ids
    // collide there, which is said as such (not as another run's write), and nothing is written.
    let legacy = common::unique("inwh_case_legacy");
    wh.execute(
        &format!(
            "CREATE TABLE {} (experiment_id VARCHAR(255) NOT NULL, participant_id VARCHAR(255) NOT NULL, \
             arm_id INTEGER, arm_name VARCHAR(255), stratum_id INTEGER, created_at TIMESTAMP(6) NOT NULL, \
             gender VARCHAR(255), PRIMARY KEY (experiment_id, participant_id))",
            wh.quote(&legacy)
        ),
        &[],
    )
    .await
    .unwrap();
    for in_warehouse in [false, true] {
        let (code, _, err) = assign(&legacy, "L", in_warehouse);
        assert_eq!(code, 1, "in warehouse {in_warehouse}: {err}");
        assert!(
            err.contains("one key under the table's collation")
                && err.contains("wrote nothing")
                && !err.contains("another run")
                && err.lines().count() == 1,
            "in warehouse {in_warehouse}: {err}"
        );
        assert!(rows(&wh, &legacy, "L", &[]).await.is_empty());
    }
    common::drop_assignment_tables(&wh, [&src, &local_t, &wh_t, &legacy]).await;
    wh.close().await;
}

/// Redshift lacks what the keyed query uses (array parameters, `generate_series` on the leader
/// node): `--in-warehouse` on a Redshift DSN is refused with exit 2 before connecting (the host
/// does not resolve here, so a connection attempt would fail differently), naming Redshift, in
/// one line (no seed notice before it).
#[test]
fn in_warehouse_on_redshift_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    settings(
        d,
        "postgresql+psycopg2://u@nowhere.abc123.us-east-1.redshift.amazonaws.com:5439/db?sslmode=verify-full",
        "people",
        "people_v",
    );
    let (c, _, e) = run(
        d,
        &[
            "--participant-type",
            "people",
            "--arms",
            "a,b",
            "--strata",
            "gender",
            "--write-table",
            "out",
            "--in-warehouse",
        ],
    );
    assert_eq!(c, 2, "{e}");
    assert!(
        e.contains("Redshift does not compute the keyed assignment yet")
            && e.contains("--in-warehouse")
            && e.lines().count() == 1,
        "{e}"
    );
}
