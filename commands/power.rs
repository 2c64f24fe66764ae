//! `xngin power`: sample size or minimum detectable effect, from numbers or from warehouse
//! baselines over a filtered audience.
//!
//! Usage: xngin power --metric-type numeric --baseline 100 --target 110 --stddev 20 --arms 2

use std::path::PathBuf;

use xngin::audience::resolve_audience;
use xngin::power::analysis::check_offline_metric;
use xngin::power::baseline::{ClusterRequest, metric_requests, warehouse_metrics};
use xngin::power::{
    MetricSpec, MetricType, check_power, check_power_clustered, resolve_design, to_json,
};

use crate::Globals;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerFormat {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricTypeArg {
    Numeric,
    Binary,
}

/// Sample size or minimum detectable effect, from numbers or from warehouse baselines.
///
/// Offline: give the metric (--metric-type, --baseline, --target or --pct-change, --stddev for
/// numeric metrics). From the warehouse: --participant-type and one or more --metric; one
/// aggregate query over the filtered audience gives the available units, each metric's mean,
/// population standard deviation and non-null count. Numeric metrics use the two-sample t-test
/// (Cohen's d), binary metrics the z-test (Cohen's h). With --desired-n the minimum detectable
/// effect is reported instead of the sample size; with --desired-n and an effect, both: the size
/// the effect needs, whether the desired size reaches it, and the desired size's MDE.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
xngin power --metric-type numeric --baseline 100 --target 110 --stddev 20 --arms 2\n  \
xngin power --metric-type binary --baseline 0.5 --pct-change 0.1 --arm-weights 20,80 --available-n 4000\n  \
xngin power --metric-type numeric --baseline 100 --stddev 20 --desired-n 500 --format json\n  \
xngin power --participant-type test_participant_type --metric current_income=pct:0.1 \\\n      \
--metric is_recruited=target:0.6 --filter \"ethnicity includes Asian\" --fail-on-insufficient\n  \
xngin power --participant-type test_participant_type --metric current_income=pct:0.05 \\\n      \
--cluster-column school_id")]
pub struct Args {
    /// Offline: the metric's type.
    #[arg(
        long,
        value_enum,
        value_name = "TYPE",
        conflicts_with = "participant_type"
    )]
    pub metric_type: Option<MetricTypeArg>,
    /// Offline: the metric's baseline (mean; a proportion for binary metrics).
    #[arg(
        long,
        value_name = "B",
        conflicts_with = "participant_type",
        allow_negative_numbers = true
    )]
    pub baseline: Option<f64>,
    /// Offline: the target value to detect.
    #[arg(long, value_name = "T", conflicts_with_all = ["pct_change", "participant_type"], allow_negative_numbers = true)]
    pub target: Option<f64>,
    /// Offline: the relative change to detect (0.1 = +10 %).
    #[arg(
        long,
        value_name = "P",
        conflicts_with = "participant_type",
        allow_negative_numbers = true
    )]
    pub pct_change: Option<f64>,
    /// Offline: the population standard deviation (numeric metrics).
    #[arg(long, value_name = "S", conflicts_with = "participant_type")]
    pub stddev: Option<f64>,
    /// Offline: units available (checks sufficiency).
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "participant_type",
        allow_negative_numbers = true
    )]
    pub available_n: Option<i64>,
    /// Offline: units with a non-null value of the metric (default: --available-n).
    #[arg(
        long,
        requires = "available_n",
        value_name = "M",
        conflicts_with = "participant_type",
        allow_negative_numbers = true
    )]
    pub available_nonnull_n: Option<i64>,

    /// Warehouse: participant type (case-insensitive) whose table and sheet to use.
    #[arg(long, value_name = "TYPE")]
    pub participant_type: Option<String>,
    /// Warehouse: a metric column, with the effect to detect: NAME=pct:0.1, NAME=target:12.5, or
    /// NAME alone with --desired-n. Repeatable.
    #[arg(
        long = "metric",
        value_name = "NAME[=pct:P|=target:T]",
        requires = "participant_type"
    )]
    pub metrics: Vec<String>,
    /// Warehouse: an audience filter "FIELD RELATION V1,V2" (RELATION: includes, excludes,
    /// between; `null` is NULL; an empty side of between is open; quote values holding commas).
    /// Repeatable; filters are AND-ed.
    #[arg(long = "filter", value_name = "FILTER", requires = "participant_type")]
    pub filters: Vec<String>,
    /// Warehouse: a JSON file of filter objects {"field_name", "relation", "value": [...]}.
    #[arg(long, value_name = "FILE", requires = "participant_type")]
    pub filters_file: Option<PathBuf>,

    /// Number of arms, control first (default 2, or the number of --arm-weights).
    #[arg(long, value_name = "K")]
    pub arms: Option<usize>,
    /// Relative arm sizes, control first, e.g. 20,80 or 1/3,2/3 (each weight is read as the
    /// closest fraction with denominator at most 10^6, so 33.333333333333336 is 100/3).
    #[arg(
        long,
        value_name = "W1,W2,...",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub arm_weights: Option<Vec<String>>,
    /// Significance level (two-sided).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub alpha: f64,
    /// Target power.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub power: f64,
    /// Report the minimum detectable effect for this total sample size instead of a size.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub desired_n: Option<i64>,
    /// Cluster design: intracluster correlation in [0, 1] (needs --avg-cluster-size, unless
    /// --cluster-column estimates it).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub icc: Option<f64>,
    /// Cluster design: average cluster size (>= 1).
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub avg_cluster_size: Option<f64>,
    /// Cluster design: coefficient of variation of cluster sizes (default 0, or estimated with
    /// --cluster-column).
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub cv: Option<f64>,
    /// Warehouse: a cluster design randomizing whole clusters of this column (e.g. a school
    /// id). Each metric's ICC (one-way ANOVA estimate), the average cluster size and the CV of
    /// the cluster sizes come from one aggregate query over the filtered audience, unless given
    /// by --icc / --avg-cluster-size / --cv.
    #[arg(long, value_name = "COLUMN", requires = "participant_type")]
    pub cluster_column: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = PowerFormat::Table)]
    pub format: PowerFormat,
    /// Exit with status 4 when any metric lacks units (for CI gates).
    #[arg(long)]
    pub fail_on_insufficient: bool,
}

