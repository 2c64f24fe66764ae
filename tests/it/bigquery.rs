//! The BigQuery client against a real BigQuery implementation running locally (the bqemulator
//! package, which `.ci/run` starts and names in `XNGIN_TEST_BIGQUERY_URL`), and against a
//! wiremock fake for the answers an emulator does not give (5xx, quotas).

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value as Json, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};
use xngin::warehouse::Value;
use xngin::warehouse::bigquery::{
    BigQuery, BigQueryTarget, Credentials, LoadColumn, Policy, WriteMode,
};

use common::{BQ_PROJECT as PROJECT, BqToken as Token, bq_token as token};

fn quick() -> Policy {
    Policy {
        max_retries: 3,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(30),
        ..Policy::default()
    }
}

/// A client on a dataset of its own in the emulator, or None when the emulator is not running.
async fn emulator(test: &str, policy: Policy) -> Option<(BigQuery, Token)> {
    let url = common::bigquery_url(test)?;
    let t = token().await;
    let target = BigQueryTarget {
        project: PROJECT.into(),
        dataset: common::unique("xngin_bq"),
        credentials: Credentials::File(t.key.clone()),
    };
    let bq = BigQuery::connect_to(&target, &url, policy).await.unwrap();
    bq.create_dataset_if_missing().await.unwrap();
    Some((bq, t))
}

fn ndjson(rows: &[Json]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    for r in rows {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
    use std::io::Seek;
    f.rewind().unwrap();
    f
}

fn col(name: &str, ty: &str) -> LoadColumn {
    LoadColumn {
        name: name.into(),
        bq_type: ty.into(),
        required: false,
    }
}

#[tokio::test]
async fn load_then_query_with_bound_parameters_round_trips_each_type() {
    let Some((bq, _t)) = emulator("load_then_query", quick()).await else {
        return;
    };
    let cols = [
        col("id", "INT64"),
        col("name", "STRING"),
        col("score", "FLOAT64"),
        col("ok", "BOOL"),
        col("born", "DATE"),
        col("seen", "TIMESTAMP"),
    ];
    let rows = [
        json!({"id": 9007199254740993i64, "name": "Ann", "score": 1.5, "ok": true, "born": "2001-02-03", "seen": "2024-01-02 03:04:05.123456+00:00"}),
        json!({"id": 2, "name": "bob'; DROP TABLE x; --", "score": null, "ok": false, "born": null, "seen": null}),
    ];
    let n = bq
        .load_ndjson("people", &cols, ndjson(&rows), WriteMode::Empty)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(bq.table_exists("people").await.unwrap());
    assert!(!bq.table_exists("nobody").await.unwrap());
    let t = bq.qualified("people");
    let got = bq
        .fetch_all(
            &format!("SELECT id, name, score, ok, born, seen FROM {t} WHERE name = ? OR id = ? ORDER BY id"),
            &[
                Value::Text("bob'; DROP TABLE x; --".into()),
                Value::Int(9007199254740993),
            ],
        )
        .await
        .unwrap();
    assert_eq!(got.columns, ["id", "name", "score", "ok", "born", "seen"]);
    assert_eq!(got.rows.len(), 2);
    assert_eq!(
        got.rows[0],
        vec![
            Value::Int(2),
            Value::Text("bob'; DROP TABLE x; --".into()),
            Value::Null,
            Value::Bool(false),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(
        got.rows[1][0],
        Value::Int(9007199254740993),
        "big ids stay exact"
    );
    assert_eq!(got.rows[1][2], Value::Float(1.5));
    assert_eq!(got.rows[1][4].to_text().unwrap(), "2001-02-03");
    assert_eq!(
        got.rows[1][5].to_text().unwrap(),
        "2024-01-02 03:04:05.123456+00:00"
    );
    bq.drop_table("people").await.unwrap();
    assert!(!bq.table_exists("people").await.unwrap());
    bq.drop_table("people").await.unwrap();
}

#[tokio::test]
async fn results_are_read_page_by_page() {
    let policy = Policy {
        page_rows: 7,
        ..quick()
    };
    let Some((bq, _t)) = emulator("results_paged", policy).await else {
        return;
    };
    let mut seen = Vec::new();
    let cols = bq
        .fetch_each(
            "SELECT x FROM UNNEST(GENERATE_ARRAY(1, 50)) AS x ORDER BY x",
            &[],
            |row| {
                seen.push(row[0].as_i64().unwrap());
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(cols, ["x"]);
    assert_eq!(seen, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_query_names_its_job() {
    let Some((bq, _t)) = emulator("failing_query", quick()).await else {
        return;
    };
    let e = bq
        .fetch_all("SELECT * FROM no_such_table_here", &[])
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let e = e.to_string();
    assert!(e.starts_with("BigQuery "), "{e}");
    assert!(e.contains("no_such_table_here"), "{e}");
}

#[tokio::test]
async fn a_bad_row_fails_the_load_job_with_its_reason() {
    let Some((bq, _t)) = emulator("bad_row_load", quick()).await else {
        return;
    };
    let e = bq
        .load_ndjson(
            "t",
            &[col("id", "INT64")],
            ndjson(&[json!({"id": 1}), json!({"id": "not a number"})]),
            WriteMode::Empty,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("BigQuery load job xngin_load_"), "{e}");
    assert!(e.ends_with("the table was not changed"), "{e}");
}

/// A fake API: the token endpoint, and `jobs.query` answering `status` `fails` times, then a
/// one-row result.
async fn flaky_api(status: u16, fails: u64) -> (MockServer, tempfile::TempDir, PathBuf) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "t", "expires_in": 3600, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/bigquery/v2/projects/p-1/queries$"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "error": {"code": status, "message": "Quota exceeded: slow down"}
        })))
        .up_to_n_times(fails)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/bigquery/v2/projects/p-1/queries$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobReference": {"projectId": "p-1", "jobId": "job_42"},
            "jobComplete": true,
            "schema": {"fields": [{"name": "n", "type": "INTEGER"}]},
            "rows": [{"f": [{"v": "7"}]}],
            "totalRows": "1"
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/google/test_service_account.json");
    let mut key: Json = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    key["token_uri"] = json!(format!("{}/token", server.uri()));
    let p = dir.path().join("key.json");
    std::fs::write(&p, serde_json::to_vec(&key).unwrap()).unwrap();
    (server, dir, p)
}

fn fake_target(key: &Path) -> BigQueryTarget {
    BigQueryTarget {
        project: "p-1".into(),
        dataset: "ds".into(),
        credentials: Credentials::File(key.to_path_buf()),
    }
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let (server, _dir, key) = flaky_api(429, 2).await;
    let bq = BigQuery::connect_to(&fake_target(&key), &server.uri(), quick())
        .await
        .unwrap();
    let rows = bq.fetch_all("SELECT 7 AS n", &[]).await.unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Int(7)]]);
    let calls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/queries"))
        .count();
    assert_eq!(calls, 3, "two 429s, then the answer");
}

