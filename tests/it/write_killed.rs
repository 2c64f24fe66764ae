//! A connection killed in the middle of writing the assignment (issue 12, "failure halfway")
//! leaves nothing of the experiment: no rows in the assignment table, no `xngin_experiments`
//! row; the command exits non-zero with a one-line error that shows no password. For the
//! in-warehouse write (`INSERT … SELECT`) and the local `--write-table` (COPY / INSERT
//! batches), on PostgreSQL (`pg_terminate_backend`) and MySQL/MariaDB (`KILL`).
//!
//! To catch the write in flight, a second session holds a lock on the assignment table that
//! lets readers through but makes writers wait (PostgreSQL `LOCK TABLE … IN SHARE MODE`,
//! MySQL `LOCK TABLES … READ`); the waiting write is found in the server's list of sessions
//! and its connection killed.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{self, mysql_url, pg_url};
use xngin::dsn::Dsn;
use xngin::warehouse::{Value, Warehouse};

const PASSWORD: &str = "Kill-s3cret-pw";

fn settings(dir: &Path, url: &str, table: &str) {
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testing_sheet.csv"),
        dir.join("sheet.csv"),
    )
    .unwrap();
    let text = format!(
        "[[datasources]]\nid = \"dw\"\n[datasources.config]\ntype = \"remote\"\ndwh = \"{url}\"\n\
         [[datasources.config.participants]]\nparticipant_type = \"people\"\ntable_name = \"{table}\"\n\
         sheet = {{ url = \"{}\", worksheet = \"people\" }}\n",
        dir.join("sheet.csv").display()
    );
    std::fs::write(dir.join("s.toml"), text).unwrap();
}

fn assign(dir: &Path, target: &str, exp: &str, in_warehouse: bool) -> std::process::Output {
    let mut c = common::xngin(dir);
    c.current_dir(dir).args([
        "--settings",
        "s.toml",
        "assign",
        "--participant-type",
        "people",
        "--arms",
        "a,b,c",
        "--arm-weights",
        "1,2,2",
        "--strata",
        "gender,ethnicity",
        "--seed",
        "5",
        "--experiment-id",
        exp,
        "--write-table",
        target,
        "-q",
    ]);
    if in_warehouse {
        c.arg("--in-warehouse");
    }
    c.output().unwrap()
}

async fn count(wh: &Warehouse, table: &str, exp: &str) -> i64 {
    let r = wh
        .fetch_all(
            &format!(
                "SELECT COUNT(*) FROM {} WHERE experiment_id = {}",
                wh.quote(table),
                wh.placeholder(1)
            ),
            &[Value::Text(exp.into())],
        )
        .await
        .unwrap();
    r.rows[0][0].as_i64().unwrap()
}

/// The waiting write on `table`: (session id, its statement).
async fn waiting_write(wh: &Warehouse, mysql: bool, table: &str) -> Option<(i64, String)> {
    let sql = if mysql {
        "SELECT id, info FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND info LIKE ?"
    } else {
        "SELECT pid, query FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
         AND wait_event_type = 'Lock' AND query LIKE $1"
    };
    let r = wh
        .fetch_all(sql, &[Value::Text(format!("%{table}%"))])
        .await
        .unwrap();
    r.rows.iter().find_map(|row| {
        let q = row[1].to_text()?;
        let upper = q.trim_start().to_ascii_uppercase();
        let id = row[0].as_i64()?;
        (upper.starts_with("INSERT") || upper.starts_with("COPY")).then_some((id, q))
    })
}

