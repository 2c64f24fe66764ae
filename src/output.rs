//! Where output goes: machine output (JSON/CSV) on stdout, human notices and progress on stderr.
//!
//! * [`stdout`] is a locked, buffered writer; a closed pipe (`xngin ... | head`) is a clean exit,
//!   not a panic ([`is_broken_pipe`]).
//! * [`notice`] prints a one-line message to stderr unless `-q/--quiet`.
//! * Everything printed through [`print`], [`notice`] and [`eprint_line`] has every known secret
//!   masked ([`crate::dsn::scrub_secrets`]).
//! * [`progress`] gives an indicatif bar only when stderr is a terminal and not quiet.
//! * [`write_atomic`] writes a file under a temporary name in the same directory and renames it,
//!   so a failed run never leaves a half-written file behind. [`prepare_atomic`] stops before
//!   the rename, so that a run commits all its outputs last; temporary files of killed runs are
//!   removed by the next write to the same directory.

use crate::input::names::*;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A one-line message for the operator on stderr (suppressed by `--quiet`).
pub fn notice(msg: impl AsRef<str>) {
    if !is_quiet() {
        eprint_line(msg.as_ref());
    }
}

/// One line on stderr (always, even with `--quiet`), with every known secret masked.
pub fn eprint_line(line: &str) {
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{}", crate::dsn::scrub_secrets(line));
}

/// A buffered handle on stdout. Callers `flush()` at the end; see [`is_broken_pipe`].
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(1 << 16, io::stdout().lock())
}

/// Write a whole string to stdout and flush, treating a closed pipe as success. Every known
/// secret is masked.
pub fn print(text: &str) -> Result<()> {
    let text = crate::dsn::scrub_secrets(text);
    let mut out = stdout();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(Error::runtime(format!(
            "writing to stdout: {}",
            crate::error::io_reason(&e)
        ))),
    }
}

pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// A progress bar on stderr when it is a terminal (and not `--quiet`); hidden otherwise.
/// `len` None gives a spinner with a rate.
pub fn progress(len: Option<u64>, msg: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if is_quiet() || !io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
        return pb;
    }
    let style = match len {
        Some(_) => ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {human_pos}/{human_len} rows ({per_sec}, {eta})",
        ),
        None => ProgressStyle::with_template("{spinner} {msg:>10} {human_pos} rows ({per_sec})"),
    }
    .expect("static template")
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(msg.to_string());
    pb
}

/// A comfy-table with the project's look.
pub fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    t
}

/// Write `path` atomically: `fill` writes into a temporary file next to it, which is renamed
/// over `path` only when `fill` succeeded. Refuses to overwrite unless `replace`.
pub fn write_atomic<F>(path: &Path, replace: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    prepare_atomic(path, replace, fill)?.commit()
}

/// A file written in full under a temporary name next to its final path, not yet visible
/// there. [`Pending::commit`] renames it into place; dropping it removes the temporary file, so
/// a run that fails before its commit leaves the earlier file at `path` as it was.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    tmp: tempfile::TempPath,
    replace: bool,
}

impl Pending {
    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename the temporary file into place (one rename: readers see the old or the new file).
    pub fn commit(self) -> Result<()> {
        let Pending { path, tmp, replace } = self;
        if replace {
            tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        } else {
            tmp.persist_noclobber(&path).map_err(|e| {
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    Error::runtime(format!(
                        "{}: already exists; pass {REPLACE} to overwrite it",
                        path.display()
                    ))
                } else {
                    Error::io(&path, e.error)
                }
            })?;
        }
        Ok(())
    }
}

/// The first part of every temporary file name: `.xngin-PID-` (then random characters and
/// `.tmp`). The pid lets a later run tell a file whose writer was killed from one in progress.
const TMP_PREFIX: &str = ".xngin-";
const TMP_SUFFIX: &str = ".tmp";

/// A temporary file whose writer may still be running but is older than this is abandoned
/// (the writer's pid is only checked where `/proc` exists).
const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Like [`write_atomic`], but stops before the rename: the caller commits the returned
/// [`Pending`] once every other output of the run is ready. Temporary files left in the same
/// directory by a killed run are removed first ([`remove_stale_temp_files`]).
pub fn prepare_atomic<F>(path: &Path, replace: bool, fill: F) -> Result<Pending>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let mut w = open_atomic(path, replace)?;
    fill(&mut w.w)?;
    w.finish()
}

/// A temporary file being written, for content produced piece by piece (rows streamed from a
/// warehouse by an async query, where [`prepare_atomic`]'s closure cannot wait);
/// [`AtomicWriter::finish`] gives the [`Pending`] rename.
pub struct AtomicWriter {
    path: PathBuf,
    tmp: tempfile::TempPath,
    w: io::BufWriter<std::fs::File>,
    replace: bool,
}

impl AtomicWriter {
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.w
    }

    /// Flush and sync the temporary file; the rename is left to [`Pending::commit`].
    pub fn finish(self) -> Result<Pending> {
        let AtomicWriter {
            path,
            tmp,
            w,
            replace,
        } = self;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        // tempfile creates 0600; a written output is an ordinary file (0644 before the umask).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        Ok(Pending { path, tmp, replace })
    }
}

