//! `xngin create-testing-dwh` against SQLite, PostgreSQL and MariaDB: loads, types, aggregates,
//! atomic replace, and every bad input of the foundation issue.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;

use common::*;
use xngin::dsn::Dsn;
use xngin::warehouse::{Value, Warehouse};

/// Per ethnicity: (row count, sum of income in cents) computed from the bundled CSV.
fn fixture_aggregates() -> BTreeMap<String, (i64, i64)> {
    let bytes = zstd::decode_all(xngin::testing_dwh::FIXTURE).unwrap();
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let h = rdr.headers().unwrap().clone();
    let eth = h.iter().position(|c| c == "ethnicity").unwrap();
    let inc = h.iter().position(|c| c == "income").unwrap();
    let mut out = BTreeMap::new();
    for r in rdr.records() {
        let r = r.unwrap();
        let e = out.entry(r[eth].to_string()).or_insert((0i64, 0i64));
        e.0 += 1;
        if !r[inc].is_empty() {
            e.1 += (r[inc].parse::<f64>().unwrap() * 100.0).round() as i64;
        }
    }
    out
}

async fn db_aggregates(dsn: &str, table: &str) -> BTreeMap<String, (i64, i64)> {
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let sql = format!(
        "SELECT ethnicity, count(*), sum(income) FROM {} GROUP BY ethnicity",
        table
            .split('.')
            .map(|p| wh.quote(p))
            .collect::<Vec<_>>()
            .join(".")
    );
    let rows = wh.fetch_all(&sql, &[]).await.unwrap();
    rows.rows
        .into_iter()
        .map(|r| {
            let cents = (r[2].as_f64().unwrap() * 100.0).round() as i64;
            (r[0].to_text().unwrap(), (r[1].as_i64().unwrap(), cents))
        })
        .collect()
}

async fn count(dsn: &str, qualified: &str) -> i64 {
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let r = wh
        .fetch_all(&format!("SELECT count(*) FROM {qualified}"), &[])
        .await
        .unwrap();
    r.rows[0][0].as_i64().unwrap()
}

fn load_fixture(home: &std::path::Path, dsn: &str, extra: &[&str]) -> std::process::Output {
    let out = xngin(home)
        .args(["create-testing-dwh", "--dsn", dsn])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Load the full fixture, check the final line, the row count and aggregates against the CSV.
async fn full_round_trip(dsn: &str, schema: Option<&str>) {
    let home = tempfile::tempdir().unwrap();
    let table = unique("dwh_full");
    let mut args = vec!["--table-name", table.as_str()];
    if let Some(s) = schema {
        args.extend(["--schema-name", s]);
    }
    let out = load_fixture(home.path(), dsn, &args);
    let shown = match schema {
        Some(s) => format!("{s}.{table}"),
        None => table.clone(),
    };
    assert_eq!(stdout(&out), format!("Loaded 100000 rows into {shown}.\n"));
    assert_eq!(db_aggregates(dsn, &shown).await, fixture_aggregates());

    // Every column of the first rows reads back as written (dates, timestamps, uuids, NULLs).
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let q = shown
        .split('.')
        .map(|p| wh.quote(p))
        .collect::<Vec<_>>()
        .join(".");
    let got = wh
        .fetch_all(&format!("SELECT * FROM {q} ORDER BY id LIMIT 300"), &[])
        .await
        .unwrap();
    let want: Vec<Vec<Value>> =
        xngin::testing_dwh::open_source(&xngin::testing_dwh::Source::Fixture, Some(300))
            .unwrap()
            .rows
            .map(Result::unwrap)
            .collect();
    // SQLite keeps booleans as 0/1 and PostgreSQL prints no "+00:00": compare normalised text.
    let text = |r: &[Value]| -> Vec<Option<String>> {
        r.iter()
            .map(|v| match v {
                Value::Bool(b) => Some((*b as i64).to_string()),
                v => v.to_text().map(|t| t.replace("+00:00", "")),
            })
            .collect()
    };
    assert_eq!(got.rows.len(), want.len());
    for (g, w) in got.rows.iter().zip(&want) {
        assert_eq!(text(g), text(w), "{dsn}");
    }
}

/// Column types read back through the database's own catalog.
async fn declared_types(dsn: &str, table: &str) -> Vec<(String, String)> {
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let (sql, params) = match wh.dialect().engine() {
        xngin::dsn::Engine::Sqlite => ("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid".to_string(), vec![Value::Text(table.into())]),
        xngin::dsn::Engine::Postgres => (
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position".into(),
            vec![Value::Text(table.into())],
        ),
        xngin::dsn::Engine::Mysql => (
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = database() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION".into(),
            vec![Value::Text(table.into())],
        ),
        other => panic!("declared_types: no query for {other:?}"),
    };
    let rows = wh.fetch_all(&sql, &params).await.unwrap();
    rows.rows
        .into_iter()
        .map(|r| {
            (
                r[0].to_text().unwrap(),
                r[1].to_text().unwrap().to_lowercase(),
            )
        })
        .collect()
}

fn ty<'a>(types: &'a [(String, String)], col: &str) -> &'a str {
    &types
        .iter()
        .find(|(c, _)| c == col)
        .unwrap_or_else(|| panic!("no column {col}"))
        .1
}

