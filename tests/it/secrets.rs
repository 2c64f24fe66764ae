//! No secret is ever printed: a corpus of DSN and `${secret:NAME}` shapes (issue 9), each run
//! through every command that takes a DSN or settings, in every `--format` the command has and
//! with `--echo-sql`, searching stdout and stderr for the secret in every spelling (as written,
//! percent-encoded, decoded, JSON-escaped). Unreachable warehouses use 127.0.0.1:1; the local
//! PostgreSQL (which accepts any password) and MariaDB servers are used where a real connection
//! matters (XNGIN_TEST_POSTGRES_URL / XNGIN_TEST_MYSQL_URL; those shapes are skipped without).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// How a shape reaches the binary.
#[derive(Clone)]
enum Delivery {
    /// A DSN on the command line (`--dsn`, or the positional DSN), plus environment.
    Cli { dsn: String },
    /// A settings file whose datasource `dwh` is this JSON value; secrets come from the env.
    Settings { dwh: String },
}

#[derive(Clone)]
struct Shape {
    name: &'static str,
    delivery: Delivery,
    env: Vec<(String, String)>,
    /// Texts that must not appear (each also in its encoded / decoded spellings).
    secrets: Vec<String>,
    /// Needs the PostgreSQL / MariaDB test server.
    needs: Option<&'static str>,
    /// The connection must succeed (the shape is about what is printed on success).
    connects: bool,
}

fn cli(name: &'static str, dsn: &str, secrets: &[&str]) -> Shape {
    Shape {
        name,
        delivery: Delivery::Cli { dsn: dsn.into() },
        env: Vec::new(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        needs: None,
        connects: false,
    }
}

fn settings(name: &'static str, dwh: &str, env: &[(&str, &str)], secrets: &[&str]) -> Shape {
    Shape {
        name,
        delivery: Delivery::Settings { dwh: dwh.into() },
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        needs: None,
        connects: false,
    }
}

impl Shape {
    fn env(mut self, k: &str, v: &str) -> Shape {
        self.env.push((k.into(), v.into()));
        self
    }
    fn on(mut self, server: &'static str) -> Shape {
        self.needs = Some(server);
        self
    }
    fn connects(mut self) -> Shape {
        self.connects = true;
        self
    }
}

/// Every spelling of `s` that would give it away.
fn spellings(s: &str) -> Vec<String> {
    let enc = xngin::dsn::encode_component(s);
    let mut out = vec![
        s.to_string(),
        enc.clone(),
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
    ];
    let lower: String = {
        let mut o = String::new();
        let mut hex = 0;
        for c in enc.chars() {
            if c == '%' {
                hex = 2;
                o.push(c);
            } else if hex > 0 {
                hex -= 1;
                o.push(c.to_ascii_lowercase());
            } else {
                o.push(c);
            }
        }
        o
    };
    out.push(lower);
    let j = serde_json::to_string(s).unwrap();
    out.push(j[1..j.len() - 1].to_string());
    if let Ok(d) = urlencoding_decode(s) {
        out.push(d);
    }
    out.sort();
    out.dedup();
    out
}

/// `s` with its percent-escapes decoded (`+` kept), when that is UTF-8.
fn urlencoding_decode(s: &str) -> Result<String, ()> {
    let query = format!("k={}", s.replace('+', "%2B").replace('&', "%26"));
    url::form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or(())
}

/// The place where one shape runs: its settings file, input CSV and table names.
struct Stage {
    dir: tempfile::TempDir,
    home: PathBuf,
    table: String,
    assignments: String,
}

const SHEET: &str = include_str!("../../fixtures/testing_sheet.csv");

impl Stage {
    fn new(shape: &Shape, home: &Path) -> Stage {
        let dir = tempfile::tempdir().unwrap();
        let table = unique("sec_people");
        let assignments = unique("sec_asg");
        std::fs::write(dir.path().join("sheet.csv"), SHEET).unwrap();
        std::fs::write(dir.path().join("p.csv"), "id,g\n1,x\n2,y\n3,x\n4,y\n").unwrap();
        if let Delivery::Settings { dwh } = &shape.delivery {
            let text = format!(
                r#"{{"datasources": [{{"id": "ds", "config": {{"type": "remote", "dwh": {dwh},
  "participants": [{{"type": "sheet", "participant_type": "people", "table_name": "{table}",
    "sheet": {{"url": "file://{}", "worksheet": "people"}}}}]}}}}]}}
