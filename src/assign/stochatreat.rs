//! The stochatreat block algorithm on keyed-hash order, and complete random assignment for
//! designs without strata (definition: docs/assignment-algorithm.md).
//!
//! Within each stratum, units are taken in unit-key order ([`super::rng`]) and cut into blocks
//! of L (L = lcm of the denominators of the exact arm shares). Position j of every full block
//! goes to arm `pattern[j]`, the fixed pattern "arm i repeated L·p_i times, in arm order": a
//! fixed pattern over a uniformly random order of the units is a uniformly random exact split,
//! so every full block is split exactly by the weights, as stochatreat's permuted masks are.
//! The r = s mod L units left over (the r largest keys of a stratum of s units) follow the
//! misfit strategy, with stochatreat's distribution:
//! * `stratum`: leftover t (t = 0…r−1 in key order) gets `pattern[π(t)]`, π the positions of one
//!   block mask in mask-key order (`label` = the stratum id): a draw without replacement from a
//!   randomly permuted mask.
//! * `global`: all leftovers are pooled, ordered by their pool keys (not their unit keys, which
//!   are biased upwards by being the largest of their stratum), and assigned like one more
//!   stratum (its own leftovers by the mask labelled `global`).
//! * `none`: the leftovers stay unassigned.

use super::data::Ids;
use super::rng::{self, Keyer};

/// Marks a row left unassigned (misfit strategy `none`).
pub const UNASSIGNED: u32 = u32::MAX;

/// Most mask-key hashes that misfit strategy `stratum` may need (one block mask of L keys per
/// stratum with leftovers); beyond it a run would take minutes for a design that stratifies
/// nothing (strata smaller than a block).
pub const MAX_MASK_HASHES: u64 = 20_000_000;

/// The design needs more than [`MAX_MASK_HASHES`] mask-key hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct TooManyMasks {
    /// Strata with leftover units.
    pub strata: u64,
    pub block: u64,
}

/// Assign rows to arms by blocks within strata.
///
/// `stratum[row]`: the row's stratum id (< `n_strata`); `pattern`: the block pattern. Returns
/// the arm per row (or [`UNASSIGNED`]) and the sum of the unit keys ([`rng::unit_keys`]).
pub fn stochatreat(
    ids: &Ids,
    seed: u64,
    stratum: &[u32],
    n_strata: u32,
    pattern: &[u32],
    misfit: super::MisfitStrategy,
) -> Result<(Vec<u32>, u128), TooManyMasks> {
    use super::MisfitStrategy as M;
    let n = stratum.len();
    let l = pattern.len();
    // Counting sort of the rows by stratum.
    let mut start = vec![0usize; n_strata as usize + 1];
    for &s in stratum {
        start[s as usize + 1] += 1;
    }
    for s in 0..n_strata as usize {
        start[s + 1] += start[s];
    }
    if misfit == M::Stratum {
        let with_leftovers = (0..n_strata as usize)
            .filter(|&s| !(start[s + 1] - start[s]).is_multiple_of(l))
            .count() as u64;
        if with_leftovers.saturating_mul(l as u64) > MAX_MASK_HASHES {
            return Err(TooManyMasks {
                strata: with_leftovers,
                block: l as u64,
            });
        }
    }
    let (keys, key_sum) = rng::unit_keys(ids, seed);
    let mut grouped = vec![(0u64, 0u32); n];
    let mut fill = start.clone();
    for (r, (&s, k)) in stratum.iter().zip(keys).enumerate() {
        grouped[fill[s as usize]] = (k, r as u32);
        fill[s as usize] += 1;
    }
    drop(fill);
    rng::sort_groups(&mut grouped, &start, ids, seed);

    let mut arm = vec![UNASSIGNED; n];
    let mut pool: Vec<u32> = Vec::new();
    for s in 0..n_strata as usize {
        let units = &grouped[start[s]..start[s + 1]];
        let full = units.len() - units.len() % l;
        for (j, &(_, r)) in units[..full].iter().enumerate() {
            arm[r as usize] = pattern[j % l];
        }
        let rest = &units[full..];
        match misfit {
            M::Stratum => assign_leftovers(
                rest.iter().map(|p| p.1),
                &s.to_string(),
                seed,
                pattern,
                &mut arm,
            ),
            M::Global => pool.extend(rest.iter().map(|p| p.1)),
            M::None => {}
        }
    }
    drop(grouped);
    if misfit == M::Global && !pool.is_empty() {
        let mut k = Keyer::pool(seed);
        let mut keyed: Vec<(u128, u32)> =
            pool.iter().map(|&r| (k.key(ids, r as usize), r)).collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| ids.cmp_rows(a.1 as usize, b.1 as usize))
        });
        let full = keyed.len() - keyed.len() % l;
        for (j, &(_, r)) in keyed[..full].iter().enumerate() {
            arm[r as usize] = pattern[j % l];
        }
        assign_leftovers(
            keyed[full..].iter().map(|p| p.1),
            "global",
            seed,
            pattern,
            &mut arm,
        );
    }
    Ok((arm, key_sum))
}

