//! Exact arithmetic for arm shares and cluster counts (docs/statistics.md#arm-allocation: 29/71
//! must not lose a unit to float truncation).
//!
//! Inputs arrive as `f64`; each is read as the decimal its shortest round-trip form shows
//! (`33.3` is 333/10, not the binary fraction nearest to it), then all arithmetic is done on
//! `i128` fractions. If a fraction ever overflows (absurd inputs with dozens of digits) the
//! callers fall back to `f64` arithmetic.

use num_integer::Integer;

/// A fraction `n/d` with `d > 0`, kept reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Q {
    pub n: i128,
    pub d: i128,
}

impl Q {
    pub fn int(n: i128) -> Q {
        Q { n, d: 1 }
    }

    pub fn new(n: i128, d: i128) -> Option<Q> {
        if d == 0 {
            return None;
        }
        let g = n.gcd(&d);
        let (mut n, mut d) = (n / g.max(1), d / g.max(1));
        if d < 0 {
            n = n.checked_neg()?;
            d = d.checked_neg()?;
        }
        Some(Q { n, d })
    }

    /// The decimal shown by `x`'s shortest round-trip form, exactly.
    pub fn from_f64(x: f64) -> Option<Q> {
        if !x.is_finite() {
            return None;
        }
        let s = format!("{x}");
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 || frac.len() > 36 {
            return None;
        }
        let n: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let d = 10i128.checked_pow(frac.len() as u32)?;
        Q::new(if neg { -n } else { n }, d)
    }

    pub fn checked_add(self, o: Q) -> Option<Q> {
        Q::new(
            self.n
                .checked_mul(o.d)?
                .checked_add(o.n.checked_mul(self.d)?)?,
            self.d.checked_mul(o.d)?,
        )
    }
    pub fn checked_sub(self, o: Q) -> Option<Q> {
        self.checked_add(Q {
            n: o.n.checked_neg()?,
            d: o.d,
        })
    }
    pub fn checked_mul(self, o: Q) -> Option<Q> {
        let g1 = self.n.gcd(&o.d).max(1);
        let g2 = o.n.gcd(&self.d).max(1);
        Q::new(
            (self.n / g1).checked_mul(o.n / g2)?,
            (self.d / g2).checked_mul(o.d / g1)?,
        )
    }
    pub fn checked_div(self, o: Q) -> Option<Q> {
        if o.n == 0 {
            return None;
        }
        self.checked_mul(Q { n: o.d, d: o.n })
    }
    pub fn floor(self) -> i128 {
        Integer::div_floor(&self.n, &self.d)
    }
    pub fn ceil(self) -> i128 {
        -Integer::div_floor(&(-self.n), &self.d)
    }
    pub fn to_f64(self) -> f64 {
        self.n as f64 / self.d as f64
    }
}

/// How units are split between arms: arm 0 is the control (docs/statistics.md#arm-allocation).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Arm shares as exact fractions summing to 1.
    shares: Vec<Q>,
    /// The same shares as floats, for when exact arithmetic overflows.
    float_shares: Vec<f64>,
}

impl Allocation {
    /// `k` equal arms.
    pub fn equal(k: usize) -> Allocation {
        let k = k.max(1);
        Allocation {
            shares: vec![Q { n: 1, d: k as i128 }; k],
            float_shares: vec![1.0 / k as f64; k],
        }
    }

    /// Shares proportional to positive, finite `weights` (they need not sum to 100).
    /// Returns None if a weight is not positive and finite.
    pub fn from_weights(weights: &[f64]) -> Option<Allocation> {
        if weights.is_empty() || weights.iter().any(|w| !w.is_finite() || *w <= 0.0) {
            return None;
        }
        let total: f64 = weights.iter().sum();
        let float_shares: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let exact = (|| {
            let qs = weights
                .iter()
                .map(|w| Q::from_f64(*w))
                .collect::<Option<Vec<Q>>>()?;
            let mut sum = Q::int(0);
            for q in &qs {
                sum = sum.checked_add(*q)?;
            }
            qs.iter()
                .map(|q| q.checked_div(sum))
                .collect::<Option<Vec<Q>>>()
        })();
        let shares = exact.unwrap_or_default();
        Some(Allocation {
            shares,
            float_shares,
        })
    }

