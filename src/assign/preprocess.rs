//! Preprocessing of strata columns (docs/statistics.md#strata).
//!
//! For each candidate column, in name order:
//! * at most one distinct non-null value → dropped ("single value");
//! * not real-numeric (text, booleans) and every non-null value distinct → dropped ("unique
//!   values", e.g. names);
//! * otherwise kept. Numeric columns are replaced by quantile bins ([`super::qcut`]).
//!
//! Each kept column becomes a code per row whose order is the order of its levels: text levels
//! sorted by their bytes, booleans `false`, `true`, numeric bins `0 … b−1`; in every column NULL
//! is the level `__NULL__`, after all others. The stratum id of a row is the dense rank of its
//! tuple of codes in lexicographic order (the order stochatreat gives strata), 0-based.
//! Text columns whose dictionary is already sorted (as [`super::audience`] builds them) are
//! used in place, without a per-row copy.

use super::data::{ColumnData, NULL_CODE, Table};
use super::qcut;
use crate::input::names::*;

/// The marker of NULL strata values.
pub const NULL_LEVEL: &str = "__NULL__";

/// Why a column was not used as a stratum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub field: String,
    pub reason: String,
}

/// Per-row level codes of a kept column.
#[derive(Debug, Clone)]
pub enum Codes<'a> {
    /// The table's own dictionary codes (sorted levels), NULL_CODE read as `null_as`.
    Borrowed {
        codes: &'a [u32],
        null_as: u32,
    },
    Owned(Vec<u32>),
}

impl Codes<'_> {
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Codes::Borrowed { codes, null_as } => {
                let c = codes[i];
                if c == NULL_CODE { *null_as } else { c }
            }
            Codes::Owned(v) => v[i],
        }
    }
}

/// One kept stratum column, coded.
#[derive(Debug, Clone)]
pub struct Coded<'a> {
    pub name: String,
    /// Index of the column in the table.
    pub column: usize,
    /// Per row, the rank of its level (0 … levels.len()−1; some levels may be absent).
    pub codes: Codes<'a>,
    /// The level labels in code order (bin numbers for numeric columns).
    pub levels: Vec<String>,
    /// A numeric column without NULLs: the balance check uses its original values.
    pub numeric_without_nulls: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Prepared<'a> {
    pub kept: Vec<Coded<'a>>,
    pub dropped: Vec<Dropped>,
    /// Messages for the operator (e.g. more quantiles asked for than a column's values fill).
    pub notes: Vec<String>,
}

/// Preprocess the columns named `strata` (sorted, deduplicated, all present in `table`).
pub fn preprocess<'a>(table: &'a Table, strata: &[String], quantiles: u32) -> Prepared<'a> {
    let mut out = Prepared::default();
    for name in strata {
        let idx = table
            .columns
            .iter()
            .position(|c| &c.name == name)
            .expect("strata columns checked by the caller");
        let col = &table.columns[idx].data;
        if col.is_numeric() {
            let values = (0..col.len()).filter(|&i| !col.is_null(i)).count();
            if quantiles as usize > values {
                out.notes.push(format!(
                    "{QUANTILES} {quantiles} is more than the {values} value(s) of {name} can fill: \
                     each distinct value of {name} is its own bin"
                ));
            }
        }
        match code_column(col, quantiles) {
            Ok((codes, levels)) => out.kept.push(Coded {
                name: name.clone(),
                column: idx,
                codes,
                levels,
                numeric_without_nulls: col.is_numeric() && !(0..col.len()).any(|i| col.is_null(i)),
            }),
            Err(reason) => out.dropped.push(Dropped {
                field: name.clone(),
                reason,
            }),
        }
    }
    out
}

