//! Exact arithmetic for arm shares and cluster counts (docs/statistics.md#arm-allocation: 29/71
//! must not lose a unit to float truncation).
//!
//! Arm shares are `num_rational` fractions (`Ratio<i128>`, the type the assignment design uses),
//! read from the weights by [`crate::weights`]. Counts derived from them (`⌈n₁ / c⌉`,
//! `⌊N · c⌋`, cluster counts) are computed on big integers, so no input can overflow them;
//! callers bound the results by [`MAX_UNITS`].

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::{BigRational, Ratio};
use num_traits::ToPrimitive;

/// The most units a power check reports (10¹⁵, far beyond any experiment; integers up to here
/// are exact in a double).
pub const MAX_UNITS: i64 = 1_000_000_000_000_000;

/// The most arms a power check takes.
pub const MAX_ARMS: usize = 1000;

/// A `Ratio<i128>` as a big rational.
pub fn big(q: &Ratio<i128>) -> BigRational {
    BigRational::new(BigInt::from(*q.numer()), BigInt::from(*q.denom()))
}

/// A big rational as the nearest double (±inf beyond the range).
pub fn to_f64(q: &BigRational) -> f64 {
    q.to_f64().unwrap_or(f64::NAN)
}

/// An integer as `i64` when it is at most [`MAX_UNITS`] in size.
pub fn units(n: &BigInt) -> Option<i64> {
    n.to_i64().filter(|v| v.abs() <= MAX_UNITS)
}

/// The decimal `x`'s shortest round-trip form shows, exactly (`0.15` is 3/20, not the binary
/// fraction nearest to it). None for NaN and infinities.
pub fn decimal(x: f64) -> Option<BigRational> {
    if !x.is_finite() {
        return None;
    }
    crate::weights::parse_decimal(&format!("{x}")).ok()
}

/// How units are split between arms: arm 0 is the control (docs/statistics.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Arm shares as exact fractions summing to 1.
    shares: Vec<Ratio<i128>>,
}

impl Allocation {
    /// `k` equal arms (the caller bounds `k` by [`MAX_ARMS`]).
    pub fn equal(k: usize) -> Allocation {
        let k = k.clamp(1, MAX_ARMS);
        Allocation {
            shares: vec![Ratio::new(1, k as i128); k],
        }
    }

    /// Shares proportional to exact positive weights (see [`crate::weights::normalise`]).
    pub fn from_exact_weights(weights: &[Ratio<i128>]) -> Result<Allocation, String> {
        if weights.is_empty() {
            return Err("no weights".into());
        }
        Ok(Allocation {
            shares: crate::weights::normalise(weights)?,
        })
    }

    /// Shares proportional to positive, finite `weights`, each read as the decimal it shows
    /// (None if a weight is not positive and finite).
    #[cfg(test)]
    pub fn from_weights(weights: &[f64]) -> Option<Allocation> {
        let exact = weights
            .iter()
            .map(|w| crate::weights::parse_weight(&format!("{w}")).ok())
            .collect::<Option<Vec<_>>>()?;
        Allocation::from_exact_weights(&exact).ok()
    }

    pub fn n_arms(&self) -> usize {
        self.shares.len()
    }

    /// Every arm's share as an exact fraction.
    pub fn exact_shares(&self) -> &[Ratio<i128>] {
        &self.shares
    }

    /// The control arm's share `c`.
    pub fn control_share(&self) -> f64 {
        to_f64(&big(&self.shares[0]))
    }

    /// Each arm's share.
    pub fn arm_shares(&self) -> Vec<f64> {
        self.shares.iter().map(|q| to_f64(&big(q))).collect()
    }

    /// `r` = smallest treatment share / control share (1 for equal arms).
    pub fn arm_ratio(&self) -> f64 {
        let min = self.shares[1..].iter().min().unwrap_or(&self.shares[0]);
        to_f64(&(big(min) / big(&self.shares[0])))
    }

    /// Total units for `control_n` control units: `⌈control_n / c⌉`, exactly (None beyond
    /// [`MAX_UNITS`]).
    pub fn total_from_control(&self, control_n: i64) -> Option<i64> {
        let q = BigRational::from_integer(control_n.into()) / big(&self.shares[0]);
        units(&q.ceil().to_integer())
    }

    /// Control units out of `total`: `⌊total · c⌋`, exactly (29/71 of 100 is 29, not 28).
    pub fn control_from_total(&self, total: i64) -> i64 {
        let q = BigRational::from_integer(total.into()) * big(&self.shares[0]);
        // ⌊total · c⌋ ≤ total, so it fits.
        q.floor().to_integer().to_i64().unwrap_or(total)
    }