"#,
                dir.path().join("sheet.csv").display()
            );
            std::fs::write(dir.path().join("s.json"), text).unwrap();
        }
        Stage {
            dir,
            home: home.to_path_buf(),
            table,
            assignments,
        }
    }

    fn run(&self, shape: &Shape, args: &[&str]) -> (String, Output) {
        let mut c = xngin(&self.home);
        c.current_dir(self.dir.path())
            .env("XNGIN_CONNECT_TIMEOUT", "0.5")
            .arg("--echo-sql");
        if matches!(shape.delivery, Delivery::Settings { .. }) {
            c.arg("--settings").arg(self.dir.path().join("s.json"));
        }
        for (k, v) in &shape.env {
            c.env(k, v);
        }
        c.args(args);
        let out = c
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        (args.join(" "), out)
    }

    /// Every command and format this shape's delivery reaches.
    fn all_runs(&self, shape: &Shape) -> Vec<(String, Output)> {
        let t = self.table.as_str();
        let a = self.assignments.as_str();
        let mut runs = Vec::new();
        match &shape.delivery {
            Delivery::Cli { dsn } => {
                let d = dsn.as_str();
                runs.push(self.run(
                    shape,
                    &[
                        "create-testing-dwh",
                        "--dsn",
                        d,
                        "--table-name",
                        t,
                        "--rows",
                        "40",
                    ],
                ));
                for f in ["csv", "json", "table"] {
                    runs.push(self.run(shape, &["bootstrap-spreadsheet", d, t, "--format", f]));
                }
                for f in ["table", "json", "csv"] {
                    runs.push(self.run(
                        shape,
                        &[
                            "assign",
                            "--input",
                            "p.csv",
                            "--id-column",
                            "id",
                            "--arms",
                            "a,b",
                            "--seed",
                            "2",
                            "--experiment-id",
                            f,
                            "--write-table",
                            a,
                            "--dsn",
                            d,
                            "--format",
                            f,
                        ],
                    ));
                }
                for f in ["table", "json", "csv"] {
                    runs.push(self.run(
                        shape,
                        &[
                            "assignment",
                            "--experiment-id",
                            "json",
                            "--table",
                            a,
                            "--dsn",
                            d,
                            "--format",
                            f,
                            "1",
                            "2",
                        ],
                    ));
                }
            }
            Delivery::Settings { .. } => {
                for deep in [false, true] {
                    for f in ["text", "json"] {
                        let mut args = vec!["validate-settings", "--format", f, "s.json"];
                        if deep {
                            args.push("--deep");
                        }
                        runs.push(self.run(shape, &args));
                    }
                }
                for f in ["table", "json", "csv"] {
                    runs.push(self.run(
                        shape,
                        &["fields", "--participant-type", "people", "--format", f],
                    ));
                }
                for f in ["table", "json"] {
                    runs.push(self.run(
                        shape,
                        &[
                            "power",
                            "--participant-type",
                            "people",
                            "--metric",
                            "income=pct:0.1",
                            "--format",
                            f,
                        ],
                    ));
                }
                for f in ["table", "json", "csv"] {
                    runs.push(self.run(
                        shape,
                        &[
                            "assign",
                            "--participant-type",
                            "people",
                            "--arms",
                            "a,b",
                            "--seed",
                            "3",
                            "--experiment-id",
                            f,
                            "--write-table",
                            a,
                            "--format",
                            f,
                        ],
                    ));
                }
                for f in ["table", "json", "csv"] {
                    runs.push(self.run(
                        shape,
                        &[
                            "assignment",
                            "--participant-type",
                            "people",
                            "--experiment-id",
                            "json",
                            "--table",
                            a,
                            "--format",
                            f,
                            "1",
                            "2",
                        ],
                    ));
                }
            }
        }
        runs
    }
}

fn pg_dsn(password: &str) -> Option<String> {
    let url = std::env::var("XNGIN_TEST_POSTGRES_URL").ok()?;
    let mut u = url::Url::parse(&url).ok()?;
    u.set_password(Some(password)).ok()?;
    Some(u.to_string())
}

