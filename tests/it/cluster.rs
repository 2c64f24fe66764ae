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

// ---------------------------------------------------------------- cluster assignment

/// Pupils in schools: `(pupil id, school, district, kind)`; district and kind are school-level.
/// 150 schools of 3 … 60 pupils (about 4,800 pupils), two districts and two kinds (4 strata).
fn pupils() -> Vec<(i64, String, &'static str, &'static str)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    let mut id = 1000i64;
    for s in 0..150u64 {
        let size = 3 + next() % 58;
        let district = ["east", "west"][(next() % 2) as usize];
        let kind = ["private", "public"][(next() % 3).min(1) as usize];
        for _ in 0..size {
            id += 1 + (next() % 5) as i64;
            out.push((id, format!("sch-{s:03}"), district, kind));
        }
    }
    out
}

fn pupils_csv(rows: &[(i64, String, &str, &str)]) -> String {
    let mut s = String::from("pupil,school,district,kind\n");
    for (id, school, d, k) in rows {
        s.push_str(&format!("{id},{school},{d},{k}\n"));
    }
    s
}

fn xngin_cmd() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("xngin").unwrap();
    c.env_remove("XNGIN_SETTINGS")
        .env_remove("XNGIN_DATASOURCE")
        .env_remove("XNGIN_ECHO_SQL");
    c
}

fn cluster_args<'a>(input: &'a str, out: &'a str, misfit: &'a str) -> Vec<&'a str> {
    vec![
        "assign",
        "--input",
        input,
        "--id-column",
        "pupil",
        "--cluster-column",
        "school",
        "--strata",
        "district,kind",
        "--arms",
        "control,t1,t2",
        "--arm-weights",
        "2,1,1",
        "--misfit-strategy",
        misfit,
        "--seed",
        "20261205",
        "--experiment-id",
        "cluster-test",
        "--output",
        out,
        "-q",
    ]
}

/// The output rows: (pupil, arm_id, stratum_id, school).
fn read_assignment(path: &std::path::Path) -> Vec<(i64, Option<u32>, u32, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("participant_id,arm_id,arm_name,stratum_id,school")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().ok(),
                f[3].parse().unwrap_or(u32::MAX),
                f[4].to_string(),
            )
        })
        .collect()
}