fn code_column(col: &ColumnData, quantiles: u32) -> Result<(Codes<'_>, Vec<String>), String> {
    let n = col.len();
    match col {
        ColumnData::Text { codes, levels } => {
            let mut counts = vec![0u64; levels.len()];
            let mut nulls = 0u64;
            for &c in codes {
                if c == NULL_CODE {
                    nulls += 1;
                } else {
                    counts[c as usize] += 1;
                }
            }
            let present: Vec<usize> = (0..levels.len()).filter(|&i| counts[i] > 0).collect();
            check_distinct(
                present.len(),
                present.iter().all(|&i| counts[i] == 1),
                n as u64 - nulls,
            )?;
            if levels.is_sorted_by(|a, b| a < b) {
                // Sorted dictionary: the codes are ranks already (absent levels are harmless).
                let mut labels = levels.clone();
                labels.push(NULL_LEVEL.to_string());
                let null_as = levels.len() as u32;
                return Ok((Codes::Borrowed { codes, null_as }, labels));
            }
            let mut order: Vec<usize> = (0..levels.len()).collect();
            order.sort_by(|a, b| levels[*a].cmp(&levels[*b]));
            let mut labels: Vec<String> = Vec::new();
            let mut map = vec![0u32; levels.len()];
            for &i in &order {
                if labels.last() != Some(&levels[i]) {
                    labels.push(levels[i].clone());
                }
                map[i] = (labels.len() - 1) as u32;
            }
            let null_rank = labels.len() as u32;
            labels.push(NULL_LEVEL.to_string());
            let codes = codes
                .iter()
                .map(|&c| {
                    if c == NULL_CODE {
                        null_rank
                    } else {
                        map[c as usize]
                    }
                })
                .collect();
            Ok((Codes::Owned(codes), labels))
        }
        ColumnData::Bool(v) => {
            let (mut f, mut t, mut nulls) = (0u64, 0u64, 0u64);
            for b in v {
                match b {
                    Some(false) => f += 1,
                    Some(true) => t += 1,
                    None => nulls += 1,
                }
            }
            let distinct = (f > 0) as usize + (t > 0) as usize;
            check_distinct(distinct, f <= 1 && t <= 1, f + t)?;
            let mut labels = Vec::new();
            let mut map = [0u32; 3];
            for (k, (cnt, label)) in [(f, "false"), (t, "true"), (nulls, NULL_LEVEL)]
                .into_iter()
                .enumerate()
            {
                if cnt > 0 {
                    map[k] = labels.len() as u32;
                    labels.push(label.to_string());
                }
            }
            let codes = v
                .iter()
                .map(|b| match b {
                    Some(false) => map[0],
                    Some(true) => map[1],
                    None => map[2],
                })
                .collect();
            Ok((Codes::Owned(codes), labels))
        }
        ColumnData::Int(_) | ColumnData::Float(_) => {
            let vals: Vec<Option<f64>> = match col {
                ColumnData::Int(v) => v.iter().map(|x| x.map(|x| x as f64)).collect(),
                ColumnData::Float(v) => v.iter().map(|x| x.filter(|x| !x.is_nan())).collect(),
                _ => unreachable!(),
            };
            let distinct = match col {
                ColumnData::Int(v) => {
                    let mut s: Vec<i64> = v.iter().flatten().copied().collect();
                    s.sort_unstable();
                    s.dedup();
                    s.len()
                }
                _ => {
                    let mut s: Vec<f64> = vals.iter().flatten().copied().collect();
                    s.sort_unstable_by(f64::total_cmp);
                    s.dedup();
                    s.len()
                }
            };
            if distinct <= 1 {
                return Err("single value".into());
            }
            let (labels, bins) = qcut::qcut(&vals, quantiles);
            let has_null = labels.iter().any(Option::is_none);
            let codes = labels.iter().map(|l| l.unwrap_or(bins)).collect();
            let mut names: Vec<String> = (0..bins).map(|b| b.to_string()).collect();
            if has_null {
                names.push(NULL_LEVEL.into());
            }
            Ok((Codes::Owned(codes), names))
        }
    }
}

fn check_distinct(distinct: usize, all_unique: bool, non_null: u64) -> Result<(), String> {
    if distinct <= 1 {
        Err("single value".into())
    } else if all_unique && non_null > 1 {
        Err("unique values (every row differs)".into())
    } else {
        Ok(())
    }
}