/// [`prepare_atomic`] without the closure: the same checks, then the open temporary file.
pub fn open_atomic(path: &Path, replace: bool) -> Result<AtomicWriter> {
    if !replace && path.exists() {
        return Err(Error::runtime(format!(
            "{}: already exists; pass {REPLACE} to overwrite it",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::runtime(format!(
            "{}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    let removed = remove_stale_temp_files(dir);
    if removed > 0 {
        notice(format!(
            "removed {removed} temporary file(s) left in {} by an interrupted run",
            dir.display()
        ));
    }
    open_atomic_in(path, dir, replace)
}

fn open_atomic_in(path: &Path, dir: &Path, replace: bool) -> Result<AtomicWriter> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
        .suffix(TMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    let (file, tmp_path) = tmp.into_parts();
    Ok(AtomicWriter {
        path: path.to_path_buf(),
        tmp: tmp_path,
        w: io::BufWriter::new(file),
        replace,
    })
}

/// Is the temporary file `name` (in a directory, with modification time `modified`) ours and
/// abandoned? Ours: `.xngin-PID-*.tmp` (or `.xngin-*.tmp`, the form before the pid was added).
/// Abandoned: its writer's pid is not running (where `/proc` tells), or it is older than a day.
/// The running process's own files are never abandoned.
fn is_stale_temp(name: &str, modified: Option<std::time::SystemTime>) -> bool {
    let Some(rest) = name
        .strip_prefix(TMP_PREFIX)
        .and_then(|r| r.strip_suffix(TMP_SUFFIX))
    else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let pid = rest
        .split_once('-')
        .and_then(|(p, _)| p.parse::<u32>().ok());
    is_abandoned(pid, modified)
}

/// Is a temporary file written by process `pid` (when its name tells) and last modified at
/// `modified` abandoned? Yes when that process is not running (where `/proc` tells) or the
/// file is older than a day; never for the running process's own files.
pub fn is_abandoned(pid: Option<u32>, modified: Option<std::time::SystemTime>) -> bool {
    if pid == Some(std::process::id()) {
        return false;
    }
    let old = modified
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > STALE_TMP_AGE);
    let gone = match pid {
        Some(pid) => {
            Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
        }
        None => false,
    };
    old || gone
}

/// Remove the temporary files that killed runs left in `dir` (see [`is_stale_temp`]); returns
/// how many were removed. Errors (a file removed meanwhile, no permission) are ignored.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(TMP_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if is_stale_temp(name, meta.modified().ok()) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.csv");
        let err = write_atomic(&p, false, |w| {
            w.write_all(b"partial").unwrap();
            Err(Error::runtime("boom"))
        });
        assert!(err.is_err());
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&p, false, |w| {
            w.write_all(b"ok").map_err(|e| Error::io(&p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "ok");
        assert!(
            write_atomic(&p, false, |_| Ok(()))
                .unwrap_err()
                .to_string()
                .contains(&format!("{REPLACE}"))
        );
        write_atomic(&p, true, |w| {
            w.write_all(b"new").map_err(|e| Error::io(&p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn stale_temp_files_are_ours_by_name_and_abandoned() {
        let now = std::time::SystemTime::now();
        let day_old = now - STALE_TMP_AGE - std::time::Duration::from_secs(60);
        // A pid that cannot exist (above Linux's pid_max): abandoned where /proc tells.
        let gone = ".xngin-999999999-abcdef.tmp";
        assert_eq!(
            is_stale_temp(gone, Some(now)),
            Path::new("/proc/self").exists()
        );
        // This process's own file is never stale, however old.
        let mine = format!(".xngin-{}-abcdef.tmp", std::process::id());
        assert!(!is_stale_temp(&mine, Some(day_old)));
        // A live process's recent file is kept; anything older than a day is abandoned.
        let live = ".xngin-1-abcdef.tmp";
        assert!(!is_stale_temp(live, Some(now)));
        assert!(is_stale_temp(live, Some(day_old)));
        // The form without a pid: by age only.
        assert!(!is_stale_temp(".xngin-a1B2c3.tmp", Some(now)));
        assert!(is_stale_temp(".xngin-a1B2c3.tmp", Some(day_old)));
        // Not ours.
        for name in [
            "xngin-1-a.tmp",
            ".xngin-1-a.csv",
            ".other-1-a.tmp",
            ".xngin-.tmp",
        ] {
            assert!(!is_stale_temp(name, Some(day_old)), "{name}");
        }
    }

    #[test]
    fn pending_file_is_invisible_until_committed_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.csv");
        std::fs::write(&p, "old").unwrap();
        let pending = prepare_atomic(&p, true, |w| {
            w.write_all(b"new").map_err(|e| Error::io(&p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        drop(pending);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let pending = prepare_atomic(&p, true, |w| {
            w.write_all(b"new").map_err(|e| Error::io(&p, e))
        })
        .unwrap();
        pending.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
