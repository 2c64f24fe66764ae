//! `xngin validate-settings [--deep] FILE...`: the report over several files.
//!
//! Structural checks always run (docs/compatibility.md#settings). `--deep` then, for a file that
//! is structurally valid: resolves every `${secret:NAME}` from the environment (a missing secret
//! is an error naming it), connects to each datasource's warehouse, reads each participant
//! type's sheet (or takes its inline fields) and checks that the table exists and that every
//! sheet column exists in it with a compatible type. Each deep problem names the datasource and
//! the participant type, and is located at the settings value it comes from (the `table_name`,
//! the sheet `url`, the inline field).
//!
//! Problems are *errors* (the settings are wrong: exit 3) or *failures* (the check could not
//! run: unreadable file, connection refused, sheet unreachable: exit 1).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::locate::Syntax;
use super::model::{DatasourceConfig, Participant, XnginSettings};
use super::validate::suggest;
use super::{Checked, Diagnostic, check_file};
use crate::datatype::DataType;
use crate::error::Error;
use crate::warehouse::SqlDialect;
use crate::warehouse::Warehouse;
use crate::warehouse::introspect::ColumnInfo;

/// The result for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    /// `json` or `toml` (absent when the file could not be read).
    pub format: Option<&'static str>,
    pub valid: bool,
    /// Whether the deep checks ran (structurally valid and `--deep`).
    pub deep: bool,
    /// The settings are wrong (exit 3).
    pub errors: Vec<Diagnostic>,
    /// The check could not run (exit 1): unreadable file, connection or sheet failures.
    pub failures: Vec<Diagnostic>,
}

/// The result over all files.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub files: Vec<FileReport>,
}

impl Report {
    /// 0 all valid; 1 if any check could not run; else 3 if any file is invalid.
    pub fn exit_code(&self) -> i32 {
        if self.files.iter().any(|f| !f.failures.is_empty()) {
            1
        } else if self.files.iter().any(|f| !f.errors.is_empty()) {
            3
        } else {
            0
        }
    }

    /// Every problem as `FILE:LINE:COL: path: message`, in file order then position.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            let mut all: Vec<&Diagnostic> = f.errors.iter().chain(f.failures.iter()).collect();
            all.sort_by_key(|d| (d.line, d.column));
            out.extend(all.into_iter().map(|d| d.to_string()));
        }
        out
    }
}

/// Validate `paths` (structurally, and deeply when `deep`).
pub async fn validate_files(paths: &[PathBuf], deep: bool) -> Report {
    let mut files = Vec::new();
    for path in paths {
        let label = path.display().to_string();
        let checked = match check_file(path, deep) {
            Ok(c) => c,
            Err(e) => {
                files.push(FileReport {
                    file: label.clone(),
                    format: None,
                    valid: false,
                    deep: false,
                    errors: Vec::new(),
                    failures: vec![Diagnostic {
                        file: label,
                        line: 0,
                        column: 0,
                        path: String::new(),
                        message: e.to_string(),
                    }],
                });
                continue;
            }
        };
        let format = Some(match checked.syntax {
            Syntax::Json => "json",
            Syntax::Toml => "toml",
        });
        let mut report = FileReport {
            file: label,
            format,
            valid: checked.is_valid(),
            deep: false,
            errors: checked.diagnostics.clone(),
            failures: Vec::new(),
        };
        if deep && let Some(settings) = checked.settings.as_ref().filter(|_| checked.is_valid()) {
            report.deep = true;
            let (errors, failures) = deep_check(&checked, settings).await;
            report.errors.extend(errors);
            report.failures.extend(failures);
            report.valid = report.errors.is_empty() && report.failures.is_empty();
        }
        files.push(report);
    }
    let valid = files.iter().all(|f| f.valid);
    Report { valid, files }
}