#[tokio::test]
async fn sqlite_full_fixture_matches_csv_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite:///{}", dir.path().join("dwh.db").display());
    full_round_trip(&dsn, None).await;
}

#[tokio::test]
async fn postgres_full_fixture_in_a_schema() {
    let Some(url) = pg_url("postgres_full_fixture_in_a_schema") else {
        return;
    };
    let schema = unique("ctd_schema");
    full_round_trip(&url, Some(&schema)).await;
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    wh.execute(&format!("DROP SCHEMA {} CASCADE", wh.quote(&schema)), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn mysql_full_fixture() {
    let Some(url) = mysql_url("mysql_full_fixture") else {
        return;
    };
    full_round_trip(&url, None).await;
}

#[tokio::test]
async fn real_column_types_per_dialect() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:///{}", dir.path().join("t.db").display());
    let mut dsns = vec![sqlite];
    dsns.extend(pg_url("real_column_types_per_dialect (postgres part)"));
    dsns.extend(mysql_url("real_column_types_per_dialect (mysql part)"));
    for dsn in dsns {
        let table = unique("dwh_types");
        load_fixture(
            home.path(),
            &dsn,
            &["--table-name", &table, "--nrows", "50"],
        );
        let t = declared_types(&dsn, &table).await;
        let d = Dsn::parse(&dsn).unwrap().engine;
        use xngin::dsn::Engine::*;
        let expect: &[(&str, &str)] = match d {
            Sqlite => &[
                ("id", "bigint"),
                ("gender", "text"),
                ("income", "real"),
                ("is_engaged", "boolean"),
                ("sample_date", "date"),
                ("sample_timestamp", "timestamp"),
            ],
            Postgres => &[
                ("id", "bigint"),
                ("gender", "character varying"),
                ("income", "double precision"),
                ("is_engaged", "boolean"),
                ("uuid_filter", "uuid"),
                ("sample_date", "date"),
                ("sample_timestamp", "timestamp without time zone"),
                ("timestamp_with_tz", "timestamp with time zone"),
            ],
            Mysql => &[
                ("id", "bigint(20)"),
                ("gender", "varchar(255)"),
                ("income", "double"),
                ("is_engaged", "tinyint(1)"),
                ("uuid_filter", "char(36)"),
                ("sample_date", "date"),
                ("sample_timestamp", "datetime(6)"),
                ("timestamp_with_tz", "timestamp(6)"),
            ],
            BigQuery => unreachable!("a SQL warehouse"),
        };
        for (col, want) in expect {
            let got = ty(&t, col);
            assert!(
                got == *want || (d == Mysql && *col == "id" && got == "bigint"),
                "{dsn} {col}: {got} != {want}"
            );
        }
        assert_eq!(
            count(
                &dsn,
                &Dsn::parse(&dsn).unwrap().dialect().quote_ident(&table)
            )
            .await,
            50
        );
    }
}

/// The bundled fixture's first `rows` rows as a CSV, with a non-numeric id on line `bad_line`
/// (the header is the testing warehouse's, so columns are typed, not inferred).
fn csv_with_bad_row(dir: &std::path::Path, rows: usize, bad_line: usize) -> std::path::PathBuf {
    let p = dir.join("bad.csv");
    let text = String::from_utf8(zstd::decode_all(xngin::testing_dwh::FIXTURE).unwrap()).unwrap();
    let mut f = std::fs::File::create(&p).unwrap();
    for (i, line) in text.lines().take(rows + 1).enumerate() {
        if i + 1 == bad_line {
            let rest = line.split_once(',').unwrap().1;
            writeln!(f, "oops,{rest}").unwrap();
        } else {
            writeln!(f, "{line}").unwrap();
        }
    }
    p
}

/// `--replace` swaps in the new table; when the load fails halfway the old table stays intact,
/// and no staging table is left behind.
async fn replace_is_atomic(dsn: &str) {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = unique("dwh_replace");
    let dialect = Dsn::parse(dsn).unwrap().dialect();
    let q = dialect.quote_ident(&table);
    load_fixture(home.path(), dsn, &["--table-name", &table, "--rows", "300"]);
    assert_eq!(count(dsn, &q).await, 300);

    // Without a flag: refused, exit 1, names both flags.
    let out = xngin(home.path())
        .args([
            "create-testing-dwh",
            "--dsn",
            dsn,
            "--table-name",
            &table,
            "--rows",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("already exists")
            && err.contains("--replace")
            && err.contains("--allow-existing"),
        "{err}"
    );

    // --allow-existing: nothing to do.
    let out = load_fixture(
        home.path(),
        dsn,
        &["--table-name", &table, "--rows", "10", "--allow-existing"],
    );
    assert_eq!(stdout(&out), "Table already exists; nothing to do.\n");
    assert_eq!(count(dsn, &q).await, 300);

    // A bad row far into a file (after several batches) fails the load: old table untouched.
    let bad = csv_with_bad_row(dir.path(), 5000, 4000);
    let out = xngin(home.path())
        .args([
            "create-testing-dwh",
            "--dsn",
            dsn,
            "--table-name",
            &table,
            "--replace",
            "--src",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 4000, column id: 'oops' is not a valid bigint"),
        "{err}"
    );
    assert_eq!(count(dsn, &q).await, 300);
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let leftovers = match dialect.engine() {
        xngin::dsn::Engine::Sqlite => wh.fetch_all("SELECT name FROM sqlite_master WHERE name LIKE '%xngin%'", &[]).await.unwrap(),
        xngin::dsn::Engine::Postgres => wh.fetch_all("SELECT tablename::text FROM pg_tables WHERE tablename LIKE $1", &[Value::Text(format!("{table}__xngin%"))]).await.unwrap(),
        xngin::dsn::Engine::Mysql => wh
            .fetch_all("SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = database() AND TABLE_NAME LIKE ?", &[Value::Text(format!("{table}__xngin%"))])
            .await
            .unwrap(),
        other => panic!("no staging-table query for {other:?}"),
    };
    assert!(
        leftovers.rows.is_empty(),
        "staging tables left: {:?}",
        leftovers.rows
    );

    // A good replace swaps in the new rows.
    let out = load_fixture(
        home.path(),
        dsn,
        &["--table-name", &table, "--rows", "1234", "--replace"],
    );
    assert_eq!(stdout(&out), format!("Loaded 1234 rows into {table}.\n"));
    assert_eq!(count(dsn, &q).await, 1234);
}

#[tokio::test]
async fn sqlite_replace_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    replace_is_atomic(&format!("sqlite:///{}", dir.path().join("r.db").display())).await;
}

#[tokio::test]
async fn postgres_replace_is_atomic() {
    let Some(url) = pg_url("postgres_replace_is_atomic") else {
        return;
    };
    replace_is_atomic(&url).await;
}

#[tokio::test]
async fn mysql_replace_is_atomic() {
    let Some(url) = mysql_url("mysql_replace_is_atomic") else {
        return;
    };
    replace_is_atomic(&url).await;
}

#[test]
fn password_is_never_printed() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the connection fails and the error names the DSN, redacted.
    for dsn in [
        "postgres://postgres:Sup3rS3cret@127.0.0.1:1/test",
        "mysql://root:Sup3rS3cret@127.0.0.1:1/test",
    ] {
        let out = xngin(home.path())
            .args(["create-testing-dwh", "--rows", "5", "--dsn", dsn])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("Sup3rS3cret"), "{all}");
        assert!(all.contains(":***@127.0.0.1:1/test"), "{all}");
        assert_eq!(all.lines().count(), 1, "one-line error: {all}");
    }
    // --password / PGPASSWORD are not echoed either, even in a malformed-DSN error.
    let out = xngin(home.path())
        .args([
            "create-testing-dwh",
            "--rows",
            "5",
            "--dsn",
            "postgres://postgres@127.0.0.1:1/test",
        ])
        .env("PGPASSWORD", "Env5ecret")
        .output()
        .unwrap();
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("Env5ecret"));
    let out = xngin(home.path())
        .args([
            "create-testing-dwh",
            "--dsn",
            "postgres://u:Sup3rS3cret@host:notaport/db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("Sup3rS3cret"), "{}", stderr(&out));
}

#[tokio::test]
async fn postgres_password_from_env_is_used_and_hidden() {
    let Some(url) = pg_url("postgres_password_from_env_is_used_and_hidden") else {
        return;
    };
    // Trust auth accepts any password; this checks the flag is accepted and never echoed.
    let home = tempfile::tempdir().unwrap();
    let table = unique("dwh_pw");
    let out = xngin(home.path())
        .args([
            "--echo-sql",
            "create-testing-dwh",
            "--rows",
            "3",
            "--table-name",
            &table,
            "--dsn",
            &url,
            "--password",
            "Fl4gS3cret",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("Fl4gS3cret"));
}

#[test]
fn unresponsive_host_times_out_instead_of_hanging() {
    // A listener that accepts and then never answers the protocol handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let home = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let out = xngin(home.path())
        .env("XNGIN_CONNECT_TIMEOUT", "2")
        .args([
            "create-testing-dwh",
            "--rows",
            "5",
            "--dsn",
            &format!("postgres://u:pw@127.0.0.1:{port}/db"),
        ])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to postgres://u:***@127.0.0.1"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed().as_secs() < 30);
}

fn run_err(home: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = xngin(home)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    (out.status.code(), stderr(&out))
}

#[test]
fn bad_inputs_have_one_line_errors_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:///{}", dir.path().join("x.db").display());
    let h = home.path();

    let (code, err) = run_err(h, &["create-testing-dwh", "--dsn", "not a dsn"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid DSN 'not a dsn'"), "{err}");
    let (code, err) = run_err(h, &["create-testing-dwh", "--dsn", "oracle://h/db"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown scheme 'oracle'"), "{err}");
    // A BigQuery DSN without a key anywhere: a runtime failure that says where to put one.
    let (code, err) = run_err(h, &["create-testing-dwh", "--dsn", "bigquery://proj/ds"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no BigQuery credentials"), "{err}");

    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--src",
            "/nonexistent/x.csv",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--src /nonexistent/x.csv: no such file"),
        "{err}"
    );
    let txt = dir.path().join("data.txt");
    std::fs::write(&txt, "a\n1\n").unwrap();
    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--src",
            txt.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("must end in .csv or .csv.zst"), "{err}");

    let corrupt = dir.path().join("c.csv.zst");
    let mut bytes = zstd::encode_all(&b"a,b\n1,2\n3,4\n"[..], 3).unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&corrupt, bytes).unwrap();
    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--src",
            corrupt.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("c.csv.zst") && err.lines().count() == 1,
        "{err}"
    );

    let ragged = dir.path().join("r.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3,4,5\n").unwrap();
    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--src",
            ragged.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("r.csv: line 3: 3 fields, but the header has 2"),
        "{err}"
    );

    let latin1 = dir.path().join("l.csv");
    std::fs::write(&latin1, b"a,b\n1,caf\xe9\n").unwrap();
    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--src",
            latin1.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("l.csv: line 2, field 2: not valid UTF-8"),
        "{err}"
    );

    for n in ["0", "-5", "ten"] {
        let (code, err) = run_err(h, &["create-testing-dwh", "--dsn", &db, "--rows", n]);
        assert_eq!(code, Some(2), "--rows {n}: {err}");
    }
    let (code, _) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--rows",
            "5",
            "--replace",
            "--allow-existing",
        ],
    );
    assert_eq!(code, Some(2));
    let (code, err) = run_err(
        h,
        &[
            "create-testing-dwh",
            "--dsn",
            &db,
            "--rows",
            "5",
            "--schema-name",
            "s",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("SQLite has no schemas"), "{err}");
    // Nothing was written by any of the failures above.
    assert!(
        !dir.path().join("x.db").exists() || {
            let out = xngin(h)
                .args(["create-testing-dwh", "--dsn", &db, "--rows", "1"])
                .output()
                .unwrap();
            out.status.success()
        }
    );
}

