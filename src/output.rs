//! Where output goes: machine output (JSON/CSV) on stdout, human notices and progress on stderr.
//!
//! * [`stdout`] is a locked, buffered writer; a closed pipe (`xngin ... | head`) is a clean exit,
//!   not a panic ([`is_broken_pipe`]).
//! * [`notice`] prints a one-line message to stderr unless `-q/--quiet`.
//! * Everything printed through [`print`], [`notice`] and [`eprint_line`] has every known secret
//!   masked ([`crate::dsn::scrub_secrets`]).
//! * [`progress`] gives an indicatif bar only when stderr is a terminal and not quiet.
//! * [`write_atomic`] writes a file under a temporary name in the same directory and renames it,
//!   so a failed run never leaves a half-written file behind.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Output format of commands whose output is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Table,
    Json,
    Csv,
}

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
    if !replace && path.exists() {
        return Err(Error::runtime(format!(
            "{}: already exists; pass --replace to overwrite it",
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
    let tmp = tempfile::Builder::new()
        .prefix(".xngin-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = io::BufWriter::new(file);
    fill(&mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates 0600; a written output is an ordinary file (0644 before the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp_path
        .persist(path)
        .map_err(|e| Error::io(path, e.error))?;
    Ok(())
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
                .contains("--replace")
        );
        write_atomic(&p, true, |w| {
            w.write_all(b"new").map_err(|e| Error::io(&p, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }
}
