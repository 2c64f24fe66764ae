//! Settings: the bad-input corpus (exact `FILE:LINE:COL: path: message` lines, exit 3, no secret
//! ever printed), the examples, JSON Schemas, participant-type resolution, and `--deep` against
//! SQLite, PostgreSQL and MariaDB (renamed column, missing table, incompatible type).

use crate::common;
use common::unique;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use xngin::dsn::Dsn;
use xngin::settings::{self, locate::Syntax};
use xngin::warehouse::{ConnectOptions, Warehouse};

const CORPUS: &str = "tests/settings_corpus";
/// Plain-text passwords in corpus files; they must never appear in any output.
const CORPUS_PASSWORD: &str = "hunter2-do-not-print";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn read_env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every corpus case: the exact lines, exit 3, the JSON report carrying the same problems,
/// and no secret (plain password or resolved `${secret:...}`) anywhere in the output.
#[test]
fn corpus_cases_give_their_exact_errors() {
    let dir = root().join(CORPUS);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json") | Some("toml")
            )
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} corpus cases", cases.len());
    let (mut json, mut toml) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".json") {
            json += 1;
        } else {
            toml += 1;
        }
        let stem = case.with_extension("");
        let expected = std::fs::read_to_string(stem.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name}: missing .expected file"));
        let args: Vec<String> = std::fs::read_to_string(stem.with_extension("args"))
            .map(|a| a.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let env = read_env_file(&stem.with_extension("env"));
        let mut secrets: Vec<String> = env
            .iter()
            .filter(|(k, _)| k != "XNGIN_SECRETS_SOURCE")
            .map(|(_, v)| v.clone())
            .collect();
        secrets.push(CORPUS_PASSWORD.to_string());

        for format in ["text", "json"] {
            let mut cmd = xngin();
            cmd.current_dir(&dir)
                .arg("validate-settings")
                .args(&args)
                .args(["--format", format])
                .arg(&name);
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let out = run(&mut cmd);
            assert_eq!(
                out.code, 3,
                "{name} ({format}): exit code\n{}{}",
                out.stdout, out.stderr
            );
            for s in &secrets {
                assert!(
                    !out.stdout.contains(s.as_str()) && !out.stderr.contains(s.as_str()),
                    "{name}: printed a secret"
                );
            }
            if format == "text" {
                assert_eq!(out.stdout, "", "{name}: stdout must be empty");
                assert_eq!(out.stderr, expected, "{name}: error lines");
                for line in out.stderr.lines() {
                    let prefix = format!("{name}:");
                    assert!(line.starts_with(&prefix), "{name}: {line}");
                    let mut parts = line[prefix.len()..].splitn(3, ':');
                    let l: usize = parts.next().unwrap().parse().unwrap();
                    let c: usize = parts.next().unwrap().parse().unwrap();
                    assert!(l >= 1 && c >= 1, "{line}");
                }
            } else {
                assert_eq!(out.stderr, "", "{name}: json mode writes nothing on stderr");
                let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                assert_eq!(report["valid"], false);
                let lines: Vec<String> = report["files"][0]["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        let path = d["path"].as_str().unwrap();
                        let path = if path.is_empty() {
                            String::new()
                        } else {
                            format!("{path}: ")
                        };
                        format!(
                            "{}:{}:{}: {path}{}",
                            d["file"].as_str().unwrap(),
                            d["line"],
                            d["column"],
                            d["message"].as_str().unwrap()
                        )
                    })
                    .collect();
                assert_eq!(lines.join("\n") + "\n", expected, "{name}: json report");
            }
        }
    }
    assert!(json >= 10 && toml >= 10, "json {json}, toml {toml}");
}

