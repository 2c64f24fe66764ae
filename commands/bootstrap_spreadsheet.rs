//! `xngin bootstrap-spreadsheet`: Introspect a table into a column-metadata sheet (CSV, or a Google Sheet).
//!
//! Usage: xngin bootstrap-spreadsheet sqlite:///dwh.db dwh --output dwh_sheet.csv

use crate::Globals;

/// Introspect a table into a column-metadata sheet (CSV, or a Google Sheet).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin bootstrap-spreadsheet sqlite:///dwh.db dwh --output dwh_sheet.csv")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("bootstrap-spreadsheet")
}