/// Host, port, user and database of the PostgreSQL test server.
fn pg_parts() -> Option<(String, u16, String, String)> {
    let url = std::env::var("XNGIN_TEST_POSTGRES_URL").ok()?;
    let u = url::Url::parse(&url).ok()?;
    Some((
        u.host_str()?.to_string(),
        u.port().unwrap_or(5432),
        u.username().to_string(),
        u.path().trim_start_matches('/').to_string(),
    ))
}

fn corpus() -> Vec<Shape> {
    let unreachable = |pw: &str| format!("postgres://u:{pw}@127.0.0.1:1/db");
    let mut v = vec![
        cli(
            "space in password",
            &unreachable("my SECRETsp1"),
            &["my SECRETsp1", "SECRETsp1"],
        ),
        cli(
            "tab in password",
            &unreachable("my\tSECRETtb1"),
            &["my\tSECRETtb1", "SECRETtb1"],
        ),
        cli(
            "raw @ in password",
            &unreachable("p@SECRETat1"),
            &["p@SECRETat1", "SECRETat1"],
        ),
        cli(
            "missing //",
            "postgres:/u:SECRETsl1@127.0.0.1/db",
            &["SECRETsl1"],
        ),
        cli(
            "missing :",
            "postgres//u:SECRETsl2@127.0.0.1/db",
            &["SECRETsl2"],
        ),
        cli("no scheme", "u:SECRETns1@127.0.0.1/db", &["SECRETns1"]),
        cli("two-character password", &unreachable("Zq"), &["Zq"]),
        cli("one-character password", &unreachable("%D0%96"), &["Ж"]),
        cli(
            "percent-encoded password",
            &unreachable("S%45CRETpe1"),
            &["SECRETpe1", "S%45CRETpe1"],
        ),
        cli(
            "encoded @ / ? in password",
            &unreachable("a%40b%2Fc%3FSECRETen1"),
            &["a@b/c?SECRETen1", "SECRETen1"],
        ),
        cli(
            "password with quotes and ;",
            &unreachable("%3B%27%22SECRETq1"),
            &[";'\"SECRETq1", "SECRETq1"],
        ),
        cli(
            "colons in password",
            "mariadb://u:a:b:SECRETco1@127.0.0.1:1/db",
            &["a:b:SECRETco1", "SECRETco1"],
        ),
        cli(
            "query password",
            "postgres://u@127.0.0.1:1/db?password=SECRETqp1",
            &["SECRETqp1"],
        ),
        cli(
            "forgotten @",
            "postgres://u:SECRETna1/127.0.0.1/db",
            &["SECRETna1"],
        ),
        cli(
            "invalid port",
            "postgres://u:SECRETip1@127.0.0.1:99999/db",
            &["SECRETip1"],
        ),
        cli(
            "broken IPv6",
            "postgres://u:SECRETv61@[::1/db",
            &["SECRETv61"],
        ),
        cli(
            "bad sslmode",
            "postgres://u:SECRETsm1@127.0.0.1:1/db?sslmode=bad",
            &["SECRETsm1"],
        ),
        cli(
            "unknown scheme",
            "oracle://u:SECRETor1@127.0.0.1/db",
            &["SECRETor1"],
        ),
        cli("bigquery", "bigquery://u:SECRETbq1@proj/ds", &["SECRETbq1"]),
        cli(
            "sqlite scheme with credentials",
            "sqlite://u:SECRETsq1@h/db",
            &["SECRETsq1"],
        ),
        cli(
            "redshift scheme",
            "redshift://u:SECRETrs1@127.0.0.1:1/dev",
            &["SECRETrs1"],
        ),
        cli(
            "mysql unreachable",
            "mysql://root:my-SECRETmy1@127.0.0.1:1/test",
            &["my-SECRETmy1"],
        ),
        cli("PGPASSWORD", "postgres://u@127.0.0.1:1/db", &["SECRETenv1"])
            .env("PGPASSWORD", "SECRETenv1"),
        settings(
            "settings URL literal password",
            r#""postgres://u:SECRETlit1@127.0.0.1:1/db""#,
            &[],
            &["SECRETlit1"],
        ),
        settings(
            "settings URL with a secret holding a space",
            r#""postgres://u:${secret:XS_PW}@127.0.0.1:1/db""#,
            &[("XS_PW", "my SECRETss1")],
            &["my SECRETss1", "SECRETss1"],
        ),
        settings(
            "settings URL with a percent-encoded secret",
            r#""postgres://u:${secret:XS_PW}@127.0.0.1:1/db""#,
            &[("XS_PW", "S%45CRETps1")],
            &["S%45CRETps1", "SECRETps1"],
        ),
        settings(
            "settings URL whole from a secret",
            r#""${secret:XS_URL}""#,
            &[("XS_URL", "postgres://u:SECRETwu1@127.0.0.1:1/db")],
            &["SECRETwu1"],
        ),
        settings(
            "settings URL whole from a secret, missing //",
            r#""${secret:XS_URL}""#,
            &[("XS_URL", "postgres:/u:SECRETwm1@127.0.0.1/db")],
            &["SECRETwm1"],
        ),
        settings(
            "settings DSN object with a hostile host secret",
            r#"{"driver": "postgresql+psycopg", "host": "${secret:XS_HOST}", "user": "u", "password": "", "dbname": "db"}"#,
            &[("XS_HOST", "SECRETho1/zz@127.0.0.1")],
            &["SECRETho1/zz@127.0.0.1", "SECRETho1"],
        ),
        settings(
            "settings DSN object with a short password",
            r#"{"driver": "postgresql", "host": "127.0.0.1", "port": 1031, "user": "u", "password": "${secret:XS_PW}", "dbname": "db"}"#,
            &[("XS_PW", "Zp")],
            &["Zp"],
        ),
        settings(
            "settings DSN object with : and @ in the password",
            r#"{"driver": "mysql", "host": "127.0.0.1", "port": 1031, "user": "u", "password": "${secret:XS_PW}", "dbname": "db"}"#,
            &[("XS_PW", "a:b@SECRETcp1")],
            &["a:b@SECRETcp1", "SECRETcp1"],
        ),
    ];
    if let Some(d) = pg_dsn("pg-SECRETok1") {
        v.push(
            cli(
                "real PostgreSQL, password in the DSN",
                &d,
                &["pg-SECRETok1"],
            )
            .on("pg")
            .connects(),
        );
    }
    if let Some(d) = pg_dsn("") {
        v.push(
            cli("real PostgreSQL, PGPASSWORD", &d, &["pg-SECRETenv2"])
                .env("PGPASSWORD", "pg-SECRETenv2")
                .on("pg")
                .connects(),
        );
    }
    if let Ok(my) = std::env::var("XNGIN_TEST_MYSQL_URL") {
        let mut u = url::Url::parse(&my).unwrap();
        u.set_password(Some("SECRETmyd1")).unwrap();
        v.push(cli("real MariaDB, wrong password", u.as_str(), &["SECRETmyd1"]).on("mysql"));
        let host = u.host_str().unwrap().to_string();
        let port = u.port().unwrap_or(3306);
        v.push(
            settings(
                "settings MariaDB object, wrong password from a secret",
                &format!(
                    r#"{{"driver": "mariadb", "host": "{host}", "port": {port}, "user": "root", "password": "${{secret:XS_PW}}", "dbname": "test"}}"#
                ),
                &[("XS_PW", "SECRET myo1@/")],
                &["SECRET myo1@/", "SECRET myo1"],
            )
            .on("mysql"),
        );
    }
    if let Some((host, port, user, db)) = pg_parts() {
        v.push(
            settings(
                "settings URL secret that tries to change the host",
                &format!(
                    r#""postgres://{user}:${{secret:XS_PW}}@{host}:{port}/{db}?sslmode=disable""#
                ),
                &[("XS_PW", "SECRETpart1/zz@127.0.0.1:1/x?y")],
                &["SECRETpart1/zz@127.0.0.1:1/x?y", "SECRETpart1"],
            )
            .on("pg")
            .connects(),
        );
        v.push(
            settings(
                "settings DSN object, password from a secret",
                &format!(
                    r#"{{"driver": "postgresql+psycopg", "host": "{host}", "port": {port}, "user": "{user}", "password": "${{secret:XS_PW}}", "dbname": "{db}", "sslmode": "disable"}}"#
                ),
                &[("XS_PW", "SECRETobj1 pw@/?")],
                &["SECRETobj1 pw@/?", "SECRETobj1"],
            )
            .on("pg")
            .connects(),
        );
        v.push(
            settings(
                "settings DSN object, host from a secret",
                &format!(
                    r#"{{"driver": "postgresql", "host": "${{secret:XS_HOST}}", "port": {port}, "user": "{user}", "password": "", "dbname": "{db}", "sslmode": "disable"}}"#
                ),
                &[("XS_HOST", &host)],
                &[&host],
            )
            .on("pg")
            .connects(),
        );
    }
    v
}