/// Hostile names are identifiers, never SQL: the table is created under that exact name and a
/// table called `y` survives.
async fn hostile_names(dsn: &str) {
    let home = tempfile::tempdir().unwrap();
    let victim = unique("y");
    load_fixture(home.path(), dsn, &["--table-name", &victim, "--rows", "2"]);
    let dialect = Dsn::parse(dsn).unwrap().dialect();
    for name in [
        format!("x; DROP TABLE {victim}"),
        "\"a\".\"b\"".to_string(),
        "we`ird'name".to_string(),
    ] {
        let name = format!("{name}{}", std::process::id());
        let out = load_fixture(home.path(), dsn, &["--table-name", &name, "--rows", "3"]);
        assert_eq!(stdout(&out), format!("Loaded 3 rows into {name}.\n"));
        assert_eq!(count(dsn, &dialect.quote_ident(&name)).await, 3);
    }
    assert_eq!(count(dsn, &dialect.quote_ident(&victim)).await, 2);
}

#[tokio::test]
async fn sqlite_hostile_table_names_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    hostile_names(&format!("sqlite:///{}", dir.path().join("h.db").display())).await;
}

#[tokio::test]
async fn postgres_hostile_table_names_are_quoted() {
    let Some(url) = pg_url("postgres_hostile_table_names_are_quoted") else {
        return;
    };
    hostile_names(&url).await;
}