#[tokio::test]
async fn a_server_that_keeps_failing_gives_up_and_says_so() {
    let (server, _dir, key) = flaky_api(503, 100).await;
    let bq = BigQuery::connect_to(&fake_target(&key), &server.uri(), quick())
        .await
        .unwrap();
    let e = bq
        .fetch_all("SELECT 7 AS n", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BigQuery kept failing (HTTP 503: Quota exceeded: slow down) after 4 attempts; try again later"),
        "{e}"
    );
}

#[tokio::test]
async fn a_refused_request_is_not_retried() {
    let (server, _dir, key) = flaky_api(403, 100).await;
    let bq = BigQuery::connect_to(&fake_target(&key), &server.uri(), quick())
        .await
        .unwrap();
    let e = bq
        .fetch_all("SELECT 7 AS n", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("BigQuery denied access (HTTP 403"), "{e}");
    assert!(e.contains("project p-1"), "{e}");
    let calls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/queries"))
        .count();
    assert_eq!(calls, 1);
}

/// `create-testing-dwh --dsn bigquery://PROJECT/DATASET`: the bundled warehouse goes through
/// `Warehouse::connect`, a load job into a staging table and one `CREATE OR REPLACE TABLE ...
/// AS SELECT`; without `--replace` an existing table is refused and kept, with it the new rows
/// are swapped in; `bootstrap-spreadsheet` then introspects the table through the API.
#[tokio::test]
async fn create_testing_dwh_loads_the_bundled_warehouse_into_bigquery() {
    let Some(url) = common::bigquery_url("create_testing_dwh_loads_into_bigquery") else {
        return;
    };
    let t = token().await;
    let dataset = common::unique("xngin_bq_dwh");
    let dsn = format!(
        "bigquery://{PROJECT}/{dataset}?credentials_path={}",
        t.key.display()
    );
    let home = tempfile::tempdir().unwrap();
    let load = |extra: &[&str]| {
        let mut c = common::xngin(home.path());
        c.env("XNGIN_BIGQUERY_API_URL", &url)
            .args(["create-testing-dwh", "--dsn", &dsn, "--table-name", "dwh"])
            .args(extra);
        c.assert()
    };
    load(&["--nrows", "40"]).success();
    let target = BigQueryTarget {
        project: PROJECT.into(),
        dataset: dataset.clone(),
        credentials: Credentials::File(t.key.clone()),
    };
    let bq = BigQuery::connect_to(&target, &url, quick()).await.unwrap();
    let count = |bq: &BigQuery| {
        let sql = format!("SELECT count(*) FROM {}", bq.qualified("dwh"));
        let bq = bq.clone();
        async move { bq.fetch_all(&sql, &[]).await.unwrap().rows[0][0].clone() }
    };
    assert_eq!(count(&bq).await, Value::Int(40));
    // Without --replace an existing table is refused and kept.
    let out = load(&["--nrows", "7"]).failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(count(&bq).await, Value::Int(40));
    load(&["--nrows", "7", "--replace"]).success();
    assert_eq!(count(&bq).await, Value::Int(7));
    let positive = bq
        .fetch_all(
            &format!("SELECT count(*) FROM {} WHERE id > ?", bq.qualified("dwh")),
            &[Value::Int(0)],
        )
        .await
        .unwrap();
    assert_eq!(positive.rows[0][0], Value::Int(7));

    // Introspection through the API: bootstrap-spreadsheet lists every column with its type,
    // the `id` column first.
    let sheet = home.path().join("dwh_sheet.csv");
    let mut c = common::xngin(home.path());
    c.env("XNGIN_BIGQUERY_API_URL", &url)
        .args(["bootstrap-spreadsheet", &dsn, "dwh", "--output"])
        .arg(&sheet)
        .assert()
        .success();
    let text = std::fs::read_to_string(&sheet).unwrap();
    let mut lines = text.lines().skip(1);
    assert!(lines.next().unwrap().starts_with("id,bigint,"), "{text}");
    for want in [
        "gender,character varying,",
        "income,double precision,",
        "is_engaged,boolean,",
        "sample_date,date,",
        "sample_timestamp,timestamp without time zone,",
        "timestamp_with_tz,timestamp with time zone,",
    ] {
        assert!(text.lines().any(|l| l.starts_with(want)), "{want}: {text}");
    }
    // A table that is not there names the dataset's tables: only `dwh`, no staging table left.
    let out = common::xngin(home.path())
        .env("XNGIN_BIGQUERY_API_URL", &url)
        .args(["bootstrap-spreadsheet", &dsn, "nothere", "--output"])
        .arg(home.path().join("x.csv"))
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.trim_end().ends_with("Known tables: dwh"), "{err}");
}

// ------------------------------------------- filters: the same semantics matrix as elsewhere

/// Every filter relation on the emulator, with the cases (and expected ids) of the SQLite,
/// PostgreSQL and MySQL runs in `tests/it/filters.rs`; values bound as query parameters.
#[tokio::test]
async fn filter_semantics_on_bigquery() {
    let Some((wh, _t, _)) = common::bq_warehouse("filter_semantics_on_bigquery").await else {
        return;
    };
    crate::filters::check_semantics(&wh, "filt_bq").await;
}

#[tokio::test]
async fn text_includes_excludes_are_case_sensitive_on_bigquery() {
    let Some((wh, _t, _)) = common::bq_warehouse("case_bigquery").await else {
        return;
    };
    crate::filters::check_text_membership_is_exact(&wh).await;
}

#[tokio::test]
async fn date_and_timestamp_filters_take_python_datetime_forms_on_bigquery() {
    let Some((wh, _t, _)) = common::bq_warehouse("dt_bigquery").await else {
        return;
    };
    crate::filters::check_datetime_forms(&wh).await;
}

// ------------------------------------------- fields, power and assign read the same audience

