//! `xngin fields`: list a participant type's filter, metric and strata fields, with ranges or
//! distinct values.
//!
//! Usage: xngin fields --participant-type test_participant_type --kind filters

use xngin::audience::resolve_audience;
use xngin::fields::{FieldKind, fields_report};

use crate::{Format, Globals};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filters,
    Metrics,
    Strata,
}

/// List a participant type's filter, metric and strata fields with ranges or distinct values.
///
/// Filters show min and max for numbers, dates and timestamps; up to 1000 sorted distinct
/// non-null values for strings, booleans, uuids and any *_id field; and the NULL count of each.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  xngin fields --participant-type test_participant_type --kind filters\n  \
xngin --settings tenant.settings.toml fields --participant-type students --kind metrics --format json\n  \
xngin fields --participant-type test_participant_type --kind strata --cluster-column school_id"
)]
pub struct Args {
    /// Participant type (case-insensitive) in the settings, or the built-in test_participant_type.
    #[arg(long, value_name = "TYPE")]
    pub participant_type: String,
    /// Which role's fields to list.
    #[arg(long, value_enum, default_value_t = Kind::Filters)]
    pub kind: Kind,
    /// Cluster-level summaries by this column (e.g. a school id): the clusters and their sizes,
    /// in how many clusters each field varies (0: usable as a stratum of a cluster assignment),
    /// and each metric's ICC.
    #[arg(long, value_name = "COLUMN")]
    pub cluster_column: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn run(args: Args, g: &Globals) -> anyhow::Result<()> {
    let kind = match args.kind {
        Kind::Filters => FieldKind::Filters,
        Kind::Metrics => FieldKind::Metrics,
        Kind::Strata => FieldKind::Strata,
    };
    let audience = resolve_audience(
        &g.settings_choice(),
        &args.participant_type,
        None,
        &[],
        None,
    )
    .await?;
    let report =
        fields_report(&audience.participants, kind, args.cluster_column.as_deref()).await?;
    let text = match args.format {
        Format::Table => xngin::fields::render_table(&report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report)?;
            s.push('\n');
            s
        }
        Format::Csv => xngin::fields::render_csv(&report)?,
    };
    xngin::output::print(&text)?;
    Ok(())
}