pub async fn run(args: Args, g: &Globals) -> anyhow::Result<()> {
    xngin::power::check_cluster_flags(
        args.icc,
        args.avg_cluster_size,
        args.cv,
        args.cluster_column.is_some(),
    )?;
    let given = if args.cluster_column.is_some() {
        None
    } else {
        args.icc
            .zip(args.avg_cluster_size)
            .map(|(icc, m)| (icc, m, args.cv.unwrap_or(0.0)))
    };
    let (design, cluster) = resolve_design(
        args.alpha,
        args.power,
        args.arms,
        args.arm_weights.as_deref(),
        args.desired_n,
        given,
    )?;

    let (metrics, inputs) = match &args.participant_type {
        Some(pt) => {
            let requests = metric_requests(&args.metrics, args.desired_n)?;
            let audience = resolve_audience(
                &g.settings_choice(),
                pt,
                None,
                &args.filters,
                args.filters_file.as_deref(),
            )
            .await?;
            let cluster = args.cluster_column.clone().map(|column| ClusterRequest {
                column,
                icc: args.icc,
                avg_cluster_size: args.avg_cluster_size,
                cv: args.cv,
            });
            warehouse_metrics(&audience, &requests, cluster.as_ref()).await?
        }
        None => {
            let metric_type = check_offline_metric(
                args.metric_type.map(|t| match t {
                    MetricTypeArg::Numeric => MetricType::Numeric,
                    MetricTypeArg::Binary => MetricType::Binary,
                }),
                args.baseline,
                args.target.is_some() || args.pct_change.is_some(),
                args.desired_n,
            )?;
            let metric = MetricSpec {
                name: "metric".into(),
                metric_type,
                baseline: args.baseline,
                target: args.target,
                pct_change: args.pct_change,
                stddev: args.stddev,
                available_n: args.available_n,
                available_nonnull_n: args.available_nonnull_n,
            };
            (vec![metric], None)
        }
    };
    let analyses = match inputs {
        Some(inputs) => check_power_clustered(&metrics, &inputs, &design, args.desired_n)?,
        None => check_power(&metrics, &design, args.desired_n, cluster.as_ref())?,
    };

    let text = match args.format {
        PowerFormat::Json => {
            let mut s = serde_json::to_string_pretty(&to_json(&analyses))?;
            s.push('\n');
            s
        }
        PowerFormat::Table => xngin::power::render_table(&analyses),
    };
    xngin::output::print(&text)?;
    if args.fail_on_insufficient
        && let Some(e) = xngin::power::insufficient_error(&analyses)
    {
        return Err(e.into());
    }
    Ok(())
}
