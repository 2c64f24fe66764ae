//! Power functions (statsmodels semantics, two-sided) and their exact inverses.
//!
//! * [`ttest_power`]: `TTestIndPower.power` — two-sample t-test with the noncentral t.
//! * [`ztest_power`]: `NormalIndPower.power` — two-sample z-test.
//! * [`solve_n1_ttest`], [`solve_n1_ztest`]: the control-arm size giving the target power.
//! * [`solve_effect_ttest`], [`solve_effect_ztest`]: the (positive) effect size giving the target
//!   power at a control-arm size.
//!
//! Roots are found with Brent's method on a bracket that is widened until the sign changes,
//! to a relative tolerance of about 1e-13, not statsmodels' absolute 1e-5 (docs/compatibility.md).

use super::nct::{nct_cdf, nct_sf, norm_cdf, norm_isf, t_isf};

/// Why a power calculation could not be done (the texts are the reference's).
#[derive(Debug, Clone, PartialEq)]
pub enum SolveError {
    /// `Cannot detect an effect-size of 0. Try changing your effect-size.`
    ZeroEffect,
    /// `Your sample size is too small for the power calculation. Increase it and try again.`
    TooSmall,
    /// `Unable to perform the power calculation. Adjust your sample, effect size, power, or
    /// confidence values and try again.`
    NoRoot,
    /// The effect is so small that the sample it needs exceeds [`MAX_N`] control units.
    TooLarge,
}

/// The largest control-arm size the solvers search (10¹⁵; see `exact::MAX_UNITS`).
pub const MAX_N: f64 = 1e15;

impl std::fmt::Display for SolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SolveError::ZeroEffect => "Cannot detect an effect-size of 0. Try changing your effect-size.",
            SolveError::TooSmall => "Your sample size is too small for the power calculation. Increase it and try again.",
            SolveError::NoRoot => {
                "Unable to perform the power calculation. Adjust your sample, effect size, power, or confidence values and try again."
            }
            SolveError::TooLarge => {
                "The effect is too small to detect with any sample size this tool represents (more than 10^15 units per arm); choose a larger effect."
            }
        })
    }
}

impl std::error::Error for SolveError {}

/// Power of the two-sided two-sample t-test with `n1` control units, `ratio·n1` treatment
/// units and standardized effect `d`: `1 − F(c; ν, λ) + F(−c; ν, λ)` with `ν = n1 + n2 − 2`,
/// `λ = |d| √(n1 n2 / (n1 + n2))`, `c = t⁻¹_ν(1 − α/2)`. NaN when `ν ≤ 0`.
pub fn ttest_power(d: f64, n1: f64, ratio: f64, alpha: f64) -> f64 {
    let n2 = n1 * ratio;
    let df = n1 + n2 - 2.0;
    if df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    let nc = d.abs() * (n1 * n2 / (n1 + n2)).sqrt();
    let crit = t_isf(alpha / 2.0, df);
    nct_sf(crit, df, nc) + nct_cdf(-crit, df, nc)
}

/// Power of the two-sided two-sample z-test: `Φ(|h|√n − z) + Φ(−z − |h|√n)` with
/// `n = n1·r/(1 + r)` and `z = Φ⁻¹(1 − α/2)`.
pub fn ztest_power(h: f64, n1: f64, ratio: f64, alpha: f64) -> f64 {
    let neff = n1 * ratio / (1.0 + ratio);
    let z = norm_isf(alpha / 2.0);
    let shift = h.abs() * neff.sqrt();
    norm_cdf(shift - z) + norm_cdf(-z - shift)
}