#[tokio::test]
async fn mysql_hostile_table_names_are_quoted() {
    let Some(url) = mysql_url("mysql_hostile_table_names_are_quoted") else {
        return;
    };
    hostile_names(&url).await;
}

#[test]
fn export_csv_is_deterministic_and_loadable() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv.zst");
    let b = dir.path().join("b.csv.zst");
    for p in [&a, &b] {
        let out = xngin(home.path())
            .args([
                "create-testing-dwh",
                "--rows",
                "2000",
                "--seed",
                "7",
                "--export-csv",
            ])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // The first 2000 rows of the bundled fixture come from the same generator with seed 42.
    let c = dir.path().join("c.csv");
    xngin(home.path())
        .args([
            "create-testing-dwh",
            "--rows",
            "2000",
            "--seed",
            "42",
            "--export-csv",
        ])
        .arg(&c)
        .assert()
        .success();
    let fixture =
        String::from_utf8(zstd::decode_all(xngin::testing_dwh::FIXTURE).unwrap()).unwrap();
    let head: String = fixture
        .lines()
        .take(2001)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&c).unwrap(), head);
    // A load of the exported file gives the same rows as a direct load.
    let db = format!("sqlite:///{}", dir.path().join("d.db").display());
    load_fixture(
        home.path(),
        &db,
        &["--table-name", "from_csv", "--src", c.to_str().unwrap()],
    );
    load_fixture(
        home.path(),
        &db,
        &["--table-name", "direct", "--rows", "2000"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let wh = Warehouse::connect(&Dsn::parse(&db).unwrap()).await.unwrap();
        let diff = wh
            .fetch_all(
                "SELECT count(*) FROM (SELECT * FROM from_csv EXCEPT SELECT * FROM direct)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(diff.rows[0][0], Value::Int(0));
    });
}

