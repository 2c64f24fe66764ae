//! (in progress: lead)
use crate::dsn::Dsn;
use crate::error::{Error, Result};
/// The embedded default warehouse (SQLite built from the bundled fixture on first use).
pub async fn default_warehouse() -> Result<Dsn> {
    Err(Error::runtime("the embedded testing warehouse is not built yet"))
}
