//! Audience filters: validation messages, CLI and JSON syntax, and the SQL semantics of every
//! relation (docs/compatibility.md#filters) on a small table with NULLs, in SQLite, PostgreSQL
//! (`XNGIN_TEST_POSTGRES_URL`) and MariaDB/MySQL (`XNGIN_TEST_MYSQL_URL`); the same checks run
//! on the BigQuery emulator from `tests/it/bigquery.rs`.

use crate::common;

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use xngin::datatype::DataType;
use xngin::dsn::Dsn;
use xngin::filters::{
    Filter, FilterValue, Relation, load_filters_file, parse_cli_filter, validate, where_clause,
};
use xngin::sheet::{ColumnDescriptor, ConfigWorksheet};
use xngin::warehouse::load::{ColumnDef, create_table_sql};
use xngin::warehouse::{Value, Warehouse};

const U1: &str = "0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b01";
const U2: &str = "0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b02";

fn columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("id", DataType::Integer),
        ("name", DataType::CharacterVarying),
        ("score", DataType::DoublePrecision),
        ("age", DataType::Integer),
        ("flag", DataType::Boolean),
        ("born", DataType::Date),
        ("uid", DataType::Uuid),
        ("ts", DataType::TimestampWithoutTimeZone),
        ("prior_experiment_ids", DataType::CharacterVarying),
        ("notes", DataType::CharacterVarying),
    ]
}

fn sheet(table: &str) -> ConfigWorksheet {
    ConfigWorksheet {
        table_name: table.into(),
        columns: columns()
            .into_iter()
            .map(|(name, t)| ColumnDescriptor {
                column_name: name.into(),
                data_type: t,
                column_group: String::new(),
                description: String::new(),
                is_unique_id: name == "id",
                is_strata: false,
                // `notes` is deliberately not a filter field.
                is_filter: name != "id" && name != "notes",
                is_metric: false,
                extra: BTreeMap::new(),
            })
            .collect(),
    }
}

fn date(s: &str) -> Value {
    Value::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
}

