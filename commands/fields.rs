//! `xngin fields`: List a participant type's filter, metric and strata fields with ranges or distinct values.
//!
//! Usage: xngin fields --participant-type test_participant_type --kind filters

use crate::Globals;

/// List a participant type's filter, metric and strata fields with ranges or distinct values.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin fields --participant-type test_participant_type --kind filters")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("fields")
}