/// Stratum id per row: dense rank of the row's tuple of codes (lexicographic), and the number
/// of strata. With no kept columns every row is in stratum 0.
pub fn stratum_ids(kept: &[Coded], n: usize) -> (Vec<u32>, u32) {
    if kept.is_empty() {
        return (vec![0; n], if n > 0 { 1 } else { 0 });
    }
    // The key space can exceed any integer type (300 two-level strata: 2^300), so it is
    // multiplied with a check: None means "more than fits in u32" and takes the u64 path below.
    let space = kept.iter().try_fold(1u32, |acc, c| {
        acc.checked_mul(u32::try_from(c.levels.len().max(1)).ok()?)
    });
    if let Some(space) = space {
        // Mixed-radix keys fit in u32: build them in the output vector and densify in place.
        let mut key: Vec<u32> = vec![0; n];
        for c in kept {
            let radix = c.levels.len().max(1) as u32;
            match &c.codes {
                // One match per column, not per row: this loop runs over millions of rows.
                Codes::Borrowed { codes, null_as } => {
                    for (k, &code) in key.iter_mut().zip(codes.iter()) {
                        *k = *k * radix + if code == NULL_CODE { *null_as } else { code };
                    }
                }
                Codes::Owned(v) => {
                    for (k, &code) in key.iter_mut().zip(v.iter()) {
                        *k = *k * radix + code;
                    }
                }
            }
        }
        let count = densify32(&mut key, u64::from(space));
        return (key, count);
    }
    let mut key: Vec<u64> = vec![0; n];
    let mut space: u64 = 1;
    for c in kept {
        let radix = c.levels.len().max(1) as u64;
        for (i, k) in key.iter_mut().enumerate() {
            *k = *k * radix + c.codes.get(i) as u64;
        }
        space *= radix;
        if space > (1 << 32) {
            space = densify(&mut key, space) as u64;
        }
    }
    let count = densify(&mut key, space);
    (key.into_iter().map(|k| k as u32).collect(), count)
}

fn densify32(key: &mut [u32], space: u64) -> u32 {
    densify_by(key, space, |r| r)
}

/// Replace keys by their dense rank (order preserving); returns the number of distinct keys.
fn densify(key: &mut [u64], space: u64) -> u32 {
    densify_by(key, space, u64::from)
}

