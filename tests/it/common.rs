//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

#[path = "../../commands/flags.rs"]
mod flags;

/// Name the library's inputs by their flags, as the binary does, for tests that call the
/// library and check the messages a user of the command line sees.
pub fn cli_names() {
    xngin::input::set_namer(flags::flag);
}

/// The PostgreSQL test server's URL, or None (and a printed reason) when the test must skip.
pub fn pg_url(test: &str) -> Option<String> {
    env_url("XNGIN_TEST_POSTGRES_URL", test)
}

/// The MySQL/MariaDB test server's URL, or None (and a printed reason) when the test must skip.
pub fn mysql_url(test: &str) -> Option<String> {
    env_url("XNGIN_TEST_MYSQL_URL", test)
}

/// The BigQuery emulator's API root, or None (and a printed reason) when the test must skip.
pub fn bigquery_url(test: &str) -> Option<String> {
    env_url("XNGIN_TEST_BIGQUERY_URL", test)
}

/// In CI (`CI` set, as `.ci/run` runs) a missing database URL is a failure, not a skip: a
/// database test that passes without its database would hide a broken CI setup.
fn env_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
            panic!("{test}: {var} is not set but CI is: .ci/run must set it")
        }
        _ => {
            eprintln!("skipped {test}: {var} not set (.ci/run sets it)");
            None
        }
    }
}

/// A name unique to this test process and call, for tables and schemas.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The binary, with its own XNGIN_HOME so the embedded warehouse of one test run is not the
/// user's, and no settings file picked up from the environment.
pub fn xngin(home: &std::path::Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("xngin").expect("binary built");
    c.env("XNGIN_HOME", home)
        .env_remove("XNGIN_SETTINGS")
        .env_remove("XNGIN_DATASOURCE")
        .env_remove("PGPASSWORD");
    c
}

