//! The design of an assignment: arms and exact weights, strata, misfit strategy, seed.

use crate::input::names::*;
use num_integer::Integer;
use num_rational::Ratio;

use crate::error::{Error, Result};

/// Largest block size (LCM of the probability denominators) accepted: weights such as
/// 1.000001 : 1 would need blocks of two million rows, which stratifies nothing.
pub const MAX_BLOCK: u64 = 100_000;

/// What to do with the rows of a stratum that do not fill a whole block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MisfitStrategy {
    /// Each stratum's leftover rows form one partial block of that stratum (default).
    #[default]
    Stratum,
    /// The leftovers of all strata, chosen at random, are pooled and assigned as one stratum.
    Global,
    /// The leftovers, chosen at random, stay unassigned.
    None,
}

impl MisfitStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            MisfitStrategy::Stratum => "stratum",
            MisfitStrategy::Global => "global",
            MisfitStrategy::None => "none",
        }
    }
}

/// One arm: its name and its exact weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    pub weight: Ratio<i128>,
    /// The weight as the user wrote it (for the design record); `weight` is its closest
    /// fraction with denominator at most 10⁶ (see [`crate::weights`]).
    pub weight_text: String,
}

/// Arms with exact probabilities and the stochatreat block.
#[derive(Debug, Clone, PartialEq)]
pub struct Arms {
    pub arms: Vec<Arm>,
    /// p_i = w_i / Σw, exact.
    pub probs: Vec<Ratio<i128>>,
    /// L = lcm of the denominators of p_i.
    pub block: u64,
    /// m_i = L·p_i, exact; Σm_i = L.
    pub mask_counts: Vec<u64>,
}

