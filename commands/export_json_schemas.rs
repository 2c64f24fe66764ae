//! `xngin export-json-schemas`: Write JSON Schemas of the settings file and of the sheet.
//!
//! Usage: xngin export-json-schemas --output .schemas

use crate::Globals;

/// Write JSON Schemas of the settings file and of the sheet.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin export-json-schemas --output .schemas")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("export-json-schemas")
}
