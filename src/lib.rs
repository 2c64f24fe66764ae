//! xngin: the library behind the `xngin` command-line toolkit for operators of randomized
//! experiments. Everything the CLI does lives here so that tests can reach it; the binary in
//! `commands/` only parses arguments and prints.
//!
//! Modules are named for the domain:
//! * [`dsn`], [`warehouse`]: DSNs, connections, quoting, introspection, bulk loads.
//! * [`testing_dwh`]: the deterministic testing warehouse and the embedded default.
//! * [`sheet`]: the column-metadata sheet (CSV and Google Sheets).
//! * [`settings`]: tenant settings files, secrets, participant-type resolution.
//! * [`audience`]: a command's audience (a file, or a participant type with filters), resolved once.
//! * [`filters`]: audience filters and their SQL.
//! * [`power`]: sample size and minimum detectable effect.
//! * [`assign`]: stratified random assignment, balance check, outputs.
//! * [`input`]: the inputs a user gives, named in messages (flags only in the binary).
//! * [`weights`]: arm weights in the Python tool's forms, read as exact fractions.

pub mod assign;
pub mod audience;
pub mod datatype;
pub mod dsn;
pub mod error;
pub mod fields;
pub mod filters;
pub mod google;
pub mod input;
pub mod output;
pub mod power;
pub mod settings;
pub mod sheet;
pub mod testing_dwh;
pub mod warehouse;
pub mod weights;

pub use error::{Error, Result};

/// The version recorded in design records and printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