/// Whole schools are assigned: every pupil has its school's arm; full blocks of 4 schools
/// (weights 2,1,1) are split exactly within each stratum, so with misfit strategy `none` each
/// stratum of s schools has exactly ⌊s/4⌋·(2,1,1) schools per arm; the record counts clusters
/// and pupils per arm; re-runs and shuffled rows give the same bytes.
#[test]
fn whole_clusters_are_assigned_in_exact_blocks_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let rows = pupils();
    let input = dir.path().join("pupils.csv");
    std::fs::write(&input, pupils_csv(&rows)).unwrap();
    let mut shuffled = rows.clone();
    shuffled.reverse();
    shuffled.rotate_left(777);
    let input2 = dir.path().join("shuffled.csv");
    std::fs::write(&input2, pupils_csv(&shuffled)).unwrap();
    let schools: std::collections::HashMap<String, (&str, &str)> = rows
        .iter()
        .map(|(_, s, d, k)| (s.clone(), (*d, *k)))
        .collect();
    for misfit in ["none", "stratum", "global"] {
        let out = dir.path().join(format!("{misfit}.csv"));
        let out2 = dir.path().join(format!("{misfit}-again.csv"));
        let out3 = dir.path().join(format!("{misfit}-shuffled.csv"));
        for (i, o) in [(&input, &out), (&input, &out2), (&input2, &out3)] {
            xngin_cmd()
                .args(cluster_args(
                    i.to_str().unwrap(),
                    o.to_str().unwrap(),
                    misfit,
                ))
                .assert()
                .success();
        }
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes, std::fs::read(&out2).unwrap(), "{misfit}: re-run");
        assert_eq!(bytes, std::fs::read(&out3).unwrap(), "{misfit}: row order");
        let got = read_assignment(&out);
        assert_eq!(got.len(), rows.len());
        // One arm and one stratum per school.
        let mut school_arm: std::collections::BTreeMap<String, (Option<u32>, u32)> =
            Default::default();
        for (_, arm, sid, school) in &got {
            let e = school_arm.entry(school.clone()).or_insert((*arm, *sid));
            assert_eq!(*e, (*arm, *sid), "{misfit}: school {school} split");
        }
        assert_eq!(school_arm.len(), 150);
        // Schools per stratum and per arm.
        let mut per: std::collections::BTreeMap<u32, [u64; 4]> = Default::default();
        for (arm, sid) in school_arm.values() {
            per.entry(*sid).or_default()[arm.map_or(3, |a| a as usize)] += 1;
        }
        for (sid, c) in &per {
            let s: u64 = c.iter().sum();
            let full = s / 4;
            match misfit {
                "none" => assert_eq!(c, &[2 * full, full, full, s % 4], "stratum {sid}"),
                "stratum" => {
                    // Leftovers draw without replacement from one block mask.
                    assert_eq!(c[3], 0);
                    assert!(
                        c[0] >= 2 * full && c[0] <= 2 * full + 2,
                        "stratum {sid}: {c:?}"
                    );
                    assert!(c[1] >= full && c[1] <= full + 1, "stratum {sid}: {c:?}");
                    assert!(c[2] >= full && c[2] <= full + 1, "stratum {sid}: {c:?}");
                }
                _ => assert_eq!(c[3], 0),
            }
        }
        // Strata are the school-level (district, kind) pairs, in sorted order.
        for (school, (_, sid)) in &school_arm {
            let (d, k) = schools[school];
            let want = u32::from(d == "west") * 2 + u32::from(k == "public");
            assert_eq!(*sid, want, "{school}");
        }
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{misfit}.csv.design.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(rec["cluster"]["column"], "school");
        assert_eq!(rec["cluster"]["clusters"], 150);
        for a in 0..3 {
            let arm = &rec["arms"][a];
            let pupils = got.iter().filter(|r| r.1 == Some(a as u32)).count() as u64;
            let schools = school_arm
                .values()
                .filter(|v| v.0 == Some(a as u32))
                .count() as u64;
            assert_eq!(arm["assigned"].as_u64(), Some(pupils), "{misfit}");
            assert_eq!(arm["clusters"].as_u64(), Some(schools), "{misfit}");
        }
        assert_eq!(rec["input_fingerprint"]["rows"], rows.len() as u64);
        // Clustered balance: denominator df = clusters − 1 of the compared arms.
        for t in rec["balance"].as_array().unwrap() {
            let g = t["clusters"].as_u64().unwrap();
            assert_eq!(t["denominator_df"].as_u64(), Some(g - 1), "{t}");
        }
    }
}

/// Without strata the clusters are assigned by complete random assignment in the order of their
/// keys MD5("{seed}:{cluster id}") (docs/assignment-algorithm.md, section 7, over clusters):
/// with 150 schools and weights 2,1,1 the 75 smallest keys are control, the next 38 t1, the
/// last 37 t2.
#[test]
fn cluster_keys_are_md5_of_seed_and_cluster_id() {
    use md5::{Digest, Md5};
    let dir = tempfile::tempdir().unwrap();
    let rows = pupils();
    let input = dir.path().join("pupils.csv");
    std::fs::write(&input, pupils_csv(&rows)).unwrap();
    let out = dir.path().join("out.csv");
    let mut args = cluster_args(input.to_str().unwrap(), out.to_str().unwrap(), "stratum");
    let i = args.iter().position(|a| *a == "--strata").unwrap();
    args.drain(i..i + 2);
    xngin_cmd().args(args).assert().success();
    let got = read_assignment(&out);
    let mut schools: Vec<String> = got.iter().map(|r| r.3.clone()).collect();
    schools.sort();
    schools.dedup();
    schools.sort_by_key(|s| hex::encode(Md5::digest(format!("20261205:{s}").as_bytes())));
    let arm_of: std::collections::HashMap<&str, Option<u32>> =
        got.iter().map(|r| (r.3.as_str(), r.1)).collect();
    for (k, s) in schools.iter().enumerate() {
        let want = if k < 75 {
            0
        } else if k < 113 {
            1
        } else {
            2
        };
        assert_eq!(arm_of[s.as_str()], Some(want), "school {s} at key rank {k}");
    }
}

