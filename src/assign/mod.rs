//! Stratified random assignment (docs/statistics.md#assignment, docs/compatibility.md#assignment).
//!
//! The pure core: [`assign`] takes an audience [`Table`] and a [`Design`] and returns an
//! [`Outcome`] (arm and stratum per row, strata used and dropped, balance tests). Reading the
//! audience ([`audience`]), writing CSV/Parquet and the design record ([`output`]) and writing
//! to a warehouse table ([`warehouse`]) are separate.
//!
//! Steps:
//! 1. Rows are ordered by participant id (numeric for integer ids, exact beyond 2^53) for the
//!    outputs; ids must be non-null and unique.
//! 2. Strata = the requested strata and metric fields, sorted and deduplicated; preprocessing
//!    ([`preprocess`]) drops single-valued and unique non-numeric columns and quantile-bins
//!    numeric ones ([`qcut`]).
//! 3. With strata left: the stochatreat block algorithm in unit-key order ([`stochatreat`]);
//!    without: complete random assignment with exact largest-remainder counts.
//! 4. Balance ([`balance`]): one HC1 F test per treatment arm against the first arm (control).
//!
//! Randomness: [`rng`], a keyed hash (each unit's key is MD5 of `"{seed}:{id}"`), defined in
//! docs/assignment-algorithm.md so that any engine can recompute a draw. The result depends
//! only on the set of rows (not their order), the design and the seed.

pub mod audience;
pub mod balance;
pub mod cluster;
pub mod cluster_balance;
pub mod data;
pub mod design;
pub mod inwh;
pub mod lookup;
pub mod output;
pub mod participants;
pub mod preprocess;
pub mod pushdown;
pub mod pushdown_bigquery;
pub mod qcut;
pub mod rng;
pub mod run;
pub mod stochatreat;
pub mod warehouse;

#[cfg(test)]
mod distribution_tests;
#[cfg(test)]
mod proptests;

use crate::input::names::*;
pub use data::{Column, ColumnData, Ids, NULL_CODE, Table};
pub use design::{Arm, Arms, MisfitStrategy};
pub use preprocess::Dropped;
pub use stochatreat::UNASSIGNED;

use crate::error::{Error, Result};
use balance::Covariate;

/// Default number of quantile bins for numeric strata.
pub const DEFAULT_QUANTILES: u32 = 4;
/// Default balance threshold: balanced when p > 0.6.
pub const DEFAULT_FSTAT_THRESH: f64 = 0.6;

/// What to draw.
#[derive(Debug, Clone)]
pub struct Design {
    pub arms: Arms,
    /// Strata and metric fields as requested (sorted and deduplicated by [`assign`]).
    pub strata: Vec<String>,
    pub quantiles: u32,
    pub misfit: MisfitStrategy,
    pub seed: u64,
    pub fstat_thresh: f64,
    /// The cluster column: whole clusters are the units of randomization (docs/cluster.md).
    pub cluster: Option<String>,
}

/// One balance test: a treatment arm against the control arm (the first arm).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BalanceTest {
    pub treatment_arm: String,
    pub control_arm: String,
    /// Participants in the two arms.
    pub n: u64,
    /// Clusters in the two arms (cluster designs: the test is clustered, CR1, docs/cluster.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clusters: Option<u64>,
    pub f_statistic: Option<f64>,
    pub numerator_df: Option<u64>,
    pub denominator_df: Option<u64>,
    pub p_value: Option<f64>,
    /// p > fstat_thresh; None when no test could be computed.
    pub balance_ok: Option<bool>,
    /// Why there is no test, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Strata the test left out (too many levels for a meaningful test), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<Dropped>,
}

/// The result of [`assign`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Row indices in participant-id order (the output order).
    pub order: Vec<u32>,
    /// Arm index per row, or [`UNASSIGNED`].
    pub arm: Vec<u32>,
    /// Stratum id per row (None: complete random assignment).
    pub stratum_id: Option<Vec<u32>>,
    pub n_strata: u32,
    /// Strata fields requested (sorted, deduplicated): the output's strata columns.
    pub strata: Vec<String>,
    pub used: Vec<String>,
    pub dropped: Vec<Dropped>,
    /// Rows per arm.
    pub counts: Vec<u64>,
    /// Σ unit keys modulo 2^128 (the input fingerprint).
    pub key_sum: u128,
    pub unassigned: u64,
    pub balance: Vec<BalanceTest>,
    /// Messages for the operator (dropped strata, fallbacks).
    pub notes: Vec<String>,
    /// Cluster designs: the clusters drawn.
    pub cluster: Option<cluster::ClusterOutcome>,
}

