//! The command line's names for the library's inputs: each is shown as the flag that sets it
//! (the library names inputs in its messages without knowing about flags, `xngin::input`).
//! Also compiled into the integration tests (`tests/it/common.rs`), which check the messages
//! users see.

use xngin::input::Input;

/// Each library input as its flag: the library names inputs in its messages (`xngin::input`),
/// the command line shows them as the flags that set them.
pub fn flag(input: Input) -> &'static str {
    match input {
        Input::AllowExisting => "--allow-existing",
        Input::Alpha => "--alpha",
        Input::ArmWeights => "--arm-weights",
        Input::Arms => "--arms",
        Input::AvailableN => "--available-n",
        Input::AvailableNonnullN => "--available-nonnull-n",
        Input::AvgClusterSize => "--avg-cluster-size",
        Input::Baseline => "--baseline",
        Input::ClusterColumn => "--cluster-column",
        Input::Cv => "--cv",
        Input::Datasource => "--datasource",
        Input::DesiredN => "--desired-n",
        Input::Dsn => "--dsn",
        Input::ExperimentId => "--experiment-id",
        Input::ExportCsv => "--export-csv",
        Input::Filter => "--filter",
        Input::FstatThresh => "--fstat-thresh",
        Input::Icc => "--icc",
        Input::IdColumn => "--id-column",
        Input::InWarehouse => "--in-warehouse",
        Input::Input => "--input",
        Input::Metric => "--metric",
        Input::MetricType => "--metric-type",
        Input::Metrics => "--metrics",
        Input::MisfitStrategy => "--misfit-strategy",
        Input::Nrows => "--nrows",
        Input::Output => "--output",
        Input::ParticipantType => "--participant-type",
        Input::PctChange => "--pct-change",
        Input::Power => "--power",
        Input::Quantiles => "--quantiles",
        Input::Replace => "--replace",
        Input::SampleSize => "--sample-size",
        Input::SchemaName => "--schema-name",
        Input::Seed => "--seed",
        Input::Settings => "--settings",
        Input::Src => "--src",
        Input::Stddev => "--stddev",
        Input::Strata => "--strata",
        Input::Table => "--table",
        Input::Target => "--target",
        Input::UniqueIdCol => "--unique-id-col",
        Input::WriteTable => "--write-table",
    }
}