/// Bad cluster input: a NULL cluster id, a stratum that varies within a school, the id as the
/// cluster column, a cluster column that is also a stratum, --sample-size with clusters, and a
/// single cluster: one-line errors with the right exit codes, nothing written.
#[test]
fn bad_cluster_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("p.csv");
    let out = dir.path().join("out.csv");
    let run = |csv: &str, extra: &[&str]| {
        std::fs::write(&input, csv).unwrap();
        let o = xngin_cmd()
            .args([
                "assign",
                "--input",
                input.to_str().unwrap(),
                "--id-column",
                "pupil",
                "--arms",
                "a,b",
                "--seed",
                "1",
                "--output",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.exists());
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )
    };
    let good = "pupil,school,district\n1,s1,east\n2,s1,east\n3,s2,west\n4,s3,west\n";
    let (code, err) = run(
        "pupil,school,district\n1,s1,east\n2,,east\n3,s2,west\n4,,west\n",
        &["--cluster-column", "school"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the cluster column school is empty (NULL) for 2 participant(s) (participant id 2 (line 3), participant id 4 (line 5))"),
        "{err}"
    );
    let (code, err) = run(
        "pupil,school,district\n1,s1,east\n2,s1,west\n3,s2,west\n4,s3,west\n5,s3,north\n",
        &["--cluster-column", "school", "--strata", "district"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "the stratum district is not constant within clusters of school in 2 cluster(s) \
             (cluster s1 has east, west; cluster s3 has north, west)"
        ),
        "{err}"
    );
    let (code, err) = run(good, &["--cluster-column", "pupil"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the unique id column pupil"), "{err}");
    // The same check, and exit code, when the id comes from a participant type's sheet.
    let out = common::xngin(&common::shared_home())
        .args([
            "assign",
            "--participant-type",
            "test_participant_type",
            "--arms",
            "a,b",
            "--cluster-column",
            "id",
            "--seed",
            "1",
        ])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cluster-column id is the unique id column id"),
        "{err}"
    );
    let (code, err) = run(good, &["--cluster-column", "school", "--strata", "school"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is also in --strata/--metrics"), "{err}");
    let (code, err) = run(good, &["--cluster-column", "school", "--sample-size", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("would split clusters"), "{err}");
    let (code, err) = run(
        "pupil,school\n1,s1\n2,s1\n3,s1\n",
        &["--cluster-column", "school"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("all in one cluster of school"), "{err}");
    let (code, err) = run(good, &["--cluster-column", "nope"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "no column named nope for --cluster-column (columns: pupil, school, district)"
        ),
        "{err}"
    );
}

/// The same cluster assignment from a participant type's table (SQLite, PostgreSQL, MariaDB)
/// as from the file of the same rows: byte-identical assignment files, and `--write-table`
/// carries the cluster id of every row.
async fn participant_type_cluster_assignment(dsn: &str, dialect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rows = pupils();
    let table = common::unique("xngin_pupils");
    let out_table = common::unique("xngin_pupil_arms");
    let wh = Warehouse::connect_with(
        &Dsn::parse(dsn).unwrap(),
        xngin::warehouse::ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap();
    let qualified = wh.qualified(None, &table);
    let columns = [
        ColumnDef::new("pupil", DataType::Bigint).primary_key(),
        ColumnDef::new("school", DataType::CharacterVarying),
        ColumnDef::new("district", DataType::CharacterVarying),
        ColumnDef::new("kind", DataType::CharacterVarying),
    ];
    wh.execute(&create_table_sql(wh.dialect(), &qualified, &columns), &[])
        .await
        .unwrap();
    let mut tx = wh.begin().await.unwrap();
    // Inserted in a scrambled order: the table's order must not matter either.
    let mut scrambled = rows.clone();
    scrambled.rotate_left(1234);
    insert_rows(
        &mut tx,
        &qualified,
        &columns,
        scrambled.iter().map(|(id, s, d, k)| {
            Ok(vec![
                Value::Int(*id),
                Value::Text(s.clone()),
                Value::Text(d.to_string()),
                Value::Text(k.to_string()),
            ])
        }),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let settings = dir.path().join("s.json");
    std::fs::write(
        &settings,
        format!(
            r#"{{"datasources": [{{"id": "ds", "config": {{"type": "remote", "dwh": "{dsn}",
  "participants": [{{"type": "schema", "participant_type": "pupils", "table_name": "{table}",
    "fields": [{{"field_name": "pupil", "data_type": "bigint", "is_unique_id": true}},
               {{"field_name": "school", "data_type": "character varying"}},
               {{"field_name": "district", "data_type": "character varying", "is_strata": true}},
               {{"field_name": "kind", "data_type": "character varying", "is_strata": true}}]}}]}}}}]}}"#
        ),
    )
    .unwrap();
    let input = dir.path().join("pupils.csv");
    std::fs::write(&input, pupils_csv(&rows)).unwrap();
    let from_file = dir.path().join("file.csv");
    xngin_cmd()
        .args(cluster_args(
            input.to_str().unwrap(),
            from_file.to_str().unwrap(),
            "stratum",
        ))
        .assert()
        .success();
    let from_table = dir.path().join("table.csv");
    let mut args = cluster_args("", from_table.to_str().unwrap(), "stratum");
    let i = args.iter().position(|a| *a == "--input").unwrap();
    args.splice(i..i + 4, ["--participant-type", "pupils"]);
    let out = xngin_cmd()
        .args(&args)
        .args([
            "--settings",
            settings.to_str().unwrap(),
            "--write-table",
            &out_table,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{dialect}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&from_file).unwrap(),
        std::fs::read(&from_table).unwrap(),
        "{dialect}: the table's assignment differs from the file's"
    );
    let want: std::collections::HashMap<i64, (Option<u32>, String)> = read_assignment(&from_file)
        .into_iter()
        .map(|(id, arm, _, school)| (id, (arm, school)))
        .collect();
    let oq = wh.qualified(None, &out_table);
    let got = wh
        .fetch_all(
            &format!(
                "SELECT {}, {}, {} FROM {oq}",
                wh.quote("participant_id"),
                wh.quote("arm_id"),
                wh.quote("school")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(got.rows.len(), rows.len(), "{dialect}");
    for r in &got.rows {
        let id = r[0].as_i64().unwrap();
        let arm = r[1].as_i64().map(|a| a as u32);
        assert_eq!(
            want[&id],
            (arm, r[2].to_text().unwrap()),
            "{dialect}: pupil {id}"
        );
    }
    for t in [&table, &out_table] {
        wh.execute(&format!("DROP TABLE {}", wh.qualified(None, t)), &[])
            .await
            .unwrap();
    }
    wh.execute(
        &format!(
            "DELETE FROM {} WHERE {} = {}",
            wh.qualified(None, "xngin_experiments"),
            wh.quote("assignment_table"),
            wh.placeholder(1)
        ),
        &[Value::Text(out_table.clone())],
    )
    .await
    .unwrap();
    wh.close().await;
}

#[tokio::test]
async fn participant_type_cluster_assignment_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("w.db").display());
    participant_type_cluster_assignment(&dsn, "sqlite").await;
}

