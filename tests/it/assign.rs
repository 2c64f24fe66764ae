//! End-to-end tests of `xngin assign` and `xngin assignment`: files, errors and exit codes,
//! reproducibility, and `--write-table` on SQLite, PostgreSQL and MariaDB (the latter two when
//! XNGIN_TEST_POSTGRES_URL / XNGIN_TEST_MYSQL_URL are set).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn xngin() -> Command {
    let mut c = Command::cargo_bin("xngin").unwrap();
    c.env_remove("XNGIN_SETTINGS")
        .env_remove("XNGIN_DATASOURCE")
        .env_remove("XNGIN_ECHO_SQL");
    c
}

/// A deterministic participants CSV: id, gender (with NULLs), region, score, income (with
/// NULLs), member (boolean). `poison_last` puts region "poison" on the highest id.
fn participants(n: usize, poison_last: bool) -> Vec<(i64, String)> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (1..=n as i64)
        .map(|i| {
            let g = ["F", "M", ""][(next() % 3) as usize];
            let mut r = ["north", "south", "east", "west"][(next() % 4) as usize];
            if poison_last && i == n as i64 {
                r = "poison";
            }
            let score = next() % 101;
            let income = if next() % 20 == 0 {
                String::new()
            } else {
                format!("{}.{}", 20_000 + next() % 60_000, next() % 100)
            };
            let member = if next() % 2 == 0 { "true" } else { "false" };
            (
                i * 7919,
                format!("{},{g},{r},{score},{income},{member}", i * 7919),
            )
        })
        .collect()
}

fn write_csv(dir: &Path, name: &str, rows: &[(i64, String)]) -> PathBuf {
    let p = dir.join(name);
    let mut s = String::from("id,gender,region,score,income,member\n");
    for (_, line) in rows {
        s.push_str(line);
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn run_ok(args: &[&str]) -> (String, String) {
    let out = xngin().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "xngin {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn run_err(args: &[&str]) -> (i32, String) {
    let out = xngin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn csv_output_sorted_reproducible_and_order_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let rows = participants(3000, false);
    let a = write_csv(dir.path(), "a.csv", &rows);
    let mut shuffled = rows.clone();
    shuffled.reverse();
    shuffled.swap(10, 2000);
    let b = write_csv(dir.path(), "b.csv", &shuffled);
    let oa = dir.path().join("oa.csv");
    let ob = dir.path().join("ob.csv");
    let common = [
        "--id-column",
        "id",
        "--arms",
        "control,t1,t2",
        "--arm-weights",
        "2,1,1",
        "--strata",
        "region,gender",
        "--metrics",
        "income",
        "--seed",
        "42",
        "--experiment-id",
        "exp-1",
    ];
    let mut args_a = vec![
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--output",
        oa.to_str().unwrap(),
        "--format",
        "json",
    ];
    args_a.extend(common);
    let (json, _) = run_ok(&args_a);
    let mut args_b = vec![
        "assign",
        "--input",
        b.to_str().unwrap(),
        "--output",
        ob.to_str().unwrap(),
    ];
    args_b.extend(common);
    run_ok(&args_b);
    let ca = std::fs::read(&oa).unwrap();
    assert_eq!(
        ca,
        std::fs::read(&ob).unwrap(),
        "same rows in another order must give byte-identical output"
    );

    let text = String::from_utf8(ca).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "participant_id,arm_id,arm_name,stratum_id,gender,income,region"
    );
    let recs: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(recs.len(), 3000);
    let ids: Vec<i64> = recs.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "numeric id order");
    // Original strata values are carried through (NULL gender = empty field).
    let by_id: std::collections::HashMap<i64, &String> =
        rows.iter().map(|(i, l)| (*i, l)).collect();
    for r in &recs {
        let src: Vec<&str> = by_id[&r[0].parse::<i64>().unwrap()].split(',').collect();
        assert_eq!((r[4], r[6]), (src[1], src[2]));
        // Numbers are written in their shortest exact form (25684.50 -> 25684.5).
        assert_eq!(r[5].parse::<f64>().ok(), src[4].parse::<f64>().ok());
        assert_eq!(
            r[2],
            ["control", "t1", "t2"][r[1].parse::<usize>().unwrap()]
        );
    }
    // Weights 2:1:1 with blocks of 4: each arm's total is within one block per stratum.
    let record: serde_json::Value = serde_json::from_str(&json).unwrap();
    let design: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("oa.csv.design.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record, design);
    assert_eq!(record["experiment_id"], "exp-1");
    assert_eq!(record["seed"], 42);
    assert_eq!(record["seed_source"], "given");
    assert_eq!(record["block_size"], 4);
    assert_eq!(
        record["strata_used"],
        serde_json::json!(["gender", "income", "region"])
    );
    assert_eq!(record["input_fingerprint"]["rows"], 3000);
    let counts: Vec<u64> = record["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["assigned"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 3000);
    let strata = record["number_of_strata"].as_u64().unwrap();
    assert!(
        (counts[0] as i64 - 1500).unsigned_abs() <= 2 * strata,
        "{counts:?}"
    );
    assert_eq!(
        record["balance"].as_array().unwrap().len(),
        2,
        "one test per treatment arm"
    );
    for b in record["balance"].as_array().unwrap() {
        let p = b["p_value"].as_f64().unwrap();
        assert_eq!(b["balance_ok"].as_bool().unwrap(), p > 0.6);
    }
    // Fingerprint: the sum of the unit keys MD5("42:{id}") (128-bit big-endian) mod 2^128.
    use md5::Digest;
    let sum = rows.iter().fold(0u128, |acc, r| {
        let d: [u8; 16] = md5::Md5::digest(format!("42:{}", r.0).as_bytes()).into();
        acc.wrapping_add(u128::from_be_bytes(d))
    });
    assert_eq!(
        record["input_fingerprint"]["unit_key_sum"],
        format!("{sum:032x}")
    );
    // Another seed draws differently.
    let oc = dir.path().join("oc.csv");
    let mut args_c = vec![
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--output",
        oc.to_str().unwrap(),
    ];
    args_c.extend(common);
    let pos = args_c.iter().position(|a| *a == "42").unwrap();
    args_c[pos] = "43";
    run_ok(&args_c);
    assert_ne!(std::fs::read(&oa).unwrap(), std::fs::read(&oc).unwrap());
}

#[test]
fn drawn_seed_is_printed_recorded_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(500, false));
    let o1 = dir.path().join("o1.csv");
    let (_, err) = run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--strata",
        "region",
        "--output",
        o1.to_str().unwrap(),
    ]);
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("o1.csv.design.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["seed_source"], "drawn");
    let seed = rec["seed"].as_u64().unwrap().to_string();
    assert!(err.contains(&format!("using seed {seed}")), "{err}");
    let o2 = dir.path().join("o2.csv");
    run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--strata",
        "region",
        "--seed",
        &seed,
        "--output",
        o2.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&o1).unwrap(), std::fs::read(&o2).unwrap());
}

#[test]
fn parquet_in_and_out_match_csv() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(800, false));
    let oc = dir.path().join("o.csv");
    let op = dir.path().join("o.parquet");
    let base = [
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--strata",
        "region,member",
        "--seed",
        "5",
    ];
    let mut args = vec![
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--output",
        oc.to_str().unwrap(),
    ];
    args.extend(base);
    run_ok(&args);
    let mut args = vec![
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--output",
        op.to_str().unwrap(),
    ];
    args.extend(base);
    run_ok(&args);
    // Parquet output as input again gives the same assignment CSV.
    use polars::prelude::*;
    let df = ParquetReader::new(std::fs::File::open(&op).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 800);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            "participant_id",
            "arm_id",
            "arm_name",
            "stratum_id",
            "member",
            "region"
        ]
    );
    let csv_df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(oc.clone()))
        .unwrap()
        .finish()
        .unwrap();
    assert!(
        df.column("arm_id")
            .unwrap()
            .as_materialized_series()
            .equals(csv_df.column("arm_id").unwrap().as_materialized_series())
    );
    let o2 = dir.path().join("o2.csv");
    let mut args = vec![
        "assign",
        "--input",
        op.to_str().unwrap(),
        "--id-column",
        "participant_id",
        "--output",
        o2.to_str().unwrap(),
    ];
    args.extend(&base[2..]);
    run_ok(&args);
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(strip(&oc), strip(&o2));
}