impl Outcome {
    /// The columns the outputs carry after `stratum_id`: the cluster column (cluster designs),
    /// then the strata fields.
    pub fn carried(&self) -> Vec<&str> {
        self.cluster
            .iter()
            .map(|c| c.column.as_str())
            .chain(self.strata.iter().map(String::as_str))
            .collect()
    }

    /// All balance tests passed (None when there was none).
    pub fn balance_ok(&self) -> Option<bool> {
        let v: Vec<bool> = self.balance.iter().filter_map(|b| b.balance_ok).collect();
        if v.is_empty() {
            None
        } else {
            Some(v.iter().all(|b| *b))
        }
    }
}

/// The notices for the strata a balance test left out: one line each for a few, one summary
/// line for many (hundreds of strata would otherwise print hundreds of lines; the design
/// record's `balance[].left_out` keeps every reason).
fn left_out_notices(test: &BalanceTest) -> Vec<String> {
    const EACH: usize = 3;
    let pair = format!("{} vs {}", test.treatment_arm, test.control_arm);
    if test.left_out.len() <= EACH {
        return test
            .left_out
            .iter()
            .map(|d| {
                format!(
                    "the balance test of {pair} leaves out stratum {}: {}",
                    d.field, d.reason
                )
            })
            .collect();
    }
    let names: Vec<&str> = test.left_out[..EACH]
        .iter()
        .map(|d| d.field.as_str())
        .collect();
    vec![format!(
        "the balance test of {pair} leaves out {} strata ({}, …), e.g. {}: {}; the design record's balance[].left_out gives each reason",
        test.left_out.len(),
        names.join(", "),
        test.left_out[0].field,
        test.left_out[0].reason
    )]
}

/// Sorted, deduplicated strata from `--strata` and `--metrics`.
pub fn strata_fields(strata: &[String], metrics: &[String]) -> Vec<String> {
    let mut v: Vec<String> = strata.iter().chain(metrics).cloned().collect();
    v.sort();
    v.dedup();
    v
}

/// The names an audience offers: a file's or a table's columns, or a participant type's sheet
/// fields (`noun` is "column" or "field"), for messages from `source`.
pub(crate) struct Names<'a> {
    pub source: &'a str,
    pub noun: &'static str,
    pub names: Vec<&'a str>,
}

/// The one check of an audience's id column, strata and cluster column against the names it
/// offers, for files, participant types and tables alike: the cluster column cannot be the id
/// (exit 2); each must exist and no stratum may be the id, every such problem reported together
/// (exit 3). `strata` may hold the cluster column.
pub(crate) fn check_names(
    n: &Names,
    id: &str,
    strata: &[String],
    cluster: Option<&str>,
) -> Result<()> {
    if let Some(c) = cluster {
        cluster::check_not_id(c, id)?;
    }
    let (src, noun) = (n.source, n.noun);
    let has = |x: &str| n.names.contains(&x);
    let list = || n.names.join(", ");
    let mut errs = Vec::new();
    if !has(id) {
        errs.push(format!(
            "{src}: no {noun} named {id} for {ID_COLUMN} ({noun}s: {})",
            list()
        ));
    }
    let cluster_missing = |c: &str| {
        format!(
            "{src}: no {noun} named {c} for {CLUSTER_COLUMN} ({noun}s: {})",
            list()
        )
    };
    for s in strata {
        if Some(s.as_str()) == cluster {
            if !has(s) {
                errs.push(cluster_missing(s));
            }
        } else if s == id {
            errs.push(format!(
                "{src}: {s} is the id column; its values are all distinct, so it cannot be a stratum \
                 (remove it from {STRATA}/{METRICS})"
            ));
        } else if !has(s) {
            errs.push(format!(
                "{src}: no {noun} named {s} in {STRATA}/{METRICS} ({noun}s: {})",
                list()
            ));
        }
    }
    if let Some(c) = cluster
        && !strata.iter().any(|s| s == c)
        && !has(c)
    {
        errs.push(cluster_missing(c));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errs))
    }
}

