//! Tenant settings files (docs/compatibility.md#settings): the model, validation
//! with source positions, `${secret:NAME}` substitution, JSON Schemas, `--deep` checks against
//! the warehouses, and participant-type resolution for `fields`, `power` and `assign`.
//!
//! A settings file is JSON or TOML (same model). Validation reports every problem as
//! `FILE:LINE:COL: dotted.path: message`, where LINE:COL is the offending value (or key) in the
//! file, 1-based, columns counted in characters.

pub mod deep;
pub mod locate;
pub mod model;
mod resolve;
pub mod schema;
pub mod secrets;
mod tree;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use model::*;
pub use resolve::{
    builtin_default_sheet, default_settings_path, dsn_for, find_datasource, find_participant,
};

use crate::dsn::Dsn;
use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;
use locate::{LineIndex, Node, Syntax};
use validate::Problem;

/// A participant type resolved through the settings (or the built-in default): where its
/// table lives and its parsed, validated sheet.
#[derive(Debug, Clone)]
pub struct ResolvedParticipants {
    pub datasource_id: String,
    pub participant_type: String,
    /// Secrets resolved; the password is redacted when displayed.
    pub dsn: Dsn,
    /// Schema of the table when the settings name one (`search_path` is applied by the DSN).
    pub schema_name: Option<String>,
    pub table_name: String,
    pub sheet: ConfigWorksheet,
}

/// Resolve `participant_type` (case-insensitive) in the datasource `datasource` (optional when
/// the settings hold one) of the settings file `settings` (None: `XNGIN_SETTINGS`, then
/// `xngin.settings.json` / `xngin.settings.toml` in the working directory, else the built-in
/// `testing` datasource).
pub async fn resolve_participants(
    settings: Option<&Path>,
    datasource: Option<&str>,
    participant_type: &str,
) -> Result<ResolvedParticipants> {
    resolve::resolve(settings, datasource, participant_type).await
}

/// One validation problem, located in its file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the value (`datasources.0.config.dwh.port`); empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: dotted.path: message` (`FILE:LINE:COL: message` without a path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Not located in the file (it could not be read).
            write!(f, "{}: {}", self.file, self.message)
        } else if self.path.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.path, self.message
            )
        }
    }
}

/// A settings file after parsing and validation.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: String,
    pub syntax: Syntax,
    pub text: String,
    /// The parsed tree (secrets substituted when asked); None after a syntax error.
    pub tree: Option<Node>,
    /// The typed settings, when there are no diagnostics.
    pub settings: Option<XnginSettings>,
    pub diagnostics: Vec<Diagnostic>,
    /// Values substituted for `${secret:...}`, to mask in anything printed.
    pub secrets: secrets::Resolved,
}

impl Checked {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// A diagnostic at byte `pos` of this file.
    pub fn diagnostic(
        &self,
        pos: usize,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = LineIndex::new(&self.text).line_col(pos);
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            path: path.into(),
            message: self.secrets.scrub(&message.into()),
        }
    }

    /// The position of the value at `path` (dot-separated keys and indices), or of its nearest
    /// existing ancestor.
    pub fn pos_of(&self, path: &str) -> usize {
        let Some(mut node) = self.tree.as_ref() else {
            return 0;
        };
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let next = match &node.kind {
                locate::Kind::Object(es) => es.iter().find(|e| e.key == seg).map(|e| &e.value),
                locate::Kind::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.pos
    }

    /// The name of the datasource list key as written (`datasources` or `client_configs`).
    pub fn list_key(&self) -> &'static str {
        match self.tree.as_ref().and_then(|t| t.get("datasources")) {
            Some(_) => "datasources",
            None => "client_configs",
        }
    }
}

/// Parse and validate settings text. `file` labels the diagnostics; `secrets` (when given)
/// substitutes `${secret:NAME}` references first (a missing secret is a diagnostic).
pub fn check_text(
    file: &str,
    text: &str,
    syntax: Syntax,
    secrets: Option<&secrets::Lookup>,
) -> Checked {
    let mut checked = Checked {
        file: file.to_string(),
        syntax,
        text: text.to_string(),
        tree: None,
        settings: None,
        diagnostics: Vec::new(),
        secrets: secrets::Resolved::default(),
    };
    let mut tree = match locate::parse(text, syntax) {
        Ok(t) => t,
        Err(e) => {
            let d = checked.diagnostic(
                e.pos,
                "",
                format!("invalid {}: {}", syntax.name(), e.message),
            );
            checked.diagnostics.push(d);
            return checked;
        }
    };
    if let Some(lookup) = secrets {
        match secrets::substitute(&mut tree, lookup) {
            Ok(r) => checked.secrets = r,
            Err(mut problems) => {
                // Missing secrets, plus whatever is wrong with the file as written.
                problems.extend(validate::validate(&tree, &LineIndex::new(text)));
                problems.sort_by_key(|p| p.pos);
                checked.tree = Some(tree);
                checked.diagnostics = problems
                    .into_iter()
                    .map(|p| checked.diagnostic(p.pos, p.path, p.message))
                    .collect();
                return checked;
            }
        }
    }
    let index = LineIndex::new(text);
    let problems: Vec<Problem> = validate::validate(&tree, &index);
    checked.diagnostics = problems
        .into_iter()
        .map(|p| checked.diagnostic(p.pos, p.path, p.message))
        .collect();
    if checked.diagnostics.is_empty() {
        match serde_json::from_value::<XnginSettings>(tree.to_json()) {
            Ok(s) => checked.settings = Some(s),
            Err(e) => {
                // The validator and the model disagree: report rather than panic.
                let d = checked.diagnostic(
                    tree.pos,
                    "",
                    format!("the settings do not match the model: {e}"),
                );
                checked.diagnostics.push(d);
            }
        }
    }
    checked.tree = Some(tree);
    checked
}

