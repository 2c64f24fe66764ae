//! Quantile binning with pandas `qcut(x, q, labels=False, duplicates="drop")` semantics.
//!
//! * Edges are the sample quantiles of the non-null values at the probabilities of
//!   `numpy.linspace(0, 1, q + 1)`, computed as pandas does (`Series.quantile` → numpy
//!   `nanpercentile(values, 100·p)` with method `linear`): virtual index (n−1)·p, linear
//!   interpolation with numpy's two-sided `_lerp` (a + (b−a)·t for t < 0.5, b − (b−a)·(1−t)
//!   otherwise).
//! * Duplicate edges are dropped.
//! * Bins are right-closed, `(e[k-1], e[k]]`, and the lowest edge is included in the first bin;
//!   labels are 0 … #bins−1. NULL (and NaN) values get no label.

/// The bin edges of the non-null values `sorted` (ascending, no NaN) for `q` quantiles.
pub fn edges(sorted: &[f64], q: u32) -> Vec<f64> {
    edges_by(sorted.len(), q, |i| sorted[i])
}

/// The interpolation points of the `q + 1` edges over `n` sorted values: for each, the ranks
/// (0-based) of the two order statistics around the virtual index (n−1)·p and the fraction t
/// between them.
fn points(n: usize, q: u32) -> impl Iterator<Item = (usize, usize, f64)> {
    let step = 1.0 / q as f64;
    (0..=q).map(move |j| {
        // numpy.linspace: j * step, the last point set to stop exactly.
        let p = if j == q { 1.0 } else { j as f64 * step };
        // nanpercentile(values, p * 100) divides by 100 again.
        let p = (p * 100.0) / 100.0;
        let virt = (n - 1) as f64 * p;
        let lo = virt.floor();
        let t = virt - lo;
        let lo = (lo as usize).min(n - 1);
        (lo, (lo + 1).min(n - 1), t)
    })
}

