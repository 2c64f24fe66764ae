//! `xngin assign`: Stratified random assignment of a filtered audience to arms, with a balance check.
//!
//! Usage: xngin assign --participant-type test_participant_type --arms control,treatment --strata gender,ethnicity

use crate::Globals;

/// Stratified random assignment of a filtered audience to arms, with a balance check.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  xngin assign --participant-type test_participant_type --arms control,treatment --strata gender,ethnicity")]
pub struct Args {}

pub async fn run(_args: Args, _g: &Globals) -> anyhow::Result<()> {
    crate::not_built("assign")
}
