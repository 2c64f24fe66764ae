//! `xngin validate-settings`: Validate tenant settings files (JSON or TOML); --deep also connects and checks sheets.
//!
//! Usage: xngin validate-settings examples/tenant.settings.toml

use crate::Globals;

/// Validate tenant settings files (JSON or TOML); --deep also connects and checks sheets.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin validate-settings examples/tenant.settings.toml")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("validate-settings")
}
