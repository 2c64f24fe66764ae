//! The warehouse side of `assign`: reading a participant type's audience and writing the
//! assignment (`--write-table`) and the design record (`xngin_experiments`).

use indicatif::ProgressBar;

use super::output::{AudienceRecord, DesignRecord};
use super::run::Request;
use super::{Design, Outcome, Table};
use crate::dsn::Dsn;
use crate::error::{Error, Result};

/// Where a participant type lives.
#[derive(Debug, Clone)]
pub struct Target {
    pub dsn: Dsn,
}

pub async fn read_participants(_req: &Request, _strata: &[String]) -> Result<(Table, AudienceRecord, Target)> {
    Err(Error::runtime("--participant-type is not built yet"))
}

#[allow(clippy::too_many_arguments)]
pub async fn write_table(
    _req: &Request,
    _target: Option<&Target>,
    _table_name: &str,
    _table: &Table,
    _outcome: &Outcome,
    _design: &Design,
    _record: &DesignRecord,
    _pb: &ProgressBar,
) -> Result<()> {
    Err(Error::runtime("--write-table is not built yet"))
}
