//! Cluster-randomized assignment (docs/cluster.md#cluster-assignment): whole clusters (schools,
//! villages, clinics) are the units of randomization.
//!
//! * The audience's rows are grouped by the cluster column's value (its text as written to the
//!   outputs, which is also the text the cluster's key hashes). A NULL cluster id is an error:
//!   a participant without a cluster cannot be given its cluster's arm, and making it a
//!   cluster of its own would silently mix individually and cluster-randomized units.
//! * Strata are evaluated at the cluster level and must be constant within a cluster (else an
//!   error naming the first offending clusters): a stratum then means the same for the cluster
//!   and for each of its participants, the strata columns of the output stay true, and no
//!   summary rule (a mean, a majority) is chosen behind the operator's back. A cluster-level
//!   summary, when wanted, is a column the operator derives explicitly.
//! * The draw is the one of docs/assignment-algorithm.md run over one row per cluster: the unit
//!   key is `MD5("{seed}:{cluster id}")`, numeric strata are binned over the clusters' values,
//!   blocks and misfit strategies apply to clusters. Every participant gets its cluster's arm
//!   and stratum id.
//! * Balance: the regression of every participant's arm on its (cluster's) strata, with the
//!   covariance clustered by cluster ([`super::cluster_balance`], CR1).

use crate::input::names::*;
use std::collections::HashMap;

use super::data::{Column, ColumnData, Ids, Table};
use super::preprocess::Codes;
use super::*;

/// The clusters of a cluster assignment, for the design record and the outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOutcome {
    /// The cluster column (carried in the outputs after `stratum_id`).
    pub column: String,
    /// Clusters in the audience.
    pub clusters: u64,
    /// Clusters per arm.
    pub clusters_per_arm: Vec<u64>,
    /// Clusters left unassigned (misfit strategy `none`).
    pub unassigned_clusters: u64,
}

/// The audience grouped by cluster.
#[derive(Debug, Clone)]
pub struct Clusters {
    /// Cluster index per row of the audience.
    pub of_row: Vec<u32>,
    /// One row per cluster: its id (the cluster column's text) and its strata values.
    pub table: Table,
}

/// Shown examples in error messages.
const EXAMPLES: usize = 5;

/// The cluster column must not be the unique id column: every participant would be its own
/// cluster. The one check of it, for files, participant types and library callers (exit 2).
pub fn check_not_id(column: &str, id_column: &str) -> Result<()> {
    if column == id_column {
        return Err(Error::usage(format!(
            "{CLUSTER_COLUMN} {column} is the unique id column {id_column}: every participant would be \
             its own cluster; leave out {CLUSTER_COLUMN} for an individually randomized design"
        )));
    }
    Ok(())
}

