//! `xngin create-testing-dwh`: load the bundled testing warehouse (or a CSV, or N synthetic
//! rows) into a warehouse table, atomically.
//!
//! Usage:
//!   xngin create-testing-dwh --dsn DSN [--src FILE.csv[.zst] | --rows N [--seed S]] [--nrows N]
//!                            [--table-name dwh] [--schema-name S] [--password P]
//!                            [--allow-existing | --replace]
//!   xngin create-testing-dwh --rows N [--seed S] --export-csv FILE.csv[.zst]

use std::path::PathBuf;

use anyhow::Result;
use xngin::testing_dwh::{self, CreateOptions, Source};
use xngin::warehouse::load::{IfExists, LoadOutcome};

use crate::Globals;

/// Load the bundled testing warehouse (or --rows N synthetic rows) into a DSN.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin create-testing-dwh --dsn postgres://postgres@127.0.0.1/test --replace\n  \
xngin create-testing-dwh --dsn sqlite:///dwh.db --rows 1000000 --table-name people\n  \
xngin create-testing-dwh --rows 100000 --seed 42 --export-csv fixtures/testing_dwh.csv.zst")]
pub struct Args {
    /// Warehouse to load into: sqlite:///FILE, postgres://..., mysql://... (see README).
    #[arg(
        long,
        env = "XNGIN_DSN",
        required_unless_present = "export_csv",
        conflicts_with = "export_csv"
    )]
    dsn: Option<String>,
    /// CSV to load (.csv or .csv.zst). Default: the bundled testing warehouse.
    #[arg(long, conflicts_with = "rows", value_name = "FILE")]
    src: Option<PathBuf>,
    /// Generate N synthetic rows instead of reading a CSV (streamed; never all in memory).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rows: Option<u64>,
    /// Seed of the generator for --rows.
    #[arg(long, default_value_t = testing_dwh::generate::FIXTURE_SEED, requires = "rows")]
    seed: u64,
    /// Load at most N data rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    nrows: Option<u64>,
    /// Table to create.
    #[arg(long, default_value = "dwh", env = "XNGIN_CLI_TABLE_NAME")]
    table_name: String,
    /// Schema (PostgreSQL) or database (MySQL) to create the table in; created if missing.
    #[arg(long)]
    schema_name: Option<String>,
    /// Password for a DSN that names a user but no password.
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// If the table exists, leave it alone and exit 0.
    #[arg(long, conflicts_with = "replace")]
    allow_existing: bool,
    /// If the table exists, replace it (atomically: the old table stays if the load fails).
    #[arg(long)]
    replace: bool,
    /// Write the generated rows to a CSV (.csv or .csv.zst) instead of a warehouse.
    #[arg(long, value_name = "FILE", requires = "rows")]
    export_csv: Option<PathBuf>,
}

pub async fn run(args: Args, _g: &Globals) -> Result<()> {
    if let Some(path) = &args.export_csv {
        // clap requires --rows with --export-csv; --nrows can only lower it.
        let rows = args.rows.unwrap_or_default();
        let n = testing_dwh::export_csv(
            path,
            args.nrows.map_or(rows, |m| m.min(rows)),
            args.seed,
            args.replace,
        )?;
        xngin::output::print(&format!("Wrote {n} rows to {}.\n", path.display()))?;
        return Ok(());
    }
    let mut dsn = xngin::dsn::Dsn::parse(args.dsn.as_deref().unwrap_or_default())?;
    dsn.fill_password(args.password.as_deref());
    let source = match (args.rows, &args.src) {
        (Some(rows), _) => Source::Synthetic {
            rows,
            seed: args.seed,
        },
        (None, Some(path)) => Source::File(path.clone()),
        (None, None) => Source::Fixture,
    };
    let if_exists = if args.replace {
        IfExists::Replace
    } else if args.allow_existing {
        IfExists::Keep
    } else {
        IfExists::Fail
    };
    let table = match &args.schema_name {
        Some(s) => format!("{s}.{}", args.table_name),
        None => args.table_name.clone(),
    };
    let opts = CreateOptions {
        dsn,
        source,
        nrows: args.nrows,
        schema: args.schema_name,
        table: args.table_name,
        if_exists,
    };
    match testing_dwh::create(&opts).await? {
        LoadOutcome::AlreadyExists => {
            xngin::output::print("Table already exists; nothing to do.\n")?
        }
        LoadOutcome::Loaded(n) => {
            xngin::output::print(&format!("Loaded {n} rows into {table}.\n"))?
        }
    }
    Ok(())
}
