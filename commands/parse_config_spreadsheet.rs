//! `xngin parse-config-spreadsheet`: Read a column-metadata sheet (Google Sheets URL, file:// URL or CSV path), validate it and print JSON.
//!
//! Usage: xngin parse-config-spreadsheet fixtures/testing_sheet.csv test_participant_type

use crate::Globals;

/// Read a column-metadata sheet (Google Sheets URL, file:// URL or CSV path), validate it and print JSON.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin parse-config-spreadsheet fixtures/testing_sheet.csv test_participant_type")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("parse-config-spreadsheet")
}
