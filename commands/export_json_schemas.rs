//! `xngin export-json-schemas`: write JSON Schemas of the settings file and of the sheet.
//!
//! Usage: xngin export-json-schemas --output .schemas

use std::path::PathBuf;

use crate::Globals;

/// Write JSON Schemas of the settings file and of the sheet.
///
/// Writes DIR/XnginSettings.schema.json and DIR/ConfigWorksheet.schema.json (sorted keys,
/// 2-space indent) and prints `Wrote PATH.` for each. Point an editor at the settings schema to
/// get the structural errors of `validate-settings` while typing.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin export-json-schemas --output .schemas")]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".schemas")]
    pub output: PathBuf,
}

pub async fn run(args: Args, _g: &Globals) -> anyhow::Result<()> {
    for path in xngin::settings::schema::write_schemas(&args.output)? {
        xngin::output::print(&format!("Wrote {}.\n", path.display()))?;
    }
    Ok(())
}
