//! The distribution of [`super::assign`] over a fixed list of seeds (issue 12, "Tests:
//! distribution"), through the whole local path (strata preprocessing, NULL strata, stratum
//! ids), with uneven weights 1,2 (L = 3) and 3,1,1 (L = 5):
//!
//! * each unit's arm frequency matches its weight: Pearson's chi-square goodness of fit per
//!   unit, at a family-wise significance level of [`ALPHA`] split over every unit and design
//!   (Bonferroni). The seeds are fixed (0..[`SEEDS`]), so the test is deterministic: it passes
//!   or fails the same way on every run, never flakily;
//! * in every draw, every full block (units of a stratum in unit-key order, L at a time) holds
//!   exactly the weight pattern, and the leftovers follow the misfit strategy: `none` leaves
//!   them unassigned, `stratum` gives each arm at most its pattern count among a stratum's
//!   (fewer than L) leftovers, `global` pools them (pool-key order) into exact blocks and a
//!   last partial one with each arm at most its pattern count.
//!
//! `stochatreat.rs` tests the block algorithm itself (weights 1:2:3); this tests `assign`.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::rng::Keyer;
use super::*;

/// Fixed seeds 0..SEEDS.
const SEEDS: u64 = 2000;
/// Family-wise significance level of all the per-unit chi-square tests of this module.
const ALPHA: f64 = 1e-3;

/// Strata of the audience (column `g`): 13, 20, 7 and 1 units and 6 NULLs, interleaved; with
/// L = 3 their leftovers are 1, 2, 1, 1, 0 units, with L = 5 3, 0, 2, 1, 1.
const STRATA: [(&str, usize); 5] = [("n", 13), ("s", 20), ("e", 7), ("w", 1), ("", 6)];

fn audience() -> Table {
    let mut vals: Vec<Option<&str>> = STRATA
        .iter()
        .flat_map(|&(v, n)| std::iter::repeat_n((!v.is_empty()).then_some(v), n))
        .collect();
    // Interleave the strata (a fixed permutation of the rows).
    let n = vals.len();
    let perm: Vec<usize> = (0..n).map(|i| (i * 19) % n).collect();
    vals = perm.iter().map(|&i| vals[i]).collect();
    Table {
        source: "distribution".into(),
        id_column: "id".into(),
        // Ids spread out, some negative.
        ids: Ids::Int((0..n as i64).map(|i| i * 7_919 - 100_000).collect()),
        columns: vec![Column {
            name: "g".into(),
            data: ColumnData::text_from(vals.into_iter()),
        }],
        origin: None,
    }
}

fn design(weights: &[&str], strata: &[&str], misfit: MisfitStrategy, seed: u64) -> Design {
    let names: Vec<String> = (0..weights.len()).map(|i| format!("a{i}")).collect();
    let w: Vec<String> = weights.iter().map(|s| s.to_string()).collect();
    Design {
        arms: Arms::new(&names, Some(&w)).unwrap(),
        strata: strata.iter().map(|s| s.to_string()).collect(),
        quantiles: 4,
        misfit,
        seed,
        fstat_thresh: 0.6,
        cluster: None,
    }
}

/// Upper-tail p-value of Pearson's chi-square of `observed` against `expected` counts (the
/// categories with an expected count of 0 must be observed 0 times, and are left out).
fn chi_square_p(observed: &[u64], expected: &[f64]) -> f64 {
    let mut x2 = 0.0;
    let mut df = -1.0;
    for (&o, &e) in observed.iter().zip(expected) {
        if e == 0.0 {
            assert_eq!(o, 0, "observed {observed:?} where none is expected");
            continue;
        }
        x2 += (o as f64 - e).powi(2) / e;
        df += 1.0;
    }
    if df < 1.0 {
        return 1.0;
    }
    1.0 - ChiSquared::new(df).unwrap().cdf(x2)
}

/// Check the blocks of one draw (see the module doc) and return each row's arm (or
/// [`UNASSIGNED`]).
fn check_blocks(table: &Table, d: &Design, o: &Outcome) -> Vec<u32> {
    let l = d.arms.block as usize;
    let m = &d.arms.mask_counts;
    let k = d.arms.len();
    let tally = |rows: &[usize]| {
        let mut c = vec![0u64; k];
        for &r in rows {
            c[o.arm[r] as usize] += 1;
        }
        c
    };
    let Some(sid) = &o.stratum_id else {
        // Complete random assignment: exact largest-remainder counts.
        assert_eq!(
            o.counts,
            d.arms.largest_remainder_counts(table.len() as u64)
        );
        return o.arm.clone();
    };
    let mut unit = Keyer::unit(d.seed);
    let mut strata: Vec<Vec<(u128, usize)>> = vec![Vec::new(); o.n_strata as usize];
    for r in 0..table.len() {
        strata[sid[r] as usize].push((unit.key(&table.ids, r), r));
    }
    let mut pool = Vec::new();
    for s in &mut strata {
        s.sort();
        let rows: Vec<usize> = s.iter().map(|x| x.1).collect();
        let full = rows.len() - rows.len() % l;
        for block in rows[..full].chunks(l) {
            assert_eq!(&tally(block), m, "seed {}: a full block", d.seed);
        }
        let left = &rows[full..];
        assert!(left.len() < l);
        match d.misfit {
            MisfitStrategy::None => {
                assert!(left.iter().all(|&r| o.arm[r] == UNASSIGNED));
            }
            MisfitStrategy::Stratum => {
                let c = tally(left);
                assert!(
                    c.iter().zip(m).all(|(c, m)| c <= m),
                    "seed {}: {c:?}",
                    d.seed
                );
            }
            MisfitStrategy::Global => pool.extend_from_slice(left),
        }
    }
    if d.misfit == MisfitStrategy::Global {
        let mut key = Keyer::pool(d.seed);
        let mut keyed: Vec<(u128, usize)> =
            pool.iter().map(|&r| (key.key(&table.ids, r), r)).collect();
        keyed.sort();
        let rows: Vec<usize> = keyed.iter().map(|x| x.1).collect();
        let full = rows.len() - rows.len() % l;
        for block in rows[..full].chunks(l) {
            assert_eq!(
                &tally(block),
                m,
                "seed {}: a full block of the pool",
                d.seed
            );
        }
        let c = tally(&rows[full..]);
        assert!(
            c.iter().zip(m).all(|(c, m)| c <= m),
            "seed {}: {c:?}",
            d.seed
        );
    }
    o.arm.clone()
}