/// All corpus files at once: every file is reported, in order, and the exit code is 3.
#[test]
fn several_files_in_one_run() {
    let dir = root().join(CORPUS);
    let out = run(xngin().current_dir(&dir).args([
        "validate-settings",
        "07-port-too-large.json",
        "../../examples/tenant.settings.toml",
        "42-toml-bad-sslmode.toml",
    ]));
    assert_eq!(out.code, 3);
    let expected = std::fs::read_to_string(dir.join("07-port-too-large.expected")).unwrap()
        + &std::fs::read_to_string(dir.join("42-toml-bad-sslmode.expected")).unwrap();
    assert_eq!(out.stderr, expected);
    // An unreadable file is a runtime failure (exit 1), reported with the rest.
    let out = run(xngin().current_dir(&dir).args([
        "validate-settings",
        "07-port-too-large.json",
        "missing.json",
    ]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("missing.json: no such file or directory"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("07-port-too-large.json:10:19:"),
        "{}",
        out.stderr
    );
}

#[test]
fn examples_validate_silently_and_carry_the_same_model() {
    let out = run(xngin().current_dir(root()).args([
        "validate-settings",
        "examples/tenant.settings.json",
        "examples/tenant.settings.toml",
    ]));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    let j = settings::check_file(&root().join("examples/tenant.settings.json"), false).unwrap();
    let t = settings::check_file(&root().join("examples/tenant.settings.toml"), false).unwrap();
    assert_eq!(j.syntax, Syntax::Json);
    assert_eq!(t.syntax, Syntax::Toml);
    let (j, t) = (j.settings.unwrap(), t.settings.unwrap());
    assert_eq!(j, t);
    assert_eq!(j.datasources[0].config.participants().len(), 2);
    // JSON report of valid files.
    let out = run(xngin().current_dir(root()).args([
        "validate-settings",
        "--format",
        "json",
        "examples/tenant.settings.json",
    ]));
    assert_eq!(out.code, 0);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["valid"], true);
    assert_eq!(r["files"][0]["format"], "json");
}

/// The same settings parse identically whichever key order, spelling (`client_configs`,
/// `column_name`) or syntax they use.
#[test]
fn older_spellings_are_accepted() {
    let text = r#"{"client_configs": [{"id": "t", "config": {"type": "sqlite_local",
        "sqlite_filename": "x.db", "participants": [{"participant_type": "p", "table_name": "p",
        "sheet": {"url": "file://s.csv", "worksheet": "p"}}, {"type": "schema", "participant_type": "q",
        "table_name": "q", "fields": [{"column_name": "id", "data_type": "integer", "is_unique_id": true}]}]}}],
        "trusted_ips": ["1.2.3.4"], "db_connect_timeout_secs": 3}"#;
    let c = settings::check_text("x.json", text, Syntax::Json, None);
    assert!(c.is_valid(), "{:?}", c.diagnostics);
    let s = c.settings.unwrap();
    assert_eq!(s.datasources[0].id, "t");
    assert_eq!(
        s.datasources[0].config.participants()[1].participant_type(),
        "q"
    );
}