/// The ranks (0-based, ascending, distinct) of the order statistics that the edges of `n`
/// non-null values for `q` quantiles read: what a warehouse returns for [`edges_by`].
pub fn ranks(n: usize, q: u32) -> Vec<usize> {
    if n == 0 || q == 0 {
        return Vec::new();
    }
    let mut r: Vec<usize> = points(n, q).flat_map(|(lo, hi, _)| [lo, hi]).collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// [`edges`] of `n` sorted values of which `at(rank)` gives the order statistics named by
/// [`ranks`] (the only ones it reads): the same arithmetic wherever the values live.
pub fn edges_by(n: usize, q: u32, at: impl Fn(usize) -> f64) -> Vec<f64> {
    if n == 0 || q == 0 {
        return Vec::new();
    }
    let mut out: Vec<f64> = Vec::with_capacity(q as usize + 1);
    for (lo, hi, t) in points(n, q) {
        let (a, b) = (at(lo), at(hi));
        let d = b - a;
        let e = if t >= 0.5 {
            b - d * (1.0 - t)
        } else {
            a + d * t
        };
        if out.last() != Some(&e) {
            out.push(e);
        }
    }
    out
}

/// The bin label of `x` for `edges` (as returned by [`edges`], at least two of them).
pub fn label(edges: &[f64], x: f64) -> u32 {
    // searchsorted(side="left"): the first index k with edges[k] >= x.
    let k = edges.partition_point(|e| *e < x);
    if k == 0 {
        0 // x == edges[0] (include_lowest)
    } else {
        (k.min(edges.len() - 1) - 1) as u32
    }
}

/// The number of quantiles actually computed for `n` non-null values: at most `2n`. From
/// `n − 1` quantiles on, every interval between two consecutive sorted values holds an edge, so
/// every distinct value is its own bin; at `2n` each interval holds an edge strictly inside it
/// whatever the rounding, so asking for more changes no row's bin (only the bins' numbering,
/// and the numbering keeps the values' order). This bounds the work and memory by the data,
/// not by the `q` asked for.
pub fn effective_quantiles(q: u32, n: usize) -> u32 {
    let cap = u32::try_from(n.saturating_mul(2)).unwrap_or(u32::MAX);
    q.min(cap.max(1))
}

/// Bin labels for a column (`None` = NULL or NaN stays unlabeled). Returns the labels and the
/// number of bins. `q` is bounded by [`effective_quantiles`].
pub fn qcut(values: &[Option<f64>], q: u32) -> (Vec<Option<u32>>, u32) {
    let mut sorted: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    let e = edges(&sorted, effective_quantiles(q, sorted.len()));
    if e.len() < 2 {
        let labels = values
            .iter()
            .map(|v| v.filter(|x| !x.is_nan()).map(|_| 0))
            .collect();
        return (labels, 1);
    }
    let labels = values
        .iter()
        .map(|v| v.filter(|x| !x.is_nan()).map(|x| label(&e, x)))
        .collect();
    (labels, (e.len() - 1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_like_pandas() {
        // pd.qcut([1,2,3,4,5,6,7,8], 4, labels=False) -> [0,0,1,1,2,2,3,3]
        // edges: 1, 2.75, 4.5, 6.25, 8
        let v: Vec<Option<f64>> = (1..=8).map(|i| Some(i as f64)).collect();
        let (l, b) = qcut(&v, 4);
        assert_eq!(b, 4);
        let l: Vec<u32> = l.into_iter().map(Option::unwrap).collect();
        assert_eq!(l, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        let mut s: Vec<f64> = (1..=8).map(f64::from).collect();
        s.sort_by(f64::total_cmp);
        assert_eq!(edges(&s, 4), vec![1.0, 2.75, 4.5, 6.25, 8.0]);
    }

    #[test]
    fn duplicate_edges_dropped_right_closed() {
        // pd.qcut([1,1,1,1,2,3], 4, labels=False, duplicates="drop"):
        // quantiles 1, 1, 1, 1.75, 3 -> edges [1, 1.75, 3] -> labels [0,0,0,0,1,1]
        let v: Vec<Option<f64>> = [1., 1., 1., 1., 2., 3.].iter().map(|x| Some(*x)).collect();
        let (l, b) = qcut(&v, 4);
        assert_eq!(b, 2);
        assert_eq!(
            l,
            vec![Some(0), Some(0), Some(0), Some(0), Some(1), Some(1)]
        );
    }

    #[test]
    fn nulls_stay_unlabeled_and_boundaries_right_closed() {
        // pd.qcut([0, 10, None, 5, 2.5, 7.5], 2, labels=False) -> edges [0, 5, 10]
        // -> [0, 1, NaN, 0, 0, 1]  (5 is in (0, 5])
        let v = vec![Some(0.0), Some(10.0), None, Some(5.0), Some(2.5), Some(7.5)];
        let (l, b) = qcut(&v, 2);
        assert_eq!(b, 2);
        assert_eq!(l, vec![Some(0), Some(1), None, Some(0), Some(0), Some(1)]);
    }

    #[test]
    fn huge_quantiles_allocate_by_the_data_and_give_the_same_bins() {
        // --quantiles 4294967295 / 4000000000 used to allocate q + 1 edges (34 GB) up front.
        // Any q from 2n on puts every distinct value in its own bin, in value order.
        let v: Vec<Option<f64>> = [5., 1., 3., 3., 9., 7.5, 1., 2.]
            .iter()
            .map(|x| Some(*x))
            .chain([None])
            .collect();
        let want = qcut(&v, 16).0;
        for q in [u32::MAX, 4_000_000_000, 1_000_000, 17] {
            let (l, bins) = qcut(&v, q);
            // Same partition and same order of bins as with q = 16 (= 2n).
            for (a, b) in l.iter().zip(&v) {
                for (c, d) in l.iter().zip(&v) {
                    if let (Some(a), Some(c), Some(b), Some(d)) = (a, c, b, d) {
                        assert_eq!(a.cmp(c), b.total_cmp(d), "q {q}");
                    }
                }
            }
            assert_eq!(l.iter().filter(|x| x.is_none()).count(), 1);
            assert!(bins <= 17, "q {q}: {bins} bins");
        }
        assert_eq!(
            want.iter().flatten().max(),
            qcut(&v, u32::MAX).0.iter().flatten().max()
        );
        assert_eq!(effective_quantiles(u32::MAX, 8), 16);
        assert_eq!(effective_quantiles(4, 8), 4);
        assert_eq!(effective_quantiles(4, 0), 1);
    }

    #[test]
    fn edges_from_the_order_statistics_alone_equal_the_edges_of_all_values() {
        let mut s: Vec<f64> = (0..97)
            .map(|i| ((i * 37) % 23) as f64 * 1.5 - 4.0)
            .collect();
        s.sort_by(f64::total_cmp);
        for q in [1, 2, 3, 4, 5, 10, 96, 194] {
            let r = ranks(s.len(), q);
            assert!(r.len() <= 2 * (q as usize + 1) && r.is_sorted(), "{r:?}");
            let only = |i: usize| {
                assert!(r.binary_search(&i).is_ok(), "rank {i} not listed for q {q}");
                s[i]
            };
            assert_eq!(edges_by(s.len(), q, only), edges(&s, q), "q {q}");
        }
        assert_eq!(ranks(1, 4), vec![0]);
        assert!(ranks(0, 4).is_empty());
    }

    #[test]
    fn tertiles_interpolate_like_numpy() {
        // numpy.quantile([3, 1, 4, 1, 5, 9, 2, 6], [0, 1/3, 2/3, 1]) = [1, 2.3333.., 4.6666.., 9]
        let mut s = vec![3., 1., 4., 1., 5., 9., 2., 6.];
        s.sort_by(f64::total_cmp);
        let e = edges(&s, 3);
        assert_eq!(e.len(), 4);
        assert!(
            (e[1] - 7.0 / 3.0).abs() < 1e-12 && (e[2] - 14.0 / 3.0).abs() < 1e-12,
            "{e:?}"
        );
    }
}