/// Group `table`'s rows by `column`; the `strata` columns must be constant within a cluster.
pub fn clusters(table: &Table, column: &str, strata: &[String]) -> Result<Clusters> {
    let src = &table.source;
    check_not_id(column, &table.id_column)?;
    let Some(col) = table.column(column) else {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::invalid(format!(
            "{src}: no column named {column} for {CLUSTER_COLUMN} (available: {})",
            names.join(", ")
        )));
    };
    let col = &col.data;
    let n = table.len();
    // NULL cluster ids, named in participant-id order (independent of the rows' order).
    let mut nulls: Vec<u32> = (0..n as u32).filter(|&r| col.is_null(r as usize)).collect();
    if !nulls.is_empty() {
        nulls.sort_unstable_by(|a, b| table.ids.cmp_rows(*a as usize, *b as usize));
        let shown: Vec<String> = nulls
            .iter()
            .take(EXAMPLES)
            .map(|&r| table.describe_row(r))
            .collect();
        return Err(Error::invalid(format!(
            "{src}: the cluster column {column} is empty (NULL) for {} participant(s) ({}{}); every \
             participant of a cluster design needs its cluster: fill in the cluster ids, or filter \
             those participants out of the audience",
            nulls.len(),
            shown.join(", "),
            if nulls.len() > EXAMPLES { ", …" } else { "" }
        )));
    }
    // Cluster index per row, in order of first appearance; the index is only a handle (the
    // draw orders clusters by their keys and ids), so the rows' order does not matter.
    let mut of_row = Vec::with_capacity(n);
    let mut first_row: Vec<u32> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    match col {
        ColumnData::Text { codes, levels } => {
            let mut idx = vec![u32::MAX; levels.len()];
            for (r, &c) in codes.iter().enumerate() {
                let slot = &mut idx[c as usize];
                if *slot == u32::MAX {
                    *slot = first_row.len() as u32;
                    first_row.push(r as u32);
                    texts.push(levels[c as usize].clone());
                }
                of_row.push(*slot);
            }
        }
        _ => {
            let mut map: HashMap<Vec<u8>, u32> = HashMap::new();
            let mut buf = Vec::new();
            for r in 0..n {
                buf.clear();
                col.write_text(r, &mut buf);
                // A key is allocated once per cluster, not per row.
                let c = match map.get(buf.as_slice()) {
                    Some(&c) => c,
                    None => {
                        let c = first_row.len() as u32;
                        first_row.push(r as u32);
                        texts.push(String::from_utf8_lossy(&buf).into_owned());
                        map.insert(buf.clone(), c);
                        c
                    }
                };
                of_row.push(c);
            }
        }
    }
    let ids = Ids::from_strings(texts);
    // Strata constant within each cluster.
    let mut errs = Vec::new();
    for s in strata {
        let data = &table.column(s).expect("strata checked by the caller").data;
        let mut bad = vec![false; first_row.len()];
        let mut any = false;
        for (r, &c) in of_row.iter().enumerate() {
            if !same_value(data, r, first_row[c as usize] as usize) {
                bad[c as usize] = true;
                any = true;
            }
        }
        if !any {
            continue;
        }
        let mut offending: Vec<u32> = (0..bad.len() as u32).filter(|&c| bad[c as usize]).collect();
        let count = offending.len();
        offending.sort_unstable_by(|a, b| ids.cmp_rows(*a as usize, *b as usize));
        offending.truncate(EXAMPLES);
        let mut values: Vec<Vec<String>> = vec![Vec::new(); offending.len()];
        for (r, &c) in of_row.iter().enumerate() {
            if let Some(k) = offending.iter().position(|&o| o == c) {
                let v = data.text(r).unwrap_or_else(|| "NULL".into());
                if !values[k].contains(&v) {
                    values[k].push(v);
                }
            }
        }
        let shown: Vec<String> = offending
            .iter()
            .zip(values.iter_mut())
            .map(|(&c, v)| {
                v.sort();
                let more = v.len() > 3;
                v.truncate(3);
                format!(
                    "cluster {} has {}{}",
                    ids.text(c as usize),
                    v.join(", "),
                    if more { ", …" } else { "" }
                )
            })
            .collect();
        errs.push(format!(
            "{src}: the stratum {s} is not constant within clusters of {column} in {count} cluster(s) \
             ({}{}); strata of a cluster design describe whole clusters: stratify by cluster-level \
             fields, or add a cluster-level version of {s} (e.g. the cluster's majority or mean) to \
             the audience",
            shown.join("; "),
            if count > EXAMPLES { "; …" } else { "" }
        ));
    }
    if !errs.is_empty() {
        return Err(Error::Invalid(errs));
    }
    let columns = strata
        .iter()
        .map(|s| Column {
            name: s.clone(),
            data: table
                .column(s)
                .expect("strata checked")
                .data
                .take(&first_row),
        })
        .collect();
    Ok(Clusters {
        of_row,
        table: Table {
            source: format!("{src} (clusters of {column})"),
            id_column: column.to_string(),
            ids,
            columns,
            origin: None,
        },
    })
}

/// Rows `a` and `b` hold the same value (NULL equals NULL).
fn same_value(data: &ColumnData, a: usize, b: usize) -> bool {
    match data {
        ColumnData::Text { codes, .. } => codes[a] == codes[b],
        ColumnData::Bool(v) => v[a] == v[b],
        ColumnData::Int(v) => v[a] == v[b],
        ColumnData::Float(v) => {
            let (x, y) = (data.is_null(a), data.is_null(b));
            (x && y) || (!x && !y && v[a] == v[b])
        }
    }
}