#[test]
fn export_json_schemas_writes_sorted_strict_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(xngin().current_dir(dir.path()).args([
        "export-json-schemas",
        "--output",
        "out/schemas",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Wrote out/schemas/XnginSettings.schema.json.\nWrote out/schemas/ConfigWorksheet.schema.json.\n"
    );
    let text =
        std::fs::read_to_string(dir.path().join("out/schemas/XnginSettings.schema.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // 2-space indent and sorted keys: re-rendering gives the same bytes.
    assert!(text.starts_with("{\n  \"$defs\""), "{}", &text[..40]);
    assert_eq!(
        serde_json::to_string_pretty(&sort(&v)).unwrap() + "\n",
        text
    );
    // Every object schema forbids unknown keys.
    let mut objects = 0;
    walk(&v, &mut |o| {
        if o.get("properties").is_some() && o.get("type") == Some(&serde_json::json!("object")) {
            objects += 1;
            assert_eq!(
                o.get("additionalProperties"),
                Some(&serde_json::Value::Bool(false)),
                "{o:?}"
            );
        }
    });
    assert!(objects >= 10, "{objects}");
    let defs = &v["$defs"];
    assert_eq!(defs["DsnConfig"]["properties"]["port"]["minimum"], 1024);
    assert_eq!(defs["DsnConfig"]["properties"]["port"]["maximum"], 65535);
    let ssl = serde_json::to_string(&defs["SslMode"]).unwrap();
    assert!(
        ssl.contains("verify-full") && ssl.contains("disable"),
        "{ssl}"
    );
    assert_eq!(
        defs["BqDsn"]["properties"]["project_id"]["pattern"],
        "^[a-z0-9-]+$"
    );
    // The older names are allowed, exactly one of each pair.
    assert!(v["properties"].get("client_configs").is_some());
    assert!(
        defs["ColumnDescriptor"]["properties"]
            .get("field_name")
            .is_some()
    );
    assert_eq!(
        defs["WebhookCommonHeaders"]["required"],
        serde_json::json!(["authorization"])
    );
    let ws: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/schemas/ConfigWorksheet.schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(ws["properties"].get("fields").is_some() && ws["properties"].get("columns").is_some());
}

fn sort(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let b: BTreeMap<&String, serde_json::Value> =
                m.iter().map(|(k, v)| (k, sort(v))).collect();
            serde_json::Value::Object(b.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
        other => other.clone(),
    }
}

fn walk(v: &serde_json::Value, f: &mut dyn FnMut(&serde_json::Map<String, serde_json::Value>)) {
    match v {
        serde_json::Value::Object(m) => {
            f(m);
            m.values().for_each(|x| walk(x, f));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

const SHEET_CSV: &str =
    "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric
id,integer,,Student id,true,,,
name,character varying,,Name,,,,
grade_level,integer,,Grade,,true,true,
enrolled_on,date,,Enrolment date,,,true,
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn resolve_participants_through_settings() {
    let dir = tempfile::tempdir().unwrap();
    let sheet = write(dir.path(), "students.csv", SHEET_CSV);
    let settings = format!(
        r#"[[datasources]]
id = "school-a"
[datasources.config]
type = "sqlite_local"
sqlite_filename = "{db}"
[[datasources.config.participants]]
participant_type = "Students"
table_name = "students"
sheet = {{ url = "file://{sheet}", worksheet = "students" }}
[[datasources.config.participants]]
type = "schema"
participant_type = "schools"
table_name = "schools"
fields = [{{ field_name = "school_id", data_type = "bigint", is_unique_id = true }}]

[[datasources]]
id = "school-b"
[datasources.config]
type = "remote"
dwh = {{ driver = "postgresql+psycopg", host = "db.example.org", user = "u", password = "${{secret:XNGIN_T_RESOLVE_PW}}", dbname = "d" }}
participants = []
"#,
        db = dir.path().join("a.db").display(),
        sheet = sheet.display()
    );
    let path = write(dir.path(), "t.settings.toml", &settings);
    // Case-insensitive lookup; the sheet is read.
    let r = settings::resolve_participants(Some(&path), Some("school-a"), "students")
        .await
        .unwrap();
    assert_eq!(r.participant_type, "Students");
    assert_eq!(r.table_name, "students");
    assert_eq!(r.sheet.unique_id().unwrap().column_name, "id");
    assert_eq!(r.dsn.sqlite_path(), Some(dir.path().join("a.db").as_path()));
    let r = settings::resolve_participants(Some(&path), Some("school-a"), "SCHOOLS")
        .await
        .unwrap();
    assert_eq!(r.sheet.columns.len(), 1);
    // Two datasources: --datasource is required, and the message lists them.
    let e = settings::resolve_participants(Some(&path), None, "students")
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains("has 2 datasources (school-a, school-b)"),
        "{e}"
    );
    let e = settings::resolve_participants(Some(&path), Some("nope"), "students")
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains("known datasources: school-a, school-b"),
        "{e}"
    );
    let e = settings::resolve_participants(Some(&path), Some("school-a"), "teachers")
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains("known participant types: Students, schools"),
        "{e}"
    );
    // Secrets are resolved for the chosen datasource's DSN only (school-a did not need
    // school-b's); a missing one is an error naming it, located in the file.
    let e = settings::resolve_participants(Some(&path), Some("school-b"), "x")
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains("t.settings.toml:20:88: datasources.1.config.dwh.password: "),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("Secret \"XNGIN_T_RESOLVE_PW\" could not be found"),
        "{e}"
    );
}

#[test]
fn default_settings_file_and_builtin_default() {
    let dir = tempfile::tempdir().unwrap();
    // No settings file: the built-in default knows only `testing` / `test_participant_type`.
    let out = run(xngin()
        .current_dir(dir.path())
        .args(["fields", "--participant-type", "people"]));
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("known participant types: test_participant_type"),
        "{}",
        out.stderr
    );
    let out = run(xngin().current_dir(dir.path()).args([
        "--datasource",
        "prod",
        "fields",
        "--participant-type",
        "test_participant_type",
    ]));
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("known datasources: testing"),
        "{}",
        out.stderr
    );
    // xngin.settings.toml in the working directory is picked up.
    write(dir.path(), "s.csv", SHEET_CSV);
    write(
        dir.path(),
        "xngin.settings.toml",
        "[[datasources]]\nid = \"local\"\n[datasources.config]\ntype = \"sqlite_local\"\nsqlite_filename = \"none.db\"\n\
         [[datasources.config.participants]]\nparticipant_type = \"students\"\ntable_name = \"students\"\n\
         sheet = { url = \"s.csv\", worksheet = \"students\" }\n",
    );
    let out =
        run(xngin()
            .current_dir(dir.path())
            .args(["fields", "--participant-type", "teachers"]));
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("datasource 'local'; known participant types: students"),
        "{}",
        out.stderr
    );
    // Both default files: ambiguous, a usage error.
    write(dir.path(), "xngin.settings.json", "{}");
    let out =
        run(xngin()
            .current_dir(dir.path())
            .args(["fields", "--participant-type", "students"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    // An invalid settings file stops resolution with its located errors.
    std::fs::remove_file(dir.path().join("xngin.settings.toml")).unwrap();
    let out =
        run(xngin()
            .current_dir(dir.path())
            .args(["fields", "--participant-type", "students"]));
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "xngin.settings.json:1:1: datasources: missing required key 'datasources' (or its older name 'client_configs')\n"
    );
}

// ---------------------------------------------------------------------------------------------
// --deep

/// Create the tables of the deep tests: `{p}_students(id, name, grade, enrolled_on)` (the sheet
/// calls `grade` `grade_level`: a renamed column) and `{p}_schools(school_id, name)`.
async fn create_tables(wh: &Warehouse, p: &str) {
    let students = wh.qualified(None, &format!("{p}_students"));
    let schools = wh.qualified(None, &format!("{p}_schools"));
    for t in [&students, &schools] {
        wh.execute(&format!("DROP TABLE IF EXISTS {t}"), &[])
            .await
            .unwrap();
    }
    wh.execute(
        &format!("CREATE TABLE {students} (id INTEGER PRIMARY KEY, name VARCHAR(50), grade INTEGER, enrolled_on DATE)"),
        &[],
    )
    .await
    .unwrap();
    wh.execute(
        &format!("CREATE TABLE {schools} (school_id BIGINT, name VARCHAR(50))"),
        &[],
    )
    .await
    .unwrap();
}

async fn drop_tables(wh: &Warehouse, p: &str) {
    for t in ["students", "schools"] {
        let q = wh.qualified(None, &format!("{p}_{t}"));
        wh.execute(&format!("DROP TABLE IF EXISTS {q}"), &[])
            .await
            .unwrap();
    }
}

/// Settings (JSON) for the deep tests; `dwh_or_sqlite` is the JSON of the config's connection
/// part. Participants: students (sheet with a renamed column), teachers (missing table),
/// schools (inline fields; `name` declared integer but the column is text).
fn deep_settings(config_head: &str, p: &str, sheet: &Path) -> String {
    format!(
        r#"{{
  "datasources": [
    {{
      "id": "deep",
      "config": {{
        {config_head},
        "participants": [
          {{"type": "sheet", "participant_type": "students", "table_name": "{p}_students",
            "sheet": {{"url": "file://{sheet}", "worksheet": "students"}}}},
          {{"type": "sheet", "participant_type": "teachers", "table_name": "{p}_teachers",
            "sheet": {{"url": "file://{sheet}", "worksheet": "teachers"}}}},
          {{"type": "schema", "participant_type": "schools", "table_name": "{p}_schools",
            "fields": [
              {{"field_name": "school_id", "data_type": "bigint", "is_unique_id": true}},
              {{"field_name": "name", "data_type": "integer"}}
            ]}}
        ]
      }}
    }}
  ]
}}
"#,
        sheet = sheet.display()
    )
}

