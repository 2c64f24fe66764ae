//! Arm weights as the Python tool accepts them: decimals (`20`, `0.29`, `33.333333333333336`,
//! `1e-3`) and fractions (`1/3`), each converted to the closest fraction with denominator at
//! most 10⁶ (Python's `Fraction.limit_denominator`, as stochatreat does), then normalised
//! exactly into arm shares.
//!
//! So `33.333333333333336` three times is exactly a third each, and `0.29,0.71` is exactly
//! 29/100 and 71/100. A weight below 1/2·10⁻⁶ becomes 0 and is refused.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::{BigRational, Ratio};
use num_traits::{CheckedAdd, CheckedDiv, One, Signed, ToPrimitive, Zero};

/// The largest denominator a weight keeps (stochatreat's `limit_denominator()` default).
pub const MAX_DENOMINATOR: i64 = 1_000_000;

/// Longest weight text accepted (a float's repr is at most 24 characters).
const MAX_TEXT: usize = 64;

/// Largest decimal exponent accepted in a weight (`1e30`): bounds the exact arithmetic.
const MAX_EXPONENT: i64 = 30;

/// The exact value of a decimal (`-12.5`, `.5`, `3e-4`, `1E+3`) or a fraction of two such
/// decimals (`1/3`). Errors say what is wrong, for the caller to prefix with the field.
pub fn parse_exact(s: &str) -> Result<BigRational, String> {
    let t = s.trim();
    if t.len() > MAX_TEXT {
        return Err(format!("a weight has at most {MAX_TEXT} characters"));
    }
    match t.split_once('/') {
        Some((n, d)) => {
            let n = parse_decimal(n)?;
            let d = parse_decimal(d)?;
            if d.is_zero() {
                return Err("the denominator is 0".into());
            }
            Ok(n / d)
        }
        None => parse_decimal(t),
    }
}

/// The exact value of a decimal (`-12.5`, `.5`, `3e-4`), of any length (exponents up to 30).
pub fn parse_decimal(s: &str) -> Result<BigRational, String> {
    const NOT_A_NUMBER: &str =
        "not a number (give a decimal such as 33.3 or a fraction such as 1/3)";
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => {
            let e: i64 = e.parse().map_err(|_| NOT_A_NUMBER.to_string())?;
            if e.abs() > MAX_EXPONENT {
                return Err(format!(
                    "the exponent {e} is out of range (at most {MAX_EXPONENT} either way)"
                ));
            }
            (m, e)
        }
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(NOT_A_NUMBER.into());
    }
    let digits: BigInt = format!("0{int}{frac}")
        .parse()
        .map_err(|_| NOT_A_NUMBER.to_string())?;
    let scale = exp - frac.len() as i64;
    let ten = BigInt::from(10);
    let mut value = if scale >= 0 {
        BigRational::from_integer(digits * num_traits::pow(ten, scale as usize))
    } else {
        BigRational::new(digits, num_traits::pow(ten, (-scale) as usize))
    };
    if neg {
        value = -value;
    }
    Ok(value)
}

/// The closest fraction to `x` with denominator at most `max_den` (Python's
/// `Fraction.limit_denominator`; a tie goes to the convergent, as there).
pub fn limit_denominator(x: &BigRational, max_den: &BigInt) -> BigRational {
    if x.denom() <= max_den {
        return x.clone();
    }
    let (mut p0, mut q0, mut p1, mut q1) =
        (BigInt::zero(), BigInt::one(), BigInt::one(), BigInt::zero());
    let (mut n, mut d) = (x.numer().clone(), x.denom().clone());
    loop {
        let a = n.div_floor(&d);
        let q2 = &q0 + &a * &q1;
        if &q2 > max_den {
            break;
        }
        let p2 = &p0 + &a * &p1;
        (p0, q0, p1, q1) = (p1, q1, p2, q2);
        let r = &n - &a * &d;
        (n, d) = (d, r);
    }
    let k = (max_den - &q0).div_floor(&q1);
    let bound1 = BigRational::new(&p0 + &k * &p1, &q0 + &k * &q1);
    let bound2 = BigRational::new(p1, q1);
    if (&bound2 - x).abs() <= (&bound1 - x).abs() {
        bound2
    } else {
        bound1
    }
}

/// One arm weight: its exact value limited to denominator 10⁶, positive, and small enough for
/// exact arithmetic (below 10¹⁸).
pub fn parse_weight(s: &str) -> Result<Ratio<i128>, String> {
    let exact = parse_exact(s)?;
    if !exact.is_positive() {
        return Err("every weight must be a positive number".into());
    }
    let limited = limit_denominator(&exact, &BigInt::from(MAX_DENOMINATOR));
    if limited.is_zero() {
        return Err(format!(
            "every weight must be at least 1/{} (weights are read as the closest fraction with \
             denominator at most {MAX_DENOMINATOR})",
            2 * MAX_DENOMINATOR
        ));
    }
    let (n, d) = (limited.numer().to_i128(), limited.denom().to_i128());
    match (n, d) {
        (Some(n), Some(d)) if n < 1_000_000_000_000_000_000 => Ok(Ratio::new(n, d)),
        _ => Err("every weight must be below 10^18".into()),
    }
}