/// Are a sheet's DataType and the live column's DataType compatible on `dialect`?
///
/// Same type; integers with integers; the four numeric types with each other; uuid stored as
/// text; and what the dialect accepts as storage for a type it lacks
/// (the dialect's `loose_type_compatibility`: on MySQL and SQLite booleans stored as integers and
/// timestamps with or without time zone as each other; on SQLite also dates and timestamps
/// stored as text or as each other).
pub fn compatible(sheet: DataType, live: DataType, dialect: &dyn SqlDialect) -> bool {
    use DataType::*;
    if sheet == live {
        return true;
    }
    if sheet.is_numeric() && live.is_numeric() {
        return true;
    }
    match (sheet, live) {
        (Uuid, CharacterVarying) => true,
        _ => dialect.loose_type_compatibility(sheet, live),
    }
}

struct Deep<'c> {
    checked: &'c Checked,
    errors: Vec<Diagnostic>,
    failures: Vec<Diagnostic>,
}

impl Deep<'_> {
    fn error(&mut self, path: &str, message: String) {
        let d = self
            .checked
            .diagnostic(self.checked.pos_of(path), path, message);
        self.errors.push(d);
    }
    fn failure(&mut self, path: &str, message: String) {
        let d = self
            .checked
            .diagnostic(self.checked.pos_of(path), path, message);
        self.failures.push(d);
    }
}

async fn deep_check(
    checked: &Checked,
    settings: &XnginSettings,
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut d = Deep {
        checked,
        errors: Vec::new(),
        failures: Vec::new(),
    };
    let list = checked.list_key();
    for (i, ds) in settings.datasources.iter().enumerate() {
        let dp = format!("{list}.{i}");
        let who = format!("datasource '{}'", ds.id);
        let conn_path = match &ds.config {
            DatasourceConfig::SqliteLocal(_) => format!("{dp}.config.sqlite_filename"),
            DatasourceConfig::Remote(_) => format!("{dp}.config.dwh"),
        };
        // Without a warehouse (bad DSN, bad key, unreachable) the sheets are still checked.
        let wh = match super::dsn_for(&ds.config) {
            Err(e) => {
                d.error(
                    &conn_path,
                    format!("{who}: {}", checked.secrets.scrub(&e.to_string())),
                );
                None
            }
            Ok(dsn) => match Warehouse::connect(&dsn).await {
                Ok(wh) => match wh.missing_container().await {
                    Ok(None) => Some(wh),
                    Ok(Some(missing)) => {
                        d.error(&conn_path, format!("{who}: {missing}"));
                        None
                    }
                    Err(e) => {
                        d.failure(
                            &conn_path,
                            format!("{who}: {}", checked.secrets.scrub(&e.to_string())),
                        );
                        None
                    }
                },
                // A key that is there but malformed is wrong settings; a missing key file or
                // an unreachable server means the check could not run.
                Err(e @ Error::Invalid(_)) => {
                    d.error(
                        &conn_path,
                        format!("{who}: {}", checked.secrets.scrub(&e.to_string())),
                    );
                    None
                }
                Err(e) => {
                    d.failure(
                        &conn_path,
                        format!("{who}: {}", checked.secrets.scrub(&e.to_string())),
                    );
                    None
                }
            },
        };
        for (j, p) in ds.config.participants().iter().enumerate() {
            let pp = format!("{dp}.config.participants.{j}");
            check_participant(&mut d, wh.as_ref(), &who, &pp, p).await;
        }
        if let Some(wh) = wh {
            wh.close().await;
        }
    }
    (d.errors, d.failures)
}