/// Over the fixed seeds: each row's count of each arm (last slot: unassigned), after checking
/// every draw's blocks.
fn frequencies(
    table: &Table,
    weights: &[&str],
    strata: &[&str],
    misfit: MisfitStrategy,
) -> Vec<Vec<u64>> {
    let k = weights.len();
    let mut freq = vec![vec![0u64; k + 1]; table.len()];
    for seed in 0..SEEDS {
        let d = design(weights, strata, misfit, seed);
        let o = assign(table, &d).unwrap();
        for (f, a) in freq.iter_mut().zip(check_blocks(table, &d, &o)) {
            f[if a == UNASSIGNED { k } else { a as usize }] += 1;
        }
    }
    freq
}

/// The stratum size of each row (column `g`).
fn stratum_sizes(table: &Table) -> Vec<usize> {
    let col = table.column("g").unwrap();
    let vals: Vec<Option<String>> = (0..table.len()).map(|r| col.data.text(r)).collect();
    vals.iter()
        .map(|v| vals.iter().filter(|w| *w == v).count())
        .collect()
}

/// Expected counts: a unit of a stratum of `s` is unassigned (misfit strategy `none`) with
/// probability (s mod L)/s, and otherwise has arm i with probability p_i.
fn expected(d: &Design, s: usize, none: bool) -> Vec<f64> {
    let l = d.arms.block as usize;
    let left = if none { (s % l) as f64 / s as f64 } else { 0.0 };
    let total = SEEDS as f64;
    let mut e: Vec<f64> = d
        .arms
        .probs
        .iter()
        .map(|p| (1.0 - left) * total * (*p.numer() as f64 / *p.denom() as f64))
        .collect();
    e.push(left * total);
    e
}

#[test]
fn each_units_arm_frequency_matches_its_weight_and_every_block_is_exact() {
    let table = audience();
    let sizes = stratum_sizes(&table);
    let designs: [&[&str]; 2] = [&["1", "2"], &["3", "1", "1"]];
    let misfits = [
        MisfitStrategy::Stratum,
        MisfitStrategy::Global,
        MisfitStrategy::None,
    ];
    let tests = (designs.len() * misfits.len() * table.len()) as f64;
    let alpha = ALPHA / tests;
    let (mut with_arms, mut reversed_rejected) = (0, 0);
    for weights in designs {
        for misfit in misfits {
            let freq = frequencies(&table, weights, &["g"], misfit);
            let d = design(weights, &["g"], misfit, 0);
            for (u, f) in freq.iter().enumerate() {
                let e = expected(&d, sizes[u], misfit == MisfitStrategy::None);
                let p = chi_square_p(f, &e);
                assert!(
                    p > alpha,
                    "weights {weights:?}, {misfit:?}, row {u} (stratum of {}): counts {f:?}, expected {e:?}, p = {p}",
                    sizes[u]
                );
                // The test has power: the same counts against the weights reversed are
                // rejected (counted; units always unassigned give no test).
                let mut rev: Vec<&str> = weights.to_vec();
                rev.reverse();
                let e_rev = expected(
                    &design(&rev, &["g"], misfit, 0),
                    sizes[u],
                    misfit == MisfitStrategy::None,
                );
                if e_rev[..weights.len()].iter().any(|&x| x > 0.0) {
                    with_arms += 1;
                    if chi_square_p(f, &e_rev) < alpha {
                        reversed_rejected += 1;
                    }
                }
            }
        }
    }
    // Every unit ever assigned (all but those of a stratum smaller than a block, with
    // `none`).
    assert!(with_arms > 0);
    assert_eq!(reversed_rejected, with_arms);
}

#[test]
fn without_strata_each_unit_follows_the_exact_counts() {
    // 47 units, no strata: complete random assignment with the largest-remainder counts c_i,
    // so each unit has arm i with probability c_i / 47 (for 3,1,1: 28, 10, 9 of 47, not the
    // shares 28.2, 9.4, 9.4).
    let table = audience();
    let n = table.len() as u64;
    for weights in [&["1", "2"][..], &["3", "1", "1"]] {
        let d = design(weights, &[], MisfitStrategy::Stratum, 0);
        let c = d.arms.largest_remainder_counts(n);
        let freq = frequencies(&table, weights, &[], MisfitStrategy::Stratum);
        let mut e: Vec<f64> = c
            .iter()
            .map(|&c| SEEDS as f64 * c as f64 / n as f64)
            .collect();
        e.push(0.0);
        for (u, f) in freq.iter().enumerate() {
            let p = chi_square_p(f, &e);
            assert!(
                p > ALPHA / (2 * n) as f64,
                "weights {weights:?}, row {u}: counts {f:?}, expected {e:?}, p = {p}"
            );
        }
    }
}
