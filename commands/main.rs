//! The `xngin` binary: argument parsing and printing only; all logic is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod assign;
mod assignment;
mod bootstrap_spreadsheet;
mod create_testing_dwh;
mod export_json_schemas;
mod fields;
mod flags;
mod parse_config_spreadsheet;
mod power;
mod validate_settings;

/// `--format` of the commands whose output is data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Toolkit for operators of randomized experiments: onboard a tenant's warehouse, validate
/// settings, check statistical power and draw stratified random assignments.
#[derive(Parser)]
#[command(
    name = "xngin",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 ok; 1 runtime failure; 2 usage error; 3 invalid input \
(settings, sheet, filters, design); 4 power --fail-on-insufficient found too few units.\n\n\
Quick start (no settings needed; uses the embedded testing warehouse):\n  \
xngin assign --participant-type test_participant_type --arms control,treatment --strata gender,ethnicity"
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Globals {
    /// Tenant settings file (JSON or TOML). Default: xngin.settings.json / xngin.settings.toml in
    /// the working directory, else the built-in `testing` datasource.
    #[arg(long, global = true, env = "XNGIN_SETTINGS", value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// Datasource id in the settings file (optional when there is only one).
    #[arg(long, global = true, env = "XNGIN_DATASOURCE", value_name = "ID")]
    pub datasource: Option<String>,
    /// Print only data and errors: no notices, no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print each SQL statement to stderr before running it.
    #[arg(long, global = true, env = "XNGIN_ECHO_SQL")]
    pub echo_sql: bool,
}

impl Globals {
    /// The settings file and datasource to resolve participant types in.
    pub fn settings_choice(&self) -> xngin::audience::SettingsChoice {
        xngin::audience::SettingsChoice {
            file: self.settings.clone(),
            datasource: self.datasource.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    CreateTestingDwh(create_testing_dwh::Args),
    BootstrapSpreadsheet(bootstrap_spreadsheet::Args),
    ParseConfigSpreadsheet(parse_config_spreadsheet::Args),
    ValidateSettings(validate_settings::Args),
    ExportJsonSchemas(export_json_schemas::Args),
    Fields(fields::Args),
    Power(power::Args),
    Assign(assign::Args),
    Assignment(assignment::Args),
}

fn main() -> ExitCode {
    xngin::input::set_namer(flags::flag);
    let cli = Cli::parse();
    xngin::output::set_quiet(cli.globals.quiet);
    xngin::warehouse::set_echo_sql(cli.globals.echo_sql);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xngin: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let g = cli.globals;
    let result = rt.block_on(async move {
        match cli.command {
            Command::CreateTestingDwh(a) => create_testing_dwh::run(a, &g).await,
            Command::BootstrapSpreadsheet(a) => bootstrap_spreadsheet::run(a, &g).await,
            Command::ParseConfigSpreadsheet(a) => parse_config_spreadsheet::run(a, &g).await,
            Command::ValidateSettings(a) => validate_settings::run(a, &g).await,
            Command::ExportJsonSchemas(a) => export_json_schemas::run(a, &g).await,
            Command::Fields(a) => fields::run(a, &g).await,
            Command::Power(a) => power::run(a, &g).await,
            Command::Assign(a) => assign::run(a, &g).await,
            Command::Assignment(a) => assignment::run(a, &g).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Print an error and pick the exit code. Library errors carry their code; anything else is a
/// runtime failure (1). `Invalid` errors print one problem per line, bare, so that CI and editors
/// can parse `FILE:LINE:COL: path: message`; the others print as `xngin: message`.
fn report(err: &anyhow::Error) -> ExitCode {
    let lib = err.chain().find_map(|e| e.downcast_ref::<xngin::Error>());
    let code = lib.map(|e| e.exit_code()).unwrap_or(1);
    match lib {
        Some(xngin::Error::Invalid(lines)) => {
            for l in lines {
                xngin::output::eprint_line(l);
            }
        }
        _ => {
            // Context added with anyhow goes in front: "loading X: reason".
            let msg: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            xngin::output::eprint_line(&format!("xngin: {}", msg.join(": ")));
        }
    }
    ExitCode::from(code as u8)
}