fn ts(s: &str) -> Value {
    Value::Timestamp(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
}

fn rows() -> Vec<Vec<Value>> {
    use Value::*;
    let t = |s: &str| Text(s.to_string());
    let u = |s: &str| Uuid(uuid::Uuid::parse_str(s).unwrap());
    vec![
        vec![
            Int(1),
            t("a"),
            Float(1.5),
            Int(10),
            Bool(true),
            date("2020-01-01"),
            u(U1),
            ts("2020-01-01 08:00:00"),
            t("E1,e2"),
            Null,
        ],
        vec![
            Int(2),
            t("b"),
            Float(2.5),
            Int(20),
            Bool(false),
            date("2021-06-15"),
            u(U2),
            ts("2021-06-15 12:30:00"),
            t("e3"),
            Null,
        ],
        vec![Int(3), Null, Null, Null, Null, Null, Null, Null, Null, Null],
        vec![
            Int(4),
            t("c"),
            Float(3.5),
            Int(30),
            Bool(true),
            date("2022-12-31"),
            u("0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b03"),
            ts("2022-12-31 23:59:59"),
            t(""),
            Null,
        ],
        vec![
            Int(5),
            t("a,b"),
            Float(4.5),
            Int(40),
            Bool(false),
            date("2023-03-03"),
            u("0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b04"),
            ts("2023-03-03 00:00:00"),
            t("x,E2,y"),
            Null,
        ],
    ]
}

async fn setup(wh: &Warehouse, table: &str) {
    let dialect = wh.dialect();
    let defs: Vec<ColumnDef> = columns()
        .into_iter()
        .map(|(n, t)| {
            if n == "id" {
                ColumnDef::new(n, t).primary_key()
            } else {
                ColumnDef::new(n, t)
            }
        })
        .collect();
    let _ = wh
        .execute(
            &format!("DROP TABLE IF EXISTS {}", wh.qualified(None, table)),
            &[],
        )
        .await;
    wh.execute(
        &create_table_sql(dialect, &wh.qualified(None, table), &defs),
        &[],
    )
    .await
    .unwrap();
    let ph: Vec<String> = (1..=defs.len()).map(|i| wh.placeholder(i)).collect();
    let sql = format!(
        "INSERT INTO {} VALUES ({})",
        wh.qualified(None, table),
        ph.join(", ")
    );
    for row in rows() {
        wh.execute(&sql, &row).await.unwrap();
    }
}

/// The ids selected by `filters` (CLI syntax), with the filter parameters numbered after one
/// leading parameter on PostgreSQL to exercise the offset.
async fn ids(wh: &Warehouse, table: &str, specs: &[&str]) -> Vec<i64> {
    let filters: Vec<Filter> = specs.iter().map(|s| parse_cli_filter(s).unwrap()).collect();
    ids_of(wh, table, &filters).await
}

/// [`ids`] for filters already built (JSON-typed values).
async fn ids_of(wh: &Warehouse, table: &str, filters: &[Filter]) -> Vec<i64> {
    let (clause, mut params) = where_clause(wh.dialect(), filters, &sheet(table), 2).unwrap();
    params.insert(0, Value::Int(0));
    let sql = format!(
        "SELECT {id} FROM {t} WHERE {id} > {p1} AND {clause} ORDER BY {id}",
        id = wh.quote("id"),
        t = wh.qualified(None, table),
        p1 = wh.placeholder(1)
    );
    let rows = wh
        .fetch_all(&sql, &params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.rows.iter().map(|r| r[0].as_i64().unwrap()).collect()
}

/// Every row of the filter semantics table, plus typed columns and experiment-id lists.
pub(crate) async fn check_semantics(wh: &Warehouse, table: &str) {
    setup(wh, table).await;
    let cases: &[(&[&str], &[i64])] = &[
        // includes / excludes with NULL handling
        (&["name includes a,b"], &[1, 2]),
        (&["name includes \"a,b\""], &[5]),
        (&["name includes a,null"], &[1, 3]),
        (&["name includes null"], &[3]),
        (&["name excludes a,b"], &[3, 4, 5]),
        (&["name excludes a,null"], &[2, 4, 5]),
        (&["name excludes null"], &[1, 2, 4, 5]),
        // between, inclusive, open sides, "or NULL"
        (&["score between 2,4"], &[2, 4]),
        (&["score between 2.5,"], &[2, 4, 5]),
        (&["score between ,2.5"], &[1, 2]),
        (&["score between 2,4,null"], &[2, 3, 4]),
        (&["age includes 10,30"], &[1, 4]),
        (&["age between ,20"], &[1, 2]),
        // booleans: OR of IS tests / AND of IS NOT tests
        (&["flag includes true,null"], &[1, 3, 4]),
        (&["flag excludes true"], &[2, 3, 5]),
        (&["flag includes false"], &[2, 5]),
        (&["flag excludes true,null"], &[2, 5]),
        // typed columns
        (&["born between 2021-01-01,2022-12-31"], &[2, 4]),
        (&["born includes 2020-01-01"], &[1]),
        (&["uid includes 0E3B5C1A-8F4E-4D1B-9C3A-2F6E7D8C9B02"], &[2]),
        (
            &["uid excludes 0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b01"],
            &[2, 3, 4, 5],
        ),
        (&["ts between 2022-01-01T00:00:00Z,"], &[4, 5]),
        (
            &["ts between 2021-06-15 12:30:00,2022-12-31 23:59:59"],
            &[2, 4],
        ),
        // comma-separated experiment id lists: whole elements, case-insensitive
        (&["prior_experiment_ids includes e2"], &[1, 5]),
        (&["prior_experiment_ids includes E1,e3"], &[1, 2]),
        (&["prior_experiment_ids includes e"], &[]),
        (&["prior_experiment_ids excludes e2"], &[2, 3, 4]),
        (&["prior_experiment_ids excludes y,e3"], &[1, 3, 4]),
        // filters are AND-ed
        (&["name includes a,b", "flag includes true"], &[1]),
        (&[], &[1, 2, 3, 4, 5]),
    ];
    assert_cases(wh, table, cases).await;
    // includes is the complement of excludes on every non-boolean relation
    for (inc, exc) in [
        ("name includes a,b", "name excludes a,b"),
        ("name includes a,null", "name excludes a,null"),
    ] {
        let mut all = ids(wh, table, &[inc]).await;
        all.extend(ids(wh, table, &[exc]).await);
        all.sort();
        assert_eq!(all, vec![1, 2, 3, 4, 5]);
    }
    let _ = wh
        .execute(&format!("DROP TABLE {}", wh.qualified(None, table)), &[])
        .await;
}

/// Each case's filters (CLI syntax) select exactly the ids given.
async fn assert_cases(wh: &Warehouse, table: &str, cases: &[(&[&str], &[i64])]) {
    for (specs, want) in cases {
        let got = ids(wh, table, specs).await;
        assert_eq!(&got, want, "{} on {:?}", wh.dialect().name(), specs);
    }
}

#[tokio::test]
async fn sql_semantics_sqlite() {
    let wh = Warehouse::connect(&Dsn::parse("sqlite::memory:").unwrap())
        .await
        .unwrap();
    check_semantics(&wh, "filt_sqlite").await;
}

#[tokio::test]
async fn sql_semantics_postgres() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_semantics(&wh, "xngin_filters_semantics_pg").await;
}

#[tokio::test]
async fn sql_semantics_mysql() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_semantics(&wh, "xngin_filters_semantics_my").await;
}

