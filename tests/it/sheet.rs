//! The column-metadata sheet end to end: the bad-sheet corpus with its exact messages, the
//! CLI's exit codes, a 10,000-row sheet, and introspection / bootstrap / parse round trips on
//! SQLite, PostgreSQL and MariaDB/MySQL (XNGIN_TEST_POSTGRES_URL / XNGIN_TEST_MYSQL_URL).

use std::path::{Path, PathBuf};
use std::time::Instant;

use assert_cmd::Command;
use xngin::datatype::DataType;
use xngin::dsn::{Dsn, Engine};
use xngin::sheet::{ConfigWorksheet, bootstrap, parse_csv_bytes};
use xngin::warehouse::Warehouse;
use xngin::warehouse::introspect::ColumnInfo;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sheets")
}

fn xngin() -> Command {
    let mut c = Command::cargo_bin("xngin").unwrap();
    c.env_remove("XNGIN_SETTINGS")
        .env_remove("XNGIN_DATASOURCE")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    c
}

fn invalid_lines(r: xngin::Result<ConfigWorksheet>) -> Vec<String> {
    match r {
        Err(xngin::Error::Invalid(v)) => v,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const CHOICES: &str = "boolean, character varying, date, integer, double precision, numeric, \
timestamp without time zone, bigint, uuid, timestamp with time zone, jsonb (unsupported), \
json (unsupported), unsupported";

// ---------------------------------------------------------------------------------------------
// Bad input

/// Every file of the corpus gives exactly its `.expected` lines (or its `.json` model).
#[test]
fn corpus_matches_expected_output() {
    let mut seen = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        seen += 1;
        let label = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let result = parse_csv_bytes(&label, "t", &bytes);
        let expected = path.with_extension("expected");
        if expected.exists() {
            let want: Vec<String> = std::fs::read_to_string(&expected)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            assert_eq!(invalid_lines(result), want, "{label}");
        } else {
            let want = std::fs::read_to_string(path.with_extension("json")).unwrap();
            let got =
                serde_json::to_string_pretty(&result.unwrap_or_else(|e| panic!("{label}: {e}")))
                    .unwrap();
            assert_eq!(format!("{got}\n"), want, "{label}");
        }
    }
    assert!(seen >= 13, "the corpus has {seen} sheets");
}

#[test]
fn each_bad_input_has_its_exact_message() {
    let head = "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n";
    let parse = |body: &str| {
        invalid_lines(parse_csv_bytes(
            "s.csv",
            "t",
            format!("{head}{body}").as_bytes(),
        ))
    };
    assert_eq!(
        parse("id,integer,,,true,,,\ng,boolean,,,,maybe,,\n"),
        [
            "s.csv: row 3, column is_strata: Value 'maybe' cannot be converted to a boolean; use true or false \
          (also yes/no, y/n, t/f, 1/0; an empty cell is false)"
        ]
    );
    assert_eq!(
        parse("id,integer,,,true,,,\ng,varchar,,,,,,\n"),
        [format!(
            "s.csv: row 3, column data_type: 'varchar' is not a valid DataType; use one of: {CHOICES}"
        )]
    );
    assert_eq!(
        parse("id,integer,,,true,,,\ng,17,,,,,,\n"),
        [format!(
            "s.csv: row 3, column data_type: '17' is a number, not a DataType; use one of: {CHOICES}"
        )]
    );
    assert_eq!(
        parse("id,integer,,,true,,,\nemail,character varying,,,1,,,\n"),
        [
            "s.csv: column is_unique_id: There are 2 columns marked as the unique ID, but there should only be one: \
          id (row 2), email (row 3)"
        ]
    );
    assert_eq!(
        parse("id,integer,,,,,,\n"),
        [
            "s.csv: column is_unique_id: There are no columns marked as unique ID; set is_unique_id to true on the \
          row of the column that identifies a participant"
        ]
    );
    assert_eq!(
        parse("id,integer,,,true,,,\ng,boolean,,,,,,\ng,boolean,,,,,,\n"),
        [
            "s.csv: row 4, column column_name: Duplicate 'column_name' value 'g' (first on row 3); each column may \
          appear once"
        ]
    );
    assert_eq!(
        parse(""),
        [
            "s.csv: The sheet does not have any data rows; add one row per warehouse column under the header"
        ]
    );
    assert_eq!(
        invalid_lines(parse_csv_bytes("s.csv", "t", b"")),
        [
            "s.csv: the sheet is empty; it needs a header row (column_name, data_type, column_group, description, \
          is_unique_id, is_strata, is_filter, is_metric) and one row per warehouse column"
        ]
    );
    assert_eq!(
        invalid_lines(parse_csv_bytes(
            "s.csv",
            "t",
            b"column_name,is_unique_id\nid,true\n"
        )),
        [
            "s.csv: row 1: missing required column 'data_type'; the header row has: column_name, is_unique_id; \
          it needs column_name, data_type and is_unique_id"
        ]
    );
    assert_eq!(
        invalid_lines(parse_csv_bytes(
            "s.csv",
            "t",
            b"column_name,data_type,is_unique_id\nid,integer,true\ncaf\xe9,integer,\n"
        )),
        [
            "s.csv: row 3, column column_name: the cell is not valid UTF-8 (line 3, byte 0xE9 after 'caf'); save the \
          sheet as \"CSV UTF-8\""
        ]
    );
}

#[test]
fn header_names_differing_in_case_get_a_rename_hint() {
    let lines = invalid_lines(parse_csv_bytes(
        "s.csv",
        "t",
        b"Column_Name,DATA_TYPE,is_unique_id\nid,integer,true\n",
    ));
    assert_eq!(
        lines,
        [
            "s.csv: row 1: missing required column 'column_name' (or field_name); rename the header 'Column_Name' \
             to 'column_name' (header names are lower-case)",
            "s.csv: row 1: missing required column 'data_type'; rename the header 'DATA_TYPE' to 'data_type' \
             (header names are lower-case)",
        ]
    );
}

#[test]
fn no_cascading_errors() {
    let head = "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n";
    // The unique id's row has no name: one error, not also "no columns marked as unique ID".
    let lines = invalid_lines(parse_csv_bytes(
        "s.csv",
        "t",
        format!("{head},integer,,,true,,,\nx,date,,,,,,\n").as_bytes(),
    ));
    assert_eq!(
        lines,
        [
            "s.csv: row 2, column column_name: column_name is empty; every row needs the name of a warehouse column"
        ]
    );
    // An unreadable is_unique_id cell: one error, not also "no columns marked as unique ID".
    let lines = invalid_lines(parse_csv_bytes(
        "s.csv",
        "t",
        format!("{head}id,integer,,,ja,,,\n").as_bytes(),
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(
        "s.csv: row 2, column is_unique_id: Value 'ja' cannot be converted to a boolean"
    ));
}

#[test]
fn coexisting_errors_are_all_reported_in_row_order() {
    let lines = invalid_lines(parse_csv_bytes(
        "all.csv",
        "t",
        &std::fs::read(corpus_dir().join("all_errors.csv")).unwrap(),
    ));
    let rows: Vec<&str> = lines
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().trim())
        .collect();
    assert_eq!(
        rows,
        [
            "row 4, column is_strata",
            "row 5, column data_type",
            "row 6, column data_type",
            "row 7, column column_name",
            "row 8, column column_name",
            "row 9, column is_metric",
            "row 10",
            "row 11, column description",
            "column is_unique_id",
        ]
    );
}

#[test]
fn bom_crlf_quotes_and_field_name_header() {
    let ws = parse_csv_bytes(
        "g.csv",
        "people",
        &std::fs::read(corpus_dir().join("bom_crlf_quoted.csv")).unwrap(),
    )
    .unwrap();
    assert_eq!(ws.table_name, "people");
    let names: Vec<&str> = ws.columns.iter().map(|c| c.column_name.as_str()).collect();
    assert_eq!(names, ["id", "gender", "income"]);
    assert_eq!(ws.columns[0].description, "Unique, stable id");
    assert_eq!(ws.columns[0].extra["Data_Type_Notes"], "a, b");
    assert_eq!(ws.columns[1].description, "Gender\r\n(self-reported)");
    assert_eq!(ws.columns[2].description, "Income, \"USD\"");
    assert_eq!(ws.columns[2].data_type, DataType::DoublePrecision);
    assert!(ws.columns[2].is_filter && ws.columns[2].is_metric && !ws.columns[2].is_strata);
}

#[test]
fn ten_thousand_rows_parse_fast() {
    let mut csv = String::from(
        "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric,note\n",
    );
    csv.push_str("id,bigint,,Unique id,true,,,,\n");
    let types = [
        "integer",
        "character varying",
        "double precision",
        "boolean",
        "date",
    ];
    for i in 1..10_000 {
        csv.push_str(&format!(
            "col_{i:05},{},grp,\"Column {i}, described\",,{},yes,0,n{i}\n",
            types[i % 5],
            i % 2
        ));
    }
    let start = Instant::now();
    let ws = parse_csv_bytes("big.csv", "big", csv.as_bytes()).unwrap();
    let took = start.elapsed();
    assert_eq!(ws.columns.len(), 10_000);
    assert_eq!(ws.columns[9_999].column_name, "col_09999");
    assert_eq!(ws.columns[9_999].extra["note"], "n9999");
    assert_eq!(ws.strata().count(), 5_000);
    assert!(took.as_millis() < 2_000, "10,000 rows took {took:?}");

    // With an error on every row, all 10,000 are reported, still fast.
    let bad = csv.replace(",yes,0,", ",maybe,0,");
    let start = Instant::now();
    let lines = invalid_lines(parse_csv_bytes("big.csv", "big", bad.as_bytes()));
    assert_eq!(lines.len(), 9_999);
    assert!(start.elapsed().as_millis() < 2_000);
}

#[test]
fn cli_parse_reports_and_exit_codes() {
    let dir = corpus_dir();
    // Every problem on stderr, exit 3, nothing on stdout.
    let out = xngin()
        .current_dir(&dir)
        .args(["parse-config-spreadsheet", "all_errors.csv", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        std::fs::read_to_string(dir.join("all_errors.expected")).unwrap()
    );
    // A good sheet through a file:// URL prints the model.
    let out = xngin()
        .current_dir(&dir)
        .args([
            "parse-config-spreadsheet",
            "file://./bom_crlf_quoted.csv",
            "t",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(dir.join("bom_crlf_quoted.json")).unwrap()
    );
    // A missing file is a runtime failure naming it; a foreign URL is a usage error.
    let out = xngin()
        .current_dir(&dir)
        .args(["parse-config-spreadsheet", "nope.csv", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "xngin: nope.csv: no such file or directory\n"
    );
    let out = xngin()
        .args([
            "parse-config-spreadsheet",
            "https://example.com/sheet.csv",
            "t",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with(
        "xngin: Path to configuration spreadsheet is not usable: 'https://example.com/sheet.csv'"
    ));
}

#[test]
fn the_bundled_sheet_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testing_sheet.csv");
    let ws = parse_csv_bytes(
        "testing_sheet.csv",
        "test_participant_type",
        &std::fs::read(path).unwrap(),
    )
    .unwrap();
    assert_eq!(ws.unique_id().unwrap().column_name, "id");
    assert!(ws.strata().count() > 0 && ws.metrics().count() > 0 && ws.filters().count() > 0);
}

// ---------------------------------------------------------------------------------------------
// Golden CSV of the bundled testing warehouse

#[tokio::test]
async fn golden_sheet_of_the_testing_warehouse() {
    let dsn = xngin::testing_dwh::default_warehouse().await.unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let ws = bootstrap::bootstrap(&wh, None, xngin::testing_dwh::DEFAULT_TABLE, None)
        .await
        .unwrap();
    wh.close().await;
    let got = bootstrap::to_csv_string(&ws);
    let golden = corpus_dir().join("golden/test_participant_type.csv");
    assert_eq!(
        got,
        std::fs::read_to_string(&golden).unwrap(),
        "update {} if the fixture changed",
        golden.display()
    );

    // The bundled annotated sheet describes exactly these columns, with the same types.
    let bundled =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testing_sheet.csv"))
            .unwrap();
    let bundled = parse_csv_bytes("testing_sheet.csv", "test_participant_type", &bundled).unwrap();
    // SQLite keeps uuids as TEXT and time zones as TIMESTAMP; the sheet says what they are.
    let mut a: Vec<(String, DataType)> = ws
        .columns
        .iter()
        .map(|c| (c.column_name.clone(), c.data_type))
        .collect();
    let mut b: Vec<(String, DataType)> = bundled
        .columns
        .iter()
        .map(|c| {
            (
                c.column_name.clone(),
                stored_as(Engine::Sqlite, c.data_type),
            )
        })
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------------
// Round trips on real databases

/// What a testing-warehouse column's type reads back as after a load into `dialect`.
fn stored_as(dialect: Engine, t: DataType) -> DataType {
    match (dialect, t) {
        (Engine::Sqlite, DataType::Uuid) | (Engine::Mysql, DataType::Uuid) => {
            DataType::CharacterVarying
        }
        (Engine::Sqlite, DataType::TimestampWithTimeZone) => DataType::TimestampWithoutTimeZone,
        (_, t) => t,
    }
}

/// `create-testing-dwh` → `bootstrap-spreadsheet --output` → `parse-config-spreadsheet`, all
/// through the CLI; the parsed sheet has every column with the right type, `id` first.
fn testing_dwh_round_trip(dsn: &str, dialect: Engine, schema: Option<&str>, table: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut load = xngin();
    load.args([
        "create-testing-dwh",
        "--dsn",
        dsn,
        "--table-name",
        table,
        "--nrows",
        "50",
        "--replace",
    ]);
    if let Some(s) = schema {
        load.args(["--schema-name", s]);
    }
    let out = load.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sheet = dir.path().join("sheet.csv");
    let mut boot = xngin();
    boot.args([
        "bootstrap-spreadsheet",
        dsn,
        table,
        "--output",
        sheet.to_str().unwrap(),
    ]);
    if let Some(s) = schema {
        boot.args(["--schema-name", s]);
    }
    let out = boot.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --output refuses to overwrite without --replace.
    let again = boot.output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --replace"));

    let out = xngin()
        .args(["parse-config-spreadsheet", sheet.to_str().unwrap(), table])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ws: ConfigWorksheet = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ws.table_name, table);
    assert_eq!(ws.columns[0].column_name, "id");
    assert!(ws.columns[0].is_unique_id);
    let defs = xngin::testing_dwh::column_defs();
    assert_eq!(ws.columns.len(), defs.len());
    for d in &defs {
        let c = ws
            .column(&d.name)
            .unwrap_or_else(|| panic!("{} missing", d.name));
        assert_eq!(c.data_type, stored_as(dialect, d.data_type), "{}", d.name);
    }
    // Order: unique id, then strings by name, then the rest by name.
    let strings: Vec<&str> = ws.columns[1..]
        .iter()
        .take_while(|c| c.data_type == DataType::CharacterVarying)
        .map(|c| c.column_name.as_str())
        .collect();
    let mut sorted = strings.clone();
    sorted.sort();
    assert_eq!(strings, sorted);
    let rest: Vec<&str> = ws.columns[1 + strings.len()..]
        .iter()
        .map(|c| c.column_name.as_str())
        .collect();
    assert!(
        ws.columns[1 + strings.len()..]
            .iter()
            .all(|c| c.data_type != DataType::CharacterVarying)
    );
    let mut sorted = rest.clone();
    sorted.sort();
    assert_eq!(rest, sorted);
}

async fn exec(wh: &Warehouse, sql: &str) {
    wh.execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn by_name(cols: &[ColumnInfo]) -> Vec<(&str, DataType)> {
    cols.iter()
        .map(|c| (c.name.as_str(), c.data_type))
        .collect()
}

#[tokio::test]
async fn sqlite_introspection_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let dsn_s = format!("sqlite:///{}", db.display());
    let dsn = Dsn::parse(&dsn_s).unwrap();
    let wh = Warehouse::connect_with(
        &dsn,
        xngin::warehouse::ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap();
    exec(
        &wh,
        r#"CREATE TABLE people (
            person_key INTEGER PRIMARY KEY, name TEXT NOT NULL, code VARCHAR(10), flag BOOLEAN,
            big BIGINT, score REAL, dbl DOUBLE PRECISION, amount NUMERIC(10,2), born DATE,
            seen DATETIME, seen_tz TIMESTAMPTZ, ext_id UUID, raw BLOB, doc JSON, untyped,
            nat "NATIVE CHARACTER(70)", money MONEY, "Odd ""name""" int8)"#,
    )
    .await;
    exec(&wh, "CREATE TABLE nokey (a TEXT, b INTEGER)").await;
    let cols = wh.columns(None, "people").await.unwrap();
    use DataType::*;
    assert_eq!(
        by_name(&cols),
        [
            ("person_key", Integer),
            ("name", CharacterVarying),
            ("code", CharacterVarying),
            ("flag", Boolean),
            ("big", Bigint),
            ("score", DoublePrecision),
            ("dbl", DoublePrecision),
            ("amount", Numeric),
            ("born", Date),
            ("seen", TimestampWithoutTimeZone),
            ("seen_tz", TimestampWithTimeZone),
            ("ext_id", Uuid),
            ("raw", Unsupported),
            ("doc", JsonUnsupported),
            ("untyped", Unsupported),
            ("nat", CharacterVarying),
            ("money", Numeric),
            ("Odd \"name\"", Integer),
        ]
    );
    assert!(cols[0].primary_key && cols[0].pk_position == Some(1));
    assert!(!cols[1].nullable && cols[2].nullable);
    assert_eq!(cols[7].sql_type, "NUMERIC(10,2)");
    let e = wh.columns(None, "missing").await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        e.to_string(),
        "The table 'missing' does not exist. Known tables: nokey, people"
    );
    wh.close().await;

    // The CLI: CSV to stdout, then parsed back with the same model.
    let out = xngin()
        .args(["bootstrap-spreadsheet", &dsn_s, "people"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with(
        "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n\
         person_key,integer,,,true,,,\ncode,character varying,,,,,,\nname,character varying,,,,,,\n\
         nat,character varying,,,,,,\n\"Odd \"\"name\"\"\",integer,,,,,,\namount,numeric,,,,,,\n"
    ), "{csv}");
    let parsed = parse_csv_bytes("people.csv", "people", csv.as_bytes()).unwrap();
    let out = xngin()
        .args([
            "bootstrap-spreadsheet",
            &dsn_s,
            "people",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let as_json: ConfigWorksheet = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed, as_json);

    // No primary key and no `id`: exit 3 saying what to do; --unique-id-col fixes it.
    let out = xngin()
        .args(["bootstrap-spreadsheet", &dsn_s, "nokey"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "table 'nokey' has no primary key and no column named 'id', so no column can be marked as the unique ID; \
         pass --unique-id-col COLUMN naming the column that identifies a participant\n"
    );
    let out = xngin()
        .args([
            "bootstrap-spreadsheet",
            &dsn_s,
            "nokey",
            "--unique-id-col",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n\
         b,integer,,,true,,,\na,character varying,,,,,,\n"
    );
    let out = xngin()
        .args([
            "bootstrap-spreadsheet",
            &dsn_s,
            "nokey",
            "--unique-id-col",
            "zz",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = xngin()
        .args(["bootstrap-spreadsheet", &dsn_s, "gone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "xngin: The table 'gone' does not exist. Known tables: nokey, people\n"
    );
    // A dotted name without --schema-name gets the hint to split it.
    let out = xngin()
        .args(["bootstrap-spreadsheet", &dsn_s, "other.people"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "xngin: The table 'other.people' does not exist. Known tables: nokey, people \
         (for a table in another schema, pass --schema-name SCHEMA and the bare table name)\n"
    );

    let empty = dir.path().join("empty.db");
    Warehouse::connect_with(
        &Dsn::sqlite_file(&empty),
        xngin::warehouse::ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap()
    .close()
    .await;
    let out = xngin()
        .args([
            "bootstrap-spreadsheet",
            &format!("sqlite:///{}", empty.display()),
            "t",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "xngin: The table 't' does not exist; the database does not contain any tables.\n"
    );

    testing_dwh_round_trip(&dsn_s, Engine::Sqlite, None, "dwh");
}

#[tokio::test]
async fn postgres_introspection_and_round_trip() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let schema = format!("sheet_pg_{}", unique());
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    exec(&wh, &format!("CREATE SCHEMA {schema}")).await;
    exec(
        &wh,
        &format!("CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok')"),
    )
    .await;
    exec(&wh, &format!("CREATE DOMAIN {schema}.money8 AS bigint")).await;
    exec(
        &wh,
        &format!(
            "CREATE TABLE {schema}.people (
                k2 integer NOT NULL, k1 text NOT NULL, ext uuid, name varchar(20), code char(3),
                flag boolean, big bigint, small smallint, dbl double precision, r real,
                amount numeric(10,2), born date, seen timestamp, seen_tz timestamptz, doc jsonb, doc2 json,
                tags int[], m {schema}.mood, cash {schema}.money8, dur interval,
                PRIMARY KEY (k1, k2))"
        ),
    )
    .await;
    let cols = wh.columns(Some(&schema), "people").await.unwrap();
    use DataType::*;
    assert_eq!(
        by_name(&cols),
        [
            ("k2", Integer),
            ("k1", CharacterVarying),
            ("ext", Uuid),
            ("name", CharacterVarying),
            ("code", CharacterVarying),
            ("flag", Boolean),
            ("big", Bigint),
            ("small", Integer),
            ("dbl", DoublePrecision),
            ("r", DoublePrecision),
            ("amount", Numeric),
            ("born", Date),
            ("seen", TimestampWithoutTimeZone),
            ("seen_tz", TimestampWithTimeZone),
            ("doc", JsonbUnsupported),
            ("doc2", JsonUnsupported),
            ("tags", Unsupported),
            ("m", CharacterVarying),
            ("cash", Bigint),
            ("dur", Unsupported),
        ]
    );
    assert_eq!(cols[0].pk_position, Some(2));
    assert_eq!(cols[1].pk_position, Some(1));
    assert_eq!(cols[3].sql_type, "character varying(20)");
    assert!(cols[2].nullable && !cols[0].nullable);
    // The first primary-key column in key order is the unique id.
    let ws = bootstrap::worksheet_from_columns("people", &cols, None).unwrap();
    assert_eq!(ws.columns[0].column_name, "k1");
    let e = wh.columns(Some(&schema), "nope").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("The table '{schema}.nope' does not exist. Known tables: people")
    );
    wh.close().await;

    // The Redshift path (information_schema, no keys), run against PostgreSQL.
    let mut rs = Dsn::parse(&url).unwrap();
    rs.redshift = true;
    let wh = Warehouse::connect(&rs).await.unwrap();
    let rs_cols = wh.columns(Some(&schema), "people").await.unwrap();
    wh.close().await;
    let want: Vec<(&str, DataType)> = by_name(&cols)
        .into_iter()
        .map(|(n, t)| (n, if n == "m" { Unsupported } else { t }))
        .collect();
    assert_eq!(by_name(&rs_cols), want);
    assert!(rs_cols.iter().all(|c| !c.primary_key));
    assert!(!rs_cols[0].nullable && rs_cols[2].nullable);

    // Through the search path of the DSN, no --schema-name.
    let sep = if url.contains('?') { '&' } else { '?' };
    let sp_dsn = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let out = xngin()
        .args([
            "bootstrap-spreadsheet",
            &sp_dsn,
            "people",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_path: ConfigWorksheet = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_path, ws);

    testing_dwh_round_trip(&url, Engine::Postgres, Some(&schema), "dwh");

    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    exec(&wh, &format!("DROP SCHEMA {schema} CASCADE")).await;
    wh.close().await;
}

#[tokio::test]
async fn mysql_introspection_and_round_trip() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    let table = format!("sheet_my_{}", unique());
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    exec(
        &wh,
        &format!(
            "CREATE TABLE `{table}` (
                name varchar(20), id int NOT NULL, flag boolean, tiny tinyint, big bigint unsigned,
                dbl double, f float, amount decimal(10,2), born date, seen datetime(6),
                stamp timestamp NULL, code char(36), body text, m enum('a','b'), raw blob)"
        ),
    )
    .await;
    let cols = wh.columns(None, &table).await.unwrap();
    use DataType::*;
    assert_eq!(
        by_name(&cols),
        [
            ("name", CharacterVarying),
            ("id", Integer),
            ("flag", Boolean),
            ("tiny", Integer),
            ("big", Bigint),
            ("dbl", DoublePrecision),
            ("f", DoublePrecision),
            ("amount", Numeric),
            ("born", Date),
            ("seen", TimestampWithoutTimeZone),
            ("stamp", TimestampWithTimeZone),
            ("code", CharacterVarying),
            ("body", CharacterVarying),
            ("m", CharacterVarying),
            ("raw", Unsupported),
        ]
    );
    assert!(!cols[1].nullable && cols[0].nullable && !cols.iter().any(|c| c.primary_key));
    let e = wh
        .columns(None, &format!("{table}_nope"))
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with(&format!(
        "The table '{table}_nope' does not exist. Known tables: "
    )));
    assert!(e.to_string().contains(&table));
    wh.close().await;

    // No primary key: the column named `id` is the unique id.
    let out = xngin()
        .args(["bootstrap-spreadsheet", &url, &table])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.contains("\nid,integer,,,true,,,\nbody,character varying,"),
        "{csv}"
    );

    let dwh = format!("sheet_dwh_{}", unique());
    testing_dwh_round_trip(&url, Engine::Mysql, None, &dwh);

    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    exec(&wh, &format!("DROP TABLE `{table}`")).await;
    exec(&wh, &format!("DROP TABLE `{dwh}`")).await;
    wh.close().await;
}

// ---------------------------------------------------------------------------------------------
// Properties

mod properties {
    use proptest::prelude::*;
    use xngin::datatype::DataType;
    use xngin::sheet::{ColumnDescriptor, ConfigWorksheet, bootstrap, parse_csv_bytes};

    fn cell() -> impl Strategy<Value = String> {
        prop::string::string_regex("[a-zA-Z0-9 ,;\"'\\r\\n\\té€_-]{0,12}").unwrap()
    }

    fn column() -> impl Strategy<Value = (String, usize, String, String, [bool; 3])> {
        (
            prop::string::string_regex("[a-zA-Zé_\"][a-zA-Z0-9 ,\"'é_-]{0,10}").unwrap(),
            0..DataType::ALL.len(),
            cell(),
            cell(),
            any::<[bool; 3]>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any valid sheet written as CSV parses back to itself.
        #[test]
        fn written_sheets_parse_back_unchanged(
            cols in prop::collection::vec(column(), 1..25),
            uid in any::<prop::sample::Index>(),
        ) {
            let uid = uid.index(cols.len());
            let columns: Vec<ColumnDescriptor> = cols
                .into_iter()
                .enumerate()
                .map(|(i, (name, t, group, desc, [s, f, m]))| ColumnDescriptor {
                    // Unique, and without surrounding whitespace (names are trimmed).
                    column_name: format!("{}{i}", name.trim()),
                    data_type: DataType::ALL[t],
                    column_group: group,
                    description: desc,
                    is_unique_id: i == uid,
                    is_strata: s,
                    is_filter: f,
                    is_metric: m,
                    extra: Default::default(),
                })
                .collect();
            let ws = ConfigWorksheet { table_name: "t".into(), columns };
            let text = bootstrap::to_csv_string(&ws);
            let back = parse_csv_bytes("p.csv", "t", text.as_bytes());
            prop_assert_eq!(back.ok(), Some(ws));
        }

        /// Arbitrary bytes never panic the parser; failures are Invalid, one line per problem,
        /// each naming the source.
        #[test]
        fn arbitrary_input_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            rows in prop::collection::vec(prop::collection::vec(
                prop::sample::select(vec![
                    "id", "integer", "true", "", "maybe", "varchar", "5", "x", "character varying", "\"a,b\"", "\u{e9}",
                ]),
                0..10,
            ), 0..8),
        ) {
            let mut text = String::from("column_name,data_type,is_unique_id,is_strata,extra\n");
            for r in &rows {
                text.push_str(&r.join(","));
                text.push('\n');
            }
            for input in [bytes.as_slice(), text.as_bytes()] {
                match parse_csv_bytes("p.csv", "t", input) {
                    Ok(ws) => prop_assert_eq!(ws.columns.iter().filter(|c| c.is_unique_id).count(), 1),
                    Err(xngin::Error::Invalid(lines)) => {
                        prop_assert!(!lines.is_empty());
                        prop_assert!(lines.iter().all(|l| l.starts_with("p.csv: ")));
                    }
                    Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
                }
            }
        }
    }
}