/// Brent's method for `f(x) = 0` on `[a, b]` with `f(a)·f(b) ≤ 0`.
pub fn brent(mut f: impl FnMut(f64) -> f64, a: f64, b: f64, rel_tol: f64) -> Option<f64> {
    let (mut a, mut b) = (a, b);
    let (mut fa, mut fb) = (f(a), f(b));
    if fa.is_nan() || fb.is_nan() {
        return None;
    }
    if fa == 0.0 {
        return Some(a);
    }
    if fb == 0.0 {
        return Some(b);
    }
    if fa.signum() == fb.signum() {
        return None;
    }
    let (mut c, mut fc) = (a, fa);
    let mut d = b - a;
    let mut e = d;
    for _ in 0..500 {
        if fb.signum() == fc.signum() {
            c = a;
            fc = fa;
            d = b - a;
            e = d;
        }
        if fc.abs() < fb.abs() {
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol = 2.0 * f64::EPSILON * b.abs() + 0.5 * rel_tol * b.abs().max(1e-300);
        let m = 0.5 * (c - b);
        if m.abs() <= tol || fb == 0.0 {
            return Some(b);
        }
        if e.abs() >= tol && fa.abs() > fb.abs() {
            let s = fb / fa;
            let (mut p, mut q);
            if a == c {
                p = 2.0 * m * s;
                q = 1.0 - s;
            } else {
                let qq = fa / fc;
                let r = fb / fc;
                p = s * (2.0 * m * qq * (qq - r) - (b - a) * (r - 1.0));
                q = (qq - 1.0) * (r - 1.0) * (s - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if 2.0 * p < (3.0 * m * q - (tol * q).abs()).min((e * q).abs()) {
                e = d;
                d = p / q;
            } else {
                d = m;
                e = m;
            }
        } else {
            d = m;
            e = m;
        }
        a = b;
        fa = fb;
        b += if d.abs() > tol { d } else { tol.copysign(m) };
        fb = f(b);
        if fb.is_nan() {
            return None;
        }
    }
    Some(b)
}

const REL_TOL: f64 = 1e-13;

/// Widen `hi` (×2 each time, up to `limit`) until `f(hi) > 0`; `TooLarge` past the limit.
fn expand_up(f: &mut impl FnMut(f64) -> f64, mut hi: f64, limit: f64) -> Result<f64, SolveError> {
    // Doubling from any positive double passes any limit within 2100 steps.
    for _ in 0..2100 {
        let v = f(hi);
        if v.is_nan() {
            return Err(SolveError::NoRoot);
        }
        if v > 0.0 {
            return Ok(hi);
        }
        if hi.is_nan() || hi > limit {
            return Err(SolveError::TooLarge);
        }
        hi *= 2.0;
    }
    Err(SolveError::NoRoot)
}

/// The normal-approximation control size: a starting guess for the brackets.
fn normal_guess_n1(effect: f64, ratio: f64, alpha: f64, power: f64) -> f64 {
    let z = norm_isf(alpha / 2.0) + norm_isf(1.0 - power);
    (z / effect).powi(2) * (1.0 + ratio) / ratio
}

/// The (real) control-arm size at which the t-test reaches `power`.
pub fn solve_n1_ttest(d: f64, ratio: f64, alpha: f64, power: f64) -> Result<f64, SolveError> {
    if d == 0.0 {
        return Err(SolveError::ZeroEffect);
    }
    let mut f = |n1: f64| ttest_power(d, n1, ratio, alpha) - power;
    // The smallest control size with at least one degree of freedom.
    let mut lo = 3.0 / (1.0 + ratio);
    if f(lo) >= 0.0 {
        // Tiny designs: go down towards ν → 0.
        let tiny = 2.001 / (1.0 + ratio);
        let at_tiny = f(tiny);
        // NaN: a huge effect whose critical value at ν → 0 overflows; the power is 1 from the
        // first degree of freedom on, so the root is at the bottom (the integer size is
        // checked against the power function by the caller).
        if at_tiny >= 0.0 || at_tiny.is_nan() {
            return Ok(tiny);
        }
        return brent(f, tiny, lo, REL_TOL).ok_or(SolveError::NoRoot);
    }
    let guess = normal_guess_n1(d.abs(), ratio, alpha, power);
    if guess.is_nan() || guess > MAX_N {
        return Err(SolveError::TooLarge);
    }
    let mut hi = (guess * 1.1).max(lo * 2.0);
    hi = expand_up(&mut f, hi, MAX_N)?;
    if guess * 0.9 > lo && f(guess * 0.9) < 0.0 {
        lo = guess * 0.9;
    }
    brent(f, lo, hi, REL_TOL).ok_or(SolveError::NoRoot)
}

/// The (real) control-arm size at which the z-test reaches `power`.
pub fn solve_n1_ztest(h: f64, ratio: f64, alpha: f64, power: f64) -> Result<f64, SolveError> {
    if h == 0.0 {
        return Err(SolveError::ZeroEffect);
    }
    let mut f = |n1: f64| ztest_power(h, n1, ratio, alpha) - power;
    let guess = normal_guess_n1(h.abs(), ratio, alpha, power);
    if guess.is_nan() || guess > MAX_N {
        return Err(SolveError::TooLarge);
    }
    let mut lo = guess * 0.5;
    while f(lo) >= 0.0 {
        lo *= 0.5;
        if lo < 1e-300 {
            return Err(SolveError::NoRoot);
        }
    }
    let hi = expand_up(&mut f, guess * 1.5, MAX_N)?;
    brent(f, lo, hi, REL_TOL).ok_or(SolveError::NoRoot)
}

/// The positive standardized effect the t-test detects with `power` at `n1` control units.
pub fn solve_effect_ttest(n1: f64, ratio: f64, alpha: f64, power: f64) -> Result<f64, SolveError> {
    if n1.is_nan() || n1 <= 0.0 || n1 * (1.0 + ratio) - 2.0 <= 0.0 {
        return Err(SolveError::TooSmall);
    }
    solve_effect(
        |d: f64| ttest_power(d, n1, ratio, alpha) - power,
        n1,
        ratio,
        alpha,
        power,
    )
}

/// The positive standardized effect (Cohen's h) the z-test detects with `power` at `n1`.
pub fn solve_effect_ztest(n1: f64, ratio: f64, alpha: f64, power: f64) -> Result<f64, SolveError> {
    if n1.is_nan() || n1 <= 0.0 {
        return Err(SolveError::TooSmall);
    }
    solve_effect(
        |h: f64| ztest_power(h, n1, ratio, alpha) - power,
        n1,
        ratio,
        alpha,
        power,
    )
}

/// The positive root of `f` (power at an effect minus the target), bracketed around the
/// normal-approximation guess for `n1`. No root when the power at effect 0 already reaches
/// the target (or is not a number).
fn solve_effect(
    mut f: impl FnMut(f64) -> f64,
    n1: f64,
    ratio: f64,
    alpha: f64,
    power: f64,
) -> Result<f64, SolveError> {
    let at_zero = f(0.0);
    if at_zero.is_nan() || at_zero >= 0.0 {
        return Err(SolveError::NoRoot);
    }
    let guess = (normal_guess_n1(1.0, ratio, alpha, power) / n1).sqrt();
    let hi = expand_up(&mut f, guess * 1.2, 1e6).map_err(|_| SolveError::NoRoot)?;
    let lo = if f(guess * 0.8) < 0.0 && guess * 0.8 < hi {
        guess * 0.8
    } else {
        0.0
    };
    brent(f, lo, hi, REL_TOL).ok_or(SolveError::NoRoot)
}

/// Cohen's d: `(target − baseline) / σ`.
pub fn cohens_d(baseline: f64, target: f64, stddev: f64) -> f64 {
    (target - baseline) / stddev
}

/// Cohen's h as statsmodels' `proportion_effectsize(baseline, target)`:
/// `2 asin √baseline − 2 asin √target` (negative when the target is above the baseline).
pub fn cohens_h(baseline: f64, target: f64) -> f64 {
    2.0 * baseline.sqrt().asin() - 2.0 * target.sqrt().asin()
}