#[test]
fn misfit_none_and_complete_random() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(1001, false));
    let (json, _) = run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b,c",
        "--strata",
        "region,gender",
        "--misfit-strategy",
        "none",
        "--seed",
        "1",
        "--format",
        "json",
        "-q",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let un = rec["unassigned"].as_u64().unwrap();
    let assigned = rec["assigned"].as_u64().unwrap();
    assert_eq!(un + assigned, 1001);
    assert_eq!(assigned % 3, 0, "only whole blocks are assigned");
    let counts: Vec<u64> = rec["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["assigned"].as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|c| *c == assigned / 3), "{counts:?}");
    // No usable strata: complete random assignment with exact counts and a notice.
    let (json, err) = run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--arm-weights",
        "29,71",
        "--seed",
        "1",
        "--format",
        "json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let counts: Vec<u64> = rec["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["assigned"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![290, 711]); // 290.29 / 710.71 -> largest remainder gives b the unit
    assert!(rec["balance"].as_array().unwrap().is_empty());
    assert!(err.contains("no --output or --write-table"), "{err}");
    // A stratum that is constant is dropped with a notice; all dropped -> fallback notice.
    let c = dir.path().join("c.csv");
    std::fs::write(&c, "id,k,name\n1,x,ann\n2,x,bob\n3,x,cy\n4,x,dee\n").unwrap();
    let (_, err) = run_ok(&[
        "assign",
        "--input",
        c.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--strata",
        "k,name",
        "--seed",
        "1",
    ]);
    assert!(err.contains("stratum k not used: single value"), "{err}");
    assert!(
        err.contains("stratum name not used: unique values"),
        "{err}"
    );
    assert!(
        err.contains("falling back to complete random assignment"),
        "{err}"
    );
}

#[test]
fn bad_input_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(50, false));
    let f = a.to_str().unwrap();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["assign", "--input", f, "--id-column", "id", "--seed", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let check = |extra: &[&str], code: i32, msg: &str| {
        let args = base(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, err) = run_err(&args);
        assert_eq!(c, code, "{extra:?}: {err}");
        assert!(err.contains(msg), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    };
    check(&["--arms", "a"], 2, "--arms needs at least 2 arms, got 1");
    check(&["--arms", "a,a"], 2, "the arm name \"a\" appears twice");
    check(
        &["--arms", "a,b", "--arm-weights", "1,2,3"],
        2,
        "--arm-weights has 3 value(s) but --arms names 2 arm(s)",
    );
    check(
        &["--arms", "a,b", "--arm-weights", "1,0"],
        2,
        "weight must be a positive number",
    );
    check(
        &["--arms", "a,b", "--strata", "nope"],
        3,
        "no column named nope in --strata/--metrics (columns: id, gender, region, score, income, member)",
    );
    check(
        &["--arms", "a,b", "--strata", "id"],
        3,
        "id is the id column",
    );
    check(
        &["--arms", "a,b", "--sample-size", "51"],
        3,
        "--sample-size 51 is larger than the audience (50 participants",
    );
    check(
        &["--arms", "a,b", "--output", "/nonexistent-dir/x.csv"],
        1,
        "the directory /nonexistent-dir does not exist",
    );
    check(
        &["--arms", "a,b", "--output", "/tmp/x.txt"],
        2,
        "unknown file type",
    );
    let out = dir.path().join("o.csv");
    std::fs::write(&out, "keep").unwrap();
    check(
        &["--arms", "a,b", "--output", out.to_str().unwrap()],
        1,
        "already exists; pass --replace",
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep");
    // Duplicate and NULL ids.
    let d = dir.path().join("d.csv");
    std::fs::write(&d, "id,g\n1,a\n2,b\n1,a\n3,b\n3,a\n").unwrap();
    let (c, err) = run_err(&[
        "assign",
        "--input",
        d.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
    ]);
    assert_eq!(c, 3);
    assert!(
        err.ends_with(&format!(
            "{}: the id column id has 2 duplicate value(s) (e.g. 1 on lines 2 and 4; 3 on lines 5 and 6); participant ids must be unique",
            d.display()
        )),
        "{err}"
    );
    std::fs::write(&d, "id,g\n1,a\n,b\n3,a\n").unwrap();
    let (c, err) = run_err(&[
        "assign",
        "--input",
        d.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
    ]);
    assert_eq!(c, 3);
    assert!(
        err.contains("the id column id is empty (NULL) in 1 row(s) (data rows 2)"),
        "{err}"
    );
    let (c, err) = run_err(&[
        "assign",
        "--input",
        "/nonexistent.csv",
        "--id-column",
        "id",
        "--arms",
        "a,b",
    ]);
    assert_eq!(c, 1);
    assert!(err.contains("/nonexistent.csv: no such file"), "{err}");
}

/// `rows` records `id,g,score` (g alternating a/b, score = id * 1.5), with `edit(id, record)`
/// changing some of them; returns the file's path.
fn numbered_csv(
    dir: &Path,
    name: &str,
    rows: usize,
    edit: impl Fn(usize, String) -> Vec<u8>,
) -> PathBuf {
    let mut s: Vec<u8> = b"id,g,score\n".to_vec();
    for i in 1..=rows {
        let rec = format!("{i},{},{}", ["a", "b"][i % 2], i as f64 * 1.5);
        s.extend(edit(i, rec));
        s.push(b'\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

fn assign_args<'a>(input: &'a str, strata: &'a str) -> Vec<&'a str> {
    vec![
        "assign",
        "--input",
        input,
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--seed",
        "1",
        "--strata",
        strata,
        "--format",
        "csv",
    ]
}

fn csv_records(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (h, rows)
}

#[test]
fn long_field_is_read_in_full_wherever_it_is() {
    // Quoted fields longer than polars' 512 KiB read step (with a doubled quote inside): in the
    // first record, right after the 10,000-record sample and further down.
    let dir = tempfile::tempdir().unwrap();
    // y is longer than 1 MiB: the sample grows to hold it; z is the first record of the rest.
    let len = |c: &str| if c == "y" { 1_200_000 } else { 700_000 };
    let raw = |c: &str| format!("\"{}\"\"{c}\"", c.repeat(len(c)));
    let value = |c: &str| format!("{}\"{c}", c.repeat(len(c)));
    let p = numbered_csv(dir.path(), "long.csv", 10_300, |i, rec| {
        let f: Vec<&str> = rec.split(',').collect();
        match i {
            1 => format!("{},{},{}", f[0], raw("x"), f[2]),
            10_001 => format!("{},{},{}", f[0], raw("y"), f[2]),
            10_002 => format!("{},{},{}", f[0], raw("z"), f[2]),
            10_200 => format!("{},{},{}", f[0], raw("w"), f[2]),
            _ => rec,
        }
        .into_bytes()
    });
    let (out, _) = run_ok(&assign_args(p.to_str().unwrap(), "g"));
    let (h, rows) = csv_records(&out);
    assert_eq!(h.last().unwrap(), "g");
    assert_eq!(rows.len(), 10_300);
    let g_of = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap()
            .last()
            .unwrap()
            .clone()
    };
    assert_eq!(g_of("1"), value("x"));
    assert_eq!(g_of("10001"), value("y"));
    assert_eq!(g_of("10002"), value("z"));
    assert_eq!(g_of("10200"), value("w"));
    assert_eq!(g_of("2"), "a");
    assert_eq!(g_of("10300"), "a");
}

#[test]
fn unreadable_input_and_directory_are_runtime_failures() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.csv", "x.parquet"] {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let (c, err) = run_err(&assign_args(d.to_str().unwrap(), "g"));
        assert_eq!(c, 1, "{err}");
        assert!(
            err.ends_with(&format!("{}: is a directory, expected a file", d.display())),
            "{err}"
        );
    }
    // A socket named like a CSV file: not a regular file (nothing to read, even for root).
    let sock = dir.path().join("s.csv");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (c, err) = run_err(&assign_args(sock.to_str().unwrap(), "g"));
    assert_eq!(c, 1, "{err}");
    assert!(
        err.ends_with(&format!(
            "{}: not a regular file; give the path of a CSV or Parquet file",
            sock.display()
        )),
        "{err}"
    );
    let p = numbered_csv(dir.path(), "locked.csv", 10, |_, r| r.into_bytes());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&p).is_ok() {
        eprintln!("running as root: a mode 000 file is still readable; permission case skipped");
        return;
    }
    let (c, err) = run_err(&assign_args(p.to_str().unwrap(), "g"));
    assert_eq!(c, 1, "{err}");
    assert!(
        err.ends_with(&format!("{}: permission denied", p.display())),
        "{err}"
    );
}

#[test]
fn duplicate_header_is_rejected_naming_both_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dup.csv");
    std::fs::write(&p, "id,g,h,g\n1,a,x,b\n2,b,y,a\n3,a,x,a\n").unwrap();
    let (c, err) = run_err(&assign_args(p.to_str().unwrap(), "h"));
    assert_eq!(c, 3, "{err}");
    assert_eq!(
        err,
        format!(
            "{}: line 1: columns 2 and 4 are both named g; give every column its own name",
            p.display()
        )
    );
}

