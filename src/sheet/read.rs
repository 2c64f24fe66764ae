//! Where a sheet comes from: a Google Sheets URL, a `file://` URL or a plain CSV path
//! (docs/architecture.md#parse-config-spreadsheet).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;
use crate::sheet::gsheets::{self, GoogleConfig};
use crate::sheet::parse;

/// A parsed SOURCE argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SheetSource {
    /// `https://docs.google.com/spreadsheets/d/ID/...`
    Google(String),
    /// A CSV file (from `file://PATH` or a plain path).
    File(PathBuf),
}

impl SheetSource {
    /// Classify a SOURCE: Google Sheets URL, `file://PATH` (relative paths allowed, e.g.
    /// `file://./sheet.csv`; `file:///abs/sheet.csv`) or a plain path. Other URLs are refused.
    pub fn parse(source: &str) -> Result<SheetSource> {
        let s = source.trim();
        if s.starts_with("https://docs.google.com/spreadsheets/") {
            gsheets::spreadsheet_id(s)?;
            return Ok(SheetSource::Google(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("file://") {
            let rest = rest
                .strip_prefix("localhost/")
                .map(|r| format!("/{r}"))
                .unwrap_or_else(|| rest.to_string());
            if rest.is_empty() {
                return Err(Error::usage(format!(
                    "'{source}': the file:// URL names no file"
                )));
            }
            return Ok(SheetSource::File(PathBuf::from(rest)));
        }
        let scheme_like = regex::Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*://").expect("static regex");
        if scheme_like.is_match(s) {
            return Err(Error::usage(format!(
                "Path to configuration spreadsheet is not usable: '{source}'; use a Google Sheets URL \
                 (https://docs.google.com/spreadsheets/d/ID), file://PATH or a CSV file path"
            )));
        }
        if s.is_empty() {
            return Err(Error::usage(
                "the sheet SOURCE is empty; give a Google Sheets URL, file://PATH or a CSV path",
            ));
        }
        Ok(SheetSource::File(PathBuf::from(s)))
    }
}

/// Read and validate a sheet from a Google Sheets URL, a `file://` URL or a CSV path; the
/// worksheet name becomes `table_name` (for a CSV it is only that). Problems in the sheet are
/// `Error::Invalid` (one line each, `SOURCE: row N, column C: message`); an unreadable file or a
/// Google failure is `Error::Runtime`. Google settings come from the environment
/// ([`GoogleConfig::from_env`]).
pub async fn read_sheet(url_or_path: &str, worksheet: &str) -> Result<ConfigWorksheet> {
    read_sheet_with(&GoogleConfig::from_env(), url_or_path, worksheet).await
}

/// [`read_sheet`] with explicit Google settings.
pub async fn read_sheet_with(
    cfg: &GoogleConfig,
    url_or_path: &str,
    worksheet: &str,
) -> Result<ConfigWorksheet> {
    if worksheet.trim().is_empty() {
        return Err(Error::usage("the WORKSHEET name cannot be empty"));
    }
    match SheetSource::parse(url_or_path)? {
        SheetSource::Google(url) => {
            let cells = gsheets::read_google_values(cfg, &url, worksheet).await?;
            parse::parse_cells(&url, worksheet, cells)
        }
        SheetSource::File(path) => {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::io(&path, e))?;
            parse::parse_csv_bytes(url_or_path.trim(), worksheet, &bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            SheetSource::parse("a/b.csv").unwrap(),
            SheetSource::File("a/b.csv".into())
        );
        assert_eq!(
            SheetSource::parse("file://./x.csv").unwrap(),
            SheetSource::File("./x.csv".into())
        );
        assert_eq!(
            SheetSource::parse("file:///abs/x.csv").unwrap(),
            SheetSource::File("/abs/x.csv".into())
        );
        assert!(matches!(
            SheetSource::parse("https://docs.google.com/spreadsheets/d/abc/edit").unwrap(),
            SheetSource::Google(_)
        ));
        let e = SheetSource::parse("https://example.com/x.csv").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .starts_with("Path to configuration spreadsheet is not usable")
        );
        assert!(SheetSource::parse("https://docs.google.com/spreadsheets/").is_err());
    }
}