/// Leftover t (in order) gets `pattern[π(t)]`, π the mask positions in mask-key order.
fn assign_leftovers(
    rows: impl ExactSizeIterator<Item = u32>,
    label: &str,
    seed: u64,
    pattern: &[u32],
    arm: &mut [u32],
) {
    if rows.len() == 0 {
        return;
    }
    let order = rng::mask_order(seed, label, pattern.len());
    for (r, p) in rows.zip(order) {
        arm[r as usize] = pattern[p as usize];
    }
}

/// Complete random assignment: exactly `counts[i]` rows to arm i (Σcounts = rows): in unit-key
/// order, the first `counts[0]` rows to arm 0, the next `counts[1]` to arm 1, and so on.
/// Returns the arms and the sum of the unit keys.
pub fn complete_random(ids: &Ids, seed: u64, counts: &[u64]) -> (Vec<u32>, u128) {
    let n = ids.len();
    debug_assert_eq!(counts.iter().sum::<u64>(), n as u64);
    let (keys, key_sum) = rng::unit_keys(ids, seed);
    let mut pairs: Vec<(u64, u32)> = keys
        .into_iter()
        .enumerate()
        .map(|(r, k)| (k, r as u32))
        .collect();
    rng::sort_groups(&mut pairs, &[0, n], ids, seed);
    let mut arm = vec![UNASSIGNED; n];
    let mut it = pairs.iter();
    for (a, &c) in counts.iter().enumerate() {
        for &(_, r) in it.by_ref().take(c as usize) {
            arm[r as usize] = a as u32;
        }
    }
    (arm, key_sum)
}