/// Read and check a settings file. Unreadable files are runtime errors (exit 1).
pub fn check_file(path: &Path, resolve_secrets: bool) -> Result<Checked> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let label = path.display().to_string();
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let syntax = Syntax::detect(path, &text);
            let mut c = check_text(&label, "", syntax, None);
            c.text = text;
            c.diagnostics =
                vec![c.diagnostic(valid, "", "the file is not valid UTF-8; save it as UTF-8")];
            return Ok(c);
        }
    };
    let syntax = Syntax::detect(path, &text);
    let lookup = secrets::from_env;
    Ok(check_text(
        &label,
        &text,
        syntax,
        if resolve_secrets { Some(&lookup) } else { None },
    ))
}

/// Load a settings file for use: secrets resolved, validated; any problem is `Error::Invalid`
/// with one `FILE:LINE:COL: path: message` line per problem.
pub fn load(path: &Path) -> Result<(Checked, XnginSettings)> {
    let c = check_file(path, true)?;
    match c.settings.clone() {
        Some(s) if c.is_valid() => Ok((c, s)),
        _ => Err(Error::Invalid(
            c.diagnostics.iter().map(|d| d.to_string()).collect(),
        )),
    }
}

/// The datasource at `index` of a structurally valid file, with the `${secret:NAME}` references
/// inside it (only) resolved from the environment and the result validated again. Problems are
/// `Error::Invalid` lines located in the file.
pub fn datasource_with_secrets(checked: &Checked, index: usize) -> Result<Datasource> {
    let invalid = |c: &Checked, ds: Vec<Diagnostic>| {
        let _ = c;
        Error::Invalid(ds.iter().map(|d| d.to_string()).collect())
    };
    let mut tree = checked
        .tree
        .clone()
        .ok_or_else(|| Error::runtime("the settings were not parsed"))?;
    let list = checked.list_key();
    let mut c = checked.clone();
    {
        let locate::Kind::Object(entries) = &mut tree.kind else {
            return Err(Error::runtime("the settings are not an object"));
        };
        let Some(e) = entries.iter_mut().find(|e| e.key == list) else {
            return Err(Error::runtime("the settings have no datasources"));
        };
        let locate::Kind::Array(items) = &mut e.value.kind else {
            return Err(Error::runtime("the datasources are not a list"));
        };
        let node = items
            .get_mut(index)
            .ok_or_else(|| Error::runtime("no such datasource"))?;
        match secrets::substitute(node, &secrets::from_env) {
            Ok(r) => c.secrets = r,
            Err(problems) => {
                let ds = problems
                    .into_iter()
                    .map(|p| {
                        let path = if p.path.is_empty() {
                            String::new()
                        } else {
                            format!("{list}.{index}.{}", p.path)
                        };
                        c.diagnostic(p.pos, path, p.message)
                    })
                    .collect();
                return Err(invalid(&c, ds));
            }
        }
    }
    let index_lines = LineIndex::new(&c.text);
    let problems = validate::validate(&tree, &index_lines);
    if !problems.is_empty() {
        let ds = problems
            .into_iter()
            .map(|p| c.diagnostic(p.pos, p.path, p.message))
            .collect();
        return Err(invalid(&c, ds));
    }
    let node = tree.get(list).and_then(|l| match &l.kind {
        locate::Kind::Array(items) => items.get(index),
        _ => None,
    });
    let node = node.ok_or_else(|| Error::runtime("no such datasource"))?;
    serde_json::from_value::<Datasource>(node.to_json()).map_err(|e| {
        Error::runtime(format!(
            "{}: the datasource does not match the model: {e}",
            c.file
        ))
    })
}

/// Paths of the candidate default settings files in the working directory.
pub const DEFAULT_FILES: [&str; 2] = ["xngin.settings.json", "xngin.settings.toml"];

/// Helper for messages: a path as shown to users.
pub fn show_path(p: &Path) -> String {
    p.display().to_string()
}