/// Check that every stratum names a column of the table other than the id.
pub fn check_strata(table: &Table, strata: &[String]) -> Result<()> {
    let names = std::iter::once(table.id_column.as_str())
        .chain(table.columns.iter().map(|c| c.name.as_str()))
        .collect();
    check_names(
        &Names {
            source: &table.source,
            noun: "column",
            names,
        },
        &table.id_column,
        strata,
        None,
    )
}

/// Numeric strata must be finite: an infinite value can be neither binned nor used in the
/// balance regression (NaN is read as a missing value).
pub fn check_finite(table: &Table, strata: &[String]) -> Result<()> {
    let mut errs = Vec::new();
    for s in strata {
        if let Some(Column {
            data: ColumnData::Float(v),
            ..
        }) = table.column(s)
            && let Some(i) = v.iter().position(|x| x.is_some_and(f64::is_infinite))
        {
            errs.push(format!(
                "{}: column {s} is infinite ({}) for {}; strata and metrics must be finite numbers (correct the value, or leave it empty for a missing value)",
                table.source,
                v[i].unwrap_or_default(),
                table.describe_row(i as u32)
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errs))
    }
}

/// The `k` rows with the smallest unit keys (ties by id): a uniformly random subset that does
/// not depend on the rows' order.
pub fn sample(table: &Table, k: usize, seed: u64) -> Result<Table> {
    if k > table.len() {
        return Err(Error::invalid(format!(
            "{SAMPLE_SIZE} {k} is larger than the audience ({} participants in {}); lower it or widen the filters",
            table.len(),
            table.source
        )));
    }
    // Duplicate ids are refused before any draw.
    table.sorted_order()?;
    Ok(table.take(&rng::smallest(&table.ids, seed, k)))
}

/// Draw the assignment: of the rows, or with [`Design::cluster`] of whole clusters
/// ([`cluster`], docs/cluster.md).
pub fn assign(table: &Table, design: &Design) -> Result<Outcome> {
    let n = table.len();
    if n == 0 {
        return Err(Error::invalid(format!(
            "{}: the audience is empty; there is nobody to assign",
            table.source
        )));
    }
    if n < 2 {
        return Err(Error::invalid(format!(
            "{}: the audience has only 1 participant; an assignment needs at least 2",
            table.source
        )));
    }
    let strata = strata_fields(&design.strata, &[]);
    check_strata(table, &strata)?;
    check_finite(table, &strata)?;
    let order = table.sorted_order()?;
    run::trace("ids sorted");
    if let Some(col) = &design.cluster {
        return cluster::assign_clusters(table, design, strata, order, col);
    }
    let drawn = draw(table, design, &strata, "participants")?;
    let Drawn {
        prepared,
        arm,
        key_sum,
        stratum_id,
        n_strata,
        mut notes,
    } = drawn;
    let (counts, unassigned) = arm_counts(&arm, design.arms.len());
    if unassigned > 0 {
        notes.push(format!(
            "{unassigned} participant(s) left unassigned (misfit strategy none)"
        ));
    }
    run::trace("arms drawn");
    // Balance tests.
    let numeric = numeric_covariates(table, &prepared.kept);
    let covs = covariates(&prepared.kept, &numeric);
    // With only categorical covariates, rows of one stratum share their design row.
    let cells = match (&stratum_id, numeric.iter().all(Option::is_none)) {
        (Some(sid), true) => Some((sid.as_slice(), n_strata)),
        _ => None,
    };
    let balance = balance_tests(
        design,
        &prepared.kept,
        &counts,
        &order,
        &arm,
        &mut notes,
        |sample| {
            let res = balance::f_test_grouped(sample, &covs, cells);
            let left_out = res
                .left_out
                .into_iter()
                .map(|lo| (lo.covariate, lo.why))
                .collect();
            (res.test.map(|f| (f, None)), left_out)
        },
    );
    Ok(Outcome {
        order,
        arm,
        stratum_id,
        n_strata,
        strata,
        used: prepared.kept.iter().map(|c| c.name.clone()).collect(),
        dropped: prepared.dropped,
        counts,
        key_sum,
        unassigned,
        balance,
        notes,
        cluster: None,
    })
}

/// The draw over the rows of `table` (participants, or one row per cluster): strata prepared,
/// arm per row, the sum of the rows' unit keys, stratum ids, notes. `units` names the rows in
/// messages.
pub(crate) struct Drawn<'a> {
    pub prepared: preprocess::Prepared<'a>,
    pub arm: Vec<u32>,
    pub key_sum: u128,
    pub stratum_id: Option<Vec<u32>>,
    pub n_strata: u32,
    pub notes: Vec<String>,
}