// ------------------------------------------- the Python tool's input forms (issue 9)

/// `which` ("sqlite", "postgres" or "mysql"), or None when that server's URL is not set.
async fn warehouse(which: &str, test: &str) -> Option<Warehouse> {
    let url = match which {
        "sqlite" => "sqlite::memory:".to_string(),
        "postgres" => common::pg_url(test)?,
        _ => common::mysql_url(test)?,
    };
    Some(
        Warehouse::connect(&Dsn::parse(&url).unwrap())
            .await
            .unwrap(),
    )
}

async fn drop_table(wh: &Warehouse, table: &str) {
    let _ = wh
        .execute(&format!("DROP TABLE {}", wh.qualified(None, table)), &[])
        .await;
}

/// `includes`/`excludes` on text match the exact value: no case folding and no trailing-space
/// padding (MySQL/MariaDB's default collations do both), NULL rows handled as before.
pub(crate) async fn check_text_membership_is_exact(wh: &Warehouse) {
    let table = common::unique("xngin_filt_case");
    setup(wh, &table).await;
    assert_cases(
        wh,
        &table,
        &[
            (&["name includes A,B"], &[]),
            (&["name includes A,b"], &[2]),
            (&["name includes A,null"], &[3]),
            (&["name excludes A,B"], &[1, 2, 3, 4, 5]),
            (&["name excludes A,b"], &[1, 3, 4, 5]),
            (&["name excludes A,null"], &[1, 2, 4, 5]),
            (&["name includes \"A,B\""], &[]),
        ],
    )
    .await;
    use FilterValue::Text;
    for (relation, want) in [
        (Relation::Includes, vec![]),
        (Relation::Excludes, vec![1, 2, 3, 4, 5]),
    ] {
        let f = json_filter("name", relation, vec![Text("a ".into()), Text("C".into())]);
        assert_eq!(
            ids_of(wh, &table, &[f]).await,
            want,
            "{} {relation:?} [\"a \", \"C\"]",
            wh.dialect().name()
        );
    }
    drop_table(wh, &table).await;
}

#[tokio::test]
async fn text_includes_excludes_are_case_sensitive_sqlite() {
    let wh = warehouse("sqlite", "case_sqlite").await.unwrap();
    check_text_membership_is_exact(&wh).await;
}

#[tokio::test]
async fn text_includes_excludes_are_case_sensitive_postgres() {
    if let Some(wh) = warehouse("postgres", "case_postgres").await {
        check_text_membership_is_exact(&wh).await;
    }
}

#[tokio::test]
async fn text_includes_excludes_are_case_sensitive_mysql() {
    if let Some(wh) = warehouse("mysql", "case_mysql").await {
        check_text_membership_is_exact(&wh).await;
    }
}

