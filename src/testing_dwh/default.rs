//! The embedded default warehouse: an SQLite file built from the bundled fixture on first use
//! and rebuilt when the fixture changes. As the reference's `bootstrap-testing-dwh` does, the
//! data version (a hash of the fixture bytes) is kept in `PRAGMA user_version`.
//!
//! Location: `$XNGIN_HOME/testing_dwh.db`, else `$XDG_CACHE_HOME/xngin/testing_dwh.db`, else
//! `~/.cache/xngin/testing_dwh.db`. The file is built under a temporary name and renamed into
//! place, so concurrent first runs (parallel tests, two terminals) never see a half-built file.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{FIXTURE, Source, column_defs, open_source};
use crate::dsn::Dsn;
use crate::error::{Error, Result};
use crate::warehouse::load::{IfExists, load_table};
use crate::warehouse::{ConnectOptions, Warehouse};

/// The participant table of the default warehouse (as in the reference).
pub const DEFAULT_TABLE: &str = "test_participant_type";

/// The data version of the bundled fixture: the first 31 bits of its SHA-256 (positive i32).
pub fn data_version() -> i64 {
    let h = Sha256::digest(FIXTURE);
    (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) >> 1) as i64
}

/// Where the default warehouse lives.
pub fn default_db_path() -> Result<PathBuf> {
    let dir = if let Some(h) = std::env::var_os("XNGIN_HOME").filter(|s| !s.is_empty()) {
        PathBuf::from(h)
    } else if let Some(c) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        PathBuf::from(c).join("xngin")
    } else if let Some(h) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        PathBuf::from(h).join(".cache").join("xngin")
    } else {
        std::env::temp_dir().join("xngin")
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir.join("testing_dwh.db"))
}

async fn current_version(dsn: &Dsn) -> Option<i64> {
    let wh = Warehouse::connect(dsn).await.ok()?;
    let v = wh
        .fetch_all("PRAGMA user_version", &[])
        .await
        .ok()?
        .rows
        .first()?
        .first()?
        .as_i64();
    let ok = wh.table_exists(None, DEFAULT_TABLE).await.ok()?;
    wh.close().await;
    if ok { v } else { None }
}

/// Remove the half-built copies (`NAME.PID.tmp` and its SQLite `-journal`/`-wal`/`-shm`) that
/// killed builds left next to `path`, when their process is gone (see
/// [`crate::output::is_abandoned`]).
fn remove_abandoned_builds(path: &std::path::Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some((pid, tail)) = rest.split_once('.') else {
            continue;
        };
        if !matches!(tail, "tmp" | "tmp-journal" | "tmp-wal" | "tmp-shm") {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        if crate::output::is_abandoned(Some(pid), modified) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The DSN of the default warehouse, building it first if it is missing or out of date.
pub async fn default_warehouse() -> Result<Dsn> {
    default_warehouse_at(&default_db_path()?).await
}

/// [`default_warehouse`] at an explicit path.
pub async fn default_warehouse_at(path: &std::path::Path) -> Result<Dsn> {
    let path = path.to_path_buf();
    let dsn = Dsn::sqlite_file(&path);
    let version = data_version();
    if path.exists() && current_version(&dsn).await == Some(version) {
        return Ok(dsn);
    }
    // One build at a time in this process: the temporary name carries the process id, so two
    // tasks of one process (parallel tests) would otherwise build into the same file. Other
    // processes build under their own names; the last rename wins with identical content.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = BUILDING.lock().await;
    if path.exists() && current_version(&dsn).await == Some(version) {
        return Ok(dsn);
    }
    crate::output::notice(format!(
        "Building the embedded testing warehouse at {} (first use)...",
        path.display()
    ));
    remove_abandoned_builds(&path);
    let tmp = path.with_extension(format!("db.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let tmp_dsn = Dsn::sqlite_file(&tmp);
    let result: Result<()> = async {
        let wh = Warehouse::connect_with(
            &tmp_dsn,
            ConnectOptions {
                create_sqlite: true,
            },
        )
        .await?;
        let data = open_source(&Source::Fixture, None)?;
        let pb = crate::output::progress(None, "Loading");
        load_table(
            &wh,
            None,
            DEFAULT_TABLE,
            &column_defs(),
            data.rows,
            IfExists::Replace,
            &pb,
        )
        .await?;
        pb.finish_and_clear();
        wh.execute(&format!("PRAGMA user_version = {version}"), &[])
            .await?;
        wh.close().await;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(dsn)
}