pub(crate) fn draw<'a>(
    table: &'a Table,
    design: &Design,
    strata: &[String],
    units: &str,
) -> Result<Drawn<'a>> {
    let n = table.len();
    let prepared = preprocess::preprocess(table, strata, design.quantiles);
    run::trace("strata preprocessed");
    let mut notes = prepared.notes.clone();
    for d in &prepared.dropped {
        notes.push(format!("stratum {} not used: {}", d.field, d.reason));
    }
    let ((arm, key_sum), stratum_id, n_strata) = if prepared.kept.is_empty() {
        if !strata.is_empty() {
            notes.push("no usable strata left: falling back to complete random assignment".into());
        }
        let counts = design.arms.largest_remainder_counts(n as u64);
        (
            stochatreat::complete_random(&table.ids, design.seed, &counts),
            None,
            0,
        )
    } else {
        let (sid, count) = preprocess::stratum_ids(&prepared.kept, n);
        let (full, partial) = stochatreat::block_counts(&sid, count, design.arms.block);
        if partial > full {
            notes.push(format!(
                "{partial} of the {} blocks are partial: {count} strata for {n} {units} leave most strata \
                 smaller than a block of {} or with leftovers (misfits), so the arm shares are exact in few \
                 blocks; use fewer or coarser strata (or fewer {QUANTILES})",
                full + partial,
                design.arms.block
            ));
        }
        let drawn = stochatreat::stochatreat(
            &table.ids,
            design.seed,
            &sid,
            count,
            &design.arms.mask(),
            design.misfit,
        )
        .map_err(|e| {
            Error::invalid(format!(
                "{}: with blocks of {}, {} strata have leftover {units}, and misfit strategy \
                 stratum would hash one block mask for each ({} hashes, over the limit of {}): use \
                 simpler {ARM_WEIGHTS} (smaller blocks), fewer strata, or {MISFIT_STRATEGY} global",
                table.source,
                e.block,
                e.strata,
                e.strata * e.block,
                stochatreat::MAX_MASK_HASHES
            ))
        })?;
        (drawn, Some(sid), count)
    };
    Ok(Drawn {
        prepared,
        arm,
        key_sum,
        stratum_id,
        n_strata,
        notes,
    })
}

/// Rows per arm and rows left unassigned.
pub(crate) fn arm_counts(arm: &[u32], k: usize) -> (Vec<u64>, u64) {
    let mut counts = vec![0u64; k];
    let mut unassigned = 0u64;
    for &a in arm {
        if a == UNASSIGNED {
            unassigned += 1;
        } else {
            counts[a as usize] += 1;
        }
    }
    (counts, unassigned)
}

/// The original values of the kept numeric strata without NULLs (the balance regression uses
/// them as they are); None for the others (their level codes are used).
pub(crate) fn numeric_covariates(
    table: &Table,
    kept: &[preprocess::Coded],
) -> Vec<Option<Vec<f64>>> {
    kept.iter()
        .map(|c| {
            if !c.numeric_without_nulls {
                return None;
            }
            Some(match &table.columns[c.column].data {
                ColumnData::Int(v) => v.iter().map(|x| x.unwrap_or(0) as f64).collect(),
                ColumnData::Float(v) => v.iter().map(|x| x.unwrap_or(0.0)).collect(),
                _ => unreachable!("numeric_without_nulls only on numeric columns"),
            })
        })
        .collect()
}

/// The balance covariates: numeric values where given, else the level codes.
pub(crate) fn covariates<'a>(
    kept: &'a [preprocess::Coded],
    numeric: &'a [Option<Vec<f64>>],
) -> Vec<Covariate<'a>> {
    kept.iter()
        .zip(numeric)
        .map(|(c, num)| match num {
            Some(v) => Covariate::Numeric(v),
            None => Covariate::Categorical {
                codes: &c.codes,
                levels: c.levels.len() as u32,
            },
        })
        .collect()
}