#[tokio::test]
async fn participant_type_cluster_assignment_postgres() {
    let Some(url) = common::pg_url("participant_type_cluster_assignment_postgres") else {
        return;
    };
    participant_type_cluster_assignment(&url, "postgres").await;
}

#[tokio::test]
async fn participant_type_cluster_assignment_mysql() {
    let Some(url) = common::mysql_url("participant_type_cluster_assignment_mysql") else {
        return;
    };
    participant_type_cluster_assignment(&url, "mysql").await;
}

// ---------------------------------------------------------------- ICC from the warehouse

/// `power --cluster-column` on the bundled warehouse: each metric's ICC, average cluster size
/// and CV equal the estimate computed here from the raw rows (to 1e-9), are used for the design
/// (the design effect is 1 + ICC((m − 1) + m·CV²)), and the output says where each came from;
/// a flag given replaces its estimate.
#[tokio::test]
async fn power_estimates_the_icc_from_the_warehouse() {
    let home = common::shared_home();
    let dsn = xngin::testing_dwh::default_warehouse_at(&home.join("testing_dwh.db"))
        .await
        .unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let rows = wh
        .fetch_all(
            "SELECT school_id, current_income, is_engaged, gender FROM test_participant_type",
            &[],
        )
        .await
        .unwrap();
    wh.close().await;
    let pairs = |col: usize| -> Vec<(i64, f64)> {
        rows.rows
            .iter()
            .filter(|r| r[3].to_text().as_deref() == Some("Female"))
            .filter_map(|r| Some((r[0].as_i64()?, r[col].as_f64()?)))
            .collect()
    };
    let want_income = estimate(&Anova::from_pairs(&pairs(1))).unwrap();
    let want_engaged = estimate(&Anova::from_pairs(&pairs(2))).unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = common::xngin(&home)
            .args([
                "power",
                "--participant-type",
                "test_participant_type",
                "--metric",
                "current_income=pct:0.05",
                "--metric",
                "is_engaged=pct:0.1",
                "--filter",
                "gender includes Female",
                "--cluster-column",
                "school_id",
                "--format",
                "json",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1e-12),
            "{what}: {a} vs {b}"
        );
    };
    let doc = run(&[]);
    for (a, want) in doc["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .zip([want_income, want_engaged])
    {
        let c = &a["cluster"];
        let i = &c["inputs"];
        let name = a["metric"]["name"].as_str().unwrap();
        close(i["icc"].as_f64().unwrap(), want.icc.max(0.0), name);
        close(
            i["estimate"]["icc_estimate"].as_f64().unwrap(),
            want.icc,
            name,
        );
        close(
            i["avg_cluster_size"].as_f64().unwrap(),
            want.avg_cluster_size,
            name,
        );
        close(i["cv"].as_f64().unwrap(), want.cv, name);
        assert_eq!(i["estimate"]["clusters"], 300, "{name}");
        assert_eq!(i["estimate"]["units"].as_u64(), Some(want.units), "{name}");
        assert_eq!(i["estimate"]["cluster_column"], "school_id");
        for s in ["icc_source", "avg_cluster_size_source", "cv_source"] {
            assert_eq!(i[s], "estimated", "{name} {s}");
        }
        let (icc, m, cv) = (want.icc.max(0.0), want.avg_cluster_size, want.cv);
        close(
            c["design_effect"].as_f64().unwrap(),
            1.0 + icc * ((m - 1.0) + m * cv * cv),
            name,
        );
    }
    // The school effect on income: an ICC near the generator's 0.16.
    assert!(
        (0.12..0.20).contains(&want_income.icc),
        "{}",
        want_income.icc
    );
    let doc = run(&["--icc", "0.05", "--cv", "0"]);
    let i = &doc["analyses"][0]["cluster"]["inputs"];
    assert_eq!(i["icc"], 0.05);
    assert_eq!(i["icc_source"], "given");
    assert_eq!(i["cv"], 0.0);
    assert_eq!(i["cv_source"], "given");
    assert_eq!(i["avg_cluster_size_source"], "estimated");
    close(
        i["avg_cluster_size"].as_f64().unwrap(),
        want_income.avg_cluster_size,
        "m",
    );
    // The table says where the numbers came from.
    let out = common::xngin(&home)
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "current_income=pct:0.05",
            "--cluster-column",
            "school_id",
        ])
        .output()
        .unwrap();
    let text = common::stdout(&out);
    assert!(
        text.contains("current_income: cluster design with ICC 0.156755 (estimated), average cluster size 333.333333 (estimated)"),
        "{text}"
    );
    assert!(
        text.contains("estimated from school_id over 300 clusters and 100000 units"),
        "{text}"
    );
}