#[tokio::test]
async fn embedded_default_is_built_once_and_rebuilt_when_stale() {
    use xngin::testing_dwh::{DEFAULT_TABLE, data_version, default_warehouse_at};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("testing_dwh.db");
    let dsn = default_warehouse_at(&path).await.unwrap();
    assert_eq!(dsn.sqlite_path(), Some(path.as_path()));
    let version = |dsn: Dsn| async move {
        let wh = Warehouse::connect(&dsn).await.unwrap();
        let v = wh.fetch_all("PRAGMA user_version", &[]).await.unwrap().rows[0][0]
            .as_i64()
            .unwrap();
        let n = wh
            .fetch_all(&format!("SELECT count(*) FROM {DEFAULT_TABLE}"), &[])
            .await
            .unwrap()
            .rows[0][0]
            .as_i64()
            .unwrap();
        wh.close().await;
        (v, n)
    };
    assert_eq!(version(dsn.clone()).await, (data_version(), 100_000));
    assert_eq!(
        db_aggregates(&dsn.to_string(), DEFAULT_TABLE).await,
        fixture_aggregates()
    );

    // Up to date: not rebuilt (the file is not touched).
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    default_warehouse_at(&path).await.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );

    // A stale data version (an older fixture) triggers a rebuild.
    let wh = Warehouse::connect(&dsn).await.unwrap();
    wh.execute("PRAGMA user_version = 7", &[]).await.unwrap();
    wh.execute(&format!("DELETE FROM {DEFAULT_TABLE} WHERE id > 10"), &[])
        .await
        .unwrap();
    wh.close().await;
    // What a killed build leaves (its pid cannot exist): removed by the next build.
    for leftover in [
        "testing_dwh.db.999999999.tmp",
        "testing_dwh.db.999999999.tmp-journal",
    ] {
        std::fs::write(dir.path().join(leftover), b"x").unwrap();
    }
    default_warehouse_at(&path).await.unwrap();
    assert_eq!(version(dsn).await, (data_version(), 100_000));
    // No temporary files are left next to it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("testing_dwh.db")]);
}