/// The assignment of whole clusters ([`super::assign`] with [`Design::cluster`]).
pub(crate) fn assign_clusters(
    table: &Table,
    design: &Design,
    strata: Vec<String>,
    order: Vec<u32>,
    column: &str,
) -> Result<Outcome> {
    let cl = clusters(table, column, &strata)?;
    run::trace("clusters grouped");
    let g = cl.table.len();
    if g < 2 {
        return Err(Error::invalid(format!(
            "{}: the audience's {} participants are all in one cluster of {column}; a cluster \
             assignment needs at least 2 clusters",
            table.source,
            table.len()
        )));
    }
    let k = design.arms.len();
    let Drawn {
        prepared,
        arm: cluster_arm,
        key_sum: _,
        stratum_id: cluster_sid,
        n_strata,
        mut notes,
    } = draw(&cl.table, design, &strata, "clusters")?;
    let arm: Vec<u32> = cl.of_row.iter().map(|&c| cluster_arm[c as usize]).collect();
    let stratum_id: Option<Vec<u32>> = cluster_sid
        .as_ref()
        .map(|s| cl.of_row.iter().map(|&c| s[c as usize]).collect());
    let (counts, unassigned) = arm_counts(&arm, k);
    let (clusters_per_arm, unassigned_clusters) = arm_counts(&cluster_arm, k);
    if unassigned_clusters > 0 {
        notes.push(format!(
            "{unassigned_clusters} cluster(s) ({unassigned} participant(s)) left unassigned \
             (misfit strategy none)"
        ));
    }
    // The input fingerprint is over the participants (the audience), as for any assignment.
    let (_, key_sum) = rng::unit_keys(&table.ids, design.seed);
    run::trace("arms drawn");
    // Balance over the participants, each with its cluster's strata, clustered by cluster.
    let numeric: Vec<Option<Vec<f64>>> = numeric_covariates(&cl.table, &prepared.kept)
        .into_iter()
        .map(|v| v.map(|v| cl.of_row.iter().map(|&c| v[c as usize]).collect()))
        .collect();
    let unit_codes: Vec<Codes> = prepared
        .kept
        .iter()
        .map(|c| Codes::Owned(cl.of_row.iter().map(|&g| c.codes.get(g as usize)).collect()))
        .collect();
    let covs: Vec<Covariate> = prepared
        .kept
        .iter()
        .zip(&numeric)
        .zip(&unit_codes)
        .map(|((c, num), codes)| match num {
            Some(v) => Covariate::Numeric(v),
            None => Covariate::Categorical {
                codes,
                levels: c.levels.len() as u32,
            },
        })
        .collect();
    let balance = balance_tests(
        design,
        &prepared.kept,
        &counts,
        &order,
        &arm,
        &mut notes,
        |sample| {
            let res = cluster_balance::f_test_clustered(sample, &covs, &cl.of_row)
                .map(|f| (f.test, Some(f.clusters)));
            (res, Vec::new())
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
        cluster: Some(ClusterOutcome {
            column: column.to_string(),
            clusters: g as u64,
            clusters_per_arm,
            unassigned_clusters,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(cluster: ColumnData, stratum: ColumnData) -> Table {
        let n = cluster.len() as i64;
        Table {
            source: "t".into(),
            id_column: "id".into(),
            ids: Ids::Int((1..=n).collect()),
            columns: vec![
                Column {
                    name: "c".into(),
                    data: cluster,
                },
                Column {
                    name: "s".into(),
                    data: stratum,
                },
            ],
            origin: None,
        }
    }

    #[test]
    fn cluster_ids_are_the_values_as_written() {
        let t = table(
            ColumnData::Int(vec![Some(7), Some(-2), Some(7), Some(10)]),
            ColumnData::Float(vec![Some(1.5), None, Some(1.5), Some(f64::NAN)]),
        );
        let c = clusters(&t, "c", &["s".into()]).unwrap();
        assert_eq!(c.of_row, vec![0, 1, 0, 2]);
        assert_eq!(c.table.ids, Ids::Int(vec![7, -2, 10]));
        // NULL and NaN are the same missing value: constant within a cluster.
        let t = table(
            ColumnData::Float(vec![Some(2.0), Some(0.5), Some(2.0)]),
            ColumnData::Float(vec![None, Some(1.0), Some(f64::NAN)]),
        );
        let c = clusters(&t, "c", &["s".into()]).unwrap();
        assert_eq!(c.of_row, vec![0, 1, 0]);
        assert_eq!(c.table.ids.text(0), "2");
        assert_eq!(c.table.ids.text(1), "0.5");
    }

    #[test]
    fn many_offending_clusters_are_summarised() {
        let n = 14;
        let t = table(
            ColumnData::text_from((0..n).map(|i| Some(["a", "b", "c", "d", "e", "f", "g"][i / 2]))),
            ColumnData::text_from((0..n).map(|i| Some(if i % 2 == 0 { "x" } else { "y" }))),
        );
        let e = clusters(&t, "c", &["s".into()]).unwrap_err().to_string();
        assert_eq!(
            e,
            "t: the stratum s is not constant within clusters of c in 7 cluster(s) (cluster a has x, y; \
             cluster b has x, y; cluster c has x, y; cluster d has x, y; cluster e has x, y; …); strata \
             of a cluster design describe whole clusters: stratify by cluster-level fields, or add a \
             cluster-level version of s (e.g. the cluster's majority or mean) to the audience"
        );
    }
}