/// Create the settings shapes' table on the PostgreSQL test server (the CLI shapes create their
/// own with `create-testing-dwh`).
fn prepare(shape: &Shape, stage: &Stage) {
    if matches!(shape.delivery, Delivery::Settings { .. }) && shape.connects {
        let url = std::env::var("XNGIN_TEST_POSTGRES_URL").unwrap();
        let out = xngin(&stage.home)
            .args([
                "create-testing-dwh",
                "--dsn",
                &url,
                "--table-name",
                &stage.table,
                "--rows",
                "40",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

async fn cleanup(tables: &[String]) {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        return;
    };
    let wh = xngin::warehouse::Warehouse::connect(&xngin::dsn::Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    for t in tables {
        let _ = wh
            .execute(&format!("DROP TABLE IF EXISTS {}", wh.quote(t)), &[])
            .await;
    }
    wh.close().await;
}

/// Run every shape; returns (shape name, command, what leaked) for each leak, and the tables
/// made on the PostgreSQL server.
fn run_corpus(shapes: &[Shape]) -> (Vec<String>, Vec<String>, usize) {
    let home = shared_home();
    let have = |s: &Shape| match s.needs {
        Some("pg") => std::env::var("XNGIN_TEST_POSTGRES_URL").is_ok(),
        Some("mysql") => std::env::var("XNGIN_TEST_MYSQL_URL").is_ok(),
        _ => true,
    };
    let shapes: Vec<&Shape> = shapes.iter().filter(|s| have(s)).collect();
    let problems = std::sync::Mutex::new(Vec::new());
    let tables = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let count = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(shape) = shapes.get(i) else { break };
                    let stage = Stage::new(shape, &home);
                    prepare(shape, &stage);
                    let runs = stage.all_runs(shape);
                    count.fetch_add(runs.len(), std::sync::atomic::Ordering::Relaxed);
                    tables
                        .lock()
                        .unwrap()
                        .extend([stage.table.clone(), stage.assignments.clone()]);
                    let mut found = Vec::new();
                    for (cmd, out) in &runs {
                        let text = format!("{}\n{}", stdout(out), stderr(out));
                        for secret in &shape.secrets {
                            for s in spellings(secret) {
                                if text.contains(&s) {
                                    found.push(format!(
                                        "{}: `{cmd}` printed {s:?}:\n{text}",
                                        shape.name
                                    ));
                                }
                            }
                        }
                        if text.contains("panicked") {
                            found.push(format!("{}: `{cmd}` panicked:\n{text}", shape.name));
                        }
                    }
                    if shape.connects {
                        // The warehouse was reached: the command that reads it succeeded.
                        let reader = match shape.delivery {
                            Delivery::Cli { .. } => "bootstrap-spreadsheet",
                            Delivery::Settings { .. } => "fields",
                        };
                        for (cmd, out) in runs.iter().filter(|(c, _)| c.starts_with(reader)) {
                            if !out.status.success() {
                                found.push(format!(
                                    "{}: `{cmd}` did not connect:\n{}",
                                    shape.name,
                                    stderr(out)
                                ));
                            }
                        }
                    }
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    (
        problems.into_inner().unwrap(),
        tables.into_inner().unwrap(),
        count.into_inner(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_is_printed_by_any_command_in_any_format() {
    let shapes = corpus();
    assert!(shapes.len() >= 30, "only {} shapes", shapes.len());
    let started = std::time::Instant::now();
    let n_shapes = shapes.len();
    let (problems, tables, runs) = tokio::task::spawn_blocking(move || run_corpus(&shapes))
        .await
        .unwrap();
    cleanup(&tables).await;
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    eprintln!(
        "secret corpus: {n_shapes} shapes, {runs} runs, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One command with `args` (and `env`), for the named cases below.
fn one(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = xngin(&shared_home());
    c.env("XNGIN_CONNECT_TIMEOUT", "0.5")
        .arg("--echo-sql")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.code().unwrap_or(-1), text)
}

fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        for s in spellings(secret) {
            assert!(!text.contains(&s), "printed {s:?}:\n{text}");
        }
    }
}

#[test]
fn space_or_tab_in_password_is_not_printed() {
    for dsn in [
        "postgres://u:my SECRETsp9@127.0.0.1:99999/db",
        "postgres://u:my\tSECRETsp9@127.0.0.1:99999/db",
    ] {
        let (code, text) = one(&["bootstrap-spreadsheet", dsn, "t"], &[]);
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains("invalid DSN 'postgres://u:***@127.0.0.1:99999/db'"),
            "{text}"
        );
        assert_hidden(&text, &["SECRETsp9"]);
    }
}

#[test]
fn raw_at_in_password_is_not_printed() {
    let (code, text) = one(
        &[
            "bootstrap-spreadsheet",
            "postgres://u:p@SECRETat9@127.0.0.1:1/db",
            "t",
        ],
        &[],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cannot connect to postgres://u:***@127.0.0.1:1/db"),
        "{text}"
    );
    assert_hidden(&text, &["p@SECRETat9", "SECRETat9"]);
}

/// `postgres:/u:pw@host/db` used to connect to the local socket with the password in the
/// database name: it is refused (exit 2) before any connection.
#[test]
fn dsn_without_double_slash_is_refused_before_connecting() {
    let (code, text) = one(
        &[
            "create-testing-dwh",
            "--dsn",
            "postgres:/u:SECRETsl9@127.0.0.1/db",
        ],
        &[],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("invalid DSN 'postgres:***@127.0.0.1/db': expected '//' after 'postgres:'"),
        "{text}"
    );
    assert!(!text.contains("-- sql:"), "{text}");
    assert_hidden(&text, &["SECRETsl9"]);
}

#[test]
fn dsn_typos_that_drop_the_scheme_separator_are_not_echoed() {
    for dsn in [
        "u:SECRETty9",
        "postgres//u:SECRETty9@h/db",
        "u:SECRETty9@h/db",
        "postgres://u:SECRETty9/h/db",
    ] {
        let (code, text) = one(
            &[
                "assignment",
                "--experiment-id",
                "e",
                "--table",
                "t",
                "--dsn",
                dsn,
                "1",
            ],
            &[],
        );
        assert_eq!(code, 2, "{dsn}: {text}");
        assert_hidden(&text, &["SECRETty9"]);
    }
}

#[test]
fn passwords_shorter_than_three_characters_are_not_printed() {
    for (dsn, secret) in [
        ("postgres://u:Zq@127.0.0.1:1/db", "Zq"),
        ("postgres://u:%D0%96@127.0.0.1:1/db", "Ж"),
        ("postgres://u:Zq@127.0.0.1:99999/db", "Zq"),
        ("postgres:/u:Zq@127.0.0.1/db", "Zq"),
    ] {
        let (code, text) = one(
            &["bootstrap-spreadsheet", dsn, "t", "--format", "json"],
            &[],
        );
        assert_ne!(code, 0, "{text}");
        assert_hidden(&text, &[secret]);
    }
}

#[test]
fn percent_encoded_password_is_printed_neither_decoded_nor_encoded() {
    for dsn in [
        "postgres://u:S%45CRETpe9@127.0.0.1:1/db",
        "postgres://u:S%45CRETpe9@127.0.0.1:99999/db",
        "mysql://u:S%45CRETpe9@127.0.0.1:1/db",
    ] {
        let (code, text) = one(&["create-testing-dwh", "--dsn", dsn], &[]);
        assert_ne!(code, 0, "{text}");
        assert_hidden(&text, &["S%45CRETpe9", "SECRETpe9"]);
    }
}

fn settings_file(dir: &Path, dwh: &str) -> PathBuf {
    let text = format!(
        r#"{{"datasources": [{{"id": "ds", "config": {{"type": "remote", "dwh": {dwh},
  "participants": [{{"type": "schema", "participant_type": "people", "table_name": "people",
    "fields": [{{"field_name": "id", "data_type": "bigint", "is_unique_id": true}}]}}]}}}}]}}