/// Without --cluster-column the cluster flags go together (usage errors, exit 2); a cluster
/// column the sheet does not know is invalid input (exit 3), and so is a metric whose ICC cannot
/// be estimated — unless --icc and --avg-cluster-size give the design.
#[test]
fn power_cluster_flags_are_checked() {
    let home = common::shared_home();
    for (args, code, msg) in [
        (
            vec![
                "--metric-type",
                "numeric",
                "--baseline",
                "100",
                "--stddev",
                "20",
                "--target",
                "110",
                "--icc",
                "0.1",
            ],
            2,
            "--icc needs --avg-cluster-size",
        ),
        (
            vec![
                "--metric-type",
                "numeric",
                "--baseline",
                "100",
                "--stddev",
                "20",
                "--target",
                "110",
                "--avg-cluster-size",
                "10",
            ],
            2,
            "--avg-cluster-size needs --icc",
        ),
        (
            vec![
                "--participant-type",
                "test_participant_type",
                "--metric",
                "current_income=pct:0.1",
                "--cluster-column",
                "school",
            ],
            3,
            "--cluster-column school: no column \"school\" in the sheet",
        ),
        (
            vec![
                "--participant-type",
                "test_participant_type",
                "--metric",
                "is_recruited=pct:-0.1",
                "--cluster-column",
                "school_id",
            ],
            3,
            "--cluster-column school_id: cannot estimate the ICC of is_recruited: the metric does not vary; give --icc and --avg-cluster-size instead",
        ),
    ] {
        let out = common::xngin(&home)
            .arg("power")
            .args(&args)
            .output()
            .unwrap();
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    let out = common::xngin(&home)
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "is_recruited=pct:-0.1",
            "--cluster-column",
            "school_id",
            "--icc",
            "0.1",
            "--avg-cluster-size",
            "300",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stdout(&out).contains(
            "is_recruited: cluster design with ICC 0.1 (given), average cluster size 300 (given), CV 0 (default)"
        ),
        "{}",
        common::stdout(&out)
    );
}