    /// `total` units split exactly by the shares: `⌊total · p_i⌋`, then one more to each of the
    /// arms with the largest remainders (ties: lower arm index first), as the assignment does.
    pub fn split(&self, total: i64) -> Vec<i64> {
        let total_big = BigInt::from(total);
        let mut counts = Vec::with_capacity(self.shares.len());
        let mut rems = Vec::with_capacity(self.shares.len());
        for (i, p) in self.shares.iter().enumerate() {
            let exact = big(p) * BigRational::from_integer(total_big.clone());
            let floor = exact.floor();
            rems.push((&exact - &floor, i));
            counts.push(floor.to_integer().to_i64().unwrap_or(0));
        }
        let left = total - counts.iter().sum::<i64>();
        rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in rems.into_iter().take(left.max(0) as usize) {
            counts[i] += 1;
        }
        counts
    }
}

/// `⌈x⌉` of a big rational as a big integer.
pub fn ceil(x: &BigRational) -> BigInt {
    x.ceil().to_integer()
}

/// `⌊x⌋` of a big rational as a big integer.
pub fn floor(x: &BigRational) -> BigInt {
    let (q, _) = x.numer().div_mod_floor(x.denom());
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_as_shown() {
        let q = |n: i64, d: i64| BigRational::new(n.into(), d.into());
        assert_eq!(decimal(33.3), Some(q(333, 10)));
        assert_eq!(decimal(0.15), Some(q(3, 20)));
        assert_eq!(decimal(-2.5), Some(q(-5, 2)));
        assert_eq!(decimal(100.0), Some(q(100, 1)));
        assert_eq!(ceil(&q(7, 2)), 4.into());
        assert_eq!(ceil(&q(-7, 2)), (-3).into());
        assert_eq!(floor(&q(-7, 2)), (-4).into());
        assert!(decimal(1e308).is_some());
        assert_eq!(decimal(f64::INFINITY), None);
    }

    #[test]
    fn weights_29_71_lose_no_unit() {
        let a = Allocation::from_weights(&[29.0, 71.0]).unwrap();
        // In floats 100 * (29/100) = 28.999999999999996 and truncation gives 28.
        assert_eq!((100.0 * (29.0 / 100.0)) as i64, 28);
        assert_eq!(a.control_from_total(100), 29);
        assert_eq!(a.control_from_total(200), 58);
        assert_eq!(a.total_from_control(29), Some(100));
        let b = Allocation::from_weights(&[33.3, 66.7]).unwrap();
        assert_eq!(b.exact_shares()[0], Ratio::new(333, 1000));
        assert_eq!(b.control_from_total(1000), 333);
        assert_eq!(b.total_from_control(333), Some(1000));
        assert!((b.arm_ratio() - 667.0 / 333.0).abs() < 1e-15);
    }

    #[test]
    fn equal_arms_and_min_ratio() {
        let a = Allocation::equal(4);
        assert_eq!(a.total_from_control(64), Some(256));
        assert_eq!(a.arm_ratio(), 1.0);
        let w = Allocation::from_weights(&[20.0, 20.0, 60.0]).unwrap();
        assert_eq!(w.arm_ratio(), 1.0);
        assert_eq!(w.control_share(), 0.2);
        assert!(Allocation::from_weights(&[20.0, 0.0]).is_none());
        assert!(Allocation::from_weights(&[20.0, f64::NAN]).is_none());
    }

    #[test]
    fn totals_beyond_max_units_are_none_not_wrapped() {
        let w = [Ratio::new(1, 1_000_000), Ratio::new(999_999_999_999, 1)];
        let a = Allocation::from_exact_weights(&w).unwrap();
        assert_eq!(a.total_from_control(2), None);
        assert!(a.arm_ratio() > 1e17);
    }

    #[test]
    fn split_is_largest_remainder() {
        let a = Allocation::from_weights(&[3.0, 1.0]).unwrap();
        assert_eq!(a.split(800), vec![600, 200]);
        let a = Allocation::equal(3);
        assert_eq!(a.split(10), vec![4, 3, 3]);
        // The Python tool's float thirds are exact thirds: 1000 units → 334, 333, 333.
        let w = crate::weights::parse_weight("33.333333333333336").unwrap();
        let a = Allocation::from_exact_weights(&[w; 3]).unwrap();
        assert_eq!(a.split(1000), vec![334, 333, 333]);
    }
}