/// Run `--deep` and check the exact problems: renamed column, missing table, wrong type.
fn check_deep(dir: &Path, file: &str, p: &str, live_name_type: &str, env: &[(&str, &str)]) {
    let mut cmd = xngin();
    cmd.current_dir(dir)
        .args(["validate-settings", "--deep", file]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let pos = |needle: &str| -> (usize, usize) {
        let i = text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        let line = text[..i].matches('\n').count() + 1;
        let col = text[..i]
            .rfind('\n')
            .map(|n| text[n + 1..i].chars().count() + 1)
            .unwrap_or(i + 1);
        (line, col)
    };
    let (ul, uc) = pos("\"file://");
    let (tl, tc) = pos(&format!("\"{p}_teachers\""));
    let (nl, nc) = pos("\"integer\"");
    let expected = format!(
        "{file}:{ul}:{uc}: datasources.0.config.participants.0.sheet.url: datasource 'deep', participant type 'students': column 'grade_level' of the sheet is not in table '{p}_students' (renamed to 'grade'?)\n\
         {file}:{tl}:{tc}: datasources.0.config.participants.1.table_name: datasource 'deep', participant type 'teachers': table '{p}_teachers' does not exist in {{DSN}}{{HINT}}\n\
         {file}:{nl}:{nc}: datasources.0.config.participants.2.fields.1.data_type: datasource 'deep', participant type 'schools': column 'name' is integer in the sheet but character varying ({live_name_type}) in table '{p}_schools'\n"
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    // The DSN (redacted) and the table hint depend on the server: compare around them.
    let lines: Vec<&str> = out.stderr.lines().collect();
    let exp: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    assert_eq!(lines[0], exp[0]);
    let (head, _) = exp[1].split_once("{DSN}").unwrap();
    assert!(lines[1].starts_with(head), "{}\n{}", lines[1], head);
    assert!(
        lines[1].contains(&format!("(did you mean '{p}_schools'?)"))
            || lines[1].contains("known tables"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], exp[2]);
    for (_, v) in env {
        assert!(
            !out.stderr.contains(v) && !out.stdout.contains(v),
            "secret printed: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn deep_sqlite_finds_renamed_column_missing_table_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deep.db");
    let wh = Warehouse::connect_with(
        &Dsn::sqlite_file(&db),
        ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap();
    create_tables(&wh, "d").await;
    wh.close().await;
    let sheet = write(dir.path(), "sheet.csv", SHEET_CSV);
    let head = format!(
        r#""type": "sqlite_local", "sqlite_filename": "{}""#,
        db.display()
    );
    write(
        dir.path(),
        "deep.settings.json",
        &deep_settings(&head, "d", &sheet),
    );
    check_deep(dir.path(), "deep.settings.json", "d", "VARCHAR(50)", &[]);
    // Structurally the same file is valid.
    let out = run(xngin()
        .current_dir(dir.path())
        .args(["validate-settings", "deep.settings.json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
}

#[tokio::test]
async fn deep_postgres_with_secret_password() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let p = unique("xs");
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    create_tables(&wh, &p).await;
    let u = url::Url::parse(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sheet = write(dir.path(), "sheet.csv", SHEET_CSV);
    // A DSN object whose password comes from a secret (the test server trusts any password).
    let head = format!(
        r#""type": "remote", "dwh": {{"driver": "postgresql+psycopg", "host": "{}", "port": {}, "user": "{}",
        "password": "${{secret:XNGIN_T_DEEP_PG_PW}}", "dbname": "{}", "sslmode": "disable"}}"#,
        u.host_str().unwrap(),
        u.port().unwrap_or(5432),
        u.username(),
        u.path().trim_start_matches('/')
    );
    write(
        dir.path(),
        "pg.settings.json",
        &deep_settings(&head, &p, &sheet),
    );
    check_deep(
        dir.path(),
        "pg.settings.json",
        &p,
        "character varying(50)",
        &[("XNGIN_T_DEEP_PG_PW", "pg-deep-secret-9f3")],
    );
    drop_tables(&wh, &p).await;
    wh.close().await;
}

#[tokio::test]
async fn deep_mariadb_and_connection_failures() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    let p = unique("xs");
    let wh = Warehouse::connect(&Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    create_tables(&wh, &p).await;
    let dir = tempfile::tempdir().unwrap();
    let sheet = write(dir.path(), "sheet.csv", SHEET_CSV);
    let head = r#""type": "remote", "dwh": "${secret:XNGIN_T_DEEP_MY_URL}""#.to_string();
    write(
        dir.path(),
        "my.settings.json",
        &deep_settings(&head, &p, &sheet),
    );
    check_deep(
        dir.path(),
        "my.settings.json",
        &p,
        "varchar(50)",
        &[("XNGIN_T_DEEP_MY_URL", url.as_str())],
    );
    drop_tables(&wh, &p).await;
    wh.close().await;

    // A warehouse that cannot be reached: a failure (exit 1) located at the dwh, no secret shown.
    let bad = r#"{"datasources": [{"id": "gone", "config": {"type": "remote",
  "dwh": {"driver": "mysql", "host": "127.0.0.1", "port": 1031, "user": "root",
          "password": "${secret:XNGIN_T_DEEP_BAD_PW}", "dbname": "x"},
  "participants": []}}]}
"#;
    write(dir.path(), "bad.settings.json", bad);
    let out = run(xngin()
        .current_dir(dir.path())
        .env("XNGIN_T_DEEP_BAD_PW", "bad-secret-pw-7731")
        .env("XNGIN_CONNECT_TIMEOUT", "3")
        .args(["validate-settings", "--deep", "bad.settings.json"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("bad.settings.json:2:10: datasources.0.config.dwh: datasource 'gone': cannot connect to mysql://root:***@127.0.0.1:1031/x"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("bad-secret-pw-7731"));
}

/// An editor's view: the exported schema accepts both examples and rejects every corpus file
/// whose problem JSON Schema can express (all but uniqueness across items, base64 content, DSN
/// parsing details, secrets and syntax). Uses Python's `jsonschema` when installed.
#[test]
fn exported_schema_flags_the_corpus_like_validate_settings() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import jsonschema, tomllib"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: python3 with jsonschema not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(xngin()
        .current_dir(dir.path())
        .args(["export-json-schemas", "--output", "s"]));
    assert_eq!(out.code, 0);
    let script = r#"
import glob, json, sys, tomllib, warnings
import jsonschema
warnings.filterwarnings("ignore")
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator(schema)
def load(p):
    return json.load(open(p)) if p.endswith(".json") else tomllib.load(open(p, "rb"))
for p in ["examples/tenant.settings.json", "examples/tenant.settings.toml"]:
    errs = [e.message for e in v.iter_errors(load(p))]
    print(("VALID " if not errs else "INVALID ") + p)
for p in sorted(glob.glob("tests/settings_corpus/*.json") + glob.glob("tests/settings_corpus/*.toml")):
    try:
        d = load(p)
    except Exception:
        print("SYNTAX " + p)
        continue
    print(("VALID " if v.is_valid(d) else "INVALID ") + p)
"#;
    let out = std::process::Command::new("python3")
        .current_dir(root())
        .args([
            "-c",
            script,
            dir.path()
                .join("s/XnginSettings.schema.json")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let valid: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("VALID "))
        .collect();
    // Problems a JSON Schema cannot express; everything else is flagged by the schema too.
    assert_eq!(
        valid,
        [
            "examples/tenant.settings.json",
            "examples/tenant.settings.toml",
            "tests/settings_corpus/16-duplicate-participant-types.json",
            "tests/settings_corpus/18-inline-duplicate-field.json",
            "tests/settings_corpus/25-bigquery-invalid-base64.json",
            "tests/settings_corpus/26-duplicate-datasource-id.json",
            "tests/settings_corpus/27-json-duplicate-key.json",
            "tests/settings_corpus/31-secret-missing-deep.json",
            "tests/settings_corpus/33-secrets-source-misconfigured.json",
            "tests/settings_corpus/47-toml-duplicate-participant-types.toml",
            "tests/settings_corpus/57-redshift-url-without-verify-full.json",
        ],
        "{text}"
    );
}

/// Sheets are checked even when the warehouse cannot be reached; each problem names the
/// datasource and participant type and points at the sheet reference.
#[test]
fn deep_reads_sheets_without_a_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad_sheet.csv",
        "column_name,data_type,is_unique_id\nid,integer,true\ncode,integer,true\nname,varchar,\n",
    );
    let text = r#"{"datasources": [{"id": "offline", "config": {"type": "remote",
  "dwh": "mysql://root@127.0.0.1:1031/x",
  "participants": [
    {"participant_type": "people", "table_name": "people",
     "sheet": {"url": "bad_sheet.csv", "worksheet": "people"}}]}}]}
