//! `xngin assignment`: Look up participants' arms in an experiment written by assign.
//!
//! Usage: xngin assignment --experiment-id EXP --input assignments.csv 17 42

use crate::Globals;

/// Look up participants' arms in an experiment written by assign.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin assignment --experiment-id EXP --input assignments.csv 17 42")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("assignment")
}