/// The numbers of full and of partial blocks (misfits of the `stratum` strategy) that strata of
/// the sizes given by `stratum` (ids < `n_strata`) make with blocks of `block` rows.
pub fn block_counts(stratum: &[u32], n_strata: u32, block: u64) -> (u64, u64) {
    let mut size = vec![0u64; n_strata as usize];
    for &s in stratum {
        size[s as usize] += 1;
    }
    size.iter().fold((0, 0), |(full, partial), &s| {
        (full + s / block, partial + u64::from(s % block > 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::MisfitStrategy;

    fn run(
        n: usize,
        stratum: &[u32],
        n_strata: u32,
        pattern: &[u32],
        m: MisfitStrategy,
        seed: u64,
    ) -> Vec<u32> {
        let ids = Ids::Int((0..n as i64).collect());
        stochatreat(&ids, seed, stratum, n_strata, pattern, m)
            .unwrap()
            .0
    }

    #[test]
    fn block_counts_of_fine_strata() {
        // Sizes 5, 3, 2 with blocks of 2: full 2+1+1, partial 1+1+0.
        let stratum: Vec<u32> = vec![0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        assert_eq!(block_counts(&stratum, 3, 2), (4, 2));
        // One participant per stratum: every block partial.
        let single: Vec<u32> = (0..10).collect();
        assert_eq!(block_counts(&single, 10, 2), (0, 10));
    }

    #[test]
    fn reference_example_counts() {
        // 2 arms, strata sizes 5, 3, 2: per-stratum counts arm0+arm1 = 5, 3, 2, every full
        // pair split 1:1, so arm counts differ by at most one per stratum.
        let stratum: Vec<u32> = vec![0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        for strat in [MisfitStrategy::Stratum, MisfitStrategy::Global] {
            for seed in 0..20 {
                let arm = run(10, &stratum, 3, &[0, 1], strat, seed);
                for (s, size) in [(0u32, 5usize), (1, 3), (2, 2)] {
                    let a1 = (0..10).filter(|&i| stratum[i] == s && arm[i] == 1).count();
                    assert!(
                        a1 * 2 + 1 >= size && a1 * 2 <= size + 1,
                        "{strat:?} seed {seed} stratum {s}"
                    );
                }
                assert!(arm.iter().all(|a| *a < 2));
            }
        }
        let arm = run(10, &stratum, 3, &[0, 1], MisfitStrategy::None, 1);
        assert_eq!(arm.iter().filter(|a| **a == UNASSIGNED).count(), 2); // 5 mod 2 + 3 mod 2
    }

    #[test]
    fn full_blocks_follow_the_pattern_in_key_order() {
        // One stratum of 7, pattern a,b,b (weights 1:2): the 6 smallest keys get a,b,b,a,b,b.
        let ids = Ids::Int((100..107).collect());
        let seed = 5;
        let arm = run_ids(&ids, &[0; 7], 1, &[0, 1, 1], MisfitStrategy::None, seed);
        let mut k = Keyer::unit(seed);
        let mut by_key: Vec<(u128, usize)> = (0..7).map(|r| (k.key(&ids, r), r)).collect();
        by_key.sort();
        let got: Vec<u32> = by_key.iter().map(|x| arm[x.1]).collect();
        assert_eq!(got, vec![0, 1, 1, 0, 1, 1, UNASSIGNED]);
    }

    fn run_ids(
        ids: &Ids,
        stratum: &[u32],
        n_strata: u32,
        pattern: &[u32],
        m: MisfitStrategy,
        seed: u64,
    ) -> Vec<u32> {
        stochatreat(ids, seed, stratum, n_strata, pattern, m)
            .unwrap()
            .0
    }

    #[test]
    fn stratum_leftovers_draw_from_the_keyed_mask() {
        // Stratum 0 of 3 units with L = 5 (pattern 0,1,1,1,1): all are leftovers; leftover t
        // gets pattern[mask_order(seed, "0")[t]].
        let ids = Ids::Int(vec![1, 2, 3]);
        let seed = 11;
        let pattern = [0, 1, 1, 1, 1];
        let arm = run_ids(&ids, &[0, 0, 0], 1, &pattern, MisfitStrategy::Stratum, seed);
        let mut k = Keyer::unit(seed);
        let mut by_key: Vec<(u128, usize)> = (0..3).map(|r| (k.key(&ids, r), r)).collect();
        by_key.sort();
        let order = rng::mask_order(seed, "0", 5);
        for (t, &(_, r)) in by_key.iter().enumerate() {
            assert_eq!(arm[r], pattern[order[t] as usize]);
        }
    }

    #[test]
    fn global_pool_is_ordered_by_pool_keys() {
        // Two strata of 1 unit each, L = 2: both leftovers pooled into one full block, the
        // lower pool key gets arm 0.
        let ids = Ids::Int(vec![8, 9]);
        let seed = 3;
        let arm = run_ids(&ids, &[0, 1], 2, &[0, 1], MisfitStrategy::Global, seed);
        let mut k = Keyer::pool(seed);
        let first = if k.key(&ids, 0) < k.key(&ids, 1) {
            0
        } else {
            1
        };
        assert_eq!(arm[first], 0);
        assert_eq!(arm[1 - first], 1);
    }

    #[test]
    fn too_many_leftover_masks_are_refused() {
        let n = 300;
        let ids = Ids::Int((0..n as i64).collect());
        let stratum: Vec<u32> = (0..n as u32).collect();
        let pattern: Vec<u32> = (0..100_000).map(|i| (i % 2) as u32).collect();
        let e = stochatreat(
            &ids,
            1,
            &stratum,
            n as u32,
            &pattern,
            MisfitStrategy::Stratum,
        )
        .unwrap_err();
        assert_eq!(
            e,
            TooManyMasks {
                strata: 300,
                block: 100_000
            }
        );
        // The other strategies need at most one mask.
        assert!(
            stochatreat(
                &ids,
                1,
                &stratum,
                n as u32,
                &pattern,
                MisfitStrategy::Global
            )
            .is_ok()
        );
    }

    #[test]
    fn complete_random_counts() {
        let ids = Ids::Int((0..7).rev().collect());
        let (arm, sum) = complete_random(&ids, 9, &[2, 5]);
        assert_eq!(arm.iter().filter(|a| **a == 0).count(), 2);
        assert_eq!(arm.iter().filter(|a| **a == 1).count(), 5);
        // Arm 0 = the two smallest keys.
        let mut k = Keyer::unit(9);
        let mut by_key: Vec<(u128, usize)> = (0..7).map(|r| (k.key(&ids, r), r)).collect();
        by_key.sort();
        assert_eq!(
            (arm[by_key[0].1], arm[by_key[1].1], arm[by_key[2].1]),
            (0, 0, 1)
        );
        assert_eq!(sum, by_key.iter().fold(0u128, |a, k| a.wrapping_add(k.0)));
    }

    /// Upper-tail p-value of Pearson's chi-square of `observed` against `expected` counts.
    fn chi_square_p(observed: &[u64], expected: &[f64]) -> f64 {
        use statrs::distribution::{ChiSquared, ContinuousCDF};
        let x2: f64 = observed
            .iter()
            .zip(expected)
            .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
            .sum();
        1.0 - ChiSquared::new((observed.len() - 1) as f64)
            .unwrap()
            .cdf(x2)
    }

    /// Over a fixed list of seeds, count each unit's arms (last slot: unassigned).
    fn arm_frequencies(
        sizes: &[usize],
        pattern: &[u32],
        k: usize,
        m: MisfitStrategy,
        seeds: std::ops::Range<u64>,
    ) -> (Vec<u32>, Vec<Vec<u64>>) {
        let stratum: Vec<u32> = sizes
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| std::iter::repeat_n(s as u32, n))
            .collect();
        let n = stratum.len();
        // Ids interleaved across strata, some negative.
        let ids = Ids::Int((0..n as i64).map(|i| (i * 37) % 101 - 50).collect());
        let mut freq = vec![vec![0u64; k + 1]; n];
        for seed in seeds {
            let (arm, _) =
                stochatreat(&ids, seed, &stratum, sizes.len() as u32, pattern, m).unwrap();
            for (f, a) in freq.iter_mut().zip(arm) {
                f[if a == UNASSIGNED { k } else { a as usize }] += 1;
            }
        }
        (stratum, freq)
    }

    #[test]
    fn each_units_arm_frequency_matches_its_weight() {
        // Weights 1:2:3 (L = 6), strata of 13, 7, 4 and 1 units: full blocks and leftovers in
        // every stratum. 4000 fixed seeds; each unit's arm counts against 1/6, 2/6, 3/6 by a
        // chi-square test at 1e-4 (deterministic: the seeds are fixed). Ordering the `global`
        // pool by unit keys instead of pool keys fails this (p = 4e-5 for one unit).
        let pattern = [0, 1, 1, 2, 2, 2];
        let sizes = [13, 7, 4, 1];
        let seeds = 0..4000u64;
        let total = seeds.end as f64;
        for m in [MisfitStrategy::Stratum, MisfitStrategy::Global] {
            let (_, freq) = arm_frequencies(&sizes, &pattern, 3, m, seeds.clone());
            for (u, f) in freq.iter().enumerate() {
                assert_eq!(f[3], 0);
                let expected = [total / 6.0, total * 2.0 / 6.0, total * 3.0 / 6.0];
                let p = chi_square_p(&f[..3], &expected);
                assert!(p > 1e-4, "{m:?} unit {u}: counts {f:?}, p = {p}");
            }
        }
        // `none`: a unit of a stratum of s is unassigned with probability (s mod L)/s, else
        // its arm follows the weights.
        let (stratum, freq) = arm_frequencies(&sizes, &pattern, 3, MisfitStrategy::None, seeds);
        for (u, f) in freq.iter().enumerate() {
            let s = sizes[stratum[u] as usize];
            let left = (s % 6) as f64 / s as f64;
            let a = (1.0 - left) * total;
            let expected = [a / 6.0, a * 2.0 / 6.0, a * 3.0 / 6.0, left * total];
            if s < 6 {
                assert_eq!(
                    f[3], total as u64,
                    "unit {u} of a stratum smaller than a block"
                );
                continue;
            }
            let p = chi_square_p(f, &expected);
            assert!(p > 1e-4, "None unit {u}: counts {f:?}, p = {p}");
        }
    }

    #[test]
    fn complete_random_unit_frequencies_match_the_counts() {
        // 10 units, 3 equal arms: counts 4, 3, 3, so each unit has arm i with probability
        // c_i / 10.
        let ids = Ids::from_strings((0..10).map(|i| format!("p{i}")).collect());
        let mut freq = vec![[0u64; 3]; 10];
        for seed in 0..3000 {
            let (arm, _) = complete_random(&ids, seed, &[4, 3, 3]);
            for (f, a) in freq.iter_mut().zip(arm) {
                f[a as usize] += 1;
            }
        }
        for (u, f) in freq.iter().enumerate() {
            let p = chi_square_p(f, &[1200.0, 900.0, 900.0]);
            assert!(p > 1e-4, "unit {u}: counts {f:?}, p = {p}");
        }
    }
}