#[test]
fn doubled_quotes_in_header_are_one_quote() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("q.csv");
    std::fs::write(
        &p,
        "id,\"g\"\"x\",\"\"\"double quoted\"\"\"\n1,a,x\n2,b,y\n3,a,y\n4,b,x\n",
    )
    .unwrap();
    let (out, _) = run_ok(&assign_args(p.to_str().unwrap(), "g\"x,\"double quoted\""));
    let (h, rows) = csv_records(&out);
    assert_eq!(h[h.len() - 2..], ["\"double quoted\"", "g\"x"]);
    assert_eq!(rows[0][h.len() - 2..], ["x", "a"]);
    // The old reading (quotes kept doubled) is not a column name.
    let (c, err) = run_err(&assign_args(p.to_str().unwrap(), "g\"\"x"));
    assert_eq!(c, 3);
    assert!(
        err.contains("(columns: id, g\"x, \"double quoted\")"),
        "{err}"
    );
}

#[test]
fn non_number_in_numeric_column_is_text_with_a_notice_naming_the_line() {
    // The rule: a column is numeric only if all its values are numbers, wherever the others
    // are; else it is text and a notice names the first other value and its line. So the
    // result is the same whether the typo is in the first 10,000 records (polars' sample) or
    // after them.
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for (name, bad) in [("early.csv", 7), ("late.csv", 10_050)] {
        let p = numbered_csv(dir.path(), name, 10_100, |i, rec| {
            if i == bad {
                format!("{i},a,abc").into_bytes()
            } else {
                rec.into_bytes()
            }
        });
        let out = xngin()
            .args(assign_args(p.to_str().unwrap(), "g,score"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "{}: column score is read as text, not as numbers: 1 of its 10100 values are not numbers, the first `abc` for participant id {bad} (line {}); correct them",
                p.display(),
                bad + 1
            )),
            "{err}"
        );
        // As text every score differs: the column is dropped, which the notice explains.
        assert!(
            err.contains("stratum score not used: unique values"),
            "{err}"
        );
        outs.push(String::from_utf8(out.stdout).unwrap());
    }
    // Integers in the sample and a decimal after it: numbers (floats), no notice.
    let p = numbered_csv(dir.path(), "ints.csv", 10_100, |i, _| {
        let score = if i == 10_050 {
            "2.5".to_string()
        } else {
            (i % 8).to_string()
        };
        format!("{i},{},{score}", ["a", "b"][i % 2]).into_bytes()
    });
    let (out, err) = run_ok(&assign_args(p.to_str().unwrap(), "score"));
    assert!(!err.contains("read as text"), "{err}");
    let (_, rows) = csv_records(&out);
    let strata: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(strata.len(), 4, "score binned in quartiles");
    assert_eq!(rows.iter().find(|r| r[0] == "10050").unwrap()[4], "2.5");
}

#[test]
fn input_errors_name_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    // Each problem in the first records (the sample) and after the first 10,000.
    for at in [5, 10_050] {
        let line = at + 1;
        type Edit = Box<dyn Fn(String) -> Vec<u8>>;
        let cases: [(&str, Edit, String); 5] = [
            (
                "utf8.csv",
                Box::new(|rec: String| {
                    let mut b = rec.into_bytes();
                    b.extend(b"\xff\xfe");
                    b
                }),
                format!("line {line} is not valid UTF-8 text; save the file with UTF-8 encoding"),
            ),
            (
                "ragged.csv",
                Box::new(|rec: String| format!("{rec},extra").into_bytes()),
                format!(
                    "line {line} has 4 fields but the header has 3; quote values that contain a comma"
                ),
            ),
            (
                "quote.csv",
                Box::new(|rec: String| {
                    let f: Vec<&str> = rec.split(',').collect();
                    format!("{},\"{},{}", f[0], f[1], f[2]).into_bytes()
                }),
                format!("line {line} has a quote (\") that is never closed"),
            ),
            (
                "stray.csv",
                Box::new(|rec: String| {
                    let f: Vec<&str> = rec.split(',').collect();
                    format!("{},12\" pizza,{}", f[0], f[2]).into_bytes()
                }),
                format!("line {line} has a quote (\") that is never closed"),
            ),
            (
                "dupid.csv",
                Box::new(|rec: String| {
                    let f: Vec<&str> = rec.split(',').collect();
                    format!("3,{},{}", f[1], f[2]).into_bytes()
                }),
                format!(
                    "the id column id has 1 duplicate value(s) (e.g. 3 on lines 4 and {line}); participant ids must be unique"
                ),
            ),
        ];
        for (name, edit, msg) in cases {
            let p = numbered_csv(dir.path(), name, 10_100, |i, rec| {
                if i == at { edit(rec) } else { rec.into_bytes() }
            });
            let (c, err) = run_err(&assign_args(p.to_str().unwrap(), "g,score"));
            assert_eq!(c, 3, "{name} at {at}: {err}");
            assert!(
                err.ends_with(&format!("{}: {msg}", p.display()))
                    || err.contains(&format!("{}: {msg}", p.display())),
                "{name} at {at}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}

#[test]
fn infinite_metric_is_named_not_reported_as_no_covariate_varying() {
    let dir = tempfile::tempdir().unwrap();
    let p = numbered_csv(dir.path(), "inf.csv", 40, |i, rec| {
        if i == 3 { "3,b,inf".into() } else { rec }.into_bytes()
    });
    let f = p.to_str().unwrap();
    let (c, err) = run_err(&[
        "assign",
        "--input",
        f,
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--seed",
        "1",
        "--metrics",
        "score",
    ]);
    assert_eq!(c, 3, "{err}");
    assert_eq!(
        err,
        format!(
            "{f}: column score is infinite (inf) for participant id 3 (line 4); strata and metrics must be finite numbers (correct the value, or leave it empty for a missing value)"
        )
    );
    assert!(!err.contains("no covariate varies"));
}

#[test]
fn sample_size_is_seeded_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(400, false));
    let run = |seed: &str| {
        let (out, _) = run_ok(&[
            "assign",
            "--input",
            a.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--strata",
            "region",
            "--sample-size",
            "100",
            "--seed",
            seed,
            "--format",
            "csv",
            "-q",
        ]);
        out
    };
    let x = run("3");
    assert_eq!(x.lines().count(), 101);
    assert_eq!(x, run("3"));
    assert_ne!(x, run("4"));
}

#[test]
fn assignment_lookup_in_csv() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(100, false));
    let o = dir.path().join("o.csv");
    run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--seed",
        "1",
        "--experiment-id",
        "E",
        "--output",
        o.to_str().unwrap(),
    ]);
    let line = std::fs::read_to_string(&o)
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_string();
    let pid = line.split(',').next().unwrap().to_string();
    let (out, _) = run_ok(&[
        "assignment",
        "--experiment-id",
        "E",
        "--input",
        o.to_str().unwrap(),
        "--format",
        "csv",
        &pid,
    ]);
    assert_eq!(
        out,
        format!(
            "participant_id,arm_id,arm_name,stratum_id\n{}\n",
            line.split(',').take(4).collect::<Vec<_>>().join(",")
        )
    );
    let (c, err) = run_err(&[
        "assignment",
        "--experiment-id",
        "other",
        "--input",
        o.to_str().unwrap(),
        &pid,
    ]);
    assert_eq!(c, 3);
    assert!(
        err.contains("the assignment is of experiment E, not other"),
        "{err}"
    );
    let (c, err) = run_err(&[
        "assignment",
        "--experiment-id",
        "E",
        "--input",
        o.to_str().unwrap(),
        &pid,
        "12345",
    ]);
    assert_eq!(c, 1);
    assert!(
        err.contains("1 participant id(s) not found in experiment E: 12345"),
        "{err}"
    );
}

