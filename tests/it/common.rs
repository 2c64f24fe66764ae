//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

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