/// The test of one pair of arms: the F test and the clusters it counted (clustered tests), or
/// why there is none; and the covariates left out (index, reason).
pub(crate) type PairTest = (
    std::result::Result<(balance::FTest, Option<u64>), String>,
    Vec<(usize, String)>,
);

/// The test of arm `t` against arm 0: `run` is called only when both arms have members; its
/// left-out covariates (named by `field`) and its F test or the reason for none are recorded,
/// with their notices added to `notes`. Shared by the local and the in-warehouse runs.
pub(crate) fn balance_pair(
    design: &Design,
    t: usize,
    counts: &[u64],
    field: impl Fn(usize) -> String,
    notes: &mut Vec<String>,
    run: impl FnOnce() -> PairTest,
) -> BalanceTest {
    let mut bt = BalanceTest {
        treatment_arm: design.arms.arms[t].name.clone(),
        control_arm: design.arms.arms[0].name.clone(),
        n: counts[0] + counts[t],
        clusters: None,
        f_statistic: None,
        numerator_df: None,
        denominator_df: None,
        p_value: None,
        balance_ok: None,
        note: None,
        left_out: Vec::new(),
    };
    if counts[0] == 0 || counts[t] == 0 {
        bt.note = Some("one of the two arms is empty".into());
    } else {
        let (res, left_out) = run();
        for (c, why) in left_out {
            bt.left_out.push(Dropped {
                field: field(c),
                reason: why,
            });
        }
        notes.extend(left_out_notices(&bt));
        match res {
            Ok((f, clusters)) => {
                bt.f_statistic = Some(f.f_statistic);
                bt.numerator_df = Some(f.numerator_df);
                bt.denominator_df = Some(f.denominator_df);
                bt.p_value = Some(f.p_value);
                bt.balance_ok = Some(f.p_value > design.fstat_thresh);
                bt.clusters = clusters;
            }
            Err(why) => bt.note = Some(why),
        }
    }
    if let Some(why) = &bt.note {
        notes.push(format!(
            "no balance test for {} vs {}: {why}",
            bt.treatment_arm, bt.control_arm
        ));
    }
    bt
}

/// One balance test per treatment arm against the control arm (arm 0), `test` run on the rows of
/// the two arms (in `order`); notices added to `notes`. No tests without kept strata.
pub(crate) fn balance_tests(
    design: &Design,
    kept: &[preprocess::Coded],
    counts: &[u64],
    order: &[u32],
    arm: &[u32],
    notes: &mut Vec<String>,
    test: impl Fn(&balance::Sample) -> PairTest,
) -> Vec<BalanceTest> {
    let mut out = Vec::new();
    if kept.is_empty() {
        return out;
    }
    for t in 1..design.arms.len() {
        let sample = balance::Sample::Arms {
            order,
            arm,
            control: 0,
            treatment: t as u32,
            n: (counts[0] + counts[t]) as usize,
        };
        out.push(balance_pair(
            design,
            t,
            counts,
            |c| kept[c].name.clone(),
            notes,
            || test(&sample),
        ));
    }
    out
}

#[cfg(test)]
mod left_out_notice_tests {
    use super::*;

    fn test_with(n: usize) -> BalanceTest {
        BalanceTest {
            treatment_arm: "t".into(),
            control_arm: "c".into(),
            n: 10,
            clusters: None,
            f_statistic: None,
            numerator_df: None,
            denominator_df: None,
            p_value: None,
            balance_ok: None,
            note: None,
            left_out: (0..n)
                .map(|i| Dropped {
                    field: format!("s{i}"),
                    reason: format!("why {i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn a_few_left_out_strata_get_a_line_each() {
        let lines = left_out_notices(&test_with(3));
        assert_eq!(
            lines,
            [
                "the balance test of t vs c leaves out stratum s0: why 0",
                "the balance test of t vs c leaves out stratum s1: why 1",
                "the balance test of t vs c leaves out stratum s2: why 2",
            ]
        );
    }

    #[test]
    fn many_left_out_strata_get_one_summary_line() {
        let lines = left_out_notices(&test_with(300));
        assert_eq!(
            lines,
            [
                "the balance test of t vs c leaves out 300 strata (s0, s1, s2, …), e.g. s0: why 0; \
              the design record's balance[].left_out gives each reason"
            ]
        );
    }
}