/// Shares `w_i / Σw`, exactly. Errors when the sum cannot be formed exactly in 128 bits
/// (weights whose denominators have no common multiple below about 10³⁸).
pub fn normalise(weights: &[Ratio<i128>]) -> Result<Vec<Ratio<i128>>, String> {
    let overflow = || {
        "the weights' denominators are too unlike to split units exactly; use simpler weights \
         such as whole percentages"
            .to_string()
    };
    let mut total = Ratio::<i128>::zero();
    for w in weights {
        total = total.checked_add(w).ok_or_else(overflow)?;
    }
    weights
        .iter()
        .map(|w| w.checked_div(&total).ok_or_else(overflow))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i128, d: i128) -> Ratio<i128> {
        Ratio::new(n, d)
    }

    #[test]
    fn python_float_weights_become_the_fractions_they_stand_for() {
        assert_eq!(parse_weight("33.333333333333336"), Ok(q(100, 3)));
        assert_eq!(parse_weight("14.285714285714286"), Ok(q(100, 7)));
        assert_eq!(parse_weight("0.3333333333333333"), Ok(q(1, 3)));
        assert_eq!(parse_weight("1/6"), Ok(q(1, 6)));
        assert_eq!(parse_weight("0.29"), Ok(q(29, 100)));
        assert_eq!(parse_weight("33.3"), Ok(q(333, 10)));
        assert_eq!(parse_weight("20"), Ok(q(20, 1)));
        assert_eq!(parse_weight("2.5e1"), Ok(q(25, 1)));
        assert_eq!(parse_weight("1e-3"), Ok(q(1, 1000)));
    }

    #[test]
    fn limit_denominator_matches_python() {
        // Fraction('3.141592653589793').limit_denominator(1000) == Fraction(355, 113)
        let pi = parse_exact("3.141592653589793").unwrap();
        let l = limit_denominator(&pi, &BigInt::from(1000));
        assert_eq!(l, BigRational::new(355.into(), 113.into()));
        // Fraction('0.0000012345678901234567').limit_denominator() == Fraction(1, 810000)
        let x = parse_exact("0.0000012345678901234567").unwrap();
        let l = limit_denominator(&x, &BigInt::from(MAX_DENOMINATOR));
        assert_eq!(l, BigRational::new(1.into(), 810000.into()));
        // Fraction(1, 3) is already within the limit.
        let third = parse_exact("1/3").unwrap();
        assert_eq!(limit_denominator(&third, &BigInt::from(10)), third);
    }

    #[test]
    fn bad_weights_are_refused_with_the_reason() {
        assert!(parse_weight("0").unwrap_err().contains("positive"));
        assert!(parse_weight("-1").unwrap_err().contains("positive"));
        assert!(parse_weight("abc").unwrap_err().contains("not a number"));
        assert!(
            parse_weight("1/0")
                .unwrap_err()
                .contains("denominator is 0")
        );
        assert!(
            parse_weight("0.000000001")
                .unwrap_err()
                .contains("at least 1/2000000")
        );
        assert!(
            parse_weight("1e99999999999")
                .unwrap_err()
                .contains("exponent")
        );
        assert!(parse_weight("1e30").unwrap_err().contains("below 10^18"));
        assert!(
            parse_weight(&"9".repeat(100))
                .unwrap_err()
                .contains("at most 64 characters")
        );
    }

    proptest::proptest! {
        #[test]
        fn limit_denominator_is_the_closest_fraction(
            n in 0i64..1_000_000, d in 1i64..1_000_000, max_den in 1i64..60,
        ) {
            let x = BigRational::new(n.into(), d.into());
            let got = limit_denominator(&x, &BigInt::from(max_den));
            proptest::prop_assert!(got.denom() <= &BigInt::from(max_den));
            // No fraction with a denominator up to max_den is closer (brute force).
            let dist = (&got - &x).abs();
            for q in 1..=max_den {
                let p = (&x * BigRational::from_integer(q.into())).round();
                let cand = p / BigRational::from_integer(q.into());
                proptest::prop_assert!((&cand - &x).abs() >= dist, "{cand} beats {got} for {x}");
            }
        }
    }

    #[test]
    fn normalise_is_exact() {
        let w = ["33.333333333333336"; 3].map(|s| parse_weight(s).unwrap());
        assert_eq!(normalise(&w).unwrap(), vec![q(1, 3); 3]);
        let w = [q(29, 1), q(71, 1)];
        assert_eq!(normalise(&w).unwrap(), vec![q(29, 100), q(71, 100)]);
    }
}