/// The XNGIN_HOME for tests that use the embedded default warehouse: `$XNGIN_HOME` when set
/// (.ci/run sets one for the whole run), else one directory shared by all test binaries. The
/// warehouse is built once (atomically, so concurrent first uses are safe) and rebuilt only when
/// the fixture changes.
pub fn shared_home() -> std::path::PathBuf {
    let dir = match std::env::var_os("XNGIN_HOME") {
        Some(h) if !h.is_empty() => std::path::PathBuf::from(h),
        _ => std::env::temp_dir().join("xngin-test-home"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The project the BigQuery emulator serves (`.ci/bqemulator/start --project`).
pub const BQ_PROJECT: &str = "xngin-demo";

/// A token endpoint for BigQuery tests (the emulator accepts any bearer token) and a
/// service-account key file whose `token_uri` is it. Keep it alive while the client is used.
pub struct BqToken {
    _server: wiremock::MockServer,
    _dir: tempfile::TempDir,
    pub key: std::path::PathBuf,
}

pub async fn bq_token() -> BqToken {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "test-token", "expires_in": 3600, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/google/test_service_account.json");
    let mut key: serde_json::Value = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    key["token_uri"] = serde_json::json!(format!("{}/token", server.uri()));
    let p = dir.path().join("key.json");
    std::fs::write(&p, serde_json::to_vec(&key).unwrap()).unwrap();
    BqToken {
        _server: server,
        _dir: dir,
        key: p,
    }
}

/// A warehouse on a fresh dataset of its own in the BigQuery emulator, with the emulator's URL,
/// or None (skip) when `XNGIN_TEST_BIGQUERY_URL` is not set.
pub async fn bq_warehouse(test: &str) -> Option<(xngin::warehouse::Warehouse, BqToken, String)> {
    use xngin::warehouse::bigquery::{BigQuery, BigQueryTarget, Credentials, Policy};
    let url = bigquery_url(test)?;
    let t = bq_token().await;
    let target = BigQueryTarget {
        project: BQ_PROJECT.into(),
        dataset: unique("xngin_bq"),
        credentials: Credentials::File(t.key.clone()),
    };
    let policy = Policy {
        max_retries: 3,
        backoff: std::time::Duration::from_millis(5),
        timeout: std::time::Duration::from_secs(30),
        ..Policy::default()
    };
    let bq = BigQuery::connect_to(&target, &url, policy).await.unwrap();
    bq.create_dataset_if_missing().await.unwrap();
    Some((xngin::warehouse::Warehouse::from_bigquery(bq), t, url))
}

/// Drop test assignment tables and their design records (the `xngin_experiments` rows naming
/// them; that table may not exist). Best effort: a test's cleanup never fails it.
pub async fn drop_assignment_tables<S: AsRef<str>>(
    wh: &xngin::warehouse::Warehouse,
    tables: impl IntoIterator<Item = S>,
) {
    for t in tables {
        let t = t.as_ref();
        let _ = wh
            .execute(&format!("DROP TABLE IF EXISTS {}", wh.quote(t)), &[])
            .await;
        let _ = wh
            .execute(
                &format!(
                    "DELETE FROM xngin_experiments WHERE assignment_table = {}",
                    wh.placeholder(1)
                ),
                &[xngin::warehouse::Value::Text(t.to_string())],
            )
            .await;
    }
}

/// Two balance tests' F statistics agree to 1e-9 relative (the local and in-warehouse sums are
/// added in different orders; looser for near-exact fits, see below), and their p values as closely as that lets them: p = sf(F) moves
/// by pdf(F)·ΔF, so deep in the tail (p = 1e-128 at F = 177) a relative ΔF of 1e-9 becomes a
/// relative Δp of 1e-9 · F·pdf(F)/sf(F) (about 1e-7 there). Never looser than 1e-9 relative.
pub fn balance_close(f: (f64, f64), p: (f64, f64), df: (u64, u64)) -> bool {
    use statrs::distribution::{ContinuousCDF, FisherSnedecor};
    let rel = |a: f64, b: f64, tol: f64| a == b || (a - b).abs() <= tol * a.abs().max(b.abs());
    // A near-exact fit's F is the inverse of a residual variance next to rounding noise: the
    // sums' rounding (1e-16 of terms of order one, times the covariates' conditioning, about
    // 1e3 here) is amplified by F itself. F = 2.45e6 carries 4e-8 (the library's own test of
    // the two computations draws the line at F = 1e6 for the same reason).
    let f_tol = 1e-9f64.max(1e-13 * f.0.abs().max(f.1.abs()));
    if !rel(f.0, f.1, f_tol) {
        return false;
    }
    // F·pdf(F)/sf(F) = −d ln sf / d ln F, by a difference quotient (statrs' pdf overflows for
    // large degrees of freedom: 228^228).
    let cond = FisherSnedecor::new(df.0 as f64, df.1 as f64)
        .ok()
        .map(|d| {
            let (x, h) = (f.0.max(f.1), 1e-6);
            ((d.sf(x).ln() - d.sf(x * (1.0 + h)).ln()) / h).abs()
        })
        .filter(|c| c.is_finite())
        .unwrap_or(1.0);
    rel(p.0, p.1, f_tol * cond.max(1.0))
}

/// The balance F and p of two design records agree ([`balance_close`]), and everything else is
/// identical.
pub fn same_record(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    let (mut a, mut b) = (a.clone(), b.clone());
    let n = a["balance"].as_array().map_or(0, Vec::len);
    assert_eq!(
        n,
        b["balance"].as_array().map_or(0, Vec::len),
        "{what}: balance tests"
    );
    for i in 0..n {
        let num = |v: &serde_json::Value, k: &str| v["balance"][i][k].as_f64();
        let df = |v: &serde_json::Value| {
            (
                v["balance"][i]["numerator_df"].as_u64().unwrap_or(1),
                v["balance"][i]["denominator_df"].as_u64().unwrap_or(1),
            )
        };
        if let (Some(fa), Some(fb), Some(pa), Some(pb)) = (
            num(&a, "f_statistic"),
            num(&b, "f_statistic"),
            num(&a, "p_value"),
            num(&b, "p_value"),
        ) {
            assert!(
                balance_close((fa, fb), (pa, pb), df(&a)),
                "{what}: balance {i}: F {fa} vs {fb}, p {pa} vs {pb}"
            );
            for k in ["f_statistic", "p_value"] {
                a["balance"][i][k] = serde_json::Value::Null;
                b["balance"][i][k] = serde_json::Value::Null;
            }
        }
    }
    assert_eq!(a, b, "{what}: design records differ");
}