async fn check_participant(
    d: &mut Deep<'_>,
    wh: Option<&Warehouse>,
    who: &str,
    pp: &str,
    p: &Participant,
) {
    let who = format!("{who}, participant type '{}'", p.participant_type());
    let table = p.table_name();
    let table_path = format!("{pp}.table_name");
    let (sheet_path, inline) = match p {
        Participant::Sheet(_) => (format!("{pp}.sheet.url"), false),
        Participant::Schema(_) => (format!("{pp}.fields"), true),
    };
    let sheet = match super::resolve::participant_sheet(p).await {
        Ok(s) => Some(s),
        Err(Error::Invalid(lines)) => {
            for l in lines {
                d.error(&sheet_path, format!("{who}: the sheet is invalid: {l}"));
            }
            None
        }
        Err(e) => {
            d.failure(&sheet_path, format!("{who}: cannot read the sheet: {e}"));
            None
        }
    };
    let Some(wh) = wh else { return };
    let cols: Vec<ColumnInfo> = match wh.columns_if_exists(None, table).await {
        Ok(c) => c,
        Err(e) => {
            d.failure(
                &table_path,
                format!("{who}: cannot read the columns of table '{table}': {e}"),
            );
            return;
        }
    };
    if cols.is_empty() {
        let known = wh.list_tables(None).await.unwrap_or_default();
        let hint = match suggest(table, known.iter().map(String::as_str)) {
            Some(s) => format!(" (did you mean '{s}'?)"),
            None if known.is_empty() => "; the database has no tables".to_string(),
            None => format!("; known tables: {}", known.join(", ")),
        };
        d.error(
            &table_path,
            format!(
                "{who}: table '{table}' does not exist in {}{hint}",
                wh.dsn()
            ),
        );
        return;
    }
    let Some(sheet) = sheet else { return };
    let live: HashMap<&str, &ColumnInfo> = cols.iter().map(|c| (c.name.as_str(), c)).collect();
    let checked = d.checked;
    let field_key = |k: usize| -> String {
        let base = format!("{pp}.fields.{k}");
        if checked.pos_of(&format!("{base}.column_name")) != d.checked.pos_of(&base) {
            format!("{base}.column_name")
        } else {
            format!("{base}.field_name")
        }
    };
    for (k, c) in sheet.columns.iter().enumerate() {
        let name = c.column_name.as_str();
        let at = if inline {
            field_key(k)
        } else {
            sheet_path.clone()
        };
        match live.get(name) {
            None => {
                let unmatched: Vec<&str> = cols
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|n| sheet.column(n).is_none())
                    .collect();
                let lname = name.to_lowercase();
                let hint = match suggest(name, unmatched.iter().copied())
                    .or_else(|| {
                        unmatched
                            .iter()
                            .copied()
                            .find(|n| n.eq_ignore_ascii_case(name))
                    })
                    .or_else(|| {
                        // `grade` for `grade_level`: one name contains the other.
                        unmatched.iter().copied().find(|n| {
                            let n = n.to_lowercase();
                            n.len() >= 3
                                && lname.len() >= 3
                                && (n.contains(&lname) || lname.contains(&n))
                        })
                    }) {
                    Some(s) => format!(" (renamed to '{s}'?)"),
                    None => String::new(),
                };
                d.error(
                    &at,
                    format!("{who}: column '{name}' of the sheet is not in table '{table}'{hint}"),
                );
            }
            Some(info) if !compatible(c.data_type, info.data_type, wh.dialect()) => {
                let at = if inline {
                    format!("{pp}.fields.{k}.data_type")
                } else {
                    at
                };
                d.error(
                    &at,
                    format!(
                        "{who}: column '{name}' is {} in the sheet but {} ({}) in table '{table}'",
                        c.data_type, info.data_type, info.sql_type
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_rules() {
        use DataType::*;
        assert!(compatible(
            Integer,
            Bigint,
            &crate::warehouse::postgres::Postgres { redshift: false }
        ));
        assert!(compatible(
            DoublePrecision,
            Numeric,
            &crate::warehouse::postgres::Postgres { redshift: false }
        ));
        assert!(compatible(
            Boolean,
            Integer,
            &crate::warehouse::sqlite::Sqlite
        ));
        assert!(!compatible(
            Boolean,
            Integer,
            &crate::warehouse::postgres::Postgres { redshift: false }
        ));
        assert!(!compatible(
            CharacterVarying,
            Integer,
            &crate::warehouse::mysql::Mysql
        ));
        assert!(compatible(
            Date,
            CharacterVarying,
            &crate::warehouse::sqlite::Sqlite
        ));
        assert!(!compatible(
            Date,
            CharacterVarying,
            &crate::warehouse::postgres::Postgres { redshift: false }
        ));
        assert!(compatible(
            Uuid,
            CharacterVarying,
            &crate::warehouse::mysql::Mysql
        ));
        assert!(!compatible(
            Integer,
            CharacterVarying,
            &crate::warehouse::sqlite::Sqlite
        ));
    }
}