// ---------------------------------------------------------------- the bundled warehouse

const BUNDLED_ARGS: [&str; 14] = [
    "--cluster-column",
    "school_id",
    "--strata",
    "school_district,school_type",
    "--arms",
    "control,t1,t2",
    "--arm-weights",
    "2,1,1",
    "--seed",
    "42",
    "--experiment-id",
    "walkthrough",
    "--format",
    "json",
];

/// Run the bundled cluster assignment with `audience` args into `out`; the design record.
fn bundled_assign(
    home: &std::path::Path,
    audience: &[&str],
    out: &std::path::Path,
) -> serde_json::Value {
    let o = common::xngin(home)
        .arg("assign")
        .args(audience)
        .args(BUNDLED_ARGS)
        .args(["--output", out.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The issue's acceptance run: the bundled warehouse (100,000 pupils in 300 schools), strata
/// school_district and school_type, 3 arms weighted 2,1,1. Every pupil has its school's arm;
/// the blocks of 4 schools are exact within each stratum; the clustered balance tests equal
/// statsmodels' (`fixtures/cluster_assign/make_expected.py`, which also pins the assignment
/// file's SHA-256) to 1e-8; a re-run and the same rows from a CSV file in reverse order give the
/// same bytes.
#[tokio::test]
async fn bundled_warehouse_cluster_assignment_matches_statsmodels() {
    let home = common::shared_home();
    let dir = tempfile::tempdir().unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/cluster_assign/expected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pt = ["--participant-type", "test_participant_type"];
    let out = dir.path().join("a.csv");
    let rec = bundled_assign(&home, &pt, &out);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        xngin::assign::output::file_sha256(&out).unwrap(),
        expected["assignment_sha256"].as_str().unwrap(),
        "the draw changed: regenerate fixtures/cluster_assign/expected.json only if that is intended"
    );
    for (got, want) in rec["balance"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected["balance"].as_array().unwrap())
    {
        assert_eq!(got["treatment_arm"], want["treatment_arm"]);
        for k in ["n", "clusters", "numerator_df", "denominator_df"] {
            assert_eq!(got[k], want[k], "{k}");
        }
        for k in ["f_statistic", "p_value"] {
            let (a, b) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-8 * b.abs(),
                "{k}: {a} vs statsmodels {b}"
            );
        }
    }
    assert_eq!(rec["cluster"]["clusters"], 300);
    assert_eq!(rec["input_fingerprint"]["rows"], 100_000);
    // Whole schools, exact blocks.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let mut school: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (arm, sid, s) = (
            f[1].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
        );
        let e = school.entry(s).or_insert((arm, sid));
        assert_eq!(*e, (arm, sid), "school {s} split");
    }
    assert_eq!(school.len(), 300);
    let mut per: std::collections::BTreeMap<i64, [u64; 3]> = Default::default();
    for (arm, sid) in school.values() {
        per.entry(*sid).or_default()[*arm as usize] += 1;
    }
    for (sid, c) in &per {
        let full = c.iter().sum::<u64>() / 4;
        assert!(
            (2 * full..=2 * full + 2).contains(&c[0])
                && (full..=full + 1).contains(&c[1])
                && (full..=full + 1).contains(&c[2]),
            "stratum {sid}: {c:?}"
        );
    }
    for a in 0..3 {
        let schools = school.values().filter(|v| v.0 == a).count() as u64;
        assert_eq!(rec["arms"][a as usize]["clusters"].as_u64(), Some(schools));
    }
    // Re-run.
    let again = dir.path().join("again.csv");
    bundled_assign(&home, &pt, &again);
    assert_eq!(bytes, std::fs::read(&again).unwrap());
    // The same rows from a file, in reverse order.
    let dsn = xngin::testing_dwh::default_warehouse_at(&home.join("testing_dwh.db"))
        .await
        .unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let rows = wh
        .fetch_all(
            "SELECT id, school_id, school_district, school_type FROM test_participant_type ORDER BY id DESC",
            &[],
        )
        .await
        .unwrap();
    wh.close().await;
    let mut csv = String::from("id,school_id,school_district,school_type\n");
    for r in &rows.rows {
        let t: Vec<String> = r.iter().map(|v| v.to_text().unwrap()).collect();
        csv.push_str(&t.join(","));
        csv.push('\n');
    }
    let input = dir.path().join("bundled.csv");
    std::fs::write(&input, csv).unwrap();
    let from_file = dir.path().join("file.csv");
    bundled_assign(
        &home,
        &["--input", input.to_str().unwrap(), "--id-column", "id"],
        &from_file,
    );
    assert_eq!(
        bytes,
        std::fs::read(&from_file).unwrap(),
        "file in reverse order"
    );
}