/// A settings file whose one datasource is the BigQuery warehouse object
/// (`driver = "bigquery"`, the key as a file path) over `dataset`, participant type
/// `test_participant_type` on table `table` with the bundled sheet.
fn bq_settings(dir: &Path, dataset: &str, table: &str, key: &Path) -> PathBuf {
    let sheet = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testing_sheet.csv");
    let text = format!(
        r#"[[datasources]]
id = "bq"

[datasources.config]
type = "remote"

[datasources.config.dwh]
driver = "bigquery"
project_id = "{PROJECT}"
dataset_id = "{dataset}"
credentials = {{ type = "serviceaccountfile", path = {key:?} }}

[[datasources.config.participants]]
type = "sheet"
participant_type = "test_participant_type"
table_name = "{table}"
sheet = {{ url = {sheet:?}, worksheet = "Sheet1" }}
"#,
        key = key.display().to_string(),
        sheet = sheet.display().to_string(),
    );
    let p = dir.join("bq.settings.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Load the bundled testing warehouse into `dataset.table` on the emulator.
fn load_bundled(url: &str, home: &Path, dataset: &str, table: &str, key: &Path) {
    common::xngin(home)
        .env("XNGIN_BIGQUERY_API_URL", url)
        .args(["create-testing-dwh", "--table-name", table, "--dsn"])
        .arg(format!(
            "bigquery://{PROJECT}/{dataset}?credentials_path={}",
            key.display()
        ))
        .assert()
        .success();
}

/// Run xngin with `args`, on BigQuery (`settings` given) or on the built-in SQLite default.
fn run_json(home: &Path, url: &str, settings: Option<&Path>, args: &[&str]) -> Json {
    let mut c = common::xngin(home);
    c.env("XNGIN_BIGQUERY_API_URL", url);
    if let Some(s) = settings {
        c.arg("--settings").arg(s);
    }
    let out = c.args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every number in `a` equals the one in `b` to 1e-9 relative; everything else exactly.
fn assert_close(a: &Json, b: &Json, at: &str) {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300),
                "{at}: {x} vs {y}"
            );
        }
        (Json::Array(x), Json::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Json::Object(x), Json::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// The bundled warehouse on the emulator and the embedded SQLite default give the same
/// `fields` (ranges, distinct values, NULL counts), the same `power` baselines (to 1e-9) over a
/// filtered audience, and byte-for-byte the same assignment for the same seed, with the same
/// strata and balance.
#[tokio::test]
async fn fields_power_and_assign_on_bigquery_equal_the_sqlite_default() {
    let Some(url) = common::bigquery_url("fields_power_assign_bigquery") else {
        return;
    };
    let t = token().await;
    let dir = tempfile::tempdir().unwrap();
    let home = common::shared_home();
    let dataset = common::unique("xngin_bq_same");
    load_bundled(&url, &home, &dataset, "dwh", &t.key);
    let settings = bq_settings(dir.path(), &dataset, "dwh", &t.key);

    let drop_names = |mut j: Json| {
        let o = j.as_object_mut().unwrap();
        for k in ["datasource", "table_name", "table"] {
            o.remove(k);
        }
        j
    };
    for kind in ["filters", "metrics", "strata"] {
        let args = [
            "fields",
            "--participant-type",
            "test_participant_type",
            "--kind",
            kind,
            "--format",
            "json",
        ];
        let bq = run_json(&home, &url, Some(&settings), &args);
        let lite = run_json(&home, &url, None, &args);
        assert_eq!(bq["datasource"], "bq");
        assert!(bq["fields"].as_array().is_some_and(|f| !f.is_empty()));
        assert_close(&drop_names(bq), &drop_names(lite), kind);
    }

    let power = [
        "power",
        "--participant-type",
        "test_participant_type",
        "--metric",
        "income=pct:0.1",
        "--metric",
        "is_engaged=pct:0.05",
        "--metric",
        "current_income",
        "--desired-n",
        "2000",
        "--filter",
        "gender includes Male,Female",
        "--filter",
        "income between 1000,",
        "--filter",
        "is_recruited includes true,null",
        "--format",
        "json",
    ];
    let bq = run_json(&home, &url, Some(&settings), &power);
    let lite = run_json(&home, &url, None, &power);
    assert_eq!(bq["analyses"].as_array().unwrap().len(), 3);
    assert_close(&bq["analyses"], &lite["analyses"], "power");

    let out = dir.path();
    let assign = |settings: Option<&Path>, csv: &str| {
        let mut c = common::xngin(&home);
        c.env("XNGIN_BIGQUERY_API_URL", &url);
        if let Some(s) = settings {
            c.arg("--settings").arg(s);
        }
        c.args([
            "assign",
            "--participant-type",
            "test_participant_type",
            "--arms",
            "control,treatment,other",
            "--strata",
            "gender,ethnicity,income",
            "--metrics",
            "current_income,is_engaged",
            "--filter",
            "income between 1000,",
            "--filter",
            "ethnicity excludes Asian",
            "--seed",
            "20240607",
            "--experiment-id",
            "exp-same",
            "--format",
            "json",
            "--output",
        ])
        .arg(out.join(csv));
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", common::stderr(&o));
        let j: Json = serde_json::from_slice(&o.stdout).unwrap();
        (std::fs::read_to_string(out.join(csv)).unwrap(), j)
    };
    let (bq_csv, bq) = assign(Some(&settings), "bq.csv");
    let (lite_csv, lite) = assign(None, "lite.csv");
    assert!(
        bq_csv.lines().count() > 50_000,
        "{}",
        bq_csv.lines().count()
    );
    assert_eq!(bq_csv, lite_csv, "same assignment for the same seed");
    for k in [
        "arms",
        "strata_used",
        "strata_dropped",
        "number_of_strata",
        "block_size",
        "assigned",
        "unassigned",
        "balance_ok",
        "balance",
        "input_fingerprint",
    ] {
        assert!(bq.get(k).is_some(), "{k}");
        assert_close(&bq[k], &lite[k], k);
    }
    assert_eq!(bq["number_of_strata"], lite["number_of_strata"]);
    assert!(bq["number_of_strata"].as_u64().unwrap() > 1);
}

// ------------------------------------------- assign --write-table and assignment lookups

/// Rows of `sql` on the emulator, as text cells.
async fn texts(wh: &xngin::warehouse::Warehouse, sql: &str) -> Vec<Vec<String>> {
    wh.fetch_all(sql, &[])
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.iter().map(|v| v.to_text().unwrap_or_default()).collect())
        .collect()
}

/// `assign --write-table` on BigQuery: the rows equal the CSV of the same run, the design
/// record lands in `xngin_experiments`, the experiment-id guard refuses a second write (exit 3,
/// rows kept) and `--replace` swaps the experiment's rows; the staging tables are gone after
/// each run, and `assignment` looks ids up (through the settings and through `--dsn`).
#[tokio::test]
async fn assign_writes_a_table_with_its_design_record_on_bigquery() {
    let Some((wh, t, url)) = common::bq_warehouse("assign_write_table_bigquery").await else {
        return;
    };
    let dataset = wh.dsn().bigquery.as_ref().unwrap().dataset.clone();
    let home = common::shared_home();
    let dir = tempfile::tempdir().unwrap();
    common::xngin(&home)
        .env("XNGIN_BIGQUERY_API_URL", &url)
        .args([
            "create-testing-dwh",
            "--table-name",
            "people",
            "--nrows",
            "500",
            "--dsn",
        ])
        .arg(format!(
            "bigquery://{PROJECT}/{dataset}?credentials_path={}",
            t.key.display()
        ))
        .assert()
        .success();
    let settings = bq_settings(dir.path(), &dataset, "people", &t.key);
    let assign = |seed: &str, extra: &[&str]| {
        let mut c = common::xngin(&home);
        c.env("XNGIN_BIGQUERY_API_URL", &url)
            .arg("--settings")
            .arg(&settings)
            .args([
                "assign",
                "--participant-type",
                "test_participant_type",
                "--arms",
                "control,treatment",
                "--strata",
                "gender",
                "--experiment-id",
                "exp-1",
                "--write-table",
                "asg",
                "--seed",
                seed,
                "--output",
            ])
            .arg(dir.path().join(format!("out-{seed}.csv")))
            .args(extra);
        c.output().unwrap()
    };
    let out = assign("1", &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("wrote 500 assignment(s) of experiment exp-1 to asg"),
        "{}",
        common::stderr(&out)
    );
    let asg = wh.qualified(None, "asg");
    let table_rows = |wh: xngin::warehouse::Warehouse| {
        let sql = format!(
            "SELECT CAST(participant_id AS STRING), CAST(arm_id AS STRING), arm_name, \
             CAST(stratum_id AS STRING), gender FROM {asg} WHERE experiment_id = 'exp-1' \
             ORDER BY participant_id"
        );
        async move { texts(&wh, &sql).await }
    };
    // The CSV of the same run, ordered by id: the same rows.
    let csv_rows = |seed: &str| {
        let mut r = csv::Reader::from_path(dir.path().join(format!("out-{seed}.csv"))).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        let (p, a, an, s, g) = (
            col("participant_id"),
            col("arm_id"),
            col("arm_name"),
            col("stratum_id"),
            col("gender"),
        );
        let mut rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                [p, a, an, s, g]
                    .iter()
                    .map(|&i| rec[i].to_string())
                    .collect()
            })
            .collect();
        rows.sort_by_key(|r| r[0].parse::<i64>().unwrap());
        rows
    };
    let first = table_rows(wh.clone()).await;
    assert_eq!(first.len(), 500);
    assert_eq!(first, csv_rows("1"));
    let record = texts(
        &wh,
        &format!(
            "SELECT experiment_id, assignment_table, seed, tool_version, \
             JSON_VALUE(design, '$.seed') FROM {}",
            wh.qualified(None, "xngin_experiments")
        ),
    )
    .await;
    assert_eq!(
        record,
        vec![vec![
            "exp-1".to_string(),
            "asg".into(),
            "1".into(),
            env!("CARGO_PKG_VERSION").into(),
            "1".into()
        ]]
    );

    // The guard: a second write of exp-1 is refused and changes nothing.
    let out = assign("2", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains(
            "the table asg already holds 500 assignment(s) of experiment exp-1; pass --replace"
        ),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(table_rows(wh.clone()).await, first);

    // --replace swaps the experiment's rows and its design record.
    let out = assign("2", &["--replace"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let second = table_rows(wh.clone()).await;
    assert_eq!(second, csv_rows("2"));
    assert_ne!(second, first);
    let seeds = texts(
        &wh,
        &format!(
            "SELECT seed FROM {}",
            wh.qualified(None, "xngin_experiments")
        ),
    )
    .await;
    assert_eq!(seeds, vec![vec!["2".to_string()]]);
    let bq = wh.bigquery_client().unwrap();
    let mut tables = bq.list_tables().await.unwrap();
    tables.sort();
    assert_eq!(
        tables,
        ["asg", "people", "xngin_experiments"],
        "no staging left"
    );

    // `assignment`: through the settings' warehouse and through --dsn.
    let (id_a, id_b) = (second[0][0].clone(), second[499][0].clone());
    let dsn = format!(
        "bigquery://{PROJECT}/{dataset}?credentials_path={}",
        t.key.display()
    );
    for via in [
        vec!["--settings".to_string(), settings.display().to_string()],
        vec![],
    ] {
        let mut c = common::xngin(&home);
        c.env("XNGIN_BIGQUERY_API_URL", &url).args(&via).args([
            "assignment",
            "--experiment-id",
            "exp-1",
            "--table",
            "asg",
            "--format",
            "csv",
        ]);
        if via.is_empty() {
            c.args(["--dsn", &dsn]);
        }
        let out = c.args([&id_a, &id_b, "999999"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
        let stdout = common::stdout(&out);
        let mut got: Vec<&str> = stdout.lines().collect();
        got.sort();
        let want_a = second[0][..4].join(",");
        let want_b = second[499][..4].join(",");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&want_a.as_str()), "{got:?} {want_a}");
        assert!(got.contains(&want_b.as_str()), "{got:?} {want_b}");
        assert!(
            common::stderr(&out)
                .contains("1 participant id(s) not found in experiment exp-1: 999999"),
            "{}",
            common::stderr(&out)
        );
    }
}

/// More ids than one BigQuery query may bind (10,000 parameters) are looked up in batches.
#[tokio::test]
async fn lookups_of_many_ids_are_batched_under_bigquerys_parameter_limit() {
    let Some((wh, t, url)) = common::bq_warehouse("lookup_batches_bigquery").await else {
        return;
    };
    let dataset = wh.dsn().bigquery.as_ref().unwrap().dataset.clone();
    let asg = wh.qualified(None, "asg");
    wh.execute(
        &format!(
            "CREATE TABLE {asg} AS SELECT 'e' AS experiment_id, x AS participant_id, \
             MOD(x, 2) AS arm_id, IF(MOD(x, 2) = 0, 'control', 'treatment') AS arm_name, \
             CAST(NULL AS INT64) AS stratum_id FROM UNNEST(GENERATE_ARRAY(1, 12000)) AS x"
        ),
        &[],
    )
    .await
    .unwrap();
    let home = common::shared_home();
    let ids: Vec<String> = (5_001..=15_050).map(|i| i.to_string()).collect();
    let out = common::xngin(&home)
        .env("XNGIN_BIGQUERY_API_URL", &url)
        .args([
            "assignment",
            "--experiment-id",
            "e",
            "--table",
            "asg",
            "--format",
            "csv",
        ])
        .arg("--dsn")
        .arg(format!(
            "bigquery://{PROJECT}/{dataset}?credentials_path={}",
            t.key.display()
        ))
        .args(&ids)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let stdout = common::stdout(&out);
    let mut found: Vec<i64> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, (5_001..=12_000).collect::<Vec<i64>>());
    assert!(
        common::stderr(&out).contains("3050 participant id(s) not found in experiment e: 12001, "),
        "{}",
        common::stderr(&out)
    );
}

/// A write that fails inside its transaction leaves the previous rows whole: here the table
/// has an extra NOT NULL column that the assignment does not fill, so the script's INSERT fails
/// after its DELETE of the replaced experiment; BigQuery rolls the whole script back. The same
/// for `--in-warehouse` (issue 12, "failure halfway"), whose staging table is dropped as well.
#[tokio::test]
async fn a_failing_write_leaves_the_previous_rows_whole_on_bigquery() {
    let Some((wh, t, url)) = common::bq_warehouse("failing_write_bigquery").await else {
        return;
    };
    let dataset = wh.dsn().bigquery.as_ref().unwrap().dataset.clone();
    let home = common::shared_home();
    let dir = tempfile::tempdir().unwrap();
    common::xngin(&home)
        .env("XNGIN_BIGQUERY_API_URL", &url)
        .args([
            "create-testing-dwh",
            "--table-name",
            "people",
            "--nrows",
            "50",
            "--dsn",
        ])
        .arg(format!(
            "bigquery://{PROJECT}/{dataset}?credentials_path={}",
            t.key.display()
        ))
        .assert()
        .success();
    let asg = wh.qualified(None, "asg");
    wh.execute(
        &format!(
            "CREATE TABLE {asg} (experiment_id STRING NOT NULL, participant_id INT64 NOT NULL, \
             arm_id INT64, arm_name STRING, stratum_id INT64, created_at TIMESTAMP NOT NULL, \
             note STRING NOT NULL)"
        ),
        &[],
    )
    .await
    .unwrap();
    wh.execute(
        &format!(
            "INSERT INTO {asg} VALUES ('exp-1', 1, 0, 'control', NULL, CURRENT_TIMESTAMP(), 'kept'), \
             ('exp-1', 2, 1, 'treatment', NULL, CURRENT_TIMESTAMP(), 'kept')"
        ),
        &[],
    )
    .await
    .unwrap();
    let settings = bq_settings(dir.path(), &dataset, "people", &t.key);
    // The local write, then the in-warehouse one (rows staged, then one script).
    for in_warehouse in [false, true] {
        let out = common::xngin(&home)
            .env("XNGIN_BIGQUERY_API_URL", &url)
            .arg("--settings")
            .arg(&settings)
            .args([
                "assign",
                "--participant-type",
                "test_participant_type",
                "--arms",
                "control,treatment",
                "--experiment-id",
                "exp-1",
                "--write-table",
                "asg",
                "--replace",
                "--seed",
                "3",
            ])
            .args(in_warehouse.then_some("--in-warehouse"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "in warehouse {in_warehouse}: {}",
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert!(err.contains("note"), "{err}");
        let rows = texts(
            &wh,
            &format!(
                "SELECT CAST(participant_id AS STRING), note FROM {asg} ORDER BY participant_id"
            ),
        )
        .await;
        assert_eq!(
            rows,
            vec![
                vec!["1".to_string(), "kept".into()],
                vec!["2".into(), "kept".into()]
            ]
        );
        let bq = wh.bigquery_client().unwrap();
        let mut tables = bq.list_tables().await.unwrap();
        tables.sort();
        // The experiments table was created before the transaction (DDL cannot be part of one),
        // empty; no design record, no staging table.
        assert_eq!(tables, ["asg", "people", "xngin_experiments"]);
        let records = texts(
            &wh,
            &format!(
                "SELECT COUNT(*) FROM {}",
                wh.qualified(None, "xngin_experiments")
            ),
        )
        .await;
        assert_eq!(records, vec![vec!["0".to_string()]]);
    }
}

// ------------------------------------------- settings: the BigQuery warehouse object

/// `validate-settings --deep` on a `driver = "bigquery"` warehouse: authenticates, checks the
/// dataset and each table's columns; a missing dataset or table and a malformed key are wrong
/// settings (exit 3), a missing key file means the check could not run (exit 1); a base64 key
/// is never printed, and commands reading the settings fail the same way in one line.
#[tokio::test]
async fn validate_settings_deep_checks_a_bigquery_warehouse() {
    let Some((wh, t, url)) = common::bq_warehouse("deep_bigquery").await else {
        return;
    };
    let dataset = wh.dsn().bigquery.as_ref().unwrap().dataset.clone();
    let home = common::shared_home();
    let dir = tempfile::tempdir().unwrap();
    load_bundled(&url, &home, &dataset, "dwh", &t.key);
    let good = bq_settings(dir.path(), &dataset, "dwh", &t.key);
    let text = std::fs::read_to_string(&good).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        let p = dir.path().join(name);
        std::fs::write(&p, text.replace(from, to)).unwrap();
        p
    };
    let deep = |p: &Path| {
        common::xngin(&home)
            .env("XNGIN_BIGQUERY_API_URL", &url)
            .args(["validate-settings", "--deep"])
            .arg(p)
            .output()
            .unwrap()
    };
    let out = deep(&good);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));

    let key_path = format!("{:?}", t.key.display().to_string());
    let cases = [
        (
            variant("nods.toml", &format!("\"{dataset}\""), "\"no_such_ds\""),
            3,
            "datasources.0.config.dwh: datasource 'bq': dataset 'no_such_ds' does not exist in BigQuery project 'xngin-demo'",
        ),
        (
            variant(
                "notable.toml",
                "table_name = \"dwh\"",
                "table_name = \"dwhx\"",
            ),
            3,
            "participant type 'test_participant_type': table 'dwhx' does not exist in bigquery://xngin-demo/",
        ),
        (
            variant("nokey.toml", &key_path, "\"/nonexistent/key.json\""),
            1,
            "datasources.0.config.dwh: datasource 'bq': Google service-account key /nonexistent/key.json: no such file or directory",
        ),
    ];
    for (p, code, want) in &cases {
        let out = deep(p);
        let all = common::stdout(&out) + &common::stderr(&out);
        assert_eq!(out.status.code(), Some(*code), "{}: {all}", p.display());
        assert!(all.contains(want), "{}: {all}", p.display());
    }
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let badkey = variant(
        "badkey.toml",
        &key_path,
        &format!("{:?}", bad.display().to_string()),
    );
    let out = deep(&badkey);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let all = common::stdout(&out) + &common::stderr(&out);
    assert!(all.contains("bad.json: not valid JSON"), "{all}");
    // A command reading the same settings: the same problem in one line, the same exit code.
    for (p, code) in [(&badkey, 3), (&cases[2].0, 1)] {
        let out = common::xngin(&home)
            .env("XNGIN_BIGQUERY_API_URL", &url)
            .arg("--settings")
            .arg(p)
            .args(["fields", "--participant-type", "test_participant_type"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", common::stderr(&out));
        assert_eq!(
            common::stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            common::stderr(&out)
        );
    }

    // The key as base64 content: it works, and neither it nor the private key is ever shown.
    use base64::Engine;
    let raw = std::fs::read(&t.key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let private: Json = serde_json::from_slice(&raw).unwrap();
    let private = private["private_key"].as_str().unwrap().to_string();
    let inline = variant(
        "inline.toml",
        &format!("{{ type = \"serviceaccountfile\", path = {key_path} }}"),
        &format!("{{ type = \"serviceaccountinfo\", content_base64 = \"{b64}\" }}"),
    );
    let out = deep(&inline);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let wrong_table = dir.path().join("inline-notable.toml");
    std::fs::write(
        &wrong_table,
        std::fs::read_to_string(&inline)
            .unwrap()
            .replace("table_name = \"dwh\"", "table_name = \"dwhx\""),
    )
    .unwrap();
    for args in [
        vec!["validate-settings", "--deep", wrong_table.to_str().unwrap()],
        vec![
            "--echo-sql",
            "--settings",
            inline.to_str().unwrap(),
            "fields",
            "--participant-type",
            "test_participant_type",
        ],
        vec![
            "--settings",
            wrong_table.to_str().unwrap(),
            "fields",
            "--participant-type",
            "test_participant_type",
        ],
    ] {
        let out = common::xngin(&home)
            .env("XNGIN_BIGQUERY_API_URL", &url)
            .args(&args)
            .output()
            .unwrap();
        let all = common::stdout(&out) + &common::stderr(&out);
        assert!(!all.contains(&b64[..40]), "{args:?}: {all}");
        assert!(!all.contains(&private[40..80]), "{args:?}: {all}");
    }
}

/// The dialect's transaction script and in-script guard, as `--write-table` uses them: a guard
/// that fires fails the script with its message and rolls back what ran before it; one that
/// does not lets the script commit.
#[tokio::test]
async fn a_guard_in_a_transaction_script_rolls_the_whole_script_back() {
    let Some((wh, _t, _)) = common::bq_warehouse("guard_script_bigquery").await else {
        return;
    };
    let d = wh.dialect();
    let t = wh.qualified(None, "g");
    wh.execute(&format!("CREATE TABLE {t} (x INT64)"), &[])
        .await
        .unwrap();
    wh.execute(&format!("INSERT INTO {t} (x) VALUES (1), (2)"), &[])
        .await
        .unwrap();
    let script = |guard_value: i64| {
        d.transaction_script(&[
            format!("DELETE FROM {t} WHERE x = 1"),
            d.fail_if_any_sql(
                &format!("SELECT COUNT(*) FROM {t} WHERE x = {guard_value}"),
                "xngin: it's there",
            )
            .unwrap(),
            format!("INSERT INTO {t} (x) VALUES (3)"),
        ])
        .unwrap()
    };
    let xs = |wh: xngin::warehouse::Warehouse| {
        let sql = format!("SELECT x FROM {t} ORDER BY x");
        async move { texts(&wh, &sql).await }
    };
    let e = wh.execute(&script(2), &[]).await.unwrap_err().to_string();
    assert!(e.contains("xngin: it's there"), "{e}");
    assert_eq!(xs(wh.clone()).await, [["1"], ["2"]]);
    wh.execute(&script(99), &[]).await.unwrap();
    assert_eq!(xs(wh.clone()).await, [["2"], ["3"]]);
}

/// Staging tables are set to expire (a safety net for killed runs): one `tables.patch` with the
/// expiration time in milliseconds, as the API wants it.
#[tokio::test]
async fn staging_tables_are_set_to_expire_through_tables_patch() {
    let (server, _dir, key) = flaky_api(429, 1).await;
    Mock::given(method("PATCH"))
        .and(path(
            "/bigquery/v2/projects/p-1/datasets/ds/tables/t__xngin_0",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let bq = BigQuery::connect_to(&fake_target(&key), &server.uri(), quick())
        .await
        .unwrap();
    let at = chrono::DateTime::from_timestamp_millis(1_893_456_000_123).unwrap();
    bq.expire_table("t__xngin_0", at).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    let patch = reqs.iter().find(|r| r.method.as_str() == "PATCH").unwrap();
    let body: Json = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(body, json!({"expirationTime": "1893456000123"}));
}

// ------------------------------------------- assign --in-warehouse

/// `assign --in-warehouse` on the bundled warehouse in the emulator equals the local run on the
/// embedded SQLite default, for text, boolean and numeric strata, each misfit strategy, no strata, a
/// filter and `--sample-size`: the `--output` CSV byte for byte, the written table's rows,
/// the design record (but for the fields naming the engine), also when the rows are streamed
/// out without a table. The experiment guard refuses a second write (exit 3, rows untouched),
/// `--replace` redraws; a script that fails leaves the previous rows whole; no staging table
/// is left behind.
#[tokio::test]
async fn in_warehouse_assignment_on_bigquery_equals_the_local_one() {
    let Some(url) = common::bigquery_url("in_warehouse_assignment_on_bigquery") else {
        return;
    };
    let t = token().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = common::shared_home();
    let dataset = common::unique("bqinwh");
    load_bundled(&url, &home, &dataset, "bqinwh_dwh", &t.key);
    let settings = bq_settings(d, &dataset, "bqinwh_dwh", &t.key);
    let target = BigQueryTarget {
        project: PROJECT.into(),
        dataset: dataset.clone(),
        credentials: Credentials::File(t.key.clone()),
    };
    let wh = xngin::warehouse::Warehouse::from_bigquery(
        BigQuery::connect_to(&target, &url, quick()).await.unwrap(),
    );
    let run = |on_bq: bool, args: &[&str]| {
        let mut c = common::xngin(&home);
        c.current_dir(d).env("XNGIN_BIGQUERY_API_URL", &url);
        if on_bq {
            c.arg("--settings").arg(&settings);
        }
        let o = c
            .args([
                "-q",
                "assign",
                "--participant-type",
                "test_participant_type",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            common::stdout(&o),
            common::stderr(&o),
        )
    };
    // The record without what names the run's outputs, time and engine.
    let record = |json: &str| {
        let mut v: Json = serde_json::from_str(json).unwrap();
        v["created_at"] = Json::Null;
        for k in ["table", "file", "design_file"] {
            v["outputs"][k] = Json::Null;
        }
        for k in ["datasource", "table"] {
            v["audience"][k] = Json::Null;
        }
        v
    };
    // A CSV's rows as text cells, sorted by participant id, in the order of `cols`.
    let csv_rows = |file: &str, cols: &[&str]| {
        let mut r = csv::Reader::from_path(d.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| h.iter().position(|x| x == *c).unwrap())
            .collect();
        let mut rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                idx.iter().map(|&i| rec[i].to_string()).collect()
            })
            .collect();
        rows.sort_by_key(|r| r[0].parse::<i64>().unwrap());
        rows
    };
    let table_rows = |table: &str, exp: &str, cols: &[&str]| {
        let sel: Vec<String> = cols
            .iter()
            .map(|c| match *c {
                "participant_id" | "arm_id" | "stratum_id" => {
                    format!("COALESCE(CAST({c} AS STRING), '')")
                }
                "is_engaged" => format!("COALESCE(LOWER(CAST({c} AS STRING)), '')"),
                "income" | "current_income" | "potential_1" => {
                    format!("COALESCE(CAST({c} AS STRING), '')")
                }
                _ => format!("COALESCE({c}, '')"),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE experiment_id = '{exp}' ORDER BY participant_id",
            sel.join(", "),
            wh.qualified(None, table)
        );
        let wh = wh.clone();
        async move { texts(&wh, &sql).await }
    };
    let fixed = ["participant_id", "arm_id", "arm_name", "stratum_id"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "--strata",
                "gender,ethnicity,is_engaged",
                "--arm-weights",
                "1,2,3",
            ],
            vec!["ethnicity", "gender", "is_engaged"],
        ),
        (
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
        // No strata: complete random assignment with exact counts.
        (vec![], vec![]),
        // A filter (a bound parameter) and a sample of the filtered audience.
        (
            vec![
                "--strata",
                "ethnicity,is_engaged",
                "--filter",
                "gender includes Male",
                "--sample-size",
                "777",
            ],
            vec!["ethnicity", "is_engaged"],
        ),
        (
            vec![
                "--strata",
                "gender",
                "--sample-size",
                "1001",
                "--misfit-strategy",
                "global",
            ],
            vec!["gender"],
        ), // Numeric strata: income has NULLs (binned, categorical in the balance test); the
        // others are numeric covariates of the balance test, from aggregate moments.
        (
            vec!["--strata", "gender", "--metrics", "income"],
            vec!["gender", "income"],
        ),
        (
            vec![
                "--metrics",
                "current_income,potential_1",
                "--misfit-strategy",
                "global",
            ],
            vec!["current_income", "potential_1"],
        ),
    ];
    let mut tables = vec!["bqinwh_dwh".to_string(), "xngin_experiments".to_string()];
    for (i, (extra, strata)) in cases.iter().enumerate() {
        let exp = format!("e{i}");
        let seed = (2000 + i * 7919).to_string();
        let table = format!("bqinwh_asg{i}");
        tables.push(table.clone());
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
        let (f_local, f_wh, f_stream) = (
            format!("local{i}.csv"),
            format!("wh{i}.csv"),
            format!("stream{i}.csv"),
        );
        let mut local = args.clone();
        local.extend(["--output", &f_local]);
        let mut inwh = args.clone();
        inwh.extend(["--in-warehouse", "--write-table", &table, "--output", &f_wh]);
        let mut stream = args.clone();
        stream.extend(["--in-warehouse", "--output", &f_stream]);
        let (c1, o1, e1) = run(false, &local);
        assert_eq!(c1, 0, "case {i} local: {e1}");
        let (c2, o2, e2) = run(true, &inwh);
        assert_eq!(c2, 0, "case {i} in warehouse: {e2}");
        let (c3, o3, e3) = run(true, &stream);
        assert_eq!(c3, 0, "case {i} streamed: {e3}");
        let local_bytes = std::fs::read(d.join(&f_local)).unwrap();
        assert!(local_bytes.len() > 5000, "case {i}");
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
        let (r1, r2, r3) = (record(&o1), record(&o2), record(&o3));
        common::same_record(&r1, &r2, &format!("case {i}: design records"));
        common::same_record(
            &r1,
            &r3,
            &format!("case {i}: design record of the streamed run"),
        );
        let on_bq: Json = serde_json::from_str(&o2).unwrap();
        assert_eq!(on_bq["audience"]["datasource"], "bq", "case {i}");
        assert_eq!(on_bq["outputs"]["table"].as_str(), Some(table.as_str()));
        let mut cols = fixed.to_vec();
        cols.extend(strata.iter());
        // Numbers compared as numbers: BigQuery's text of a FLOAT64 is not the CSV's.
        let numbers = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
            rows.into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| v.parse::<f64>().map_or(v, |f| f.to_string()))
                        .collect()
                })
                .collect()
        };
        assert_eq!(
            numbers(table_rows(&table, &exp, &cols).await),
            numbers(csv_rows(&f_local, &cols)),
            "case {i}: rows written"
        );
        // The record stored beside the rows is the one printed.
        let stored = texts(
            &wh,
            &format!(
                "SELECT design FROM {} WHERE experiment_id = '{exp}' AND assignment_table = '{table}'",
                wh.qualified(None, "xngin_experiments")
            ),
        )
        .await;
        assert_eq!(stored.len(), 1, "case {i}");
        assert_eq!(record(&stored[0][0]), r2, "case {i}: stored record");
    }

    // The guard: the same experiment again is refused and leaves the rows; --replace redraws
    // (the rows of the local run with the new seed).
    let cols = [&fixed[..], &["gender"]].concat();
    let before = table_rows("bqinwh_asg0", "e0", &fixed).await;
    let again = |seed: &'static str, extra: &[&'static str]| {
        let mut a = vec![
            "--arms",
            "c,t1,t2",
            "--seed",
            seed,
            "--experiment-id",
            "e0",
            "--strata",
            "gender",
        ];
        a.extend(extra);
        a
    };
    let (c, _, e) = run(
        true,
        &again("9", &["--in-warehouse", "--write-table", "bqinwh_asg0"]),
    );
    assert_eq!(c, 3, "{e}");
    assert!(
        e.contains("the table bqinwh_asg0 already holds 100000 assignment(s) of experiment e0; pass --replace"),
        "{e}"
    );
    assert_eq!(table_rows("bqinwh_asg0", "e0", &fixed).await, before);
    let (c, _, e) = run(
        true,
        &again(
            "9",
            &[
                "--in-warehouse",
                "--write-table",
                "bqinwh_asg0",
                "--replace",
            ],
        ),
    );
    assert_eq!(c, 0, "{e}");
    let (c, _, e) = run(false, &again("9", &["--output", "local-9.csv"]));
    assert_eq!(c, 0, "{e}");
    let after = table_rows("bqinwh_asg0", "e0", &cols).await;
    assert_ne!(
        after.iter().map(|r| r[..4].to_vec()).collect::<Vec<_>>(),
        before
    );
    assert_eq!(after, csv_rows("local-9.csv", &cols));
    let seeds = texts(
        &wh,
        &format!(
            "SELECT seed FROM {} WHERE experiment_id = 'e0'",
            wh.qualified(None, "xngin_experiments")
        ),
    )
    .await;
    assert_eq!(seeds, vec![vec!["9".to_string()]]);

    // A script that fails (the table has a NOT NULL column the assignment does not fill) after
    // its --replace delete leaves the previous rows whole and no design record.
    let kept = wh.qualified(None, "bqinwh_kept");
    tables.push("bqinwh_kept".into());
    wh.execute(
        &format!(
            "CREATE TABLE {kept} (experiment_id STRING NOT NULL, participant_id INT64 NOT NULL, \
             arm_id INT64, arm_name STRING, stratum_id INT64, created_at TIMESTAMP NOT NULL, \
             gender STRING, note STRING NOT NULL)"
        ),
        &[],
    )
    .await
    .unwrap();
    wh.execute(
        &format!(
            "INSERT INTO {kept} VALUES ('e9', 1, 0, 'c', NULL, CURRENT_TIMESTAMP(), NULL, 'kept')"
        ),
        &[],
    )
    .await
    .unwrap();
    let mut failing = again(
        "3",
        &[
            "--in-warehouse",
            "--write-table",
            "bqinwh_kept",
            "--replace",
        ],
    );
    failing[5] = "e9";
    let (c, _, e) = run(true, &failing);
    assert_eq!(c, 1, "{e}");
    assert!(e.contains("note") && e.lines().count() == 1, "{e}");
    assert_eq!(
        texts(
            &wh,
            &format!("SELECT CAST(participant_id AS STRING), note FROM {kept}")
        )
        .await,
        vec![vec!["1".to_string(), "kept".into()]]
    );
    let records = texts(
        &wh,
        &format!(
            "SELECT COUNT(*) FROM {} WHERE experiment_id = 'e9'",
            wh.qualified(None, "xngin_experiments")
        ),
    )
    .await;
    assert_eq!(records, vec![vec!["0".to_string()]]);

    // Text ids (ties ordered as text) and text strata beyond ASCII (ordered by their UTF-8
    // bytes, as the local run orders them): equal to the local run reading the same table.
    let tids = wh.qualified(None, "bqinwh_tids");
    tables.push("bqinwh_tids".into());
    wh.execute(
        &format!(
            "CREATE TABLE {tids} AS SELECT CONCAT('P-', CAST(id AS STRING)) AS pid, \
             CASE WHEN MOD(id, 7) = 0 THEN 'Élan' WHEN MOD(id, 11) = 0 THEN 'zeta' \
             WHEN MOD(id, 13) = 0 THEN 'Zürich' ELSE gender END AS gender, \
             NULLIF(ethnicity, 'Asian') AS ethnicity, is_engaged FROM {}",
            wh.qualified(None, "bqinwh_dwh")
        ),
        &[],
    )
    .await
    .unwrap();
    std::fs::write(
        d.join("text.csv"),
        "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n\
         pid,character varying,,Id,true,,,\n\
         gender,character varying,,Gender,,true,true,\n\
         ethnicity,character varying,,Ethnicity,,true,true,\n\
         is_engaged,boolean,,Engaged?,,true,true,\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&settings).unwrap();
    let sheet = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testing_sheet.csv");
    let text = text.replace("\"bqinwh_dwh\"", "\"bqinwh_tids\"").replace(
        &format!("{:?}", sheet.display().to_string()),
        &format!("{:?}", d.join("text.csv").display().to_string()),
    );
    assert!(
        text.contains("bqinwh_tids") && text.contains("text.csv"),
        "{text}"
    );
    std::fs::write(&settings, text).unwrap();
    for (i, misfit) in ["stratum", "global", "none"].iter().enumerate() {
        let exp = format!("t{i}");
        let table = format!("bqinwh_tasg{i}");
        tables.push(table.clone());
        let mut args = vec![
            "--arms",
            "c,t1,t2",
            "--arm-weights",
            "1,2,4",
            "--strata",
            "gender,ethnicity,is_engaged",
            "--misfit-strategy",
            misfit,
            "--seed",
            "11",
            "--experiment-id",
            &exp,
            "--format",
            "json",
        ];
        if i == 1 {
            args.extend(["--sample-size", "5000"]);
        }
        let (f_local, f_wh) = (format!("tlocal{i}.csv"), format!("twh{i}.csv"));
        let mut local = args.clone();
        local.extend(["--output", &f_local]);
        let mut inwh = args.clone();
        inwh.extend(["--in-warehouse", "--write-table", &table, "--output", &f_wh]);
        let (c1, o1, e1) = run(true, &local);
        assert_eq!(c1, 0, "text case {i} local: {e1}");
        let (c2, o2, e2) = run(true, &inwh);
        assert_eq!(c2, 0, "text case {i} in warehouse: {e2}");
        let local_bytes = std::fs::read(d.join(&f_local)).unwrap();
        assert!(String::from_utf8_lossy(&local_bytes).contains("\nP-"));
        assert!(String::from_utf8_lossy(&local_bytes).contains("Zürich"));
        assert_eq!(
            local_bytes,
            std::fs::read(d.join(&f_wh)).unwrap(),
            "text case {i}: files"
        );
        assert_eq!(record(&o1), record(&o2), "text case {i}: design records");
        let cols = [&fixed[..], &["ethnicity", "gender", "is_engaged"]].concat();
        let mut want = {
            let mut r = csv::Reader::from_path(d.join(&f_local)).unwrap();
            let h = r.headers().unwrap().clone();
            let idx: Vec<usize> = cols
                .iter()
                .map(|c| h.iter().position(|x| x == *c).unwrap())
                .collect();
            r.records()
                .map(|rec| {
                    let rec = rec.unwrap();
                    idx.iter()
                        .map(|&i| rec[i].to_string())
                        .collect::<Vec<String>>()
                })
                .collect::<Vec<_>>()
        };
        want.sort();
        let mut got = table_rows(&table, &exp, &cols).await;
        got.sort();
        assert_eq!(got, want, "text case {i}: rows written");
    }

    let mut listed = wh.bigquery_client().unwrap().list_tables().await.unwrap();
    listed.sort();
    tables.sort();
    assert_eq!(listed, tables, "no staging table left");
}
