//! The stochatreat block algorithm (docs/statistics.md#blocks-and-weights), and complete random
//! assignment for designs without strata (docs/statistics.md#complete-random-assignment).
//!
//! Within each stratum, rows are taken in participant-id order and cut into blocks of L rows
//! (L = lcm of the denominators of the exact arm shares); every block receives an independent
//! uniformly random permutation of the mask (arm i repeated L·p_i times). So every full block
//! is split exactly by the weights. The rows that do not fill a last block (the "misfits",
//! s mod L of a stratum of s rows) are handled by the misfit strategy:
//! * `stratum`: the misfits are the stratum's last partial block; they receive the first
//!   s mod L entries of one random permutation of the mask (a draw without replacement).
//! * `global`: s mod L rows of each stratum, chosen at random, are pooled (in stratum order)
//!   and assigned like one more stratum.
//! * `none`: s mod L rows of each stratum, chosen at random, stay unassigned.
//!
//! All randomness comes from one [`SeededRng`] in a fixed order (strata by id, blocks in
//! order), so the result depends only on the rows' ids, their strata, the design and the seed.

use super::rng::SeededRng;

/// Marks a row left unassigned (misfit strategy `none`).
pub const UNASSIGNED: u32 = u32::MAX;

/// Assign rows to arms by blocks within strata.
///
/// `order`: the row indices sorted by participant id; `stratum[row]`: the row's stratum id
/// (< `n_strata`); `mask`: the block mask. Returns the arm per row (or [`UNASSIGNED`]).
pub fn stochatreat(
    order: &[u32],
    stratum: &[u32],
    n_strata: u32,
    mask: &[u32],
    misfit: super::MisfitStrategy,
    rng: &mut SeededRng,
) -> Vec<u32> {
    use super::MisfitStrategy as M;
    let n = order.len();
    let l = mask.len();
    let mut arm = vec![UNASSIGNED; n];
    // Counting sort of the id-ordered rows by stratum (stable: id order within a stratum).
    let mut start = vec![0usize; n_strata as usize + 1];
    for &r in order {
        start[stratum[r as usize] as usize + 1] += 1;
    }
    for s in 0..n_strata as usize {
        start[s + 1] += start[s];
    }
    let mut grouped = vec![0u32; n];
    let mut fill = start.clone();
    for &r in order {
        let s = stratum[r as usize] as usize;
        grouped[fill[s]] = r;
        fill[s] += 1;
    }
    drop(fill);

    let mut perm: Vec<u32> = mask.to_vec();
    let mut pool: Vec<u32> = Vec::new();
    for s in 0..n_strata as usize {
        let rows = &mut grouped[start[s]..start[s + 1]];
        let misfits = rows.len() % l;
        let full = rows.len() - misfits;
        let (blocks, rest) = if misfit == M::Stratum {
            rows.split_at_mut(full)
        } else {
            // A random choice of the misfits goes to the front.
            rng.choose(rows, misfits);
            let (a, b) = rows.split_at_mut(misfits);
            (b, a)
        };
        for block in blocks.chunks_exact(l) {
            assign_block(block, &mut perm, rng, &mut arm);
        }
        match misfit {
            M::Stratum => assign_block(rest, &mut perm, rng, &mut arm),
            M::Global => pool.extend_from_slice(rest),
            M::None => {}
        }
    }
    if misfit == M::Global {
        for block in pool.chunks(l) {
            assign_block(block, &mut perm, rng, &mut arm);
        }
    }
    arm
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

/// Give `rows` (at most one block) the first entries of a fresh random permutation of the mask.
fn assign_block(rows: &[u32], perm: &mut [u32], rng: &mut SeededRng, arm: &mut [u32]) {
    if rows.is_empty() {
        return;
    }
    if rows.len() == perm.len() {
        rng.shuffle(perm);
    } else {
        rng.choose(perm, rows.len());
    }
    for (r, a) in rows.iter().zip(perm.iter()) {
        arm[*r as usize] = *a;
    }
}

/// Complete random assignment: exactly `counts[i]` rows to arm i (Σcounts = rows), the
/// id-ordered rows receiving a uniformly random permutation of the count mask.
pub fn complete_random(order: &[u32], counts: &[u64], rng: &mut SeededRng) -> Vec<u32> {
    let mut mask: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize))
        .collect();
    debug_assert_eq!(mask.len(), order.len());
    rng.shuffle(&mut mask);
    let mut arm = vec![UNASSIGNED; order.len()];
    for (r, a) in order.iter().zip(mask) {
        arm[*r as usize] = a;
    }
    arm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::MisfitStrategy;
    use crate::assign::rng::STREAM_ASSIGN;

    #[test]
    fn reference_example_counts() {
        // 2 arms, strata sizes 5, 3, 2: per-stratum counts arm0+arm1 = 5, 3, 2, every full
        // pair split 1:1, so arm counts differ by at most one per stratum.
        let stratum: Vec<u32> = vec![0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        let order: Vec<u32> = (0..10).collect();
        for strat in [MisfitStrategy::Stratum, MisfitStrategy::Global] {
            for seed in 0..20 {
                let mut rng = SeededRng::new(seed, STREAM_ASSIGN);
                let arm = stochatreat(&order, &stratum, 3, &[0, 1], strat, &mut rng);
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
        let mut rng = SeededRng::new(1, STREAM_ASSIGN);
        let arm = stochatreat(&order, &stratum, 3, &[0, 1], MisfitStrategy::None, &mut rng);
        assert_eq!(arm.iter().filter(|a| **a == UNASSIGNED).count(), 2); // 5 mod 2 + 3 mod 2
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
    fn complete_random_counts() {
        let order: Vec<u32> = (0..7).rev().collect();
        let mut rng = SeededRng::new(9, STREAM_ASSIGN);
        let arm = complete_random(&order, &[2, 5], &mut rng);
        assert_eq!(arm.iter().filter(|a| **a == 0).count(), 2);
        assert_eq!(arm.iter().filter(|a| **a == 1).count(), 5);
    }
}
