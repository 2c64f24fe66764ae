//! Property tests of the assignment invariants on random tables (sizes 1 to 10^4, 1–4 strata
//! with NULLs, 2–5 arms, integer weights, every misfit strategy).

#![allow(clippy::needless_range_loop)]

use crate::input::names::*;
use std::collections::HashMap;

use proptest::prelude::*;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::rng::Keyer;
use super::*;

/// The generator of the synthetic tables (not of the draws, which are keyed hashes).
struct DataRng(ChaCha8Rng);

impl DataRng {
    fn new(seed: u64) -> DataRng {
        DataRng(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in `0..n` by rejection.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.0.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

struct Case {
    table: Table,
    design: Design,
}

fn build(
    n: usize,
    n_strata: usize,
    n_arms: usize,
    weights: Option<Vec<u32>>,
    misfit: MisfitStrategy,
    data_seed: u64,
    seed: u64,
) -> Case {
    let mut r = DataRng::new(data_seed);
    // Unique ids: a random permutation of spread-out integers (some beyond 2^53).
    let mut ids: Vec<i64> = (0..n as i64)
        .map(|i| i * 1_000_003 + (1 << 53) - 5_000_000)
        .collect();
    r.shuffle(&mut ids);
    let mut columns = Vec::new();
    for s in 0..n_strata {
        let levels = 1 + r.below(5) as usize;
        let null_pct = r.below(30);
        let vals: Vec<Option<String>> = (0..n)
            .map(|_| {
                if r.below(100) < null_pct {
                    None
                } else {
                    Some(format!("v{}", r.below(levels as u64)))
                }
            })
            .collect();
        columns.push(Column {
            name: format!("s{s}"),
            data: ColumnData::text_from(vals.iter().map(|v| v.as_deref())),
        });
    }
    let names: Vec<String> = (0..n_arms).map(|i| format!("arm{i}")).collect();
    let weights: Option<Vec<String>> =
        weights.map(|w| w[..n_arms].iter().map(|x| x.to_string()).collect());
    let arms = Arms::new(&names, weights.as_deref()).unwrap();
    Case {
        table: Table {
            source: "test".into(),
            id_column: "id".into(),
            ids: Ids::Int(ids),
            columns,
            origin: None,
        },
        design: Design {
            arms,
            strata: (0..n_strata).map(|s| format!("s{s}")).collect(),
            quantiles: 4,
            misfit,
            seed,
            fstat_thresh: 0.6,
            cluster: None,
        },
    }
}

/// id -> (arm, stratum id)
fn by_id(t: &Table, o: &Outcome) -> HashMap<i64, (u32, Option<u32>)> {
    let Ids::Int(ids) = &t.ids else {
        unreachable!()
    };
    (0..t.len())
        .map(|i| (ids[i], (o.arm[i], o.stratum_id.as_ref().map(|s| s[i]))))
        .collect()
}

fn misfit_strategy() -> impl Strategy<Value = MisfitStrategy> {
    prop_oneof![
        Just(MisfitStrategy::Stratum),
        Just(MisfitStrategy::Global),
        Just(MisfitStrategy::None)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants(
        n in prop_oneof![2usize..40, 40usize..2_000, 2_000usize..=10_000],
        n_strata in 1usize..=4,
        n_arms in 2usize..=5,
        weights in proptest::option::of(proptest::collection::vec(1u32..=5, 5)),
        misfit in misfit_strategy(),
        data_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let c = build(n, n_strata, n_arms, weights, misfit, data_seed, seed);
        let o = assign(&c.table, &c.design).unwrap();
        let arms = &c.design.arms;
        let l = arms.block as usize;
        prop_assert_eq!(o.arm.len(), n);
        prop_assert_eq!(o.counts.iter().sum::<u64>() + o.unassigned, n as u64);

        match &o.stratum_id {
            None => {
                // Complete random assignment: exact largest-remainder counts.
                prop_assert_eq!(o.unassigned, 0);
                prop_assert_eq!(&o.counts, &arms.largest_remainder_counts(n as u64));
            }
            Some(sid) => {
                // Same stratum id <=> same tuple of values of the used strata (NULL included).
                let used: Vec<&Column> = o.used.iter().map(|u| c.table.column(u).unwrap()).collect();
                let tuple = |i: usize| -> Vec<Option<String>> { used.iter().map(|col| col.data.text(i)).collect() };
                let mut seen: HashMap<u32, Vec<Option<String>>> = HashMap::new();
                let mut seen_t: HashMap<Vec<Option<String>>, u32> = HashMap::new();
                for i in 0..n {
                    let t = tuple(i);
                    prop_assert_eq!(seen.entry(sid[i]).or_insert_with(|| t.clone()), &t);
                    prop_assert_eq!(*seen_t.entry(t).or_insert(sid[i]), sid[i]);
                }
                prop_assert_eq!(seen.len() as u32, o.n_strata);
                // Per stratum, rows in unit-key order.
                let mut keyer = Keyer::unit(c.design.seed);
                let keys: Vec<u128> = (0..n).map(|r| keyer.key(&c.table.ids, r)).collect();
                let mut strata: Vec<Vec<usize>> = vec![Vec::new(); o.n_strata as usize];
                for &r in &o.order {
                    strata[sid[r as usize] as usize].push(r as usize);
                }
                for rows in strata.iter_mut() {
                    rows.sort_by_key(|r| keys[*r]);
                }
                for rows in &strata {
                    let s = rows.len();
                    let full = s / l;
                    let mut cnt = vec![0u64; arms.len()];
                    let mut un = 0usize;
                    for &r in rows {
                        if o.arm[r] == UNASSIGNED { un += 1 } else { cnt[o.arm[r] as usize] += 1 }
                    }
                    match misfit {
                        MisfitStrategy::Stratum => {
                            prop_assert_eq!(un, 0);
                            // Every full block of L rows (in key order) is split exactly.
                            for block in rows.chunks(l) {
                                let mut b = vec![0u64; arms.len()];
                                for &r in block { b[o.arm[r] as usize] += 1; }
                                for i in 0..arms.len() {
                                    if block.len() == l {
                                        prop_assert_eq!(b[i], arms.mask_counts[i]);
                                    } else {
                                        prop_assert!(b[i] <= arms.mask_counts[i]);
                                    }
                                }
                            }
                        }
                        MisfitStrategy::None => {
                            // Exactly the misfits (the largest keys) unassigned, the rest split
                            // exactly.
                            prop_assert_eq!(un, s % l);
                            for &r in &rows[full * l..] {
                                prop_assert_eq!(o.arm[r], UNASSIGNED);
                            }
                            for i in 0..arms.len() {
                                prop_assert_eq!(cnt[i], full as u64 * arms.mask_counts[i]);
                            }
                        }
                        MisfitStrategy::Global => {
                            prop_assert_eq!(un, 0);
                            // Full blocks (in key order) exact; the leftovers left the stratum.
                            for block in rows.chunks_exact(l) {
                                let mut b = vec![0u64; arms.len()];
                                for &r in block { b[o.arm[r] as usize] += 1; }
                                prop_assert_eq!(&b, &arms.mask_counts);
                            }
                            for i in 0..arms.len() {
                                prop_assert!(cnt[i] >= full as u64 * arms.mask_counts[i]);
                            }
                        }
                    }
                    // Leftovers differ from the exact shares by less than one block.
                    for i in 0..arms.len() {
                        let exact = arms.probs[i] * num_rational::Ratio::from_integer(s as i128);
                        let diff = num_rational::Ratio::from_integer(cnt[i] as i128) - exact;
                        let lr = num_rational::Ratio::from_integer(l as i128);
                        prop_assert!(diff < lr && -diff < lr);
                    }
                }
                if misfit == MisfitStrategy::Global {
                    // The pooled misfits are split like one more stratum.
                    let pooled: usize = strata.iter().map(|r| r.len() % l).sum();
                    let total_full: Vec<u64> = (0..arms.len())
                        .map(|i| strata.iter().map(|r| (r.len() / l) as u64).sum::<u64>() * arms.mask_counts[i])
                        .collect();
                    for i in 0..arms.len() {
                        let extra = o.counts[i] - total_full[i];
                        let lo = (pooled / l) as u64 * arms.mask_counts[i];
                        prop_assert!(extra >= lo && extra <= lo + arms.mask_counts[i]);
                    }
                }
            }
        }

        // Reproducible, and independent of the rows' order.
        let again = assign(&c.table, &c.design).unwrap();
        prop_assert_eq!(&again.arm, &o.arm);
        let mut perm: Vec<u32> = (0..n as u32).collect();
        DataRng::new(data_seed ^ 0x5555).shuffle(&mut perm);
        let shuffled = c.table.take(&perm);
        let o2 = assign(&shuffled, &c.design).unwrap();
        prop_assert_eq!(by_id(&c.table, &o), by_id(&shuffled, &o2));
        prop_assert_eq!(&o.counts, &o2.counts);
        prop_assert_eq!(&o.balance, &o2.balance);
    }
}

#[test]
fn different_seeds_give_different_draws() {
    let a = build(1000, 2, 2, None, MisfitStrategy::Stratum, 1, 1);
    let b = build(1000, 2, 2, None, MisfitStrategy::Stratum, 1, 2);
    assert_ne!(
        assign(&a.table, &a.design).unwrap().arm,
        assign(&b.table, &b.design).unwrap().arm
    );
}

#[test]
fn single_row_and_empty_audiences_are_refused() {
    let c = build(1, 1, 2, None, MisfitStrategy::Stratum, 1, 1);
    assert!(
        assign(&c.table, &c.design)
            .unwrap_err()
            .to_string()
            .contains("only 1 participant")
    );
}

#[test]
fn strata_smaller_than_huge_blocks_are_refused_not_hashed_for_minutes() {
    // 300 strata of 2 units, blocks of 100000 (weights 0.33333 : 0.66667): 3e7 mask hashes.
    let n = 600;
    let vals: Vec<String> = (0..n).map(|i| format!("g{}", i / 2)).collect();
    let arms = Arms::new(
        &["a".to_string(), "b".to_string()],
        Some(&["0.33333".to_string(), "0.66667".to_string()]),
    )
    .unwrap();
    assert_eq!(arms.block, 100_000);
    let table = Table {
        source: "people.csv".into(),
        id_column: "id".into(),
        ids: Ids::Int((0..n as i64).collect()),
        origin: None,
        columns: vec![Column {
            name: "g".into(),
            data: ColumnData::text_from(vals.iter().map(|v| Some(v.as_str()))),
        }],
    };
    let design = Design {
        arms,
        strata: vec!["g".into()],
        quantiles: 4,
        misfit: MisfitStrategy::Stratum,
        seed: 1,
        fstat_thresh: 0.6,
        cluster: None,
    };
    let e = assign(&table, &design).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert_eq!(
        e.to_string(),
        format!(
            "people.csv: with blocks of 100000, 300 strata have leftover participants, and misfit \
         strategy stratum would hash one block mask for each (30000000 hashes, over the limit of \
         20000000): use simpler {ARM_WEIGHTS} (smaller blocks), fewer strata, or {MISFIT_STRATEGY} \
         global"
        )
    );
}

/// A cluster design: `n` units in about `k` clusters (integer cluster ids, some units per
/// cluster), 0–2 strata constant within each cluster (with NULLs), rows in random order.
fn cluster_case(
    n: usize,
    k: u64,
    n_strata: usize,
    misfit: MisfitStrategy,
    data_seed: u64,
    seed: u64,
) -> Case {
    let mut r = DataRng::new(data_seed);
    let mut ids: Vec<i64> = (0..n as i64).map(|i| i * 7 + 3).collect();
    r.shuffle(&mut ids);
    let cluster_of: Vec<i64> = (0..n).map(|_| r.below(k) as i64 * 13 - 40).collect();
    let mut columns = vec![Column {
        name: "cl".into(),
        data: ColumnData::Int(cluster_of.iter().map(|&c| Some(c)).collect()),
    }];
    for s in 0..n_strata {
        // A level per cluster id, NULL for some clusters.
        let levels = 1 + r.below(4);
        let salt = r.below(1000) as i64;
        let vals: Vec<Option<String>> = cluster_of
            .iter()
            .map(|&c| {
                let h = (c + salt).rem_euclid(levels as i64 + 1);
                (h != 0).then(|| format!("v{h}"))
            })
            .collect();
        columns.push(Column {
            name: format!("s{s}"),
            data: ColumnData::text_from(vals.iter().map(|v| v.as_deref())),
        });
    }
    let names: Vec<String> = ["c", "t1", "t2"].iter().map(|s| s.to_string()).collect();
    let weights: Vec<String> = ["2", "1", "1"].iter().map(|s| s.to_string()).collect();
    Case {
        table: Table {
            source: "test".into(),
            id_column: "id".into(),
            ids: Ids::Int(ids),
            columns,
            origin: None,
        },
        design: Design {
            arms: Arms::new(&names, Some(&weights)).unwrap(),
            strata: (0..n_strata).map(|s| format!("s{s}")).collect(),
            quantiles: 4,
            misfit,
            seed,
            fstat_thresh: 0.6,
            cluster: Some("cl".into()),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Cluster designs: every unit has its cluster's arm and stratum; the clusters' arms are
    /// the assignment of one row per cluster (id = the cluster id) by the same design, i.e. the
    /// documented draw over clusters; the rows' order does not matter; the counts add up.
    #[test]
    fn cluster_invariants(
        n in prop_oneof![4usize..60, 60usize..3_000],
        k in 2u64..200,
        n_strata in 0usize..=2,
        misfit in misfit_strategy(),
        data_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let c = cluster_case(n, k, n_strata, misfit, data_seed, seed);
        let Ids::Int(ids) = &c.table.ids else { unreachable!() };
        let ColumnData::Int(cl) = &c.table.columns[0].data else { unreachable!() };
        let distinct: std::collections::BTreeSet<i64> = cl.iter().map(|x| x.unwrap()).collect();
        let res = assign(&c.table, &c.design);
        if distinct.len() < 2 {
            prop_assert!(res.is_err());
            return Ok(());
        }
        let o = res.unwrap();
        // One arm and stratum per cluster.
        let mut per: HashMap<i64, (u32, Option<u32>)> = HashMap::new();
        for i in 0..n {
            let v = (o.arm[i], o.stratum_id.as_ref().map(|s| s[i]));
            let e = per.entry(cl[i].unwrap()).or_insert(v);
            prop_assert_eq!(*e, v);
        }
        // The same draw over one row per cluster.
        let mut first: Vec<u32> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..n {
            if seen.insert(cl[i].unwrap()) {
                first.push(i as u32);
            }
        }
        let mut ct = c.table.take(&first);
        ct.ids = Ids::Int(first.iter().map(|&i| cl[i as usize].unwrap()).collect());
        ct.columns.remove(0);
        let plain = Design { cluster: None, ..c.design.clone() };
        let co = assign(&ct, &plain).unwrap();
        let Ids::Int(cids) = &ct.ids else { unreachable!() };
        for (j, cid) in cids.iter().enumerate() {
            prop_assert_eq!(per[cid], (co.arm[j], co.stratum_id.as_ref().map(|s| s[j])));
        }
        let cinfo = o.cluster.as_ref().unwrap();
        prop_assert_eq!(cinfo.clusters as usize, distinct.len());
        prop_assert_eq!(&cinfo.clusters_per_arm, &co.counts);
        prop_assert_eq!(o.counts.iter().sum::<u64>() + o.unassigned, n as u64);
        // Row order.
        let mut perm: Vec<u32> = (0..n as u32).collect();
        DataRng::new(data_seed ^ 1).shuffle(&mut perm);
        let shuffled = c.table.take(&perm);
        let o2 = assign(&shuffled, &c.design).unwrap();
        let Ids::Int(ids2) = &shuffled.ids else { unreachable!() };
        let want: HashMap<i64, u32> = (0..n).map(|i| (ids[i], o.arm[i])).collect();
        for i in 0..n {
            prop_assert_eq!(o2.arm[i], want[&ids2[i]]);
        }
        prop_assert_eq!(o2.key_sum, o.key_sum);
        prop_assert_eq!(&o2.balance, &o.balance);
    }
}
