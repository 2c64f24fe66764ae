//! `xngin assign`: stratified random assignment of an audience to arms, with a balance check.

use std::path::PathBuf;

use xngin::assign::run::{DesignRequest, Outputs, Request, TableOutput, check_request};
use xngin::assign::{Arms, DEFAULT_FSTAT_THRESH, DEFAULT_QUANTILES, MisfitStrategy, strata_fields};
use xngin::audience::{Audience, resolve_audience};
use xngin::dsn::Dsn;

use crate::{Format, Globals};

/// `--misfit-strategy` (the library's [`MisfitStrategy`], as a clap value).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misfit {
    /// Each stratum's leftover rows form one partial block of that stratum (default).
    Stratum,
    /// The leftovers of all strata are pooled and assigned as one stratum.
    Global,
    /// The leftovers stay unassigned.
    None,
}

impl From<Misfit> for MisfitStrategy {
    fn from(m: Misfit) -> Self {
        match m {
            Misfit::Stratum => MisfitStrategy::Stratum,
            Misfit::Global => MisfitStrategy::Global,
            Misfit::None => MisfitStrategy::None,
        }
    }
}

/// Stratified random assignment of an audience (a participant type's warehouse table, or a
/// CSV/Parquet file) to arms, with a balance check and a design record.
///
/// Rows are stratified by --strata and --metrics (numeric fields in quantile bins) and assigned
/// in blocks so that every full block in a stratum is split exactly by the arm weights. Same
/// rows (in any order) + same design + same --seed give a byte-identical assignment.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin assign --participant-type test_participant_type --arms control,treatment \\\n      \
--strata gender,ethnicity\n  \
xngin assign --input people.csv --id-column id --arms a,b --arm-weights 20,80 \\\n      \
--strata region --seed 7 --output out.csv\n  \
xngin assign --participant-type test_participant_type \\\n      \
--filter 'income between 20000,80000' --arms a,b --write-table assignments\n  \
xngin assign --input pupils.csv --id-column pupil --cluster-column school \\\n      \
--strata district --arms control,treatment --seed 7 --output schools.csv")]
#[command(group(clap::ArgGroup::new("audience").required(true).args(["participant_type", "input"])))]
pub struct Args {
    /// Participant type whose warehouse table is the audience (resolved through the settings).
    #[arg(long, value_name = "TYPE")]
    participant_type: Option<String>,
    /// A CSV or Parquet file holding the audience (instead of --participant-type).
    #[arg(long, value_name = "FILE", requires = "id_column")]
    input: Option<PathBuf>,
    /// The unique id column of --input (default with --participant-type: the sheet's unique id).
    #[arg(long, value_name = "COLUMN")]
    id_column: Option<String>,
    /// Arm names, the first is the control (e.g. control,treatment).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1.., value_name = "NAMES")]
    arms: Vec<String>,
    /// Relative arm weights, one per arm (e.g. 20,80, 1,1,2 or 1/3,2/3); default equal. Each is
    /// read as its closest fraction with denominator at most 10^6, as the Python tool does, so
    /// 33.333333333333336 is exactly 100/3.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "WEIGHTS")]
    arm_weights: Option<Vec<String>>,
    /// Strata fields.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "FIELDS")]
    strata: Vec<String>,
    /// Metric fields (also used as strata, as the reference does).
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "FIELDS")]
    metrics: Vec<String>,
    /// Quantile bins for numeric strata (asking for more than a column's values can fill puts
    /// each distinct value in its own bin).
    #[arg(long, default_value_t = DEFAULT_QUANTILES, value_name = "N")]
    quantiles: u32,
    /// What to do with the rows of a stratum that do not fill a whole block.
    #[arg(long, value_enum, default_value_t = Misfit::Stratum)]
    misfit_strategy: Misfit,
    /// Random seed (u64); without it a fresh seed is drawn, printed and recorded.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Assign a uniformly random subset of N participants (drawn with the seed).
    #[arg(long, value_name = "N")]
    sample_size: Option<u64>,
    /// Audience filter on a participant type (repeatable, AND-ed), e.g. 'gender includes F'.
    #[arg(long = "filter", value_name = "FILTER", requires = "participant_type")]
    filters: Vec<String>,
    /// JSON file with a list of filters ({field_name, relation, value}).
    #[arg(long, value_name = "FILE", requires = "participant_type")]
    filters_file: Option<PathBuf>,
    /// Experiment id (default: a new UUID).
    #[arg(long, value_name = "ID")]
    experiment_id: Option<String>,
    /// Write the assignment to FILE (.csv or .parquet) and its design record to FILE.design.json.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write the assignment to a warehouse table (created if missing) and the design record to
    /// xngin_experiments.
    #[arg(long, value_name = "[SCHEMA.]TABLE")]
    write_table: Option<String>,
    /// Compute the assignment, balance test and design record inside the participant type's
    /// warehouse (PostgreSQL, MySQL/MariaDB, BigQuery; text, date, boolean, integer and float
    /// strata, NUMERIC/DECIMAL and timestamps not yet) and write it to --write-table there (only
    /// aggregates leave the warehouse) and/or stream it to --output FILE.csv. The same rows and
    /// design record as without the flag. On SQLite, a local engine, the local algorithm runs
    /// and the table is written in one transaction.
    #[arg(long, requires = "participant_type", conflicts_with = "dsn")]
    in_warehouse: bool,
    /// Warehouse for --write-table (default: the participant type's warehouse).
    #[arg(long, value_name = "DSN")]
    dsn: Option<String>,
    /// Overwrite an existing --output file; replace this experiment's rows in --write-table.
    #[arg(long)]
    replace: bool,
    /// Randomize whole clusters (schools, villages, clinics) of this column: every participant
    /// gets its cluster's arm, strata must be constant within a cluster, blocks count clusters,
    /// and the balance test is clustered (CR1). NULL cluster ids are an error.
    #[arg(long, value_name = "COLUMN")]
    cluster_column: Option<String>,
    /// Balanced when the balance test's p-value is above this.
    #[arg(long, default_value_t = DEFAULT_FSTAT_THRESH, value_name = "P")]
    fstat_thresh: f64,
    /// table: summary; json: the design record; csv: the assignment on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(args: Args, g: &Globals) -> anyhow::Result<()> {
    if args.in_warehouse && args.format == Format::Csv {
        anyhow::bail!(xngin::Error::usage(
            "--format csv prints the rows, which --in-warehouse leaves in the warehouse; use --format table or json"
        ));
    }
    // Flags first (no I/O), then the audience: a bad flag is reported before settings are read.
    let design = DesignRequest {
        arms: Arms::new(&args.arms, args.arm_weights.as_deref())?,
        strata: strata_fields(&args.strata, &args.metrics),
        quantiles: args.quantiles,
        misfit: args.misfit_strategy.into(),
        seed: args.seed,
        sample_size: args.sample_size,
        fstat_thresh: args.fstat_thresh,
        cluster: args.cluster_column,
    };
    let table = match args.write_table {
        Some(spec) => Some(TableOutput {
            spec,
            dsn: args.dsn.as_deref().map(Dsn::parse).transpose()?,
        }),
        None => None,
    };
    let outputs = Outputs {
        file: args.output,
        table,
        replace: args.replace,
        experiment_id: args.experiment_id,
    };
    let audience = match (args.input, args.participant_type) {
        (Some(path), _) => {
            let id_column = args
                .id_column
                .expect("clap requires --id-column with --input");
            check_request(&design, &outputs, Some(&id_column))?;
            Audience::File { path, id_column }
        }
        (None, Some(name)) => {
            check_request(&design, &outputs, None)?;
            Audience::Participants(Box::new(
                resolve_audience(
                    &g.settings_choice(),
                    &name,
                    args.id_column,
                    &args.filters,
                    args.filters_file.as_deref(),
                )
                .await?,
            ))
        }
        (None, None) => unreachable!("clap requires an audience"),
    };
    let req = Request {
        audience,
        design,
        outputs,
        in_warehouse: args.in_warehouse,
    };
    let report = xngin::assign::run::run(&req).await?;
    match args.format {
        Format::Table => xngin::output::print(&xngin::assign::output::summary(&report.record))?,
        Format::Json => xngin::output::print(&report.record.to_json())?,
        Format::Csv => {
            let mut buf = Vec::new();
            xngin::assign::output::write_csv(
                &mut buf,
                &report.table,
                &report.outcome,
                &report.design,
            )?;
            xngin::output::print(&String::from_utf8_lossy(&buf))?;
        }
    }
    Ok(())
}
