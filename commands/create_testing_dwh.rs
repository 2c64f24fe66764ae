//! `xngin create-testing-dwh`: Load the bundled testing warehouse (or --rows N synthetic rows) into a DSN.
//!
//! Usage: xngin create-testing-dwh --dsn postgres://postgres@127.0.0.1/test --replace

use crate::Globals;

/// Load the bundled testing warehouse (or --rows N synthetic rows) into a DSN.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin create-testing-dwh --dsn postgres://postgres@127.0.0.1/test --replace")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("create-testing-dwh")
}
