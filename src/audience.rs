//! Who a command is about, resolved once from the command line (docs/architecture.md#resolved-requests).
//!
//! `assign`, `power` and `fields` all start from an audience: a CSV/Parquet file, or a
//! participant type (a warehouse table and its sheet, found through the tenant settings) with
//! audience filters. The command turns its flags into an [`Audience`] with
//! [`resolve_audience`]; from there on the library works with these typed values only — the
//! settings are read, the sheet parsed and validated, and the filters parsed exactly once.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::filters::Filter;
use crate::settings::ResolvedParticipants;
use crate::warehouse::{SqlDialect, Value};

/// Which tenant settings to read (the global options): a settings file (None: the usual
/// search, then the built-in default) and a datasource id (None: the only one).
#[derive(Debug, Clone, Default)]
pub struct SettingsChoice {
    pub file: Option<PathBuf>,
    pub datasource: Option<String>,
}

/// A participant type's rows, resolved through the settings, narrowed by filters.
#[derive(Debug, Clone)]
pub struct ParticipantAudience {
    pub participants: ResolvedParticipants,
    /// The unique id column when it is not the sheet's unique id.
    pub id_column: Option<String>,
    /// Audience filters, AND-ed (parsed, not yet checked against the sheet: the SQL builder
    /// checks them, reporting every problem at once).
    pub filters: Vec<Filter>,
}

/// An audience: a file or a participant type.
#[derive(Debug, Clone)]
pub enum Audience {
    /// A CSV or Parquet file and its unique id column.
    File { path: PathBuf, id_column: String },
    /// A participant type in a warehouse.
    Participants(Box<ParticipantAudience>),
}

/// Resolve `participant_type` through the settings, with its filters: the `cli` filter
/// expressions (`FIELD RELATION V1,V2`) and the filters of a JSON file, in that order.
pub async fn resolve_audience(
    settings: &SettingsChoice,
    participant_type: &str,
    id_column: Option<String>,
    cli: &[String],
    filters_file: Option<&Path>,
) -> Result<ParticipantAudience> {
    let filters = crate::filters::collect(cli, filters_file)?;
    let participants = crate::settings::resolve_participants(
        settings.file.as_deref(),
        settings.datasource.as_deref(),
        participant_type,
    )
    .await?;
    Ok(ParticipantAudience {
        participants,
        id_column,
        filters,
    })
}

impl ParticipantAudience {
    /// `participant type NAME`, for messages.
    pub fn label(&self) -> String {
        format!("participant type {}", self.participants.participant_type)
    }

    /// The filters as JSON, as the design record keeps them (`[]` without filters).
    pub fn filters_json(&self) -> serde_json::Value {
        if self.filters.is_empty() {
            serde_json::Value::Array(vec![])
        } else {
            serde_json::to_value(&self.filters).unwrap_or(serde_json::Value::Null)
        }
    }

    /// The filters' `WHERE` condition (None without filters) and its parameters, numbered from
    /// `first` — checked against the sheet.
    pub fn condition(
        &self,
        dialect: &dyn SqlDialect,
        first: usize,
    ) -> Result<Option<(String, Vec<Value>)>> {
        if self.filters.is_empty() {
            return Ok(None);
        }
        crate::filters::where_clause(dialect, &self.filters, &self.participants.sheet, first)
            .map(Some)
    }

    /// `schema.table` as the design record names it.
    pub fn table_shown(&self) -> String {
        let p = &self.participants;
        match &p.schema_name {
            Some(s) => format!("{s}.{}", p.table_name),
            None => p.table_name.clone(),
        }
    }
}