"#;
    write(dir.path(), "offline.settings.json", text);
    let out = run(xngin()
        .current_dir(dir.path())
        .env("XNGIN_CONNECT_TIMEOUT", "3")
        .args(["validate-settings", "--deep", "offline.settings.json"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].starts_with("offline.settings.json:2:10: datasources.0.config.dwh: datasource 'offline': cannot connect to mysql://root@127.0.0.1:1031/x"),
        "{}",
        out.stderr
    );
    let sheet_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("offline.settings.json:5:23: datasources.0.config.participants.0.sheet.url: datasource 'offline', participant type 'people': the sheet is invalid: bad_sheet.csv: "))
        .collect();
    assert_eq!(sheet_lines.len(), 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("'varchar'") && out.stderr.contains("unique ID"),
        "{}",
        out.stderr
    );
}

/// Positions and parsing of the JSON and TOML readers (`settings::locate`).
mod locate {
    use proptest::prelude::*;
    use xngin::settings::locate::{Kind, LineIndex, Node, parse_json, parse_toml};

    fn at(text: &str, pos: usize) -> (usize, usize) {
        LineIndex::new(text).line_col(pos)
    }

    #[test]
    fn json_values_and_keys_are_located_in_characters() {
        let t = "\u{feff}{\n  \"a\": [1, \"x\"],\n  \"é\": {\"b\": null}\n}";
        let n = parse_json(t).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(at(t, a.pos), (2, 8));
        let Kind::Array(items) = &a.kind else {
            panic!("{a:?}")
        };
        assert_eq!(at(t, items[1].pos), (2, 12));
        let Kind::Object(es) = &n.kind else {
            panic!("{n:?}")
        };
        assert_eq!(es[1].key, "é");
        assert_eq!(at(t, es[1].key_pos), (3, 3));
        // columns count characters: the value after the 1-char key "é" (2 bytes)
        assert_eq!(at(t, es[1].value.pos), (3, 8));
    }