    pub fn n_arms(&self) -> usize {
        self.float_shares.len()
    }

    fn exact(&self) -> Option<&[Q]> {
        if self.shares.is_empty() {
            None
        } else {
            Some(&self.shares)
        }
    }

    /// Every arm's share as an exact fraction (None if the weights could not be read exactly).
    pub fn exact_shares(&self) -> Option<&[Q]> {
        self.exact()
    }

    /// The control arm's share `c`.
    pub fn control_share(&self) -> f64 {
        match self.exact() {
            Some(s) => s[0].to_f64(),
            None => self.float_shares[0],
        }
    }

    /// Each arm's share.
    pub fn arm_shares(&self) -> Vec<f64> {
        match self.exact() {
            Some(s) => s.iter().map(|q| q.to_f64()).collect(),
            None => self.float_shares.clone(),
        }
    }

    /// `r` = smallest treatment share / control share (1 for equal arms).
    pub fn arm_ratio(&self) -> f64 {
        match self.exact() {
            Some(s) => {
                let min = s[1..]
                    .iter()
                    .copied()
                    .min_by(|a, b| (a.n * b.d).cmp(&(b.n * a.d)))
                    .unwrap_or(s[0]);
                min.checked_div(s[0]).map(Q::to_f64).unwrap_or(f64::NAN)
            }
            None => {
                let min = self.float_shares[1..]
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                min / self.float_shares[0]
            }
        }
    }

    /// Total units for `control_n` control units: `⌈control_n / c⌉`, exactly.
    pub fn total_from_control(&self, control_n: i64) -> i64 {
        if let Some(s) = self.exact()
            && let Some(q) = Q::int(control_n as i128).checked_div(s[0])
        {
            return q.ceil() as i64;
        }
        (control_n as f64 / self.float_shares[0]).ceil() as i64
    }

    /// Control units out of `total`: `⌊total · c⌋`, exactly (29/71 of 100 is 29, not 28).
    pub fn control_from_total(&self, total: i64) -> i64 {
        if let Some(s) = self.exact()
            && let Some(q) = Q::int(total as i128).checked_mul(s[0])
        {
            return q.floor() as i64;
        }
        (total as f64 * self.float_shares[0]).floor() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_as_shown() {
        assert_eq!(Q::from_f64(33.3), Some(Q { n: 333, d: 10 }));
        assert_eq!(Q::from_f64(0.15), Some(Q { n: 3, d: 20 }));
        assert_eq!(Q::from_f64(-2.5), Some(Q { n: -5, d: 2 }));
        assert_eq!(Q::from_f64(100.0), Some(Q::int(100)));
        assert_eq!(Q::new(7, 2).unwrap().ceil(), 4);
        assert_eq!(Q::new(-7, 2).unwrap().ceil(), -3);
        assert_eq!(Q::new(-7, 2).unwrap().floor(), -4);
    }

    #[test]
    fn weights_29_71_lose_no_unit() {
        let a = Allocation::from_weights(&[29.0, 71.0]).unwrap();
        // In floats 100 * (29/100) = 28.999999999999996 and truncation gives 28.
        assert_eq!((100.0 * (29.0 / 100.0)) as i64, 28);
        assert_eq!(a.control_from_total(100), 29);
        assert_eq!(a.control_from_total(200), 58);
        assert_eq!(a.total_from_control(29), 100);
        let b = Allocation::from_weights(&[33.3, 66.7]).unwrap();
        assert_eq!(b.exact_shares().unwrap()[0], Q { n: 333, d: 1000 });
        assert_eq!(b.control_from_total(1000), 333);
        assert_eq!(b.total_from_control(333), 1000);
        assert!((b.arm_ratio() - 667.0 / 333.0).abs() < 1e-15);
    }

    #[test]
    fn equal_arms_and_min_ratio() {
        let a = Allocation::equal(4);
        assert_eq!(a.total_from_control(64), 256);
        assert_eq!(a.arm_ratio(), 1.0);
        let w = Allocation::from_weights(&[20.0, 20.0, 60.0]).unwrap();
        assert_eq!(w.arm_ratio(), 1.0);
        assert_eq!(w.control_share(), 0.2);
        assert!(Allocation::from_weights(&[20.0, 0.0]).is_none());
        assert!(Allocation::from_weights(&[20.0, f64::NAN]).is_none());
    }
}