/// A date column takes the UTC date-times the Python tool accepts and compares their date; a
/// timestamp column compares whole seconds (fractions dropped, as the reference does).
pub(crate) async fn check_datetime_forms(wh: &Warehouse) {
    let table = common::unique("xngin_filt_dt");
    setup(wh, &table).await;
    assert_cases(
        wh,
        &table,
        &[
            (&["born includes 2020-01-01T00:00:00"], &[1]),
            (&["born includes 2020-01-01T00:00:00Z"], &[1]),
            (&["born includes 2020-01-01 00:00:00"], &[1]),
            (&["born includes 2020-01-01T17:45:10.250+00:00"], &[1]),
            (&["born excludes 2020-01-01 23:59:59Z"], &[2, 3, 4, 5]),
            (
                &["born between 2021-06-15T23:59:59Z,2022-12-31T00:00:01+0000"],
                &[2, 4],
            ),
            (&["ts between 2021-06-15T12:30:00.5Z,"], &[2, 4, 5]),
            (&["ts includes 2021-06-15 12:30:00.123456"], &[2]),
            (&["ts between ,2022-12-31T23:59:59.999999Z"], &[1, 2, 4]),
            (&["ts excludes 2020-01-01T08:00:00.9Z"], &[2, 3, 4, 5]),
        ],
    )
    .await;
    // JSON filter values take the same forms.
    let f = json_filter(
        "born",
        Relation::Includes,
        vec![FilterValue::Text("2021-06-15T08:00:00Z".into())],
    );
    assert_eq!(ids_of(wh, &table, &[f]).await, vec![2]);
    drop_table(wh, &table).await;
}

#[tokio::test]
async fn date_and_timestamp_filters_take_python_datetime_forms_sqlite() {
    let wh = warehouse("sqlite", "dt_sqlite").await.unwrap();
    check_datetime_forms(&wh).await;
}

#[tokio::test]
async fn date_and_timestamp_filters_take_python_datetime_forms_postgres() {
    if let Some(wh) = warehouse("postgres", "dt_postgres").await {
        check_datetime_forms(&wh).await;
    }
}

#[tokio::test]
async fn date_and_timestamp_filters_take_python_datetime_forms_mysql() {
    if let Some(wh) = warehouse("mysql", "dt_mysql").await {
        check_datetime_forms(&wh).await;
    }
}

#[test]
fn non_utc_offset_gets_the_must_be_in_utc_error() {
    crate::common::cli_names();
    let cli = |s: &str| parse_cli_filter(s).unwrap();
    let utc =
        "datetime-type filter values must be in UTC, or not be tagged with an explicit timezone";
    for (spec, value) in [
        (
            "born includes 2024-01-01T00:00:00+05:30",
            "2024-01-01T00:00:00+05:30",
        ),
        (
            "born between 2024-01-01 00:00:00-01:00,",
            "2024-01-01 00:00:00-01:00",
        ),
        (
            "ts between ,2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00+0200",
        ),
    ] {
        assert_eq!(
            errors(&[cli(spec)]),
            vec![format!("--filter {spec:?}: {utc}: {value}")]
        );
    }
    // A zero offset is UTC; a malformed value is still a type error naming what fits.
    assert!(errors(&[cli("ts includes 2024-01-01T00:00:00-00:00")]).is_empty());
    let e = errors(&[cli("born includes 2024-01-01T25:00:00")]);
    assert!(e[0].contains("expected an ISO-8601 date string"), "{e:?}");
}

// ---------------------------------------------------------------- SQL text