// ---------------------------------------------------------------- warehouses

async fn count(dsn: &str, sql: &str) -> i64 {
    let d = xngin::dsn::Dsn::parse(dsn).unwrap();
    let wh = xngin::warehouse::Warehouse::connect(&d).await.unwrap();
    let r = wh.fetch_all(sql, &[]).await.unwrap();
    wh.close().await;
    r.rows[0][0].as_i64().unwrap()
}

async fn exec(dsn: &str, sql: &str) {
    let d = xngin::dsn::Dsn::parse(dsn).unwrap();
    let wh = xngin::warehouse::Warehouse::connect(&d).await.unwrap();
    wh.execute(sql, &[]).await.unwrap();
    wh.close().await;
}

/// --write-table round trip, refusal, --replace, and a write that fails halfway.
async fn warehouse_round_trip(dsn: &str, dialect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let clean = write_csv(dir.path(), "clean.csv", &participants(1500, false));
    let poisoned = write_csv(dir.path(), "poisoned.csv", &participants(1500, true));
    let tag = format!("{dialect}_{}", std::process::id());
    let table = format!("asg_{tag}");
    let q = |s: &str| {
        if dialect == "mysql" {
            format!("`{s}`")
        } else {
            format!("\"{s}\"")
        }
    };
    let assign = |input: &Path, exp: &str, seed: &str, extra: &[&str]| -> (i32, String) {
        let mut args: Vec<String> = [
            "assign",
            "--input",
            input.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "control,treatment",
            "--strata",
            "gender,region",
            "--seed",
            seed,
            "--experiment-id",
            exp,
            "--write-table",
            &table,
            "--dsn",
            dsn,
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = xngin().args(&args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let n_exp = |exp: &str| {
        format!(
            "SELECT count(*) FROM {} WHERE {} = '{exp}'",
            q(&table),
            q("experiment_id")
        )
    };
    let n_rec = |exp: &str| {
        format!(
            "SELECT count(*) FROM {} WHERE {} = '{exp}' AND {} = '{table}'",
            q("xngin_experiments"),
            q("experiment_id"),
            q("assignment_table")
        )
    };

    let (c, err) = assign(&clean, "e1", "1", &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(count(dsn, &n_exp("e1")).await, 1500);
    assert_eq!(count(dsn, &n_rec("e1")).await, 1);
    let treat_e1 = count(
        dsn,
        &format!(
            "SELECT count(*) FROM {} WHERE {} = 'e1' AND {} = 1 AND {} = 'treatment'",
            q(&table),
            q("experiment_id"),
            q("arm_id"),
            q("arm_name")
        ),
    )
    .await;
    assert!((treat_e1 - 750).abs() <= 12, "{treat_e1}"); // within one per stratum (12 strata)
    // The same experiment again is refused and leaves the rows alone.
    let (c, err) = assign(&clean, "e1", "2", &[]);
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains(&format!(
            "the table {table} already holds 1500 assignment(s) of experiment e1; pass --replace"
        )),
        "{err}"
    );
    // Strata values arrive as they were (NULL gender stays NULL), one row per participant.
    let src = participants(1500, false);
    let null_gender = src
        .iter()
        .filter(|(_, l)| l.split(',').nth(1) == Some(""))
        .count() as i64;
    let north = src
        .iter()
        .filter(|(_, l)| l.split(',').nth(2) == Some("north"))
        .count() as i64;
    assert_eq!(
        count(
            dsn,
            &format!(
                "SELECT count(*) FROM {} WHERE {} = 'e1' AND {} IS NULL",
                q(&table),
                q("experiment_id"),
                q("gender")
            )
        )
        .await,
        null_gender
    );
    assert_eq!(
        count(
            dsn,
            &format!(
                "SELECT count(*) FROM {} WHERE {} = 'e1' AND {} = 'north'",
                q(&table),
                q("experiment_id"),
                q("region")
            )
        )
        .await,
        north
    );
    assert_eq!(
        count(
            dsn,
            &format!(
                "SELECT count(DISTINCT {}) FROM {} WHERE {} = 'e1'",
                q("participant_id"),
                q(&table),
                q("experiment_id")
            )
        )
        .await,
        1500
    );
    // A second experiment goes into the same table.
    let (c, err) = assign(&clean, "e2", "2", &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(count(dsn, &n_exp("e2")).await, 1500);
    // --replace replaces e1 (different seed -> different arms for some participants).
    let before = count(dsn, &format!("SELECT count(*) FROM {} a JOIN {} b ON a.{pid} = b.{pid} WHERE a.{e} = 'e1' AND b.{e} = 'e2' AND a.{arm} <> b.{arm}", q(&table), q(&table), pid = q("participant_id"), e = q("experiment_id"), arm = q("arm_id"))).await;
    let (c, err) = assign(&clean, "e1", "2", &["--replace"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(count(dsn, &n_exp("e1")).await, 1500);
    assert_eq!(count(dsn, &n_rec("e1")).await, 1);
    let after = count(dsn, &format!("SELECT count(*) FROM {} a JOIN {} b ON a.{pid} = b.{pid} WHERE a.{e} = 'e1' AND b.{e} = 'e2' AND a.{arm} <> b.{arm}", q(&table), q(&table), pid = q("participant_id"), e = q("experiment_id"), arm = q("arm_id"))).await;
    assert!(
        before > 0 && after == 0,
        "e1 redrawn with e2's seed must equal e2: {before} -> {after}"
    );

    // Lookup through `xngin assignment`.
    let out = xngin()
        .args([
            "assignment",
            "--experiment-id",
            "e2",
            "--table",
            &table,
            "--dsn",
            dsn,
            "--format",
            "json",
            "7919",
            "15838",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    // A write that fails halfway (the last participant violates a CHECK constraint) leaves no
    // rows of its experiment, and a failed --replace keeps the old rows.
    let ftable = format!("asgf_{tag}");
    let (c, err) = {
        let out = xngin()
            .args([
                "assign",
                "--input",
                clean.to_str().unwrap(),
                "--id-column",
                "id",
                "--arms",
                "control,treatment",
                "--strata",
                "gender,region",
                "--seed",
                "1",
                "--experiment-id",
                "f1",
                "--write-table",
                &ftable,
                "--dsn",
                dsn,
                "-q",
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(c, 0, "{err}");
    if dialect == "sqlite" {
        exec(dsn, &format!("CREATE TRIGGER {} BEFORE INSERT ON {} WHEN NEW.region = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END", q(&format!("nopoison_{tag}")), q(&ftable))).await;
    } else {
        exec(
            dsn,
            &format!(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} <> 'poison')",
                q(&ftable),
                q(&format!("nopoison_{tag}")),
                q("region")
            ),
        )
        .await;
    }
    let fail = |exp: &str, extra: &[&str]| {
        let mut args: Vec<String> = [
            "assign",
            "--input",
            poisoned.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "control,treatment",
            "--strata",
            "gender,region",
            "--seed",
            "9",
            "--experiment-id",
            exp,
            "--write-table",
            &ftable,
            "--dsn",
            dsn,
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = xngin().args(&args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let (c, err) = fail("f2", &[]);
    assert_eq!(c, 1, "{err}");
    let nf = |exp: &str| {
        format!(
            "SELECT count(*) FROM {} WHERE {} = '{exp}'",
            q(&ftable),
            q("experiment_id")
        )
    };
    assert_eq!(count(dsn, &nf("f2")).await, 0);
    assert_eq!(
        count(
            dsn,
            &format!(
                "SELECT count(*) FROM {} WHERE {} = 'f2'",
                q("xngin_experiments"),
                q("experiment_id")
            )
        )
        .await,
        0
    );
    let (c, err) = fail("f1", &["--replace"]);
    assert_eq!(c, 1, "{err}");
    assert_eq!(
        count(dsn, &nf("f1")).await,
        1500,
        "a failed --replace keeps the old rows"
    );

    // A table that is not an assignment table is refused.
    let other = format!("other_{tag}");
    exec(dsn, &format!("CREATE TABLE {} (x INTEGER)", q(&other))).await;
    let out = xngin()
        .args([
            "assign",
            "--input",
            clean.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--seed",
            "1",
            "--write-table",
            &other,
            "--dsn",
            dsn,
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no experiment_id column"));

    for t in [&table, &ftable, &other] {
        exec(dsn, &format!("DROP TABLE {}", q(t))).await;
    }
    exec(
        dsn,
        &format!(
            "DELETE FROM {} WHERE {} IN ('{table}', '{ftable}')",
            q("xngin_experiments"),
            q("assignment_table")
        ),
    )
    .await;
}

#[tokio::test]
async fn write_table_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("w.db").display());
    warehouse_round_trip(&dsn, "sqlite").await;
}

#[tokio::test]
async fn write_table_postgres() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    warehouse_round_trip(&url, "postgres").await;
}

#[tokio::test]
async fn write_table_mysql() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    warehouse_round_trip(&url, "mysql").await;
}

/// The quick start on a fresh checkout: the built-in default participant type (embedded SQLite
/// testing warehouse), with filters, --sample-size and --write-table into that warehouse.
#[test]
fn participant_type_quick_start() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = xngin()
            .env("XNGIN_HOME", home.path())
            .current_dir(cwd.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (c, out, err) = run(&[
        "assign",
        "--participant-type",
        "test_participant_type",
        "--arms",
        "control,treatment",
        "--strata",
        "gender,ethnicity",
        "--seed",
        "11",
        "--format",
        "json",
    ]);
    assert_eq!(c, 0, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["audience"]["participant_type"], "test_participant_type");
    assert_eq!(
        rec["strata_used"],
        serde_json::json!(["ethnicity", "gender"])
    );
    let total = rec["assigned"].as_u64().unwrap();
    assert!(total > 1000, "{total}");
    assert_eq!(rec["balance"].as_array().unwrap().len(), 1);

    // Filters narrow the audience; --sample-size draws an exact subset; --write-table writes
    // into the participant type's warehouse.
    let (c, out, err) = run(&[
        "assign",
        "--participant-type",
        "test_participant_type",
        "--arms",
        "a,b",
        "--strata",
        "gender",
        "--metrics",
        "income",
        "--filter",
        "gender includes Female",
        "--sample-size",
        "500",
        "--seed",
        "3",
        "--experiment-id",
        "qs",
        "--write-table",
        "assignments_qs",
        "--format",
        "json",
    ]);
    assert_eq!(c, 0, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["assigned"], 500);
    assert!(rec["audience"]["audience_rows"].as_u64().unwrap() < total);
    assert_eq!(rec["audience"]["filters"][0]["field_name"], "gender");
    let (c, out, err) = run(&[
        "assignment",
        "--experiment-id",
        "qs",
        "--table",
        "assignments_qs",
        "--format",
        "csv",
        "1",
        "2",
        "3",
    ]);
    assert!(c == 0 || c == 1, "{err}");
    assert!(
        out.starts_with("participant_id,arm_id,arm_name,stratum_id\n"),
        "{out}"
    );

    // A filter that leaves nobody, and a missing stratum.
    let (c, _, err) = run(&[
        "assign",
        "--participant-type",
        "test_participant_type",
        "--arms",
        "a,b",
        "--filter",
        "gender includes nobody",
    ]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("0 participant(s) after the filters"), "{err}");
    let (c, _, err) = run(&[
        "assign",
        "--participant-type",
        "test_participant_type",
        "--arms",
        "a,b",
        "--strata",
        "shoe_size",
    ]);
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("no field named shoe_size in --strata/--metrics"),
        "{err}"
    );
}

// ------------------------------------------------- outputs are prepared first, committed last

/// The `.xngin-*.tmp` files in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".xngin-") && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn failed_write_table_keeps_earlier_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path(), "p.csv", &participants(300, false));
    let keep = dir.path().join("keep.csv");
    let record = dir.path().join("keep.csv.design.json");
    let base = |seed: &str| -> Vec<String> {
        [
            "assign",
            "--input",
            input.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--seed",
            seed,
            "--output",
            keep.to_str().unwrap(),
            "--replace",
        ]
        .map(String::from)
        .to_vec()
    };
    let args = base("2");
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let before = (
        std::fs::read(&keep).unwrap(),
        std::fs::read(&record).unwrap(),
    );
    // A warehouse that refuses the connection.
    let mut args = base("3");
    args.extend(["--write-table", "t", "--dsn", "postgres://u@127.0.0.1:1/db"].map(String::from));
    let start = std::time::Instant::now();
    let (code, err) = run_err(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(
        start.elapsed().as_secs() < 5,
        "a refused port must fail at once"
    );
    // A write the warehouse refuses after connecting: the table is not an assignment table.
    let db = dir.path().join("w.db");
    let dsn = format!("sqlite://{}", db.display());
    let mut args2 = base("4");
    args2.extend(["--write-table", "x", "--dsn", &dsn].map(String::from));
    let out = xngin()
        .args([
            "create-testing-dwh",
            "--dsn",
            &dsn,
            "--table-name",
            "x",
            "--rows",
            "5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = run_err(&args2.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 3, "{err}");
    for _ in 0..2 {
        assert_eq!(std::fs::read(&keep).unwrap(), before.0, "keep.csv changed");
        assert_eq!(
            std::fs::read(&record).unwrap(),
            before.1,
            "its record changed"
        );
    }
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
    // The earlier pair is still a valid pair.
    let pid = std::fs::read_to_string(&keep)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let exp: serde_json::Value = serde_json::from_slice(&before.1).unwrap();
    run_ok(&[
        "assignment",
        "--experiment-id",
        exp["experiment_id"].as_str().unwrap(),
        "--input",
        keep.to_str().unwrap(),
        &pid,
    ]);
}

/// Two runs' outputs: `o.csv` (+ record) of experiment E with seed 1, and `o2.csv` (+ record)
/// of the same experiment with seed 2.
fn two_runs(dir: &Path) -> (PathBuf, PathBuf, String) {
    let input = write_csv(dir, "p.csv", &participants(200, false));
    let mut outs = Vec::new();
    for (seed, name) in [("1", "o.csv"), ("2", "o2.csv")] {
        let o = dir.join(name);
        run_ok(&[
            "assign",
            "--input",
            input.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--strata",
            "region",
            "--seed",
            seed,
            "--experiment-id",
            "E",
            "--output",
            o.to_str().unwrap(),
        ]);
        outs.push(o);
    }
    let pid = std::fs::read_to_string(&outs[0])
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    (outs[0].clone(), outs[1].clone(), pid)
}

#[test]
fn output_file_beside_another_runs_design_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (o, o2, pid) = two_runs(dir.path());
    let lookup = |p: &Path| {
        run_err(&[
            "assignment",
            "--experiment-id",
            "E",
            "--input",
            p.to_str().unwrap(),
            &pid,
        ])
    };
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("o.csv.design.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["outputs"]["file_sha256"].as_str().unwrap().len(), 64);
    // What a run killed between its two renames leaves: a new data file beside the old record.
    let original = std::fs::read(&o).unwrap();
    std::fs::copy(&o2, &o).unwrap();
    let (code, err) = lookup(&o);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not match its design record"), "{err}");
    // And the other order: the old data file beside the new record.
    std::fs::write(&o, &original).unwrap();
    std::fs::copy(
        dir.path().join("o2.csv.design.json"),
        dir.path().join("o.csv.design.json"),
    )
    .unwrap();
    let (code, err) = lookup(&o);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not match its design record"), "{err}");
    // The intact pair is read.
    run_ok(&[
        "assignment",
        "--experiment-id",
        "E",
        "--input",
        o2.to_str().unwrap(),
        &pid,
    ]);
}

#[test]
fn assignment_input_without_design_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _, pid) = two_runs(dir.path());
    std::fs::remove_file(dir.path().join("o.csv.design.json")).unwrap();
    let (code, err) = run_err(&[
        "assignment",
        "--experiment-id",
        "E",
        "--input",
        o.to_str().unwrap(),
        &pid,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("design record") && err.contains("is missing"),
        "{err}"
    );
    // Also for another experiment id: it is not silently accepted.
    let (code, _) = run_err(&[
        "assignment",
        "--experiment-id",
        "other",
        "--input",
        o.to_str().unwrap(),
        &pid,
    ]);
    assert_eq!(code, 1);
}

#[test]
fn killed_assign_runs_leave_no_temp_files_and_no_silent_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path(), "p.csv", &participants(200_000, false));
    let out = dir.path().join("out.csv");
    let bin = assert_cmd::cargo::cargo_bin("xngin");
    let args = |seed: u32| -> Vec<String> {
        [
            "assign",
            "--input",
            input.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--strata",
            "region,gender",
            "--seed",
            &seed.to_string(),
            "--experiment-id",
            "K",
            "--output",
            out.to_str().unwrap(),
            "--replace",
            "-q",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut left_behind = 0;
    for i in 0..12u32 {
        let mut child = std::process::Command::new(&bin)
            .args(args(i))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60 + 40 * i as u64));
        let _ = child.kill();
        let _ = child.wait();
        left_behind = left_behind.max(temp_files(dir.path()).len());
        // Whatever the kill left, a pair on disk is either consistent or refused, never read
        // as if it matched.
        if out.exists() && dir.path().join("out.csv.design.json").exists() {
            let o = xngin()
                .args([
                    "assignment",
                    "--experiment-id",
                    "K",
                    "--input",
                    out.to_str().unwrap(),
                    "7919",
                ])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() || err.contains("does not match its design record"),
                "{err}"
            );
        }
    }
    // A file a killed run left for certain (its pid cannot exist), and one of a live process.
    std::fs::write(dir.path().join(".xngin-999999999-abcdef.tmp"), b"x").unwrap();
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let live_name = format!(".xngin-{}-abcdef.tmp", live.id());
    std::fs::write(dir.path().join(&live_name), b"x").unwrap();
    run_ok(&args(99).iter().map(String::as_str).collect::<Vec<_>>());
    let left = temp_files(dir.path());
    let _ = live.kill();
    let _ = live.wait();
    assert_eq!(
        left,
        vec![live_name],
        "killed runs left {left_behind} file(s) at most"
    );
    run_ok(&[
        "assignment",
        "--experiment-id",
        "K",
        "--input",
        out.to_str().unwrap(),
        "7919",
    ]);
}

#[test]
fn strata_named_like_assignment_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let dsn = format!("sqlite://{}", db.display());
    for name in [
        "arm_name",
        "stratum_id",
        "created_at",
        "experiment_id",
        "ARM_ID",
    ] {
        let p = dir.path().join("r.csv");
        let mut s = format!("id,{name}\n");
        for i in 0..40 {
            s.push_str(&format!("{i},{}\n", i % 3));
        }
        std::fs::write(&p, s).unwrap();
        let o = dir.path().join("o.csv");
        for extra in [
            vec!["--output", o.to_str().unwrap()],
            vec!["--write-table", "t", "--dsn", &dsn],
        ] {
            let mut args = vec![
                "assign",
                "--input",
                p.to_str().unwrap(),
                "--id-column",
                "id",
                "--arms",
                "a,b",
                "--seed",
                "1",
                "--strata",
                name,
            ];
            args.extend(extra);
            let (code, err) = run_err(&args);
            assert_eq!(code, 2, "{name}: {err}");
            assert!(
                err.contains(&format!(
                    "--strata/--metrics {name}: the assignment has its own column"
                )),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        assert!(!o.exists());
    }
}

#[test]
fn write_table_with_schema_on_sqlite_explains_there_are_no_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path(), "p.csv", &participants(50, false));
    let db = dir.path().join("w.db");
    let dsn = format!("sqlite://{}", db.display());
    let (code, err) = run_err(&[
        "assign",
        "--input",
        input.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--seed",
        "1",
        "--write-table",
        "s.t",
        "--dsn",
        &dsn,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "--write-table s.t: SQLite has no schemas; give the table name alone (--write-table t)"
        ),
        "{err}"
    );
    let (code, err) = run_err(&[
        "assignment",
        "--experiment-id",
        "E",
        "--table",
        "s.t",
        "--dsn",
        &dsn,
        "1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--table s.t: SQLite has no schemas"), "{err}");
}

// ------------------------------------------------- lookups of many ids, concurrent writers

/// `assignment --table` with 70,000 ids (1,500 of them assigned) on one warehouse.
async fn lookup_of_many_ids(dsn: &str, dialect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let people = participants(1500, false);
    let input = write_csv(dir.path(), "p.csv", &people);
    let table = format!("many_{dialect}_{}", std::process::id());
    run_ok(&[
        "assign",
        "--input",
        input.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--seed",
        "1",
        "--experiment-id",
        "M",
        "--write-table",
        &table,
        "--dsn",
        dsn,
        "-q",
    ]);
    let mut args: Vec<String> = [
        "assignment",
        "--experiment-id",
        "M",
        "--table",
        &table,
        "--dsn",
        dsn,
        "--format",
        "csv",
    ]
    .map(String::from)
    .to_vec();
    args.extend(people.iter().map(|(id, _)| id.to_string()));
    args.extend((0..68_500).map(|i| format!("9{i:08}")));
    let out = xngin().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("68500 participant id(s) not found in experiment M"),
        "{}",
        &err[..err.len().min(300)]
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1 + 1500
    );
    let q = |s: &str| {
        if dialect == "mysql" {
            format!("`{s}`")
        } else {
            format!("\"{s}\"")
        }
    };
    exec(dsn, &format!("DROP TABLE {}", q(&table))).await;
}

#[tokio::test]
async fn assignment_lookup_of_70000_ids_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("w.db").display());
    lookup_of_many_ids(&dsn, "sqlite").await;
}

#[tokio::test]
async fn assignment_lookup_of_70000_ids_postgres() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    lookup_of_many_ids(&url, "postgres").await;
}

#[tokio::test]
async fn assignment_lookup_of_70000_ids_mysql() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    lookup_of_many_ids(&url, "mysql").await;
}

/// Two runs write the same experiment into the same new table at once: one wins, the other is
/// told that another run holds the table or experiment (or, if it came second, that the
/// experiment is already there), never a bare database error.
async fn concurrent_writers(dsn: &str, dialect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path(), "p.csv", &participants(20_000, false));
    let bin = assert_cmd::cargo::cargo_bin("xngin");
    let q = |s: &str| {
        if dialect == "mysql" {
            format!("`{s}`")
        } else {
            format!("\"{s}\"")
        }
    };
    for round in 0..3 {
        let table = format!("race_{dialect}_{}_{round}", std::process::id());
        let children: Vec<std::process::Child> = (0..2)
            .map(|seed| {
                std::process::Command::new(&bin)
                    .args([
                        "assign",
                        "--input",
                        input.to_str().unwrap(),
                        "--id-column",
                        "id",
                        "--arms",
                        "a,b",
                        "--strata",
                        "region",
                        "--seed",
                        &seed.to_string(),
                        "--experiment-id",
                        "RACE",
                        "--write-table",
                        &table,
                        "--dsn",
                        dsn,
                        "-q",
                    ])
                    .env_remove("XNGIN_SETTINGS")
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
        let wins = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            wins,
            1,
            "{:?}",
            outs.iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect::<Vec<_>>()
        );
        for o in outs.iter().filter(|o| !o.status.success()) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("another run is writing the table")
                    || err.contains("already holds 20000 assignment(s) of experiment RACE"),
                "{err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
        assert_eq!(
            count(
                dsn,
                &format!(
                    "SELECT count(*) FROM {} WHERE {} = 'RACE'",
                    q(&table),
                    q("experiment_id")
                )
            )
            .await,
            20_000
        );
        exec(dsn, &format!("DROP TABLE {}", q(&table))).await;
        exec(
            dsn,
            &format!(
                "DELETE FROM {} WHERE {} = '{table}'",
                q("xngin_experiments"),
                q("assignment_table")
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn concurrent_writers_loser_is_told_another_run_holds_the_table_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("w.db").display());
    concurrent_writers(&dsn, "sqlite").await;
}

#[tokio::test]
async fn concurrent_writers_loser_is_told_another_run_holds_the_table_postgres() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    concurrent_writers(&url, "postgres").await;
}

#[tokio::test]
async fn concurrent_writers_loser_is_told_another_run_holds_the_table_mysql() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    concurrent_writers(&url, "mysql").await;
}

/// The examples in `xngin assign --help` run as written (issue: `'age between 18 65'` was
/// rejected by the filter syntax, which separates values with a comma). Each line is run by the
/// shell, with the built binary first on PATH, an empty XNGIN_HOME (the built-in testing
/// warehouse) and a `people.csv` in the working directory.
#[test]
fn help_examples_run_as_written() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut people = String::from("id,region\n");
    for i in 0..200 {
        people.push_str(&format!("{i},{}\n", ["north", "south", "east"][i % 3]));
    }
    std::fs::write(cwd.path().join("people.csv"), people).unwrap();
    let mut pupils = String::from("pupil,school,district\n");
    for i in 0..300 {
        let school = i % 24;
        pupils.push_str(&format!("{i},s{school},d{}\n", school % 2));
    }
    std::fs::write(cwd.path().join("pupils.csv"), pupils).unwrap();
    let (help, _) = run_ok(&["assign", "--help"]);
    // One example per line starting with `xngin`; longer ones go on with `\` continuations.
    let mut examples: Vec<String> = Vec::new();
    for line in help
        .split("Examples:")
        .nth(1)
        .expect("assign --help has examples")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match examples.last_mut() {
            Some(e) if e.ends_with('\\') => {
                e.push('\n');
                e.push_str(line);
            }
            _ => examples.push(line.to_string()),
        }
    }
    assert!(examples.iter().all(|e| e.starts_with("xngin ")), "{help}");
    assert_eq!(examples.len(), 4, "{help}");
    assert!(examples.iter().any(|e| e.contains("--filter")), "{help}");
    let bin = assert_cmd::cargo::cargo_bin("xngin");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for example in &examples {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(example)
            .current_dir(cwd.path())
            .env("PATH", &path)
            .env("XNGIN_HOME", home.path())
            .env_remove("XNGIN_SETTINGS")
            .env_remove("XNGIN_DATASOURCE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Python tool's float weights (three times 100/3 as a float) are read as the fractions
/// they stand for: 1000 units split 333/333/334, and the record shows both forms.
#[test]
fn arm_weights_as_the_python_tool_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(1000, false));
    let w = "33.333333333333336";
    let (json, _) = run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b,c",
        "--arm-weights",
        &format!("{w},{w},{w}"),
        "--seed",
        "4",
        "--format",
        "json",
        "-q",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arms = rec["arms"].as_array().unwrap();
    let mut counts: Vec<u64> = arms
        .iter()
        .map(|a| a["assigned"].as_u64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, vec![333, 333, 334]);
    for a in arms {
        assert_eq!(a["weight"], w);
        assert_eq!(a["exact_weight"], "100/3");
        assert_eq!(a["share"], "1/3");
    }
    assert_eq!(rec["block_size"], 3);
    // 100/7-like weights and fractions: blocks of 7 and 6.
    let (json, _) = run_ok(&[
        "assign",
        "--input",
        a.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b,c",
        "--arm-weights",
        "1/3,1/6,0.5",
        "--strata",
        "region",
        "--seed",
        "4",
        "--format",
        "json",
        "-q",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["block_size"], 6);
    assert_eq!(rec["arms"][1]["exact_weight"], "1/6");
}

/// `--quantiles 4294967295` used to allocate 34 GB before looking at the data; now the bins
/// are bounded by the values (every distinct value its own bin) and the run says so.
#[test]
fn huge_quantiles_are_bounded_by_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(dir.path(), "a.csv", &participants(300, false));
    for q in ["4294967295", "4000000000"] {
        let (json, err) = run_ok(&[
            "assign",
            "--input",
            a.to_str().unwrap(),
            "--id-column",
            "id",
            "--arms",
            "a,b",
            "--metrics",
            "score",
            "--quantiles",
            q,
            "--seed",
            "2",
            "--format",
            "json",
        ]);
        assert!(
            err.contains(&format!(
                "--quantiles {q} is more than the 300 value(s) of score can fill"
            )),
            "{err}"
        );
        let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(rec["quantiles"].as_u64().unwrap().to_string(), q);
        assert_eq!(rec["strata_used"], serde_json::json!(["score"]));
    }
}

