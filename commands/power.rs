//! `xngin power`: Sample size or minimum detectable effect, from numbers or from warehouse baselines.
//!
//! Usage: xngin power --metric-type numeric --baseline 100 --target 110 --stddev 20 --arms 2

use crate::Globals;

/// Sample size or minimum detectable effect, from numbers or from warehouse baselines.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin power --metric-type numeric --baseline 100 --target 110 --stddev 20 --arms 2")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("power")
}