    #[test]
    fn json_syntax_errors_name_the_problem_where_it_is() {
        let cases = [
            ("{\"a\": 1,}", 8, "trailing comma before '}'"),
            ("{\"a\": 1 \"b\": 2}", 8, "expected ',' or '}'"),
            ("{\"a\": tru}", 6, "unexpected 'tru'"),
            ("{\"a\": \"x}", 6, "not closed (missing"),
            ("{\"a\": \"x\\\"\n\"}", 6, "end of the line"),
            ("{\"a\": \"x\ty\"}", 8, "control character"),
            ("{\"a\": 01}", 7, "invalid number"),
            ("{'a': 1}", 1, "double quotes"),
            ("{\"a\": 'b'}", 6, "double quotes"),
            ("{\"a\": 1} x", 9, "after the end"),
            ("", 0, "empty"),
            (" \n", 2, "empty"),
            ("{\"a\": [1,]}", 9, "trailing comma before ']'"),
            ("{\"a\": [1 2]}", 9, "expected ',' or ']'"),
            ("{\"a\": [1, 2", 11, "an array is not closed"),
            ("{ // c\n}", 2, "comments"),
            ("{\"a\": /* c */ 1}", 6, "comments"),
            ("{\"a\" 1}", 5, "expected ':'"),
            ("{\"a\": 1e400}", 10, "number out of range"),
            ("{\"é\": éa}", 7, "unexpected 'éa'"),
            ("{} é", 3, "unexpected 'é' after the end"),
            ("{\"a\": \"é\\\"é", 6, "not closed (missing"),
        ];
        for (text, pos, msg) in cases {
            let e = parse_json(text).unwrap_err();
            assert_eq!(e.pos, pos, "{text}: {e:?}");
            assert!(e.message.contains(msg), "{text}: {e:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            parse_json(&deep)
                .unwrap_err()
                .message
                .contains("recursion limit")
        );
    }

    #[test]
    fn json_strings_and_numbers_decode_like_serde_json() {
        let n = parse_json(r#"{"s": "a\"b\u00e9\ud83d\ude00", "i": -12, "f": 1.5e2, "big": 123456789012345678901}"#).unwrap();
        assert_eq!(n.get("s").unwrap().as_str(), Some("a\"bé😀"));
        assert_eq!(n.get("i").unwrap().kind, Kind::Int(-12));
        assert_eq!(n.get("f").unwrap().kind, Kind::Float(150.0));
        assert!(matches!(n.get("big").unwrap().kind, Kind::Float(_)));
    }

    #[test]
    fn toml_positions_and_errors() {
        let t = "a = 1\n\n[[datasources]]\nid = \"x\"\n[datasources.config]\ntype = 'remote'\n";
        let n = parse_toml(t).unwrap();
        let Kind::Array(ds) = &n.get("datasources").unwrap().kind else {
            panic!("{n:?}")
        };
        assert_eq!(at(t, ds[0].pos), (3, 1));
        assert_eq!(at(t, ds[0].get("id").unwrap().pos), (4, 6));
        let cfg = ds[0].get("config").unwrap();
        assert_eq!(at(t, cfg.pos), (5, 1));
        assert_eq!(at(t, cfg.get("type").unwrap().pos), (6, 8));
        let e = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(at("a = 1\nb = \n", e.pos).0, 2);
        let e = parse_toml("a = 1\na = 2\n").unwrap_err();
        assert_eq!(at("a = 1\na = 2\n", e.pos), (2, 1));
        assert!(e.message.contains("duplicate key 'a'"), "{e:?}");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\\\\\"é😀 \\n\\t\\u{1}]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z_é]{1,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every node's position is where its value's text starts.
    fn check_positions(text: &str, n: &Node) {
        let rest = &text[n.pos..];
        let ok = match &n.kind {
            Kind::Null => rest.starts_with("null"),
            Kind::Bool(b) => rest.starts_with(if *b { "true" } else { "false" }),
            Kind::Int(_) | Kind::Float(_) => {
                rest.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            }
            Kind::Str(_) => rest.starts_with('"'),
            Kind::Array(items) => {
                items.iter().for_each(|i| check_positions(text, i));
                rest.starts_with('[')
            }
            Kind::Object(es) => {
                for e in es {
                    assert!(text[e.key_pos..].starts_with('"'));
                    check_positions(text, &e.value);
                }
                rest.starts_with('{')
            }
            Kind::Datetime(_) => false,
        };
        assert!(
            ok,
            "node {:?} at {} -> {:?}",
            n.kind,
            n.pos,
            &rest[..rest.len().min(10)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The reader reads what serde_json writes (compact and pretty), with exact positions.
        #[test]
        fn json_round_trips_serde_json_with_positions(v in json_value()) {
            for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                let n = parse_json(&text).unwrap();
                check_positions(&text, &n);
                prop_assert_eq!(n.to_json(), v.clone());
            }
        }

        /// After deleting or inserting a character, the reader accepts exactly what serde_json
        /// accepts.
        #[test]
        fn json_accepts_exactly_what_serde_json_accepts(
            v in json_value(),
            at in any::<prop::sample::Index>(),
            insert in prop::option::of(prop::sample::select(vec!['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '0', '-', 'e', '.', 'a', '\n', '/'])),
        ) {
            let mut chars: Vec<char> = serde_json::to_string_pretty(&v).unwrap().chars().collect();
            let i = at.index(chars.len() + 1);
            match insert {
                Some(c) => chars.insert(i, c),
                None if i < chars.len() => { chars.remove(i); }
                None => {}
            }
            let text: String = chars.into_iter().collect();
            let ours = parse_json(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: ours {:?}, serde_json {:?}", text, ours.err(), theirs.err());
        }
    }
}

/// Structural problems come from the schema derived from the model, reworded and located:
/// the branch a union's tag chose, the older key names, secrets, ranges, lengths, TOML dates.
#[test]
fn schema_errors_are_reworded_at_their_key_or_value() {
    let base = r#"{"datasources": [{"id": "a", "config": {"type": "remote", "participants": [], "dwh": DWH}}]}"#;
    let cases = [
        (
            r#"{"host": "h", "user": "u", "password": "p", "dbname": "d"}"#,
            "x.json:1:86: datasources.0.config.dwh.driver: missing required key 'driver'",
        ),
        (
            "5",
            "x.json:1:86: datasources.0.config.dwh: expected a string or an object, found an integer",
        ),
        (
            r#"{"url": 5}"#,
            "x.json:1:94: datasources.0.config.dwh.url: expected a string, found an integer",
        ),
        (
            r#"{"driver": "postgresql", "host": "h", "user": "u", "password": "p", "dbname": "d", "sslmode": "${secret:SSL}"}"#,
            "x.json:1:180: datasources.0.config.dwh.sslmode: sslmode cannot come from a secret; write one of: disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            r#"{"driver": "bigquery", "project_id": "abc", "dataset_id": "d", "credentials": {"type": "serviceaccountfile", "path": "x"}}"#,
            "x.json:1:123: datasources.0.config.dwh.project_id: project_id must be 6 to 30 characters long, found 3",
        ),
        (
            r#"{"driver": "postgresql", "host": "h", "user": "u", "password": "p", "dbname": "d", "project_id": "x"}"#,
            "x.json:1:169: datasources.0.config.dwh.project_id: unknown key 'project_id' (project_id belongs to driver = \"bigquery\")",
        ),
        (
            r#"{"driver": "postgresql", "host": "h", "user": "u", "password": "p", "dbname": "d", "port": null}"#,
            "",
        ),
        (
            r#"{"driver": "postgresql", "host": "h", "user": "u", "password": "p", "dbname": "d", "port": 5432.0}"#,
            "x.json:1:177: datasources.0.config.dwh.port: expected an integer, found a float",
        ),
    ];
    for (dwh, expected) in cases {
        let c = settings::check_text("x.json", &base.replace("DWH", dwh), Syntax::Json, None);
        let lines: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(lines.join("\n"), expected, "{dwh}");
    }
    let fields = r#"{"datasources": [{"id": "a", "config": {"type": "sqlite_local", "sqlite_filename": "a.db", "participants": [{"type": "schema", "participant_type": "p", "table_name": "t", "fields": [{"data_type": "integer", "is_unique_id": true}, {"field_name": "x", "column_name": "x", "data_type": "Integer"}]}]}}], "db_connect_timeout_secs": 0}"#;
    let c = settings::check_text("f.json", fields, Syntax::Json, None);
    let lines: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "f.json:1:183: datasources.0.config.participants.0.fields.0.column_name: missing required key 'column_name' (or its older name 'field_name')",
            "f.json:1:266: datasources.0.config.participants.0.fields.1.column_name: give either field_name or column_name, not both",
            "f.json:1:284: datasources.0.config.participants.0.fields.1.data_type: 'Integer' is not a valid DataType (write it in lower case: 'integer'); expected one of: boolean, character varying, date, integer, double precision, numeric, timestamp without time zone, bigint, uuid, timestamp with time zone, jsonb (unsupported), json (unsupported), unsupported",
            "f.json:1:329: db_connect_timeout_secs: db_connect_timeout_secs must be at least 1, found 0",
        ]
    );
    let dates = "db_connect_timeout_secs = 1979-05-27\n[[datasources]]\nid = 1979-05-27\n[datasources.config]\ntype = \"sqlite_local\"\nsqlite_filename = \"a.db\"\nparticipants = []\n";
    let c = settings::check_text("d.toml", dates, Syntax::Toml, None);
    let lines: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "d.toml:1:27: db_connect_timeout_secs: expected an integer, found a date/time",
            "d.toml:3:6: datasources.0.id: expected a string, found a date/time",
        ]
    );
}