/// A stratum with thousands of levels (most participants alone in their stratum): the
/// balance test leaves it out with the reason, in linear time, and the run warns that most
/// blocks are partial.
#[test]
fn stratum_with_many_levels_warns_and_is_left_out_of_balance() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fine.csv");
    let mut s = String::from("id,zip,region\n");
    for i in 0..6000 {
        s.push_str(&format!(
            "{i},z{},{}\n",
            (i * 7) % 4000,
            ["n", "s", "e"][i % 3]
        ));
    }
    std::fs::write(&p, s).unwrap();
    let started = std::time::Instant::now();
    let (json, err) = run_ok(&[
        "assign",
        "--input",
        p.to_str().unwrap(),
        "--id-column",
        "id",
        "--arms",
        "a,b",
        "--strata",
        "zip,region",
        "--seed",
        "5",
        "--format",
        "json",
    ]);
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    assert!(err.contains("blocks are partial"), "{err}");
    assert!(
        err.contains(
            "the balance test of b vs a leaves out stratum zip: its 4000 levels among 6000 compared \
             participants (fewer than 10 per level)"
        ),
        "{err}"
    );
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let b = &rec["balance"][0];
    assert_eq!(b["left_out"][0]["field"], "zip");
    assert_eq!(b["numerator_df"], 2, "{b}");
    assert!(b["p_value"].as_f64().is_some(), "{b}");
}