#[test]
fn sql_text_quotes_identifiers_and_numbers_parameters() {
    use xngin::dsn::Engine;
    use xngin::warehouse::dialect_for;
    let s = sheet("t");
    let f = vec![
        parse_cli_filter("name includes a,null").unwrap(),
        parse_cli_filter("score between 1,2,null").unwrap(),
    ];
    let (sql, params) = where_clause(dialect_for(Engine::Postgres), &f, &s, 3).unwrap();
    assert_eq!(
        sql,
        r#"("name" IS NULL OR "name" IN ($3)) AND (("score" >= $4 AND "score" <= $5) OR "score" IS NULL)"#
    );
    assert_eq!(
        params,
        vec![Value::Text("a".into()), Value::Int(1), Value::Int(2)]
    );
    let (sql, params) = where_clause(dialect_for(Engine::Mysql), &f, &s, 1).unwrap();
    assert_eq!(
        sql,
        "(`name` IS NULL OR (`name` IN (?) AND CAST(CONVERT(`name` USING utf8mb4) AS BINARY) IN (?))) \
         AND ((`score` >= ? AND `score` <= ?) OR `score` IS NULL)"
    );
    assert_eq!(
        params.len(),
        4,
        "the includes values are bound twice: {params:?}"
    );
    let f = vec![parse_cli_filter("name excludes a,b").unwrap()];
    let (sql, _) = where_clause(dialect_for(Engine::Mysql), &f, &s, 1).unwrap();
    assert_eq!(
        sql,
        "(`name` IS NULL OR CAST(CONVERT(`name` USING utf8mb4) AS BINARY) NOT IN (?, ?))"
    );
    let (sql, params) = where_clause(dialect_for(Engine::Sqlite), &[], &s, 1).unwrap();
    assert_eq!((sql.as_str(), params.len()), ("1=1", 0));
    // Values are never spliced into the SQL, and the experiment-id pattern is regex-escaped.
    let f = vec![parse_cli_filter("prior_experiment_ids includes a.b;DROP,c").unwrap()];
    let (sql, params) = where_clause(dialect_for(Engine::Postgres), &f, &s, 1).unwrap();
    assert_eq!(sql, r#"(lower("prior_experiment_ids") ~ $1)"#);
    assert_eq!(
        params,
        vec![Value::Text(
            r"(^(a\.b;drop|c)$)|(^(a\.b;drop|c),)|(,(a\.b;drop|c)$)|(,(a\.b;drop|c),)".into()
        )]
    );
    // Typed parameters: PostgreSQL gets uuid and date values, not text.
    let f = vec![
        parse_cli_filter(&format!("uid includes {U1}")).unwrap(),
        parse_cli_filter("born between 2020-01-01,").unwrap(),
    ];
    let (_, params) = where_clause(dialect_for(Engine::Postgres), &f, &s, 1).unwrap();
    assert_eq!(
        params,
        vec![
            Value::Uuid(uuid::Uuid::parse_str(U1).unwrap()),
            date("2020-01-01")
        ]
    );
}

// ---------------------------------------------------------------- validation

fn errors(filters: &[Filter]) -> Vec<String> {
    match validate(filters, &sheet("people")) {
        Ok(()) => vec![],
        Err(e) => {
            assert_eq!(e.exit_code(), 3);
            e.lines()
        }
    }
}

fn json_filter(field: &str, relation: Relation, value: Vec<FilterValue>) -> Filter {
    Filter {
        field_name: field.into(),
        relation,
        value,
        origin: format!("f.json: [0] ({field})"),
    }
}

#[test]
fn validation_messages() {
    crate::common::cli_names();
    use FilterValue::*;
    let cli = |s: &str| parse_cli_filter(s).unwrap();
    assert_eq!(errors(&[cli("age between 18,")]), Vec::<String>::new());
    assert_eq!(
        errors(&[cli("age includes ten")]),
        vec![
            r#"--filter "age includes ten": value "ten" does not fit column type integer: expected an integer"#
        ]
    );
    let e = errors(&[cli("height includes 1")]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with(r#"--filter "height includes 1": no column "height" in the sheet for people; filter fields: name, score"#), "{e:?}");
    assert!(errors(&[cli("notes includes x")])[0].contains("not marked is_filter"));
    assert!(
        errors(&[cli("age between 1,2,3")])[0]
            .ends_with("the third BETWEEN value, if present, must be null (it means \"or NULL\")")
    );
    assert!(
        errors(&[cli("age between 1")])[0]
            .ends_with("BETWEEN relation requires exactly 2 or 3 values")
    );
    assert!(
        errors(&[cli("age between ,")])[0]
            .contains("BETWEEN relation can have at most one None value")
    );
    assert!(
        errors(&[cli("flag between true,false")])[0].ends_with("Values do not support BETWEEN.")
    );
    assert!(errors(&[cli("flag includes true,true")])[0].ends_with("Duplicate values detected."));
    assert!(
        errors(&[cli("flag includes true,false,null")])[0]
            .ends_with("Boolean filter allows all possible values.")
    );
    assert!(
        errors(&[cli("flag excludes true,false,null")])[0]
            .ends_with("Boolean filter rejects all possible values.")
    );
    assert!(
        errors(&[cli("prior_experiment_ids between a,b")])[0].ends_with(
            "filters on experiment_id fields must have relations of type excludes, includes"
        )
    );
    assert!(
        errors(&[cli("prior_experiment_ids includes \"a,b\"")])[0]
            .contains("may not contain commas or leading/trailing whitespace")
    );
    assert!(errors(&[cli("uid includes nope")])[0].contains("expected a UUID string"));
    assert!(
        errors(&[cli("ts between 2024-01-01T00:00:00+02:00,")])[0]
            .contains("datetime-type filter values must be in UTC")
    );
    assert!(errors(&[cli("born includes 31/01/2024")])[0].contains("ISO-8601 date"));
    // JSON values are strictly typed: "1" is not 1, 1.5 is not an integer, true is not a string.
    let e = errors(&[
        json_filter("age", Relation::Includes, vec![Text("1".into())]),
        json_filter("age", Relation::Includes, vec![Float(1.5)]),
        json_filter("name", Relation::Includes, vec![Bool(true)]),
        json_filter("name", Relation::Includes, vec![]),
        json_filter("9bad", Relation::Includes, vec![Int(1)]),
        json_filter("score", Relation::Between, vec![Int(1), Text("x".into())]),
    ]);
    assert_eq!(e.len(), 7, "all problems are reported: {e:#?}");
    assert!(e[0].starts_with("f.json: [0] (age): value \"1\" does not fit column type integer"));
    assert!(e[3].ends_with("value must be a non-empty list"));
    assert!(e[4].contains(
        "must start with letter/underscore and contain only letters, numbers, underscores"
    ));
    assert!(e[5].contains("got a mix of number and string"));
    assert!(
        e[6].contains(r#"value "x" does not fit column type double precision: expected a number"#)
    );
    // Numbers fit double columns; bigint takes a numeric string.
    assert!(
        errors(&[json_filter(
            "score",
            Relation::Between,
            vec![Int(1), Float(2.5)]
        )])
        .is_empty()
    );
}

#[test]
fn filters_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("filters.json");
    std::fs::write(
        &p,
        r#"[{"field_name": "age", "relation": "between", "value": [18, null]},
            {"filter_name": "name", "relation": "includes", "value": ["a", null]}]"#,
    )
    .unwrap();
    let f = load_filters_file(&p).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].value, vec![FilterValue::Int(18), FilterValue::Null]);
    assert_eq!(f[1].field_name, "name");
    assert!(validate(&f, &sheet("t")).is_ok());
    std::fs::write(
        &p,
        r#"{"filters": [{"field_name": "age", "relation": "within", "value": 3, "x": 1}]}"#,
    )
    .unwrap();
    let e = load_filters_file(&p).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let lines = e.lines();
    let file = p.display().to_string();
    assert!(lines.contains(&format!(
        r#"{file}: filters[0].relation: expected "includes", "excludes" or "between", got "within""#
    )), "{lines:#?}");
    assert!(lines.contains(&format!(
        "{file}: filters[0].value: expected a list of values, got 3"
    )));
    assert!(lines.iter().any(|l| l.contains("unknown key \"x\"")));
    std::fs::write(&p, "[{").unwrap();
    assert!(
        load_filters_file(&p)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{file}:1:"))
    );
    let e = load_filters_file(&dir.path().join("missing.json")).unwrap_err();
    assert_eq!(e.exit_code(), 1);
}