/// Streaming reads see every row once, in order, with typed values, on all three databases.
#[tokio::test]
async fn fetch_each_streams_rows() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut dsns = vec![format!("sqlite:///{}", dir.path().join("s.db").display())];
    dsns.extend(pg_url("fetch_each_streams_rows (postgres part)"));
    dsns.extend(mysql_url("fetch_each_streams_rows (mysql part)"));
    for dsn in dsns {
        let table = unique("dwh_stream");
        load_fixture(
            home.path(),
            &dsn,
            &["--table-name", &table, "--rows", "5000"],
        );
        let wh = Warehouse::connect(&Dsn::parse(&dsn).unwrap())
            .await
            .unwrap();
        let t = wh.quote(&table);
        let mut ids = Vec::new();
        let cols = wh
            .fetch_each(
                &format!(
                    "SELECT id, gender FROM {t} WHERE id > {} ORDER BY id",
                    wh.placeholder(1)
                ),
                &[Value::Int(10)],
                |row| {
                    ids.push(row[0].as_i64().unwrap());
                    Ok(())
                },
            )
            .await
            .unwrap();
        assert_eq!(cols, ["id", "gender"]);
        assert_eq!(ids, (11..=5000).collect::<Vec<i64>>(), "{dsn}");
        // An error from the callback stops the read and is returned.
        let mut seen = 0;
        let err = wh
            .fetch_each(&format!("SELECT id FROM {t}"), &[], |_| {
                seen += 1;
                if seen == 3 {
                    Err(xngin::Error::runtime("stop"))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap_err();
        assert_eq!((err.to_string().as_str(), seen), ("stop", 3));
    }
}

// ------------------------------------------------- staging tables, killed runs, connections

/// A legal 63-byte table name of multibyte characters (PostgreSQL's limit is in bytes).
fn multibyte_name() -> String {
    let name = format!(
        "{}_{:08}",
        "日".repeat(18),
        std::process::id() % 100_000_000
    );
    assert_eq!(name.len(), 63);
    name
}

async fn multibyte_63_byte_name_loads_and_replaces(dsn: &str) {
    let home = tempfile::tempdir().unwrap();
    let name = multibyte_name();
    let dialect = Dsn::parse(dsn).unwrap().dialect();
    load_fixture(home.path(), dsn, &["--table-name", &name, "--rows", "3"]);
    assert_eq!(count(dsn, &dialect.quote_ident(&name)).await, 3);
    load_fixture(
        home.path(),
        dsn,
        &["--table-name", &name, "--rows", "4", "--replace"],
    );
    assert_eq!(count(dsn, &dialect.quote_ident(&name)).await, 4);
    assert_eq!(staging_tables(dsn, &name).await, Vec::<String>::new());
    drop_table(dsn, &name).await.unwrap();
}

async fn drop_table(dsn: &str, name: &str) -> xngin::Result<u64> {
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let r = wh
        .execute(&format!("DROP TABLE IF EXISTS {}", wh.quote(name)), &[])
        .await;
    wh.close().await;
    r
}

/// Tables of the current database/schema whose name starts with `prefix` and carries the
/// staging mark.
async fn staging_tables(dsn: &str, prefix: &str) -> Vec<String> {
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    let sql = match wh.dialect().engine() {
        xngin::dsn::Engine::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        xngin::dsn::Engine::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
        }
        xngin::dsn::Engine::Mysql => {
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = database()"
        }
        other => panic!("staging_tables: no query for {other:?}"),
    };
    let rows = wh.fetch_all(sql, &[]).await.unwrap();
    wh.close().await;
    let mut names: Vec<String> = rows
        .rows
        .iter()
        .filter_map(|r| r[0].to_text())
        .filter(|n| n.starts_with(prefix) && n.contains("__xngin_"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn sqlite_multibyte_63_byte_table_name_loads_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    multibyte_63_byte_name_loads_and_replaces(&format!(
        "sqlite:///{}",
        dir.path().join("m.db").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_multibyte_63_byte_table_name_loads_and_replaces() {
    let Some(url) = pg_url("postgres_multibyte_63_byte_table_name_loads_and_replaces") else {
        return;
    };
    multibyte_63_byte_name_loads_and_replaces(&url).await;
}

#[tokio::test]
async fn mysql_multibyte_63_byte_table_name_loads_and_replaces() {
    let Some(url) = mysql_url("mysql_multibyte_63_byte_table_name_loads_and_replaces") else {
        return;
    };
    multibyte_63_byte_name_loads_and_replaces(&url).await;
}

#[tokio::test]
async fn mysql_abandoned_staging_tables_are_removed_but_not_a_live_runs() {
    let Some(url) = mysql_url("mysql_abandoned_staging_tables_are_removed_but_not_a_live_runs")
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let t = unique("stg");
    let pid = std::process::id();
    let dead = format!("{t}__xngin_{:08x}", pid);
    let dead_old = format!("{t}__xngin_old_{:08x}", pid ^ 0x1000_0000);
    let live = format!("{t}__xngin_{:08x}", pid ^ 0x2000_0000);
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    for n in [&dead, &dead_old, &live] {
        wh.execute(&format!("CREATE TABLE {} (x INTEGER)", wh.quote(n)), &[])
            .await
            .unwrap();
    }
    // A run in progress holds the lock of its staging table.
    let mut holder = wh.begin().await.unwrap();
    let lock = format!("xngin_staging_{:08x}", pid ^ 0x2000_0000);
    let got = holder
        .fetch_all("SELECT GET_LOCK(?, 0)", &[Value::Text(lock.clone())])
        .await
        .unwrap();
    assert_eq!(got.rows[0][0].as_i64(), Some(1));
    let out = load_fixture(home.path(), &url, &["--table-name", &t, "--rows", "3"]);
    assert!(
        stderr(&out).contains("removed") && stderr(&out).contains(&dead),
        "{}",
        stderr(&out)
    );
    assert_eq!(staging_tables(&url, &t).await, vec![live.clone()]);
    assert_eq!(count(&url, &wh.quote(&t)).await, 3);
    holder
        .fetch_all("SELECT RELEASE_LOCK(?)", &[Value::Text(lock)])
        .await
        .unwrap();
    holder.rollback().await.unwrap();
    // Once its run is gone, the next load removes it too.
    load_fixture(
        home.path(),
        &url,
        &["--table-name", &t, "--rows", "2", "--replace"],
    );
    assert_eq!(staging_tables(&url, &t).await, Vec::<String>::new());
    wh.execute(&format!("DROP TABLE {}", wh.quote(&t)), &[])
        .await
        .unwrap();
    wh.close().await;
}

/// `create-testing-dwh --replace` killed mid-load, several times: afterwards (on MySQL, after
/// the next run) no staging table is left and the table holds the last complete load.
async fn killed_loads_leave_no_staging_tables(dsn: &str) {
    let home = tempfile::tempdir().unwrap();
    let t = unique("kill");
    let dialect = Dsn::parse(dsn).unwrap().dialect();
    load_fixture(home.path(), dsn, &["--table-name", &t, "--rows", "5"]);
    let bin = assert_cmd::cargo::cargo_bin("xngin");
    let mut max_left = 0;
    for wait_ms in [300u64, 700, 1200] {
        let mut child = std::process::Command::new(&bin)
            .args([
                "create-testing-dwh",
                "--dsn",
                dsn,
                "--table-name",
                &t,
                "--rows",
                "400000",
                "--replace",
                "-q",
            ])
            .env("XNGIN_HOME", home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if finished {
            continue;
        }
        // Let the server notice the dropped connection.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let left = staging_tables(dsn, &t).await;
        if dialect.engine() != xngin::dsn::Engine::Mysql {
            assert_eq!(left, Vec::<String>::new(), "a transaction leaves nothing");
        }
        max_left = max_left.max(left.len());
        let n = count(dsn, &dialect.quote_ident(&t)).await;
        assert!(n == 5 || n == 400_000, "{n}");
    }
    eprintln!("killed loads left up to {max_left} staging table(s)");
    load_fixture(
        home.path(),
        dsn,
        &["--table-name", &t, "--rows", "6", "--replace"],
    );
    assert_eq!(
        staging_tables(dsn, &t).await,
        Vec::<String>::new(),
        "up to {max_left} were left"
    );
    assert_eq!(count(dsn, &dialect.quote_ident(&t)).await, 6);
    drop_table(dsn, &t).await.unwrap();
}

#[tokio::test]
async fn sqlite_killed_loads_leave_no_staging_tables() {
    let dir = tempfile::tempdir().unwrap();
    killed_loads_leave_no_staging_tables(&format!(
        "sqlite:///{}",
        dir.path().join("k.db").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_killed_loads_leave_no_staging_tables() {
    let Some(url) = pg_url("postgres_killed_loads_leave_no_staging_tables") else {
        return;
    };
    killed_loads_leave_no_staging_tables(&url).await;
}

#[tokio::test]
async fn mysql_killed_loads_leave_no_staging_tables() {
    let Some(url) = mysql_url("mysql_killed_loads_leave_no_staging_tables") else {
        return;
    };
    killed_loads_leave_no_staging_tables(&url).await;
}

#[test]
fn connect_timeout_values_that_are_not_seconds_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite:///{}", home.path().join("c.db").display());
    for v in ["inf", "1e20", "abc", "-1", "0", "NaN"] {
        let out = xngin(home.path())
            .env("XNGIN_CONNECT_TIMEOUT", v)
            .args(["create-testing-dwh", "--dsn", &dsn, "--rows", "2"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{v}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "XNGIN_CONNECT_TIMEOUT={v:?} is not a number of seconds"
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(stderr(&out).trim().lines().count(), 1);
    }
    let out = xngin(home.path())
        .env("XNGIN_CONNECT_TIMEOUT", "2.5")
        .args(["create-testing-dwh", "--dsn", &dsn, "--rows", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn refused_port_is_reported_at_once() {
    let home = tempfile::tempdir().unwrap();
    for dsn in ["postgres://u@127.0.0.1:1/db", "mysql://u@127.0.0.1:1/db"] {
        let start = std::time::Instant::now();
        let out = xngin(home.path())
            .env("XNGIN_CONNECT_TIMEOUT", "30")
            .args(["create-testing-dwh", "--dsn", dsn, "--rows", "2"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out).trim(),
            format!("xngin: cannot connect to {dsn}: connection refused")
        );
        assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    }
}

#[test]
fn postgres_dsn_on_a_mysql_port_gets_a_plain_message() {
    let Some(url) = mysql_url("postgres_dsn_on_a_mysql_port_gets_a_plain_message") else {
        return;
    };
    let my = Dsn::parse(&url).unwrap();
    let port = my.port.unwrap_or(3306);
    let dsn = format!(
        "postgres://u@{}:{port}/db",
        my.host.as_deref().unwrap_or("localhost")
    );
    let home = tempfile::tempdir().unwrap();
    let out = xngin(home.path())
        .env("XNGIN_CONNECT_TIMEOUT", "20")
        .args(["create-testing-dwh", "--dsn", &dsn, "--rows", "2"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the server did not answer as a PostgreSQL server (is the port {port} right?)"
        )),
        "{err}"
    );
    assert!(!err.contains("::") && !err.contains("sqlx"), "{err}");
}

/// Two loads of the same new table at once, without --replace: one loads it, the other is told
/// that another run holds the table (or, if it started after, that it exists), in one line.
async fn concurrent_loads(dsn: &str) {
    let home = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("xngin");
    let dialect = Dsn::parse(dsn).unwrap().dialect();
    for _ in 0..3 {
        let t = unique("race");
        let children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new(&bin)
                    .args([
                        "create-testing-dwh",
                        "--dsn",
                        dsn,
                        "--table-name",
                        &t,
                        "--rows",
                        "30000",
                        "-q",
                    ])
                    .env("XNGIN_HOME", home.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<std::process::Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let errs: Vec<String> = outs.iter().map(stderr).collect();
        assert_eq!(
            outs.iter().filter(|o| o.status.success()).count(),
            1,
            "{errs:?}"
        );
        for (o, err) in outs.iter().zip(&errs) {
            if !o.status.success() {
                assert_eq!(o.status.code(), Some(1), "{err}");
                assert!(
                    err.contains("another run") || err.contains("already exists; pass --replace"),
                    "{err}"
                );
                assert_eq!(err.trim().lines().count(), 1, "{err}");
            }
        }
        assert_eq!(count(dsn, &dialect.quote_ident(&t)).await, 30_000);
        assert_eq!(staging_tables(dsn, &t).await, Vec::<String>::new());
        drop_table(dsn, &t).await.unwrap();
    }
}

#[tokio::test]
async fn sqlite_concurrent_loads_loser_is_told_another_run_holds_the_table() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_loads(&format!("sqlite:///{}", dir.path().join("r.db").display())).await;
}

#[tokio::test]
async fn postgres_concurrent_loads_loser_is_told_another_run_holds_the_table() {
    let Some(url) = pg_url("postgres_concurrent_loads_loser_is_told_another_run_holds_the_table")
    else {
        return;
    };
    concurrent_loads(&url).await;
}

#[tokio::test]
async fn mysql_concurrent_loads_loser_is_told_another_run_holds_the_table() {
    let Some(url) = mysql_url("mysql_concurrent_loads_loser_is_told_another_run_holds_the_table")
    else {
        return;
    };
    concurrent_loads(&url).await;
}
