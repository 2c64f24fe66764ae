//! `xngin bootstrap-spreadsheet`: Introspect a table into a column-metadata sheet (CSV, or a Google Sheet).
//!
//! Usage: xngin bootstrap-spreadsheet sqlite:///dwh.db dwh --output dwh_sheet.csv

use std::path::PathBuf;

use anyhow::Result;
use xngin::dsn::Dsn;
use xngin::output;
use xngin::sheet::bootstrap;
use xngin::sheet::gsheets::{self, GoogleConfig};

use crate::{Format, Globals};

/// Introspect a table into a column-metadata sheet (CSV, or a Google Sheet).
///
/// One row per column: the unique id first (--unique-id-col, else the primary key, else a
/// column named `id`), then the string columns, then the rest, each alphabetically. The tenant
/// then marks strata, filters and metrics and adds descriptions.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin bootstrap-spreadsheet sqlite:///dwh.db dwh --output dwh_sheet.csv\n  \
xngin bootstrap-spreadsheet postgres://me@db/dw people --schema-name crm --unique-id-col pid\n  \
xngin bootstrap-spreadsheet postgres://me@db/dw people --create-gsheet --share-email me@x.org\n\n\
Google: the service-account key is read from GOOGLE_APPLICATION_CREDENTIALS (default\n\
~/.config/gspread/service_account.json).")]
pub struct Args {
    /// Warehouse: sqlite:///FILE, postgres://user@host/db, mysql://user@host/db (see README).
    #[arg(value_name = "DSN")]
    dsn: String,
    /// Table to introspect (also the worksheet title of a Google Sheet).
    #[arg(value_name = "TABLE", env = "XNGIN_CLI_TABLE_NAME")]
    table: String,
    /// Schema (PostgreSQL) or database (MySQL) of the table. Default: the DSN's search path / database.
    #[arg(long, value_name = "NAME")]
    schema_name: Option<String>,
    /// Column to mark as the unique id (default: the primary key, else a column named `id`).
    #[arg(long, value_name = "COLUMN")]
    unique_id_col: Option<String>,
    /// Output format (csv is the sheet itself; json is the parsed model; table is for reading).
    #[arg(
        long,
        value_enum,
        default_value = "csv",
        conflicts_with = "create_gsheet"
    )]
    format: Format,
    /// Write the output to FILE (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE", conflicts_with = "create_gsheet")]
    output: Option<PathBuf>,
    /// Overwrite --output FILE if it exists.
    #[arg(long, requires = "output")]
    replace: bool,
    /// Create a Google Sheet instead of writing CSV; prints its URL.
    #[arg(long)]
    create_gsheet: bool,
    /// Title of the created spreadsheet (default: TABLE).
    #[arg(long, value_name = "TITLE", requires = "create_gsheet")]
    participant_type: Option<String>,
    /// Share the created sheet with this address as writer (repeatable).
    #[arg(long, value_name = "EMAIL", requires = "create_gsheet")]
    share_email: Vec<String>,
    /// Password for a DSN that names a user but no password.
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    password: Option<String>,
}

pub async fn run(args: Args, _g: &Globals) -> Result<()> {
    let mut dsn = Dsn::parse(&args.dsn)?;
    dsn.fill_password(args.password.as_deref());
    xngin::dsn::check_ident("TABLE", &args.table)?;
    // A missing or malformed key fails before any warehouse work.
    let google = match args.create_gsheet {
        true => {
            let cfg = GoogleConfig::from_env();
            gsheets::load_key(&cfg.key_path)?;
            Some(cfg)
        }
        false => None,
    };
    let ws = bootstrap::bootstrap_dsn(
        &dsn,
        args.schema_name.as_deref(),
        &args.table,
        args.unique_id_col.as_deref(),
    )
    .await;
    let ws = match ws {
        Err(e @ xngin::Error::NoSuchTable { .. })
            if args.schema_name.is_none() && args.table.contains('.') =>
        {
            Err(xngin::Error::Runtime(format!(
                "{e} (for a table in another schema, pass --schema-name SCHEMA and the bare table name)"
            )))
        }
        other => other,
    }?;

    if let Some(cfg) = google {
        let title = args.participant_type.as_deref().unwrap_or(&args.table);
        let rows = bootstrap::sheet_rows(&ws);
        let mut on_shared = |email: &str| output::print(&format!("# Sheet shared with {email}\n"));
        let url = gsheets::create_google_sheet(
            &cfg,
            title,
            &args.table,
            &rows,
            &args.share_email,
            &mut on_shared,
        )
        .await?;
        output::print(&format!("{url}\n"))?;
        return Ok(());
    }

    let text = match args.format {
        Format::Csv => bootstrap::to_csv_string(&ws),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&ws)?),
        Format::Table => bootstrap::to_table_string(&ws),
    };
    match &args.output {
        Some(path) => {
            output::write_atomic(path, args.replace, |w| {
                w.write_all(text.as_bytes())
                    .map_err(|e| xngin::Error::io(path, e))
            })?;
            output::notice(format!(
                "Wrote the sheet of '{}' ({} columns) to {}.",
                args.table,
                ws.columns.len(),
                path.display()
            ));
        }
        None => output::print(&text)?,
    }
    Ok(())
}
