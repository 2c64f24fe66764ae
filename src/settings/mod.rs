//! Tenant settings (in progress: the settings helper owns this module).
//!
//! Contract used by `fields`, `power` and `assign`: [`resolve_participants`].

use std::path::Path;

use crate::dsn::Dsn;
use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;

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
/// the settings hold one) of the settings file `settings` (None: `xngin.settings.json` /
/// `xngin.settings.toml` in the working directory, else the built-in `testing` datasource).
pub async fn resolve_participants(
    _settings: Option<&Path>,
    _datasource: Option<&str>,
    _participant_type: &str,
) -> Result<ResolvedParticipants> {
    Err(Error::runtime("settings resolution is not built yet"))
}