/// The acceptance run on PostgreSQL and MariaDB: the bundled warehouse loaded there gives the
/// same assignment file as the embedded SQLite one.
async fn bundled_cluster_assignment_on(dsn: &str, dialect: &str) {
    let home = common::shared_home();
    let dir = tempfile::tempdir().unwrap();
    let table = common::unique("xngin_bundled_cl");
    let o = common::xngin(&home)
        .args(["create-testing-dwh", "--dsn", dsn, "--table-name", &table])
        .output()
        .unwrap();
    assert!(o.status.success(), "{dialect}: {}", common::stderr(&o));
    let settings = dir.path().join("s.json");
    std::fs::write(
        &settings,
        format!(
            r#"{{"datasources": [{{"id": "ds", "config": {{"type": "remote", "dwh": "{dsn}",
  "participants": [{{"type": "schema", "participant_type": "pupils", "table_name": "{table}",
    "fields": [{{"field_name": "id", "data_type": "bigint", "is_unique_id": true}},
               {{"field_name": "school_id", "data_type": "bigint"}},
               {{"field_name": "school_district", "data_type": "character varying", "is_strata": true}},
               {{"field_name": "school_type", "data_type": "character varying", "is_strata": true}}]}}]}}}}]}}"#
        ),
    )
    .unwrap();
    let local = dir.path().join("local.csv");
    bundled_assign(
        &home,
        &["--participant-type", "test_participant_type"],
        &local,
    );
    let remote = dir.path().join("remote.csv");
    bundled_assign(
        &home,
        &[
            "--participant-type",
            "pupils",
            "--settings",
            settings.to_str().unwrap(),
        ],
        &remote,
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(&remote).unwrap(),
        "{dialect}"
    );
    let wh = Warehouse::connect(&Dsn::parse(dsn).unwrap()).await.unwrap();
    wh.execute(&format!("DROP TABLE {}", wh.qualified(None, &table)), &[])
        .await
        .unwrap();
    wh.close().await;
}