/// MD5 of a text as 32 lowercase hex digits (the keys of docs/assignment-algorithm.md).
fn md5_hex(text: &str) -> String {
    use md5::Digest;
    let d: [u8; 16] = md5::Md5::digest(text.as_bytes()).into();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cells of the markdown table whose header line starts with `header`, in `doc`.
fn doc_table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table {header:?} in the doc");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn worked_example_in_docs_is_reproduced() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/assignment-algorithm.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let doc = &doc[doc.find("<!-- worked-example").expect("example marker")..];
    // The command, its seed and its arms.
    let cmd: Vec<&str> = doc
        .lines()
        .find(|l| l.trim_start().starts_with("xngin assign"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    let flag = |f: &str| cmd[cmd.iter().position(|a| *a == f).unwrap() + 1];
    let seed = flag("--seed");
    let table = doc_table(doc, "| id |");
    assert_eq!(table.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,region\n");
    for r in &table {
        csv.push_str(&format!("{},{}\n", r[0], r[1]));
    }
    let input = dir.path().join("example.csv");
    std::fs::write(&input, csv).unwrap();
    let run = |extra: &[&str], out: &Path| {
        let mut args: Vec<&str> = cmd.clone();
        let i = args.iter().position(|a| *a == "--input").unwrap();
        args[i + 1] = input.to_str().unwrap();
        args.extend(extra);
        args.extend(["--output", out.to_str().unwrap(), "-q"]);
        run_ok(&args);
        let text = std::fs::read_to_string(out).unwrap();
        let rows: Vec<Vec<String>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.design.json", out.display())).unwrap(),
        )
        .unwrap();
        (rows, record)
    };
    // Arms per misfit strategy (columns 5, 7, 8) and stratum ids (column 2).
    let mut record = serde_json::Value::Null;
    for (strategy, col) in [("stratum", 5), ("global", 7), ("none", 8)] {
        let out = dir.path().join(format!("{strategy}.csv"));
        let (rows, rec) = run(&["--misfit-strategy", strategy], &out);
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r[0].clone(), r[3].clone(), r[2].clone()))
            .collect();
        let mut want: Vec<(String, String, String)> = table
            .iter()
            .map(|r| (r[0].clone(), r[2].clone(), r[col].clone()))
            .collect();
        want.sort_by_key(|w| w.0.parse::<i64>().unwrap());
        assert_eq!(got, want, "misfit strategy {strategy}");
        if strategy == "stratum" {
            record = rec;
        }
    }
    assert_eq!(record["seed"].as_u64().unwrap().to_string(), seed);
    let l = record["block_size"].as_u64().unwrap() as usize;
    // Unit keys, pool keys (for leftovers only) and each unit's place in its stratum.
    for r in &table {
        assert_eq!(
            r[3],
            md5_hex(&format!("{seed}:{}", r[0])),
            "unit key of {}",
            r[0]
        );
        if r[4].starts_with("leftover") {
            assert_eq!(r[6], md5_hex(&format!("pool:{seed}:{}", r[0])));
        } else {
            assert_eq!(r[6], "");
        }
    }
    let mut strata: std::collections::BTreeMap<&str, Vec<&Vec<String>>> = Default::default();
    for r in &table {
        strata.entry(r[2].as_str()).or_default().push(r);
    }
    for units in strata.values_mut() {
        units.sort_by(|a, b| a[3].cmp(&b[3]));
        let full = units.len() - units.len() % l;
        for (j, u) in units.iter().enumerate() {
            let place = if j < full {
                format!("block {} position {}", j / l, j % l)
            } else {
                format!("leftover {}", j - full)
            };
            assert_eq!(u[4], place, "place of {}", u[0]);
        }
    }
    // Mask keys and their order.
    let masks = doc_table(doc, "| label |");
    assert_eq!(masks.len(), 4);
    for m in &masks {
        let keys: Vec<String> = (0..l)
            .map(|p| md5_hex(&format!("mask:{seed}:{}:{p}", m[0])))
            .collect();
        assert_eq!(&m[1..=l], &keys[..], "mask keys of {}", m[0]);
        let mut pi: Vec<usize> = (0..l).collect();
        pi.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        let pi: Vec<String> = pi.iter().map(|p| p.to_string()).collect();
        assert_eq!(m[l + 1], pi.join(", "));
    }
    // Sample and fingerprint lines.
    let line = |start: &str| doc.lines().find(|l| l.starts_with(start)).unwrap();
    let sample = line("Sample:");
    let (k, kept) = sample
        .strip_prefix("Sample: `--sample-size ")
        .and_then(|s| s.split_once("` keeps the ids "))
        .unwrap();
    let kept = kept.split(" (").next().unwrap();
    let (rows, _) = run(&["--sample-size", k], &dir.path().join("sample.csv"));
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids.join(", "), kept);
    let fp = line("Fingerprint:");
    assert_eq!(
        fp,
        format!(
            "Fingerprint: rows {}, unit_key_sum {}.",
            record["input_fingerprint"]["rows"],
            record["input_fingerprint"]["unit_key_sum"]
                .as_str()
                .unwrap()
        )
    );
}