/// [`densify`] for any key width: a rank table when the key space is small (up to 2^24),
/// else sort + binary search. `from_rank` turns a rank back into the key type.
fn densify_by<K: Copy + Ord + Into<u64>>(
    key: &mut [K],
    space: u64,
    from_rank: impl Fn(u32) -> K,
) -> u32 {
    if space <= (1 << 24) {
        let mut rank = vec![u32::MAX; space as usize];
        for &k in key.iter() {
            rank[k.into() as usize] = 0;
        }
        let mut next = 0u32;
        for r in rank.iter_mut() {
            if *r == 0 {
                *r = next;
                next += 1;
            }
        }
        for k in key.iter_mut() {
            *k = from_rank(rank[(*k).into() as usize]);
        }
        next
    } else {
        let mut distinct: Vec<K> = key.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for k in key.iter_mut() {
            *k = from_rank(distinct.binary_search(k).expect("present") as u32);
        }
        distinct.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::data::{Column, Ids};

    fn table(cols: Vec<(&str, ColumnData)>) -> Table {
        let n = cols[0].1.len();
        Table {
            source: "test".into(),
            id_column: "id".into(),
            ids: Ids::Int((0..n as i64).collect()),
            columns: cols
                .into_iter()
                .map(|(n, d)| Column {
                    name: n.into(),
                    data: d,
                })
                .collect(),
            origin: None,
        }
    }

    #[test]
    fn drops_single_and_unique_and_bins_numbers() {
        let t = table(vec![
            (
                "const",
                ColumnData::text_from([Some("x"), Some("x"), None, Some("x")]),
            ),
            (
                "name",
                ColumnData::text_from([Some("ann"), Some("bob"), Some("cy"), Some("dee")]),
            ),
            (
                "g",
                ColumnData::text_from([Some("m"), None, Some("f"), Some("m")]),
            ),
            (
                "income",
                ColumnData::Float(vec![Some(1.0), Some(2.0), None, Some(4.0)]),
            ),
            (
                "flag",
                ColumnData::Bool(vec![Some(true), Some(false), Some(true), None]),
            ),
            (
                "age",
                ColumnData::Int(vec![Some(30), Some(30), Some(30), Some(30)]),
            ),
        ]);
        let names: Vec<String> = ["age", "const", "flag", "g", "income", "name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = preprocess(&t, &names, 2);
        let kept: Vec<&str> = p.kept.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(kept, vec!["flag", "g", "income"]);
        let dropped: Vec<(&str, &str)> = p
            .dropped
            .iter()
            .map(|d| (d.field.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            dropped,
            vec![
                ("age", "single value"),
                ("const", "single value"),
                ("name", "unique values (every row differs)")
            ]
        );
        // g: "f" < "m", NULL last
        assert_eq!(p.kept[1].levels, vec!["f", "m", "__NULL__"]);
        assert_eq!(
            (0..4).map(|i| p.kept[1].codes.get(i)).collect::<Vec<_>>(),
            vec![1, 2, 0, 1]
        );
        // income: 2 bins on [1,2,4] -> edges [1, 2, 4]; 1->0, 2->0, 4->1, NULL->2
        assert_eq!(
            (0..4).map(|i| p.kept[2].codes.get(i)).collect::<Vec<_>>(),
            vec![0, 0, 2, 1]
        );
        assert!(!p.kept[2].numeric_without_nulls);
        assert_eq!(p.kept[0].levels, vec!["false", "true", "__NULL__"]);
        let (sid, count) = stratum_ids(&p.kept, 4);
        // tuples (flag, g, income): (1,1,0) (0,2,0) (1,0,2) (2,1,1) -> ranks 2, 0, 1, 3
        assert_eq!(count, 4);
        assert_eq!(sid, vec![2, 0, 1, 3]);
        // A sorted dictionary is used in place; an unsorted one is remapped to the same ranks.
        assert!(matches!(p.kept[1].codes, Codes::Borrowed { .. }));
        let unsorted = table(vec![
            (
                "g",
                ColumnData::Text {
                    codes: vec![0, NULL_CODE, 1, 0],
                    levels: vec!["m".into(), "f".into()],
                },
            ),
            (
                "h",
                ColumnData::text_from([Some("x"), Some("y"), Some("x"), Some("y")]),
            ),
        ]);
        let q = preprocess(&unsorted, &["g".to_string()], 4);
        assert!(matches!(q.kept[0].codes, Codes::Owned(_)));
        assert_eq!(
            (0..4).map(|i| q.kept[0].codes.get(i)).collect::<Vec<_>>(),
            vec![1, 2, 0, 1]
        );
    }

    /// Stratum ids are the dense ranks of the rows' code tuples.
    fn assert_ids_rank_the_tuples(cols: &[Coded], n: usize) {
        let (sid, count) = stratum_ids(cols, n);
        let mut tuples: Vec<Vec<u32>> = (0..n)
            .map(|i| cols.iter().map(|c| c.codes.get(i)).collect())
            .collect();
        let orig = tuples.clone();
        tuples.sort();
        tuples.dedup();
        assert_eq!(count as usize, tuples.len());
        for i in 0..n {
            assert_eq!(sid[i] as usize, tuples.binary_search(&orig[i]).unwrap());
        }
    }

    #[test]
    fn stratum_ids_with_300_two_level_strata_do_not_overflow() {
        // 2^300 combinations: the key space overflowed u128 and panicked before the fix.
        let n = 600;
        let cols: Vec<Coded> = (0..300)
            .map(|j| Coded {
                name: format!("s{j}"),
                column: j,
                codes: Codes::Owned((0..n).map(|i| ((i * (j + 3) / 7) % 2) as u32).collect()),
                levels: vec!["a".into(), "b".into()],
                numeric_without_nulls: false,
            })
            .collect();
        assert_ids_rank_the_tuples(&cols, n);
    }

    #[test]
    fn stratum_ids_with_huge_key_space() {
        // 5 columns of 1000 levels each overflow 2^32 and force a dense re-coding midway.
        let n = 2000;
        let cols: Vec<Coded> = (0..5)
            .map(|j| Coded {
                name: format!("c{j}"),
                column: j,
                codes: Codes::Owned((0..n).map(|i| ((i * (j + 7) * 31) % 1000) as u32).collect()),
                levels: (0..1000).map(|l| l.to_string()).collect(),
                numeric_without_nulls: false,
            })
            .collect();
        assert_ids_rank_the_tuples(&cols, n);
    }
}