#[tokio::test]
async fn bundled_warehouse_cluster_assignment_postgres() {
    let Some(url) = common::pg_url("bundled_warehouse_cluster_assignment_postgres") else {
        return;
    };
    bundled_cluster_assignment_on(&url, "postgres").await;
}

#[tokio::test]
async fn bundled_warehouse_cluster_assignment_mysql() {
    let Some(url) = common::mysql_url("bundled_warehouse_cluster_assignment_mysql") else {
        return;
    };
    bundled_cluster_assignment_on(&url, "mysql").await;
}

/// `fields --cluster-column` on the bundled warehouse: the cluster sizes, in how many schools
/// each field varies, and the metrics' ICC, against the raw rows.
#[tokio::test]
async fn fields_cluster_summary_matches_the_rows() {
    let home = common::shared_home();
    let dsn = xngin::testing_dwh::default_warehouse_at(&home.join("testing_dwh.db"))
        .await
        .unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let rows = wh
        .fetch_all(
            "SELECT school_id, gender, school_type, current_income FROM test_participant_type",
            &[],
        )
        .await
        .unwrap();
    wh.close().await;
    let mut size: std::collections::BTreeMap<i64, u64> = Default::default();
    let mut genders: std::collections::BTreeMap<i64, std::collections::BTreeSet<String>> =
        Default::default();
    let mut pairs = Vec::new();
    for r in &rows.rows {
        let s = r[0].as_i64().unwrap();
        *size.entry(s).or_default() += 1;
        genders
            .entry(s)
            .or_default()
            .insert(r[1].to_text().unwrap());
        pairs.push((s, r[3].as_f64().unwrap()));
    }
    let icc = estimate(&Anova::from_pairs(&pairs)).unwrap();
    let run = |kind: &str| -> serde_json::Value {
        let out = common::xngin(&home)
            .args([
                "fields",
                "--participant-type",
                "test_participant_type",
                "--kind",
                kind,
                "--cluster-column",
                "school_id",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let doc = run("strata");
    let c = &doc["cluster"];
    assert_eq!(c["clusters"], 300);
    assert_eq!(c["units_without_cluster"], 0);
    assert_eq!(c["min_cluster_size"].as_u64(), size.values().min().copied());
    assert_eq!(c["max_cluster_size"].as_u64(), size.values().max().copied());
    let close = |a: f64, b: f64| assert!((a - b).abs() <= 1e-9 * b.abs(), "{a} vs {b}");
    close(
        c["avg_cluster_size"].as_f64().unwrap(),
        icc.avg_cluster_size,
    );
    close(c["cv"].as_f64().unwrap(), icc.cv);
    let field = |doc: &serde_json::Value, name: &str| {
        doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field_name"] == name)
            .unwrap()
            .clone()
    };
    let varying = genders.values().filter(|g| g.len() > 1).count() as u64;
    assert_eq!(
        field(&doc, "gender")["clusters_varying"].as_u64(),
        Some(varying)
    );
    assert_eq!(field(&doc, "school_type")["clusters_varying"], 0);
    assert_eq!(field(&doc, "school_district")["clusters_varying"], 0);
    let doc = run("metrics");
    close(
        field(&doc, "current_income")["icc"].as_f64().unwrap(),
        icc.icc,
    );
}

/// A Parquet output carries the cluster column too: assigning its rows again (ids, school and
/// strata as written) with the same design gives the same arms as the CSV output.
#[test]
fn parquet_output_carries_the_cluster_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pupils.csv");
    std::fs::write(&input, pupils_csv(&pupils())).unwrap();
    let csv = dir.path().join("a.csv");
    let pq = dir.path().join("a.parquet");
    for o in [&csv, &pq] {
        xngin_cmd()
            .args(cluster_args(
                input.to_str().unwrap(),
                o.to_str().unwrap(),
                "stratum",
            ))
            .assert()
            .success();
    }
    let again = dir.path().join("again.csv");
    let mut args = cluster_args(pq.to_str().unwrap(), again.to_str().unwrap(), "stratum");
    let i = args.iter().position(|a| *a == "pupil").unwrap();
    args[i] = "participant_id";
    xngin_cmd().args(args).assert().success();
    let strip = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip(&csv), strip(&again));
}