/// The keyed assignment computed by PostgreSQL (`assign::pushdown`) equals the local one, row
/// for row, for every misfit strategy, without strata, and for text ids.
#[tokio::test]
async fn pushdown_query_on_postgres_equals_the_local_assignment() {
    use xngin::assign::{self, Arms, Column, ColumnData, Design, Ids, MisfitStrategy, Table};
    use xngin::warehouse::{Value, Warehouse};
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let wh = Warehouse::connect(&xngin::dsn::Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    let levels = ["a", "B", "b", "é", "Z"];
    for text_ids in [false, true] {
        // One table per id type (a statement prepared for one is not reused on the other).
        let name = format!("pushdown_{}_{text_ids}", std::process::id());
        let n = 1237usize;
        let ids: Vec<String> = (0..n)
            .map(|i| {
                let v = (i as i64 * 7919) % 100_003 - 40_000;
                if text_ids {
                    format!("P-{v}")
                } else {
                    v.to_string()
                }
            })
            .collect();
        let g: Vec<Option<&str>> = (0..n)
            .map(|i| (i % 13 != 0).then(|| levels[(i * i) % levels.len()]))
            .collect();
        let flag: Vec<Option<bool>> = (0..n)
            .map(|i| (i % 17 != 0).then_some(i % 3 == 0))
            .collect();
        // A linguistic collation where the server has one ("a" < "B"), so that the query must
        // order text by bytes itself.
        let icu = wh
            .fetch_all(
                "SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'",
                &[],
            )
            .await
            .unwrap()
            .rows[0][0]
            .as_i64()
            == Some(1);
        let collate = if icu { " COLLATE \"und-x-icu\"" } else { "" };
        let id_type = if text_ids {
            format!("TEXT{collate}")
        } else {
            "BIGINT".to_string()
        };
        wh.execute(&format!("DROP TABLE IF EXISTS \"{name}\""), &[])
            .await
            .unwrap();
        wh.execute(
            &format!(
                "CREATE TABLE \"{name}\" (id {id_type} PRIMARY KEY, g TEXT{collate}, flag BOOLEAN)"
            ),
            &[],
        )
        .await
        .unwrap();
        for i in 0..n {
            let id = if text_ids {
                Value::Text(ids[i].clone())
            } else {
                Value::Int(ids[i].parse().unwrap())
            };
            wh.execute(
                &format!("INSERT INTO \"{name}\" VALUES ($1, $2, $3)"),
                &[
                    id,
                    g[i].map_or(Value::Null, |s| Value::Text(s.into())),
                    flag[i].map_or(Value::Null, Value::Bool),
                ],
            )
            .await
            .unwrap();
        }
        let table = Table {
            source: "t".into(),
            id_column: "id".into(),
            ids: Ids::from_strings(ids.clone()),
            origin: None,
            columns: vec![
                Column {
                    name: "flag".into(),
                    data: ColumnData::Bool(flag.clone()),
                },
                Column {
                    name: "g".into(),
                    data: ColumnData::text_from(g.iter().copied()),
                },
            ],
        };
        let names = ["c".to_string(), "t1".to_string(), "t2".to_string()];
        let weights = ["1".to_string(), "2".to_string(), "3".to_string()];
        let arms = Arms::new(&names, Some(&weights)).unwrap();
        for (strata, misfit, seed) in [
            (vec!["flag", "g"], MisfitStrategy::Stratum, 42u64),
            (vec!["flag", "g"], MisfitStrategy::Global, 7),
            (vec!["flag", "g"], MisfitStrategy::None, u64::MAX),
            (vec!["g"], MisfitStrategy::Stratum, 0),
            (vec![], MisfitStrategy::Stratum, 3),
        ] {
            let design = Design {
                arms: arms.clone(),
                strata: strata.iter().map(|s| s.to_string()).collect(),
                quantiles: 4,
                misfit,
                seed,
                fstat_thresh: 0.6,
                cluster: None,
            };
            let local = assign::assign(&table, &design).unwrap();
            assert_eq!(local.used, design.strata);
            let cols: Vec<(String, bool)> = strata
                .iter()
                .map(|s| (format!("\"{s}\""), *s == "g"))
                .collect();
            let rel = format!("\"{name}\"");
            let audience = assign::pushdown::Audience {
                relation: &rel,
                id: "\"id\"",
                integer_ids: !text_ids,
                strata: &cols,
                carry: &[],
            };
            let (sql, params) = assign::pushdown::postgres_assignment(&audience, &design, n as u64);
            let rows = wh.fetch_all(&sql, &params).await.unwrap();
            let mut got: Vec<(String, Option<i64>, Option<i64>)> = rows
                .rows
                .iter()
                .map(|r| (r[0].to_text().unwrap(), r[1].as_i64(), r[2].as_i64()))
                .collect();
            got.sort();
            let mut want: Vec<(String, Option<i64>, Option<i64>)> = (0..n)
                .map(|i| {
                    let a = local.arm[i];
                    (
                        ids[i].clone(),
                        (a != assign::UNASSIGNED).then_some(a as i64),
                        local.stratum_id.as_ref().map(|s| s[i] as i64),
                    )
                })
                .collect();
            want.sort();
            assert_eq!(
                got, want,
                "text ids {text_ids}, strata {strata:?}, {misfit:?}, seed {seed}"
            );
        }
        wh.execute(&format!("DROP TABLE IF EXISTS \"{name}\""), &[])
            .await
            .unwrap();
    }
    wh.close().await;
}

/// A CSV longer than the sample (10,000 records) whose strata are not in the file's column
/// order (strata are taken sorted: gender before region) is read, not refused with polars'
/// "unable to vstack"; the same rows with the columns swapped give the same assignment.
#[test]
fn strata_out_of_file_order_in_a_long_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (
        String::from("id,region,gender\n"),
        String::from("id,gender,region\n"),
    );
    for i in 0..12_000 {
        let (r, g) = (["north", "south"][i % 2], ["F", "M", "X"][i % 3]);
        a.push_str(&format!("{i},{r},{g}\n"));
        b.push_str(&format!("{i},{g},{r}\n"));
    }
    let (pa, pb) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let mut outs = Vec::new();
    for p in [&pa, &pb] {
        let (csv, _) = run_ok(&[
            "assign",
            "--input",
            p.to_str().unwrap(),
            "--id-column",
            "id",
            "--strata",
            "region,gender",
            "--arms",
            "a,b",
            "--seed",
            "3",
            "--format",
            "csv",
            "-q",
        ]);
        outs.push(csv);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0].lines().count(), 12_001);
}
