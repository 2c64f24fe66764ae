//! `xngin validate-settings`: validate tenant settings files (JSON or TOML); `--deep` also
//! resolves secrets, connects to each warehouse and checks each sheet against its live table.
//!
//! Usage: xngin validate-settings examples/tenant.settings.toml

use std::path::PathBuf;

use crate::Globals;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// One line per problem on stderr: FILE:LINE:COL: dotted.path: message
    Text,
    /// A JSON report on stdout (every file, valid or not)
    Json,
}

/// Validate tenant settings files (JSON or TOML); --deep also connects and checks sheets.
///
/// Prints nothing and exits 0 when every file is valid. Otherwise prints one line per problem,
/// `FILE:LINE:COL: dotted.path: message`, and exits 3 (invalid settings) or 1 (a check could not
/// run: unreadable file, connection or sheet failure).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  xngin validate-settings examples/tenant.settings.toml\n  \
xngin validate-settings --format json tenants/*.settings.json\n  \
ACME_DWH_PASSWORD=... ACME_WEBHOOK_TOKEN=... xngin validate-settings --deep examples/tenant.settings.json"
)]
pub struct Args {
    /// Settings files to validate (.json or .toml; other names are sniffed).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also resolve ${secret:NAME} from the environment, connect to every warehouse, read every
    /// sheet and check tables and columns against it.
    #[arg(long)]
    pub deep: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

pub async fn run(args: Args, _g: &Globals) -> anyhow::Result<()> {
    let report = xngin::settings::deep::validate_files(&args.files, args.deep).await;
    if args.format == ReportFormat::Json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        xngin::output::print(&text)?;
    } else {
        for line in report.lines() {
            xngin::output::eprint_line(&line);
        }
    }
    match report.exit_code() {
        0 => Ok(()),
        1 => {
            let n = report
                .files
                .iter()
                .filter(|f| !f.failures.is_empty())
                .count();
            Err(xngin::Error::runtime(format!(
                "{n} settings file(s) could not be fully checked (see above)"
            ))
            .into())
        }
        // The problems are printed already; exit 3 without repeating them.
        _ => Err(xngin::Error::Invalid(Vec::new()).into()),
    }
}