"#
    );
    let p = dir.join("s.json");
    std::fs::write(&p, text).unwrap();
    p
}

/// A `${secret:NAME}` pasted into a settings URL is one URL component: a password that holds
/// `/zz@127.0.0.1:1` neither shows parts of itself nor sends the connection elsewhere.
#[test]
fn secret_in_settings_url_cannot_change_the_host() {
    let Some((host, port, user, db)) = pg_parts() else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = settings_file(
        dir.path(),
        &format!(r#""postgres://{user}:${{secret:XS_PW9}}@{host}:{port}/{db}?sslmode=disable""#),
    );
    let s = s.to_str().unwrap();
    let env = [("XS_PW9", "SECRETpart9/zz@127.0.0.1:1/x?y")];
    let (code, text) = one(&["validate-settings", "--deep", s], &env);
    // Connected to the real server (the table `people` is missing there: exit 3, not 1).
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("table 'people' does not exist"), "{text}");
    assert_hidden(&text, &["SECRETpart9/zz@127.0.0.1:1/x?y", "SECRETpart9"]);
}

/// A host from a secret is one host: `/`, `@`, `?` and spaces are refused (exit 3) without
/// showing the value.
#[test]
fn secret_host_with_url_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_file(
        dir.path(),
        r#"{"driver": "postgresql", "host": "${secret:XS_HOST9}", "user": "u", "password": "", "dbname": "d"}"#,
    );
    let s = s.to_str().unwrap();
    for host in [
        "SECREThost9/zz@127.0.0.1",
        "/var/run/SECREThost9",
        "SECREThost9 x",
    ] {
        let env = [("XS_HOST9", host)];
        let (code, text) = one(
            &["--settings", s, "fields", "--participant-type", "people"],
            &env,
        );
        assert_eq!(code, 3, "{text}");
        assert!(
            text.contains("the host is not a host name or an IP address"),
            "{text}"
        );
        assert_hidden(&text, &[host, "SECREThost9"]);
        let (code, text) = one(
            &["validate-settings", "--deep", "--format", "json", s],
            &env,
        );
        assert_eq!(code, 3, "{text}");
        assert!(text.contains("datasources.0.config.dwh"), "{text}");
        assert_hidden(&text, &[host, "SECREThost9"]);
    }
}