impl Arms {
    /// Validate arm names and weights (`weights` None: equal arms).
    pub fn new(names: &[String], weights: Option<&[String]>) -> Result<Arms> {
        if names.len() < 2 {
            return Err(Error::usage(format!(
                "{ARMS} needs at least 2 arms, got {}; e.g. {ARMS} control,treatment",
                names.len()
            )));
        }
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(Error::usage(format!(
                    "{ARMS}: arm {} has an empty name",
                    i + 1
                )));
            }
            if names[..i].contains(n) {
                return Err(Error::usage(format!(
                    "{ARMS}: the arm name {n:?} appears twice; arm names must be unique"
                )));
            }
        }
        let (weights, texts): (Vec<Ratio<i128>>, Vec<String>) = match weights {
            None => (
                vec![Ratio::from_integer(1); names.len()],
                vec!["1".to_string(); names.len()],
            ),
            Some(ws) => {
                if ws.len() != names.len() {
                    return Err(Error::usage(format!(
                        "{ARM_WEIGHTS} has {} value(s) but {ARMS} names {} arm(s); give one weight per arm",
                        ws.len(),
                        names.len()
                    )));
                }
                let mut v = Vec::new();
                for (w, n) in ws.iter().zip(names) {
                    v.push(crate::weights::parse_weight(w).map_err(|m| {
                        Error::usage(format!("{ARM_WEIGHTS}: the weight {w:?} of arm {n}: {m}"))
                    })?);
                }
                (v, ws.to_vec())
            }
        };
        let probs = crate::weights::normalise(&weights)
            .map_err(|m| Error::usage(format!("{ARM_WEIGHTS} {}: {m}", texts.join(","))))?;
        let mut block: i128 = 1;
        for p in &probs {
            block = block.lcm(p.denom());
            if block > MAX_BLOCK as i128 {
                return Err(Error::usage(format!(
                    "{ARM_WEIGHTS} {} need blocks of more than {MAX_BLOCK} rows (the least common multiple of the \
                     arm shares' denominators); use simpler weights such as whole percentages",
                    texts.join(",")
                )));
            }
        }
        let mask_counts: Vec<u64> = probs
            .iter()
            .map(|p| (p * block).to_integer() as u64)
            .collect();
        debug_assert_eq!(mask_counts.iter().sum::<u64>(), block as u64);
        let arms = names
            .iter()
            .zip(weights)
            .zip(texts)
            .map(|((n, w), t)| Arm {
                name: n.clone(),
                weight: w,
                weight_text: t,
            })
            .collect();
        Ok(Arms {
            arms,
            probs,
            block: block as u64,
            mask_counts,
        })
    }

    pub fn len(&self) -> usize {
        self.arms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// The block mask: arm i repeated m_i times, in arm order.
    pub fn mask(&self) -> Vec<u32> {
        self.mask_counts
            .iter()
            .enumerate()
            .flat_map(|(i, &m)| std::iter::repeat_n(i as u32, m as usize))
            .collect()
    }

    /// Exact largest-remainder counts for `n` units: floor(n·p_i), then one more to each of the
    /// arms with the largest remainders (ties: lower arm index first).
    pub fn largest_remainder_counts(&self, n: u64) -> Vec<u64> {
        let n = n as i128;
        let mut counts: Vec<u64> = Vec::with_capacity(self.probs.len());
        let mut rems: Vec<(Ratio<i128>, usize)> = Vec::with_capacity(self.probs.len());
        for (i, p) in self.probs.iter().enumerate() {
            let exact = p * n;
            counts.push(exact.floor().to_integer() as u64);
            rems.push((exact.fract(), i));
        }
        let left = n as u64 - counts.iter().sum::<u64>();
        rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in rems.into_iter().take(left as usize) {
            counts[i] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocks_are_exact() {
        let a = Arms::new(&names(&["a", "b"]), None).unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (2, vec![1, 1]));
        let a = Arms::new(&names(&["a", "b"]), Some(&names(&["20", "80"]))).unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (5, vec![1, 4]));
        // 29/71 broke stochatreat 0.0.20 through float truncation; exact here.
        let a = Arms::new(&names(&["a", "b"]), Some(&names(&["0.29", "0.71"]))).unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (100, vec![29, 71]));
        let a = Arms::new(
            &names(&["a", "b", "c"]),
            Some(&names(&["0.2", "0.3", "0.5"])),
        )
        .unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (10, vec![2, 3, 5]));
        let a = Arms::new(&names(&["a", "b"]), Some(&names(&["1", "2"]))).unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (3, vec![1, 2]));
        assert_eq!(a.mask(), vec![0, 1, 1]);
    }

    #[test]
    fn python_float_weights_give_exact_thirds_and_sevenths() {
        // The Python tool's weights are floats summing to 100: 100/3 three times, and
        // 100/7-like values; each is read as its closest fraction with denominator <= 10^6.
        let third = "33.333333333333336";
        let a = Arms::new(&names(&["a", "b", "c"]), Some(&names(&[third; 3]))).unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (3, vec![1, 1, 1]));
        assert_eq!(a.arms[0].weight, Ratio::new(100, 3));
        assert_eq!(a.arms[0].weight_text, third);
        let mut c = a.largest_remainder_counts(1000);
        c.sort();
        assert_eq!(c, vec![333, 333, 334]);
        let a = Arms::new(
            &names(&["a", "b"]),
            Some(&names(&["14.285714285714286", "85.71428571428571"])),
        )
        .unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (7, vec![1, 6]));
        let a = Arms::new(
            &names(&["a", "b", "c"]),
            Some(&names(&[
                "0.3333333333333333",
                "0.16666666666666666",
                "0.5",
            ])),
        )
        .unwrap();
        assert_eq!((a.block, a.mask_counts.clone()), (6, vec![2, 1, 3]));
    }

    #[test]
    fn largest_remainder() {
        let a = Arms::new(&names(&["a", "b", "c"]), None).unwrap();
        assert_eq!(a.largest_remainder_counts(10), vec![4, 3, 3]);
        let a = Arms::new(&names(&["a", "b"]), Some(&names(&["29", "71"]))).unwrap();
        assert_eq!(a.largest_remainder_counts(7), vec![2, 5]); // 2.03, 4.97
        assert_eq!(a.largest_remainder_counts(100), vec![29, 71]);
    }

    #[test]
    fn bad_arms() {
        let e = |n: &[&str], w: Option<&[&str]>| {
            Arms::new(&names(n), w.map(names).as_deref())
                .unwrap_err()
                .to_string()
        };
        assert!(e(&["a"], None).contains("at least 2 arms"));
        assert!(e(&["a", "a"], None).contains("appears twice"));
        assert!(e(&["a", "b"], Some(&["1"])).contains(&format!("1 value(s) but {ARMS} names 2")));
        assert!(e(&["a", "b"], Some(&["1", "0"])).contains("positive"));
        assert!(e(&["a", "b"], Some(&["1", "-1"])).contains("positive number"));
        assert!(e(&["a", "b"], Some(&["1", "x"])).contains("\"x\" of arm b"));
        assert!(e(&["a", "b"], Some(&["1.000001", "1"])).contains("blocks of more than"));
    }
}
