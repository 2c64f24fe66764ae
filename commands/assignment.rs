//! `xngin assignment`: look participants' arms up in an experiment written by `assign`.

use std::path::PathBuf;

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
    let rows: Vec<[String; 4]> = match (&args.input, &args.table) {
        (Some(path), _) => {
            xngin::assign::output::lookup_csv(path, &args.experiment_id, &args.participant_ids)?
        }
        (None, Some(table)) => {
            let dsn = match &args.dsn {
                Some(d) => xngin::dsn::Dsn::parse(d)?,
                None => {
                    xngin::settings::resolve_participants(
                        g.settings.as_deref(),
                        g.datasource.as_deref(),
                        &args.participant_type,
                    )
                    .await?
                    .dsn
                }
            };
            xngin::assign::warehouse::lookup(
                &dsn,
                table,
                &args.experiment_id,
                &args.participant_ids,
            )
            .await?
            .into_iter()
            .map(|r| {
                let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
                [t(0), t(1), t(2), t(3)]
            })
            .collect()
        }
        (None, None) => unreachable!("clap requires a source"),
    };
    let found: std::collections::HashSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let missing: Vec<&str> = args
        .participant_ids
        .iter()
        .map(String::as_str)
        .filter(|i| !found.contains(i))
        .collect();
    let head = xngin::assign::output::FIXED_COLUMNS;
    match args.format {
        Format::Table => {
            let mut t = xngin::output::table();
            t.set_header(head.to_vec());
            for r in &rows {
                t.add_row(r.to_vec());
            }
            xngin::output::print(&format!("{t}\n"))?;
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "experiment_id": args.experiment_id,
                        "participant_id": r[0],
                        "arm_id": r[1].parse::<i64>().ok(),
                        "arm_name": if r[2].is_empty() { None } else { Some(&r[2]) },
                        "stratum_id": r[3].parse::<i64>().ok(),
                    })
                })
                .collect();
            xngin::output::print(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(head)?;
            for r in &rows {
                w.write_record(r)?;
            }
            xngin::output::print(&String::from_utf8_lossy(&w.into_inner()?))?;
        }
    }
    if !missing.is_empty() {
        return Err(xngin::Error::runtime(format!(
            "{} participant id(s) not found in experiment {}: {}",
            missing.len(),
            args.experiment_id,
            missing.join(", ")
        ))
        .into());
    }
    Ok(())
}
