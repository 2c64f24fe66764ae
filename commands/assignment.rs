//! `xngin assignment`: look participants' arms up in an experiment written by `assign`.

use std::path::PathBuf;

use xngin::assign::lookup::{LookupSource, lookup};
use xngin::audience::resolve_audience;
use xngin::dsn::Dsn;

use crate::{Format, Globals};

/// Look participants' arms up in an experiment written by `xngin assign`: in a warehouse
/// table (--table, with --dsn or a participant type's warehouse) or an assignment CSV
/// (--input). Ids not found are listed on stderr and make the exit code 1.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin assignment --experiment-id EXP --input assignments.csv 17 42\n  \
xngin assignment --experiment-id EXP --table assignments --dsn postgres://u@host/db 17 42")]
#[command(group(clap::ArgGroup::new("source").required(true).args(["table", "input"])))]
pub struct Args {
    /// The experiment id (as recorded by assign).
    #[arg(long, value_name = "ID")]
    experiment_id: String,
    /// Participant ids to look up.
    #[arg(required = true, value_name = "PARTICIPANT_ID")]
    participant_ids: Vec<String>,
    /// The assignment table ([SCHEMA.]TABLE) written by assign --write-table.
    #[arg(long, value_name = "[SCHEMA.]TABLE")]
    table: Option<String>,
    /// Warehouse holding --table (default: the warehouse of --participant-type).
    #[arg(long, value_name = "DSN")]
    dsn: Option<String>,
    /// Participant type whose warehouse holds --table (when no --dsn).
    #[arg(long, value_name = "TYPE", default_value = "test_participant_type")]
    participant_type: String,
    /// An assignment CSV written by assign --output.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(args: Args, g: &Globals) -> anyhow::Result<()> {
    let source = match (args.input, args.table) {
        (Some(path), _) => LookupSource::File(path),
        (None, Some(spec)) => {
            let dsn = match &args.dsn {
                Some(d) => Dsn::parse(d)?,
                None => {
                    resolve_audience(
                        &g.settings_choice(),
                        &args.participant_type,
                        None,
                        &[],
                        None,
                    )
                    .await?
                    .participants
                    .dsn
                }
            };
            LookupSource::Table {
                spec,
                dsn: Box::new(dsn),
            }
        }
        (None, None) => unreachable!("clap requires a source"),
    };
    let found = lookup(&source, &args.experiment_id, &args.participant_ids).await?;
    let text = match args.format {
        Format::Table => found.render_table(),
        Format::Json => found.render_json(),
        Format::Csv => found.render_csv()?,
    };
    xngin::output::print(&text)?;
    if let Some(e) = found.missing_error() {
        return Err(e.into());
    }
    Ok(())
}
