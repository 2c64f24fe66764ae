//! The inputs a user gives the library's requests (an audience's id column, the arm weights,
//! the output file, …), named in messages (docs/architecture.md#errors-and-exit-codes).
//!
//! The library never spells a command-line flag: a message names an input as a value of
//! [`Input`] (`format!("{QUANTILES} must be at least 1")`), and its text depends on who
//! reads it. By default an input shows as its key in backquotes (`` `quantiles` ``); the `xngin`
//! binary installs, before it does anything else, a namer that shows each input as its flag
//! (`--quantiles`), with one exhaustive `match` in `commands/main.rs`, so that adding an input
//! makes the compiler ask the command line for its name.

use std::fmt;
use std::sync::OnceLock;

macro_rules! inputs {
    ($($konst:ident => $variant:ident, $key:literal;)*) => {
        /// A named input of the library's requests.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Input { $($variant),* }

        impl Input {
            /// Every input.
            pub const ALL: &'static [Input] = &[$(Input::$variant),*];

            /// The input's key: snake case, as the library's own rendering shows it.
            pub const fn key(self) -> &'static str {
                match self { $(Input::$variant => $key),* }
            }
        }

        /// Each input as a constant, so messages can name it inline:
        /// `format!("{SAMPLE_SIZE} must be at least 2")`.
        pub mod names {
            use super::Input;
            $(pub const $konst: Input = Input::$variant;)*
        }
    };
}

inputs! {
    ALLOW_EXISTING => AllowExisting, "allow_existing";
    ALPHA => Alpha, "alpha";
    ARM_WEIGHTS => ArmWeights, "arm_weights";
    ARMS => Arms, "arms";
    AVAILABLE_N => AvailableN, "available_n";
    AVAILABLE_NONNULL_N => AvailableNonnullN, "available_nonnull_n";
    AVG_CLUSTER_SIZE => AvgClusterSize, "avg_cluster_size";
    BASELINE => Baseline, "baseline";
    CLUSTER_COLUMN => ClusterColumn, "cluster_column";
    CV => Cv, "cv";
    DATASOURCE => Datasource, "datasource";
    DESIRED_N => DesiredN, "desired_n";
    DSN => Dsn, "dsn";
    EXPERIMENT_ID => ExperimentId, "experiment_id";
    EXPORT_CSV => ExportCsv, "export_csv";
    FILTER => Filter, "filter";
    FSTAT_THRESH => FstatThresh, "fstat_thresh";
    ICC => Icc, "icc";
    ID_COLUMN => IdColumn, "id_column";
    IN_WAREHOUSE => InWarehouse, "in_warehouse";
    INPUT => Input, "input";
    METRIC => Metric, "metric";
    METRIC_TYPE => MetricType, "metric_type";
    METRICS => Metrics, "metrics";
    MISFIT_STRATEGY => MisfitStrategy, "misfit_strategy";
    NROWS => Nrows, "nrows";
    OUTPUT => Output, "output";
    PARTICIPANT_TYPE => ParticipantType, "participant_type";
    PCT_CHANGE => PctChange, "pct_change";
    POWER => Power, "power";
    QUANTILES => Quantiles, "quantiles";
    REPLACE => Replace, "replace";
    SAMPLE_SIZE => SampleSize, "sample_size";
    SCHEMA_NAME => SchemaName, "schema_name";
    SEED => Seed, "seed";
    SETTINGS => Settings, "settings";
    SRC => Src, "src";
    STDDEV => Stddev, "stddev";
    STRATA => Strata, "strata";
    TABLE => Table, "table";
    TARGET => Target, "target";
    UNIQUE_ID_COL => UniqueIdCol, "unique_id_col";
    WRITE_TABLE => WriteTable, "write_table";
}

static NAMER: OnceLock<fn(Input) -> &'static str> = OnceLock::new();

/// Show every input as `namer` names it from now on (the binary's flags). The first call wins.
pub fn set_namer(namer: fn(Input) -> &'static str) {
    let _ = NAMER.set(namer);
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMER.get() {
            Some(namer) => f.write_str(namer(*self)),
            None => write!(f, "`{}`", self.key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a namer (no binary), an input shows as its key: the library spells no flag.
    #[test]
    fn library_names_inputs_by_key() {
        use names::*;
        assert_eq!(
            format!("{QUANTILES} must be at least 1; {ARM_WEIGHTS}"),
            "`quantiles` must be at least 1; `arm_weights`"
        );
    }

    #[test]
    fn keys_are_distinct_snake_case() {
        let mut keys: Vec<&str> = Input::ALL.iter().map(|i| i.key()).collect();
        assert!(
            keys.iter()
                .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
