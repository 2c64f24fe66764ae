//! `xngin parse-config-spreadsheet`: Read a column-metadata sheet (Google Sheets URL, file:// URL or CSV path), validate it and print JSON.
//!
//! Usage: xngin parse-config-spreadsheet fixtures/testing_sheet.csv test_participant_type

use anyhow::Result;
use xngin::output;

use crate::Globals;

/// Read a column-metadata sheet (Google Sheets URL, file:// URL or CSV path), validate it and print JSON.
///
/// Every problem is reported, one per line: `SOURCE: row N, column C: message` (exit 3).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin parse-config-spreadsheet fixtures/testing_sheet.csv test_participant_type\n  \
xngin parse-config-spreadsheet file://./sheet.csv people\n  \
xngin parse-config-spreadsheet https://docs.google.com/spreadsheets/d/ID/edit people\n\n\
Google: the service-account key is read from GOOGLE_APPLICATION_CREDENTIALS (default\n\
~/.config/gspread/service_account.json); share the sheet with its client_email.")]
pub struct Args {
    /// A Google Sheets URL, a file:// URL or a CSV file path.
    #[arg(value_name = "SOURCE")]
    source: String,
    /// The worksheet (tab) to read; for a CSV, the name given to the parsed sheet (`table_name`).
    #[arg(value_name = "WORKSHEET")]
    worksheet: String,
}

pub async fn run(args: Args, _g: &Globals) -> Result<()> {
    let ws = xngin::sheet::read_sheet(&args.source, &args.worksheet).await?;
    output::print(&format!("{}\n", serde_json::to_string_pretty(&ws)?))?;
    Ok(())
}