/// A written host that is not one host (`h:5432`, `u@h`, `/socket/dir`) is a validation error
/// located at the host, without --deep.
#[test]
fn settings_host_that_is_not_one_host_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    for host in [
        "db.example.org:5432",
        "u@db.example.org",
        "/var/run/postgresql",
    ] {
        let s = settings_file(
            dir.path(),
            &format!(
                r#"{{"driver": "postgresql", "host": "{host}", "user": "u", "password": "", "dbname": "d"}}"#
            ),
        );
        let (code, text) = one(&["validate-settings", s.to_str().unwrap()], &[]);
        assert_eq!(code, 3, "{text}");
        assert!(
            text.contains(
                ":1:100: datasources.0.config.dwh.host: the host is not a host name or an IP address"
            ),
            "{text}"
        );
    }
}

/// Known secret values are masked by value, not only by URL shape: a host that came from a
/// secret does not appear even where it is printed as a plain host.
#[test]
fn secret_values_are_masked_wherever_they_would_be_printed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_file(
        dir.path(),
        r#"{"driver": "postgresql", "host": "${secret:XS_HOST8}", "port": 1031, "user": "u", "password": "", "dbname": "d"}"#,
    );
    let s = s.to_str().unwrap();
    let env = [("XS_HOST8", "secret-host-8.invalid")];
    let (code, text) = one(
        &["--settings", s, "fields", "--participant-type", "people"],
        &env,
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cannot connect to postgres://u@***:1031/d"),
        "{text}"
    );
    assert_hidden(&text, &["secret-host-8.invalid"]);
}