async fn killed_write(admin_url: &str, url: &str, mysql: bool, in_warehouse: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = common::unique("tests_kill_src");
    let target = common::unique("tests_kill_t");
    let out = common::xngin(d)
        .args([
            "create-testing-dwh",
            "--dsn",
            admin_url,
            "--table-name",
            &source,
            "--nrows",
            "3000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    settings(d, url, &source);
    let wh = Warehouse::connect(&Dsn::parse(admin_url).unwrap())
        .await
        .unwrap();

    // A first experiment, whose rows must survive.
    let first = assign(d, &target, "first", in_warehouse);
    assert!(first.status.success(), "{}", common::stderr(&first));
    let n_first = count(&wh, &target, "first").await;
    assert_eq!(n_first, 3000);

    // Writers wait; then the second experiment's write is killed while it waits.
    let mut lock = wh.begin().await.unwrap();
    let lock_sql = if mysql {
        format!("LOCK TABLES {} READ", wh.quote(&target))
    } else {
        format!("LOCK TABLE {} IN SHARE MODE", wh.quote(&target))
    };
    lock.execute(&lock_sql, &[]).await.unwrap();
    let run = {
        let (d, target) = (d.to_path_buf(), target.clone());
        std::thread::spawn(move || assign(&d, &target, "second", in_warehouse))
    };
    let start = Instant::now();
    let mut victim = None;
    while victim.is_none() && start.elapsed() < Duration::from_secs(60) && !run.is_finished() {
        victim = waiting_write(&wh, mysql, &target).await;
        if victim.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some((id, _)) = &victim {
        if mysql {
            // An id read from the server, not user input.
            wh.execute(&format!("KILL {id}"), &[]).await.unwrap();
        } else {
            wh.execute(
                "SELECT pg_terminate_backend(CAST($1 AS integer))",
                &[Value::Int(*id)],
            )
            .await
            .unwrap();
        }
    }
    let out = tokio::task::spawn_blocking(move || run.join().unwrap())
        .await
        .unwrap();
    if mysql {
        lock.execute("UNLOCK TABLES", &[]).await.unwrap();
    }
    lock.rollback().await.unwrap();
    assert!(
        victim.is_some(),
        "no waiting write on {target} within 60 s; the run ended: {:?} {}",
        out.status,
        common::stderr(&out)
    );
    let err = common::stderr(&out);
    eprintln!("the killed run: {:?}: {err}", out.status.code());
    assert!(!out.status.success(), "the killed run succeeded: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    // It names the table and the experiment, and what to do.
    assert!(
        err.contains(&format!("{target}: experiment second was not written"))
            && err.contains("run again"),
        "{err}"
    );

    // Nothing of the second experiment; the first untouched.
    assert_eq!(count(&wh, &target, "second").await, 0, "{err}");
    assert_eq!(count(&wh, &target, "first").await, n_first);
    let records = |exp: &'static str| {
        let wh = &wh;
        let target = target.clone();
        async move {
            let r = wh
                .fetch_all(
                    &format!(
                        "SELECT COUNT(*) FROM xngin_experiments WHERE experiment_id = {} AND assignment_table = {}",
                        wh.placeholder(1),
                        wh.placeholder(2)
                    ),
                    &[Value::Text(exp.into()), Value::Text(target)],
                )
                .await
                .unwrap();
            r.rows[0][0].as_i64().unwrap()
        }
    };
    assert_eq!(records("second").await, 0);
    assert_eq!(records("first").await, 1);

    // The same run again, undisturbed, writes the experiment (nothing was left behind that
    // blocks it, e.g. the experiment guard).
    let again = assign(d, &target, "second", in_warehouse);
    assert!(again.status.success(), "{}", common::stderr(&again));
    assert_eq!(count(&wh, &target, "second").await, 3000);
    assert_eq!(records("second").await, 1);

    common::drop_assignment_tables(&wh, [&target, &source]).await;
    wh.close().await;
}

/// PostgreSQL: the test server trusts local connections, so a URL with a password connects
/// too, and the error must not show it.
fn pg_urls(url: &str) -> (String, String) {
    let admin = if url.contains("sslmode") {
        url.to_string()
    } else {
        format!("{url}?sslmode=disable")
    };
    let mut u = url::Url::parse(&admin).unwrap();
    u.set_password(Some(PASSWORD)).unwrap();
    (admin, u.to_string())
}

/// MySQL/MariaDB: a user of its own with a password, allowed everything in the test database.
async fn mysql_urls(url: &str) -> (String, String) {
    let wh = Warehouse::connect(&Dsn::parse(url).unwrap()).await.unwrap();
    let mut u = url::Url::parse(url).unwrap();
    let db = u.path().trim_start_matches('/').to_string();
    let user = "tests_kill";
    for host in ["%", "localhost", "127.0.0.1"] {
        wh.execute(
            &format!("CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{PASSWORD}'"),
            &[],
        )
        .await
        .unwrap();
        wh.execute(
            &format!("GRANT ALL ON {}.* TO '{user}'@'{host}'", wh.quote(&db)),
            &[],
        )
        .await
        .unwrap();
    }
    wh.close().await;
    u.set_username(user).unwrap();
    u.set_password(Some(PASSWORD)).unwrap();
    (url.to_string(), u.to_string())
}

#[tokio::test]
async fn killed_in_warehouse_write_leaves_nothing_on_postgres() {
    let Some(url) = pg_url("killed_in_warehouse_write_leaves_nothing_on_postgres") else {
        return;
    };
    let (admin, url) = pg_urls(&url);
    killed_write(&admin, &url, false, true).await;
}

#[tokio::test]
async fn killed_local_write_leaves_nothing_on_postgres() {
    let Some(url) = pg_url("killed_local_write_leaves_nothing_on_postgres") else {
        return;
    };
    let (admin, url) = pg_urls(&url);
    killed_write(&admin, &url, false, false).await;
}

#[tokio::test]
async fn killed_in_warehouse_write_leaves_nothing_on_mysql() {
    let Some(url) = mysql_url("killed_in_warehouse_write_leaves_nothing_on_mysql") else {
        return;
    };
    let (admin, url) = mysql_urls(&url).await;
    killed_write(&admin, &url, true, true).await;
}

#[tokio::test]
async fn killed_local_write_leaves_nothing_on_mysql() {
    let Some(url) = mysql_url("killed_local_write_leaves_nothing_on_mysql") else {
        return;
    };
    let (admin, url) = mysql_urls(&url).await;
    killed_write(&admin, &url, true, false).await;
}
