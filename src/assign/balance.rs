//! Balance check (docs/statistics.md, "Balance test"): OLS of the arm indicator on the strata
//! covariates, HC1 robust covariance, joint Wald F test that every slope is zero.
//!
//! * Design matrix: an intercept; numeric covariates (numeric strata without NULLs, original
//!   values) as they are; every other covariate (text, booleans, quantile bins incl.
//!   `__NULL__`) one-hot encoded with the first level present in the compared rows dropped.
//! * Rank deficiency (collinear dummies, e.g. nested strata): columns are taken in the order
//!   intercept, the dummies of the categorical covariate with the most levels (the "wide"
//!   one), then the other covariates in order; a column whose residual sum of squares after
//!   projection on the columns before it is below 1e-10 of its own sum of squares is dropped.
//!   The fit uses the full-rank design, which has the same column space and so the same fitted
//!   values and residuals as statsmodels' pseudo-inverse solution; q (the numerator df) is
//!   rank(X) − 1 and the denominator df n − rank(X), as statsmodels reports.
//! * HC1: V = n/(n−r)·(X'X)⁻¹ X' diag(e²) X (X'X)⁻¹; F = b'W⁺b / q with b the slopes and W
//!   their block of V (a pseudo-inverse, so a singular W — e.g. strata entirely in one arm —
//!   still gives a statistic); p = upper tail of F(q, n − r) (statrs). Squared residuals below
//!   1e-20 per participant are rounding noise of an exact fit and count as zero; when every
//!   residual is zero (each stratum entirely in one arm) there is no test.
//!
//! Cost: linear in the rows and in the levels of the wide covariate. Its dummies have disjoint
//! supports, so X'X is an arrow matrix (a diagonal block of level counts bordered by the m
//! other columns): everything is computed from per-level sums and the m×m Schur complement
//! K = C − B'D⁻¹B. The robust covariance of the slopes is then W = Δ + U·G·U' with Δ diagonal
//! (one entry per wide level: n/(n−r)·Σe²/n_l²) and U of width 2m, so b'W⁺b is reduced exactly
//! to 2m-sized problems:
//! 1. levels whose Δ is zero (all residuals zero, e.g. a level with one compared participant)
//!    and the other slopes span only the range of their rows of U: the part of b outside it is
//!    in W's null space and dropped, the rest is kept in an orthonormal basis of that range;
//! 2. the block P = Δ_T + U_T·G·U_T' of the levels with Δ > 0 is solved through the Woodbury
//!    identity, refined iteratively against P, leaving a small Schur complement S; a null
//!    space of S (W singular beyond step 1) is projected out of b exactly (orthogonally, as the
//!    pseudo-inverse does).
//!
//! Time O(rows·p² + levels·m²), memory O(rows + levels·m). The dense computation (`dense`) is
//! the test oracle — a property test checks the two agree to 1e-9 — and also computes the
//! small designs (at most 200 columns) whose reductions are ill-conditioned (a level's
//! residual variance below 1e-6 of the largest but not zero), where the eliminations would
//! lose digits; large designs keep the fast result there.
//!
//! Covariates that make no sense in a balance test are left out and reported ([`LeftOut`]):
//! a categorical covariate with more than [`MIN_LEVELS_LEFT_OUT`] levels present and fewer than
//! [`MIN_PER_LEVEL`] compared participants per level, and — largest first — categorical covariates other
//! than the wide one while the other columns exceed [`MAX_OTHER_COLUMNS`] or the work
//! (levels × (2m)²) exceeds [`MAX_LEVEL_WORK`].

use statrs::distribution::{ContinuousCDF, FisherSnedecor};

use super::preprocess::Codes;

/// A categorical covariate with more levels than this (present among the compared
/// participants) and fewer than [`MIN_PER_LEVEL`] compared participants per level on average
/// is left out: most of its levels would hold one arm only, and the robust covariance of such
/// levels is degenerate (zero or, with a numeric covariate, next to zero).
pub const MIN_LEVELS_LEFT_OUT: usize = 20;
/// See [`MIN_LEVELS_LEFT_OUT`].
pub const MIN_PER_LEVEL: usize = 10;
/// Most design columns besides the dummies of the categorical covariate with the most levels.
pub const MAX_OTHER_COLUMNS: usize = 200;
/// Most per-level work: (levels of the widest covariate) × (2 × other columns)².
pub const MAX_LEVEL_WORK: f64 = 2e9;
/// Designs of at most this many columns whose reduced problems are ill-conditioned (near-zero
/// but not zero residual variances) are computed densely instead.
const DENSE_FALLBACK_COLUMNS: usize = 200;
const ILL_CONDITIONED: f64 = 1e-8;
/// A residual variance (or Schur complement eigenvalue) this far below the largest makes the
/// eliminations lose digits.
const NEAR_ZERO: f64 = 1e-6;
const FALLBACK: &str = "(ill-conditioned: dense)";
/// A moments fit waiting for its residual sums (never reported: [`f_test_moments`] returns the
/// fitted values instead).
const NEEDS_RESIDUALS: &str = "(needs the residual sums)";
const ALL_FIT: &str = "the strata predict every compared participant's arm exactly (each stratum lies in one arm), \
                       so no variation is left to test balance on";

/// Σ(y − fitted)² over a unit of `c` participants with Σy = `sy`, Σy² = `syy`. For a 0/1
/// outcome (Σy² = Σy) it is sy·(1 − f)² + (c − sy)·f², which keeps its digits when the fit is
/// exact (the expansion Σy² − 2fΣy + cf² would leave rounding noise of 1e-16).
fn unit_e2(c: f64, sy: f64, syy: f64, fitted: f64) -> f64 {
    let e2 = if syy == sy {
        sy * (1.0 - fitted) * (1.0 - fitted) + (c - sy) * fitted * fitted
    } else {
        syy - 2.0 * fitted * sy + c * fitted * fitted
    };
    zero_small(e2.max(0.0), c)
}

/// A unit's Σ(y − fitted)², with rounding noise (below 1e-20 per participant, |e| < 1e-10 for a
/// 0/1 outcome) set to exactly zero: a stratum entirely in one arm has no residual variance,
/// and the pseudo-inverse must see an exact zero there, not noise.
fn zero_small(e2: f64, count: f64) -> f64 {
    if e2 <= 1e-20 * count { 0.0 } else { e2 }
}

/// One covariate of the balance regression.
pub enum Covariate<'a> {
    Numeric(&'a [f64]),
    /// Level codes 0 … levels−1 per row.
    Categorical {
        codes: &'a Codes<'a>,
        levels: u32,
    },
}

/// The compared participants and their 0/1 outcome.
pub enum Sample<'a> {
    /// `y[row]` for the rows listed.
    Rows { rows: &'a [u32], y: &'a [f64] },
    /// The rows (of `order`) in arm `control` (y = 0) or `treatment` (y = 1).
    /// `n` is their number.
    Arms {
        order: &'a [u32],
        arm: &'a [u32],
        control: u32,
        treatment: u32,
        n: usize,
    },
}

impl Sample<'_> {
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(usize, f64)) {
        match self {
            Sample::Rows { rows, y } => {
                for &r in *rows {
                    f(r as usize, y[r as usize])
                }
            }
            Sample::Arms {
                order,
                arm,
                control,
                treatment,
                ..
            } => {
                for &r in *order {
                    let a = arm[r as usize];
                    if a == *treatment {
                        f(r as usize, 1.0)
                    } else if a == *control {
                        f(r as usize, 0.0)
                    }
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Sample::Rows { rows, .. } => rows.len(),
            Sample::Arms { n, .. } => *n,
        }
    }
}

/// A fitted regression and its joint test.
#[derive(Debug, Clone, PartialEq)]
pub struct FTest {
    /// Coefficients of the kept design columns: the intercept, then each covariate's kept
    /// columns in covariate order.
    pub beta: Vec<f64>,
    pub f_statistic: f64,
    pub numerator_df: u64,
    pub denominator_df: u64,
    pub p_value: f64,
    pub n: u64,
}

/// Why no test could be computed.
pub type NoTest = String;

/// A covariate left out of the balance test.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// Index into the covariates given.
    pub covariate: usize,
    pub why: String,
}

/// The balance test and the covariates it left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    pub left_out: Vec<LeftOut>,
    pub test: Result<FTest, NoTest>,
}

/// Regress `y[row]` (0/1) on the covariates over `rows`; HC1 joint F test of the slopes.
pub fn f_test(rows: &[u32], y: &[f64], covs: &[Covariate]) -> Result<FTest, NoTest> {
    f_test_grouped(&Sample::Rows { rows, y }, covs, None).test
}

/// The compared units: rows, or groups of rows with identical covariates.
enum Units<'a> {
    Rows {
        rows: Vec<u32>,
        sample: &'a Sample<'a>,
    },
    /// (representative row, count, Σy, Σy²).
    Cells(Vec<(u32, f64, f64, f64)>),
    /// Cells with numeric covariates, summed elsewhere ([`f_test_moments`]).
    Moments(&'a Moments),
}

impl Units<'_> {
    fn len(&self) -> usize {
        match self {
            Units::Rows { rows, .. } => rows.len(),
            Units::Cells(c) => c.len(),
            Units::Moments(m) => m.cells.len(),
        }
    }

    /// (row, count, Σy, Σy²) of unit `i`.
    #[inline]
    fn get(&self, i: usize) -> (usize, f64, f64, f64) {
        match self {
            Units::Rows { rows, sample } => {
                let r = rows[i] as usize;
                let y = match sample {
                    Sample::Rows { y, .. } => y[r],
                    Sample::Arms { arm, treatment, .. } => {
                        if arm[r] == *treatment {
                            1.0
                        } else {
                            0.0
                        }
                    }
                };
                (r, 1.0, y, y * y)
            }
            Units::Cells(c) => {
                let (r, n, sy, syy) = c[i];
                (r as usize, n, sy, syy)
            }
            Units::Moments(m) => {
                let (r, n, sy, syy) = m.cells[i];
                (r as usize, n, sy, syy)
            }
        }
    }
}

const NONE: u32 = u32::MAX;
/// [`f_test`], with `cells[row]` an id shared by rows whose covariates are identical (the
/// stratum id when every covariate is categorical): sums are then taken per cell, so the cost
/// is one pass over the rows plus passes over the cells. The statistics are the same.
pub fn f_test_grouped(
    sample: &Sample,
    covs: &[Covariate],
    cells: Option<(&[u32], u32)>,
) -> Balance {
    grouped(sample, covs, cells, true)
}

/// [`f_test_grouped`]; with `dense_fallback` false an ill-conditioned small design gives the
/// error `FALLBACK` instead of the dense computation (for the tests).
fn grouped(
    sample: &Sample,
    covs: &[Covariate],
    cells: Option<(&[u32], u32)>,
    dense_fallback: bool,
) -> Balance {
    let n = sample.len();
    let (units, groups) = match cells {
        Some((cell, n_cells)) => {
            let mut g: Vec<(u32, f64, f64, f64)> = vec![(NONE, 0.0, 0.0, 0.0); n_cells as usize];
            sample.for_each(&mut |r, yr| {
                let e = &mut g[cell[r] as usize];
                if e.0 == NONE {
                    e.0 = r as u32;
                }
                e.1 += 1.0;
                e.2 += yr;
                e.3 += yr * yr;
            });
            g.retain(|e| e.0 != NONE);
            (Units::Cells(g.clone()), Some(g))
        }
        None => {
            let mut rows = Vec::with_capacity(n);
            sample.for_each(&mut |r, _| rows.push(r as u32));
            (Units::Rows { rows, sample }, None)
        }
    };
    from_units(&units, groups.as_deref(), sample, n, covs, dense_fallback)
}

/// The balance test from per-cell sums computed elsewhere (in a warehouse, by GROUP BY; see
/// docs/statistics.md): `cells` lists, for each group of participants with identical
/// covariates, `(representative row, count, Σy, Σy²)` in the order [`f_test_grouped`] visits
/// them (ascending cell id), the row indexing the covariates' codes; `n` = Σ count. The
/// statistics are those [`f_test_grouped`] computes from the rows.
pub fn f_test_cells(cells: Vec<(u32, f64, f64, f64)>, n: usize, covs: &[Covariate]) -> Balance {
    let none = Sample::Rows { rows: &[], y: &[] };
    let units = Units::Cells(cells);
    let Units::Cells(g) = &units else {
        unreachable!()
    };
    from_units(&units, Some(g), &none, n, covs, true)
}

/// Per-cell sums of a balance regression with numeric covariates, computed elsewhere (in a
/// warehouse, by GROUP BY; docs/assignment-algorithm.md §10). With K numeric covariates (in
/// the order they appear in the covariates) and z = (1, x₁, …, x_K) per participant:
pub struct Moments {
    /// Per cell (participants with identical categorical covariates), `(row, count, Σy, Σy²)`
    /// as for [`f_test_cells`]; `row` indexes the categorical covariates' codes.
    pub cells: Vec<(u32, f64, f64, f64)>,
    /// Per cell Σ z z' ((K+1)², row-major).
    pub zz: Vec<Vec<f64>>,
    /// Per cell Σ z·y (K+1).
    pub zy: Vec<Vec<f64>>,
    /// Per cell Σ e² z z' with e = y − fitted, for the fitted values of the fast fit
    /// ([`MomentTest::Residuals`] with `dense` false); `None` until they are summed.
    pub ezz: Option<Vec<Vec<f64>>>,
    /// The same for the fitted values of the dense fit (asked for only when the fast fit is
    /// ill-conditioned, as [`f_test_grouped`] then computes densely).
    pub dense_ezz: Option<Vec<Vec<f64>>>,
}

/// What [`f_test_moments`] needs or found.
#[derive(Debug, Clone, PartialEq)]
pub enum MomentTest {
    Done(Balance),
    /// The fitted values whose residual sums it needs next: a participant of cell c has
    /// fitted = `constant[c]` + Σ_k `slopes[k]`·x_k; the sums go to [`Moments::dense_ezz`] when
    /// `dense`, else to [`Moments::ezz`].
    Residuals {
        constant: Vec<f64>,
        slopes: Vec<f64>,
        dense: bool,
    },
}

/// The balance test from per-cell moments (numeric covariates included), in passes: while it
/// needs residual sums it returns the fitted values to sum them for (the fast fit's, then, for
/// an ill-conditioned design, the dense fit's), and called again with them summed, the test.
/// `covs` are the covariates as for the rows, the codes indexed by cell, and each numeric
/// covariate any slice of one value per cell (its values are taken from the moments). The
/// statistics are those [`f_test_grouped`] computes from the rows, to rounding.
pub fn f_test_moments(m: &Moments, n: usize, covs: &[Covariate]) -> MomentTest {
    let units = Units::Moments(m);
    let none = Sample::Rows { rows: &[], y: &[] };
    let mut need = None;
    let res = from_units_with(&units, None, &none, n, covs, true, Some(&mut need));
    match need {
        Some((constant, slopes, dense)) => MomentTest::Residuals {
            constant,
            slopes,
            dense,
        },
        None => MomentTest::Done(res),
    }
}

fn from_units(
    units: &Units,
    groups: Option<&[(u32, f64, f64, f64)]>,
    sample: &Sample,
    n: usize,
    covs: &[Covariate],
    dense_fallback: bool,
) -> Balance {
    from_units_with(units, groups, sample, n, covs, dense_fallback, None)
}

/// The fitted values a moments fit asks for: per cell the constant part, the numeric slopes,
/// and whether the dense fit asks.
type Fitted = (Vec<f64>, Vec<f64>, bool);

fn from_units_with(
    units: &Units,
    groups: Option<&[(u32, f64, f64, f64)]>,
    sample: &Sample,
    n: usize,
    covs: &[Covariate],
    dense_fallback: bool,
    mut need: Option<&mut Option<Fitted>>,
) -> Balance {
    // Levels present among the compared units, per categorical covariate.
    let present: Vec<Vec<bool>> = covs
        .iter()
        .map(|c| match c {
            Covariate::Numeric(_) => Vec::new(),
            Covariate::Categorical { codes, levels } => {
                let mut p = vec![false; *levels as usize];
                for i in 0..units.len() {
                    p[codes.get(units.get(i).0) as usize] = true;
                }
                p
            }
        })
        .collect();
    let npres: Vec<usize> = present
        .iter()
        .map(|p| p.iter().filter(|x| **x).count())
        .collect();
    let (included, left_out) = screen(covs, &npres, n);
    let mut test = fit(
        units,
        n,
        covs,
        &present,
        &npres,
        &included,
        need.as_deref_mut(),
    );
    if dense_fallback && test.as_ref().is_err_and(|e| e == FALLBACK) {
        // Ill-conditioned and small: the dense computation, on the covariates kept.
        let kept: Vec<&Covariate> = covs
            .iter()
            .zip(&included)
            .filter_map(|(c, i)| i.then_some(c))
            .collect();
        test = match units {
            Units::Moments(m) => dense::f_test_dense_moments(m, n, &kept, need),
            _ => dense::f_test_dense_groups(sample, n, &kept, groups),
        };
    }
    Balance { left_out, test }
}

/// The included categorical covariate with the most present levels (ties: the first).
fn widest<'a, C: std::borrow::Borrow<Covariate<'a>>>(
    covs: &[C],
    npres: &[usize],
    included: &[bool],
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (j, c) in covs.iter().enumerate() {
        if included[j]
            && matches!(c.borrow(), Covariate::Categorical { .. })
            && best.is_none_or(|b| npres[j] > npres[b])
        {
            best = Some(j);
        }
    }
    best
}

/// Which covariates the test can use, and why the others are left out.
fn screen(covs: &[Covariate], npres: &[usize], n: usize) -> (Vec<bool>, Vec<LeftOut>) {
    let mut included = vec![true; covs.len()];
    let mut left_out = Vec::new();
    for (j, c) in covs.iter().enumerate() {
        if matches!(c, Covariate::Categorical { .. })
            && npres[j] > MIN_LEVELS_LEFT_OUT
            && MIN_PER_LEVEL * npres[j] > n
        {
            included[j] = false;
            left_out.push(LeftOut {
                covariate: j,
                why: format!(
                    "its {} levels among {n} compared participants (fewer than {MIN_PER_LEVEL} per level) are too many \
                     to test balance on",
                    npres[j]
                ),
            });
        }
    }
    loop {
        let wide = widest(covs, npres, &included);
        let others: usize = 1
            + (0..covs.len())
                .filter(|&j| included[j] && Some(j) != wide)
                .map(|j| match covs[j] {
                    Covariate::Numeric(_) => 1,
                    Covariate::Categorical { .. } => npres[j].saturating_sub(1),
                })
                .sum::<usize>();
        let levels = wide.map_or(1, |w| npres[w]) as f64;
        if others <= MAX_OTHER_COLUMNS && levels * (2.0 * others as f64).powi(2) <= MAX_LEVEL_WORK {
            break;
        }
        let candidate = (0..covs.len())
            .filter(|&j| {
                included[j] && Some(j) != wide && matches!(covs[j], Covariate::Categorical { .. })
            })
            .max_by_key(|&j| (npres[j], std::cmp::Reverse(j)));
        let Some(j) = candidate else { break };
        included[j] = false;
        left_out.push(LeftOut {
            covariate: j,
            why: format!(
                "its {} levels are too many to test balance on together with the {} levels of another stratum \
                 (at most {MAX_OTHER_COLUMNS} columns besides the stratum with the most levels)",
                npres[j], levels
            ),
        });
    }
    left_out.sort_by_key(|l| l.covariate);
    (included, left_out)
}

/// Per-level sums over the other (non-wide) columns.
struct LevelSums {
    n: f64,
    sy: f64,
    /// Σ c·x over the level's units.
    b: Vec<f64>,
    /// Σ e² and Σ e²·x (with a fit).
    de: f64,
    be: Vec<f64>,
}

fn fit(
    units: &Units,
    n: usize,
    covs: &[Covariate],
    present: &[Vec<bool>],
    npres: &[usize],
    included: &[bool],
    need: Option<&mut Option<Fitted>>,
) -> Result<FTest, NoTest> {
    let wide = widest(covs, npres, included);
    // The wide covariate: level -> coordinate (NONE: the dropped first level, or absent).
    let mut coord: Vec<u32> = vec![NONE; 1];
    let mut d = 0usize;
    if let Some(w) = wide {
        coord = vec![NONE; present[w].len()];
        let mut first = true;
        for (l, p) in present[w].iter().enumerate() {
            if *p {
                if first {
                    first = false;
                } else {
                    coord[l] = d as u32;
                    d += 1;
                }
            }
        }
    }
    let level_of = |r: usize| -> usize {
        match wide.map(|w| &covs[w]) {
            Some(Covariate::Categorical { codes, .. }) => codes.get(r) as usize,
            _ => 0,
        }
    };
    // The other columns: 0 the intercept, then numeric covariates one column each and
    // categorical ones a column per present level but the first.
    let mut base: Vec<u32> = vec![NONE; covs.len()];
    let mut col_of: Vec<Vec<u32>> = vec![Vec::new(); covs.len()]; // level -> column + 1 (0: none)
    let mut m = 1usize;
    for (j, c) in covs.iter().enumerate() {
        if !included[j] || Some(j) == wide {
            continue;
        }
        match c {
            Covariate::Numeric(_) => {
                base[j] = m as u32;
                m += 1;
            }
            Covariate::Categorical { levels, .. } => {
                let mut map = vec![0u32; *levels as usize];
                let mut first = true;
                for (l, p) in present[j].iter().enumerate() {
                    if *p {
                        if first {
                            first = false;
                        } else {
                            map[l] = m as u32 + 1;
                            m += 1;
                        }
                    }
                }
                col_of[j] = map;
            }
        }
    }
    // Moments: each column's index in the cells' z (0: the intercept and dummies, k + 1: the
    // k-th numeric covariate), and the width of z.
    let moments = match units {
        Units::Moments(mo) => Some(*mo),
        _ => None,
    };
    let (loc, nz) = numeric_locations(covs, &base, m);
    let entries = |r: usize, buf: &mut Vec<(usize, f64)>| {
        buf.clear();
        buf.push((0, 1.0));
        for (j, c) in covs.iter().enumerate() {
            match c {
                Covariate::Numeric(v) if base[j] != NONE => buf.push((base[j] as usize, v[r])),
                Covariate::Categorical { codes, .. } if !col_of[j].is_empty() => {
                    let k = col_of[j][codes.get(r) as usize];
                    if k > 0 {
                        buf.push(((k - 1) as usize, 1.0));
                    }
                }
                _ => {}
            }
        }
    };
    // Units grouped by wide level (counting sort).
    let n_lev = coord.len();
    let mut start = vec![0usize; n_lev + 1];
    for i in 0..units.len() {
        start[level_of(units.get(i).0) + 1] += 1;
    }
    for l in 0..n_lev {
        start[l + 1] += start[l];
    }
    let mut by_level = vec![0u32; units.len()];
    {
        let mut fill = start.clone();
        for i in 0..units.len() {
            let l = level_of(units.get(i).0);
            by_level[fill[l]] = i as u32;
            fill[l] += 1;
        }
    }
    let mut buf: Vec<(usize, f64)> = Vec::with_capacity(1 + covs.len());

    // Pass A: C = Σ c·x x', X'y, and the Schur complement K = C − Σ_l B_l B_l'/n_l,
    // t = X'y − Σ_l B_l·Sy_l/n_l over the wide coordinates.
    let mut cm = vec![0.0f64; m * m];
    let mut xty = vec![0.0f64; m];
    let mut sub = vec![0.0f64; m * m];
    let mut tsub = vec![0.0f64; m];
    let mut bl = vec![0.0f64; m];
    for l in 0..n_lev {
        let idx = &by_level[start[l]..start[l + 1]];
        if idx.is_empty() {
            continue;
        }
        bl.fill(0.0);
        let (mut nl, mut syl) = (0.0, 0.0);
        for &u in idx {
            let (r, c, sy, _) = units.get(u as usize);
            entries(r, &mut buf);
            nl += c;
            syl += sy;
            if let Some(mo) = moments {
                let (zz, zy) = (&mo.zz[u as usize], &mo.zy[u as usize]);
                for &(a, _) in &buf {
                    bl[a] += zz[loc[a] * nz];
                    xty[a] += zy[loc[a]];
                    for &(b, _) in &buf {
                        if b <= a {
                            cm[a * m + b] += zz[loc[a] * nz + loc[b]];
                        }
                    }
                }
                continue;
            }
            for &(a, va) in &buf {
                bl[a] += c * va;
                xty[a] += va * sy;
                for &(b, vb) in &buf {
                    if b <= a {
                        cm[a * m + b] += c * va * vb;
                    }
                }
            }
        }
        if coord[l] != NONE {
            for a in 0..m {
                if bl[a] != 0.0 {
                    tsub[a] += bl[a] * syl / nl;
                    for b in 0..=a {
                        sub[a * m + b] += bl[a] * bl[b] / nl;
                    }
                }
            }
        }
    }
    symmetrize_lower(&mut cm, m);
    symmetrize_lower(&mut sub, m);
    let kfull: Vec<f64> = cm.iter().zip(&sub).map(|(c, s)| c - s).collect();
    let diag: Vec<f64> = (0..m).map(|i| cm[i * m + i]).collect();
    let keep = independent_columns(&kfull, m, &diag);
    if keep.first() != Some(&0) {
        return Err("no covariate varies among the compared participants".into());
    }
    let mk = keep.len();
    let rk = d + mk;
    if rk < 2 {
        return Err("no covariate varies among the compared participants".into());
    }
    if n <= rk {
        return Err(format!(
            "too few participants ({n}) for {rk} regression terms"
        ));
    }
    let mut pos = vec![usize::MAX; m];
    for (i, &c) in keep.iter().enumerate() {
        pos[c] = i;
    }
    let kk: Vec<f64> = keep
        .iter()
        .flat_map(|&a| keep.iter().map(move |&b| (a, b)))
        .map(|(a, b)| kfull[a * m + b])
        .collect();
    let tk: Vec<f64> = keep.iter().map(|&a| xty[a] - tsub[a]).collect();
    let kinv = spd_inverse(&kk, mk).ok_or("the covariates are collinear")?;
    let beta_s = mat_vec(&kinv, mk, mk, &tk);

    // Sums over one level's units in the kept columns; with `fit` = the level's coefficient,
    // the residual sums too (and Σ e² x x' into `ce`).
    let level_sums = |idx: &[u32],
                      fit: Option<f64>,
                      ce: Option<&mut Vec<f64>>,
                      buf: &mut Vec<(usize, f64)>|
     -> LevelSums {
        let mut s = LevelSums {
            n: 0.0,
            sy: 0.0,
            b: vec![0.0; mk],
            de: 0.0,
            be: vec![0.0; mk],
        };
        let mut ce = ce;
        let mut kb: Vec<(usize, f64)> = Vec::with_capacity(buf.capacity());
        for &u in idx {
            let (r, c, sy, syy) = units.get(u as usize);
            entries(r, buf);
            kb.clear();
            if let Some(mo) = moments {
                // (kept column, its index in z): the sums come from the cell's moments.
                kb.extend(
                    buf.iter()
                        .filter(|(col, _)| pos[*col] != usize::MAX)
                        .map(|(col, _)| (pos[*col], loc[*col] as f64)),
                );
                s.n += c;
                s.sy += sy;
                let zz = &mo.zz[u as usize];
                for &(a, la) in &kb {
                    s.b[a] += zz[la as usize * nz];
                }
                if fit.is_some()
                    && let Some(ezz) = mo.ezz.as_ref().map(|e| &e[u as usize])
                {
                    s.de += ezz[0];
                    for &(a, la) in &kb {
                        s.be[a] += ezz[la as usize * nz];
                    }
                    if let Some(ce) = ce.as_deref_mut() {
                        for &(a, la) in &kb {
                            for &(b, lb) in &kb {
                                if b <= a {
                                    ce[a * mk + b] += ezz[la as usize * nz + lb as usize];
                                }
                            }
                        }
                    }
                }
                continue;
            }
            kb.extend(
                buf.iter()
                    .filter(|(col, _)| pos[*col] != usize::MAX)
                    .map(|(col, v)| (pos[*col], *v)),
            );
            s.n += c;
            s.sy += sy;
            for &(a, va) in &kb {
                s.b[a] += c * va;
            }
            if let Some(bl) = fit {
                let fitted: f64 = bl + kb.iter().map(|(i, v)| beta_s[*i] * v).sum::<f64>();
                // Σ over the unit of (y − fitted)².
                let e2 = unit_e2(c, sy, syy, fitted);
                s.de += e2;
                for &(a, va) in &kb {
                    s.be[a] += e2 * va;
                }
                if let Some(ce) = ce.as_deref_mut() {
                    for &(a, va) in &kb {
                        for &(b, vb) in &kb {
                            if b <= a {
                                ce[a * mk + b] += e2 * va * vb;
                            }
                        }
                    }
                }
            }
        }
        s
    };

    // Moments without their residual sums: the fitted values they are to be summed for.
    if let Some(mo) = moments
        && mo.ezz.is_none()
    {
        let mut constant = vec![0.0f64; units.len()];
        for l in 0..n_lev {
            let idx = &by_level[start[l]..start[l + 1]];
            if idx.is_empty() {
                continue;
            }
            let bl = if coord[l] != NONE {
                let s = level_sums(idx, None, None, &mut buf);
                (s.sy - dot(&s.b, &beta_s)) / s.n
            } else {
                0.0
            };
            for &u in idx {
                entries(units.get(u as usize).0, &mut buf);
                constant[u as usize] = bl
                    + buf
                        .iter()
                        .filter(|(col, _)| pos[*col] != usize::MAX && loc[*col] == 0)
                        .map(|(col, _)| beta_s[pos[*col]])
                        .sum::<f64>();
            }
        }
        let mut slopes = vec![0.0f64; nz - 1];
        for (j, &b) in base.iter().enumerate() {
            if b != NONE
                && matches!(covs[j], Covariate::Numeric(_))
                && pos[b as usize] != usize::MAX
            {
                slopes[loc[b as usize] - 1] = beta_s[pos[b as usize]];
            }
        }
        if let Some(need) = need {
            *need = Some((constant, slopes, false));
        }
        return Err(NEEDS_RESIDUALS.into());
    }
    // Pass B: the wide coefficients, the residual sums, H = F'MF (M the meat X'diag(e²)X,
    // F = [−D⁻¹B; I]) and Δ.
    let scale = n as f64 / (n - rk) as f64;
    let mut beta_w = vec![0.0f64; d];
    let mut delta = vec![0.0f64; d];
    let mut ce = vec![0.0f64; mk * mk];
    let mut h = vec![0.0f64; mk * mk];
    for l in 0..n_lev {
        let idx = &by_level[start[l]..start[l + 1]];
        if idx.is_empty() {
            continue;
        }
        let bl = if coord[l] != NONE {
            let s = level_sums(idx, None, None, &mut buf);
            (s.sy - dot(&s.b, &beta_s)) / s.n
        } else {
            0.0
        };
        let s = level_sums(idx, Some(bl), Some(&mut ce), &mut buf);
        if coord[l] != NONE {
            let c = coord[l] as usize;
            beta_w[c] = bl;
            delta[c] = scale * s.de / (s.n * s.n);
            for a in 0..mk {
                for b in 0..=a {
                    h[a * mk + b] += s.de * s.b[a] * s.b[b] / (s.n * s.n)
                        - (s.b[a] * s.be[b] + s.be[a] * s.b[b]) / s.n;
                }
            }
        }
    }
    if ce.iter().all(|x| *x == 0.0) {
        return Err(ALL_FIT.into());
    }
    symmetrize_lower(&mut ce, mk);
    symmetrize_lower(&mut h, mk);
    for (x, c) in h.iter_mut().zip(&ce) {
        *x += c;
    }
    // W = Δ + U·G·U' over the slopes; U's row for a wide level is [y_l, f_l] (2·mk), for an
    // other slope j the unit vector at mk + j. G = scale·[[0, K⁻¹], [K⁻¹, K⁻¹HK⁻¹]].
    let w = 2 * mk;
    let khk = mat_mul(&mat_mul(&kinv, mk, mk, &h, mk), mk, mk, &kinv, mk);
    let mut g = vec![0.0f64; w * w];
    let mut ginv = vec![0.0f64; w * w];
    for a in 0..mk {
        for b in 0..mk {
            g[a * w + mk + b] = scale * kinv[a * mk + b];
            g[(mk + a) * w + b] = scale * kinv[a * mk + b];
            g[(mk + a) * w + mk + b] = scale * khk[a * mk + b];
            ginv[a * w + b] = -h[a * mk + b] / scale;
            ginv[a * w + mk + b] = kk[a * mk + b] / scale;
            ginv[(mk + a) * w + b] = kk[a * mk + b] / scale;
        }
    }
    let u_row = |s: &LevelSums| -> Vec<f64> {
        let mut u = vec![0.0; w];
        for i in 0..mk {
            u[i] = (s.be[i] - s.de * s.b[i] / s.n) / s.n;
            u[mk + i] = -s.b[i] / s.n;
        }
        u
    };
    let max_delta = delta.iter().fold(0.0f64, |a, b| a.max(*b));
    let tau = 1e-12 * max_delta;

    // Pass C: levels with Δ > τ (T: their rows of U, Δ and slopes are kept) and with Δ = 0
    // (Z, with the other slopes: only U_Z'U_Z and U_Z'b_Z are needed).
    let mut ut: Vec<f64> = Vec::new();
    let mut dt: Vec<f64> = Vec::new();
    let mut ct: Vec<f64> = Vec::new();
    let mut gram_z = vec![0.0f64; w * w];
    let mut uzb = vec![0.0f64; w];
    for l in 0..n_lev {
        if coord[l] == NONE {
            continue;
        }
        let c = coord[l] as usize;
        let idx = &by_level[start[l]..start[l + 1]];
        let s = level_sums(idx, Some(beta_w[c]), None, &mut buf);
        let u = u_row(&s);
        let (dl, bl) = (delta[c], beta_w[c]);
        if dl > tau {
            ut.extend_from_slice(&u);
            dt.push(dl);
            ct.push(bl);
        } else {
            add_outer(&mut gram_z, &u, 1.0);
            for (a, x) in uzb.iter_mut().zip(&u) {
                *a += x * bl;
            }
        }
    }
    for j in 1..mk {
        gram_z[(mk + j) * w + mk + j] += 1.0;
        uzb[mk + j] += beta_s[j];
    }
    let nt = dt.len();
    if rk <= DENSE_FALLBACK_COLUMNS && dt.iter().any(|&x| x < NEAR_ZERO * max_delta) {
        return Err(FALLBACK.into());
    }
    // Step 1: an orthonormal basis of the range of U_Z; R_Z with U_Z = Q_Z·R_Z, c_Z = Q_Z'b_Z.
    let (lz, vz) = sym_eigen(&gram_z, w);
    let lz_max = lz.iter().fold(0.0f64, |a, b| a.max(*b));
    let zi: Vec<usize> = (0..w)
        .filter(|&i| lz[i] > 1e-20 * lz_max && lz[i] > 0.0)
        .collect();
    let rz_n = zi.len();
    let near_rank_loss = lz
        .iter()
        .any(|&x| x > 1e-20 * lz_max && x < ILL_CONDITIONED * ILL_CONDITIONED * lz_max);
    if rk <= DENSE_FALLBACK_COLUMNS && near_rank_loss {
        return Err(FALLBACK.into());
    }
    let mut rz = vec![0.0f64; rz_n * w];
    let mut cz = vec![0.0f64; rz_n];
    for (i, &e) in zi.iter().enumerate() {
        let sq = lz[e].sqrt();
        let mut proj = 0.0;
        for k in 0..w {
            rz[i * w + k] = sq * vz[k * w + e];
            proj += vz[k * w + e] * uzb[k];
        }
        cz[i] = proj / sq;
    }
    // Step 2: P = Δ_T + U_T·G·U_T' is solved by the Woodbury identity
    // P⁻¹ ≈ Δ⁻¹ − Δ⁻¹U_T·Γ·U_T'Δ⁻¹ with Γ = (G⁻¹ + U_T'Δ⁻¹U_T)⁻¹, refined iteratively against P
    // itself (the identity loses digits when some Δ are small beside the low-rank part).
    let mut omega = vec![0.0f64; w * w];
    for t in 0..nt {
        add_outer(&mut omega, &ut[t * w..(t + 1) * w], 1.0 / dt[t]);
    }
    let mmat: Vec<f64> = ginv.iter().zip(&omega).map(|(a, b)| a + b).collect();
    let (lm, vm) = sym_eigen(&mmat, w);
    let lm_max = lm.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let lm_min = lm.iter().fold(f64::INFINITY, |a, b| a.min(b.abs()));
    if lm_min <= ILL_CONDITIONED * lm_max && rk <= DENSE_FALLBACK_COLUMNS {
        return Err(FALLBACK.into());
    }
    let mut gamma = vec![0.0f64; w * w];
    for (e, &lam) in lm.iter().enumerate() {
        if lam.abs() <= 1e-15 * lm_max {
            continue;
        }
        for i in 0..w {
            for j in 0..w {
                gamma[i * w + j] += vm[i * w + e] * vm[j * w + e] / lam;
            }
        }
    }
    // U_T'·X for X (nt × cols).
    let ut_x = |x: &[f64], cols: usize| -> Vec<f64> {
        let mut out = vec![0.0f64; w * cols];
        for t in 0..nt {
            for i in 0..w {
                let u = ut[t * w + i];
                if u != 0.0 {
                    for c in 0..cols {
                        out[i * cols + c] += u * x[t * cols + c];
                    }
                }
            }
        }
        out
    };
    // X + U_T·Y row by row, scaled: out[t] = (a[t] + s·(U_T·Y)[t]) · f(t).
    let add_u_y = |a: &[f64], y: &[f64], cols: usize, sign: f64, f: &dyn Fn(usize) -> f64| {
        let mut out = vec![0.0f64; nt * cols];
        for t in 0..nt {
            for c in 0..cols {
                let uy: f64 = (0..w).map(|i| ut[t * w + i] * y[i * cols + c]).sum();
                out[t * cols + c] = (a[t * cols + c] + sign * uy) * f(t);
            }
        }
        out
    };
    let apply_p = |x: &[f64], cols: usize| -> Vec<f64> {
        let gy = mat_mul(&g, w, w, &ut_x(x, cols), cols);
        let dx: Vec<f64> = (0..nt * cols).map(|i| dt[i / cols] * x[i]).collect();
        add_u_y(&dx, &gy, cols, 1.0, &|_| 1.0)
    };
    let woodbury = |r: &[f64], cols: usize| -> Vec<f64> {
        let dr: Vec<f64> = (0..nt * cols).map(|i| r[i] / dt[i / cols]).collect();
        let gy = mat_mul(&gamma, w, w, &ut_x(&dr, cols), cols);
        add_u_y(r, &gy, cols, -1.0, &|t| 1.0 / dt[t])
    };
    let solve = |r: &[f64], cols: usize| -> Vec<f64> {
        let mut x = woodbury(r, cols);
        for _ in 0..4 {
            let px = apply_p(&x, cols);
            let res: Vec<f64> = r.iter().zip(&px).map(|(a, b)| a - b).collect();
            let dx = woodbury(&res, cols);
            for (xi, d) in x.iter_mut().zip(&dx) {
                *xi += d;
            }
        }
        x
    };
    // X = P⁻¹·[c_T, U_T].
    let cols = w + 1;
    let mut rhs = vec![0.0f64; nt * cols];
    for t in 0..nt {
        rhs[t * cols] = ct[t];
        rhs[t * cols + 1..(t + 1) * cols].copy_from_slice(&ut[t * w..(t + 1) * w]);
    }
    let x = solve(&rhs, cols);
    let xc: Vec<f64> = (0..nt).map(|t| x[t * cols]).collect();
    let xu: Vec<f64> = (0..nt)
        .flat_map(|t| x[t * cols + 1..(t + 1) * cols].to_vec())
        .collect();
    let c_p_c = dot(&ct, &xc);
    let u_p_c = ut_x(&xc, 1);
    let u_p_u = ut_x(&xu, w);
    // The Schur complement of the T block: S = R_Z·(G − G·U_T'P⁻¹U_T·G)·R_Z'.
    let g_upu_g = mat_mul(&mat_mul(&g, w, w, &u_p_u, w), w, w, &g, w);
    let smid: Vec<f64> = g.iter().zip(&g_upu_g).map(|(a, b)| a - b).collect();
    let rzt = transpose(&rz, rz_n, w);
    let sc = mat_mul(&mat_mul(&rz, rz_n, w, &smid, w), rz_n, w, &rzt, rz_n);
    let rz_g = mat_mul(&rz, rz_n, w, &g, w);
    let (ls, vs) = sym_eigen(&sc, rz_n);
    let ls_max = ls.iter().fold(max_delta, |a, b| a.max(*b));
    let null: Vec<usize> = (0..rz_n).filter(|&i| ls[i] <= 1e-12 * ls_max).collect();
    if rk <= DENSE_FALLBACK_COLUMNS
        && ls
            .iter()
            .any(|&x| x > 1e-12 * ls_max && x < NEAR_ZERO * ls_max)
    {
        return Err(FALLBACK.into());
    }
    let quad_s = |dv: &[f64]| -> f64 {
        (0..rz_n)
            .filter(|i| !null.contains(i))
            .map(|i| {
                let p: f64 = (0..rz_n).map(|k| vs[k * rz_n + i] * dv[k]).sum();
                p * p / ls[i]
            })
            .sum()
    };
    // d = c_Z − Q'P⁻¹c_T with Q = U_T·G·R_Z'.
    let d0: Vec<f64> = cz
        .iter()
        .zip(mat_vec(&rz_g, rz_n, w, &u_p_c))
        .map(|(c, x)| c - x)
        .collect();
    let value = if null.is_empty() {
        c_p_c + quad_s(&d0)
    } else {
        // W is singular beyond step 1: its null space is {(−P⁻¹Q·y, y) : S·y = 0}; project b
        // onto the range orthogonally, then evaluate.
        let nu = null.len();
        let y0: Vec<f64> = (0..rz_n)
            .flat_map(|k| null.iter().map(move |&i| (k, i)))
            .map(|(k, i)| vs[k * rz_n + i])
            .collect(); // rz_n × ν
        // Q'P⁻²Q = R_Z·G·(P⁻¹U_T)'(P⁻¹U_T)·G·R_Z'.
        let up2u = mat_mul(&transpose(&xu, nt, w), w, nt, &xu, w);
        let mut ia2 = mat_mul(
            &mat_mul(&rz_g, rz_n, w, &up2u, w),
            rz_n,
            w,
            &transpose(&rz_g, rz_n, w),
            rz_n,
        );
        for i in 0..rz_n {
            ia2[i * rz_n + i] += 1.0;
        }
        let y0t = transpose(&y0, rz_n, nu);
        let nn = mat_mul(&mat_mul(&y0t, nu, rz_n, &ia2, rz_n), nu, rz_n, &y0, nu);
        let nc = mat_vec(&y0t, nu, rz_n, &d0);
        let nn_inv = spd_inverse(&nn, nu).ok_or("the robust covariance is degenerate")?;
        let z = mat_vec(&y0, rz_n, nu, &mat_vec(&nn_inv, nu, nu, &nc));
        // The projected slopes: c_T + P⁻¹Q·z and c_Z − z.
        let gz = mat_vec(&transpose(&rz_g, rz_n, w), w, rz_n, &z);
        let shift: Vec<f64> = (0..nt).map(|t| dot(&xu[t * w..(t + 1) * w], &gz)).collect();
        let cr: Vec<f64> = ct.iter().zip(&shift).map(|(a, b)| a + b).collect();
        let p_shift = solve(&shift, 1);
        let p_cr: Vec<f64> = xc.iter().zip(&p_shift).map(|(a, b)| a + b).collect();
        let u_p_cr = ut_x(&p_cr, 1);
        let dr: Vec<f64> = cz
            .iter()
            .zip(&z)
            .zip(mat_vec(&rz_g, rz_n, w, &u_p_cr))
            .map(|((c, z), x)| c - z - x)
            .collect();
        dot(&cr, &p_cr) + quad_s(&dr)
    };
    let q = rk - 1;
    let f = value.max(0.0) / q as f64;
    let df2 = (n - rk) as f64;
    let p = if f.is_finite() {
        FisherSnedecor::new(q as f64, df2)
            .map_err(|e| format!("F distribution: {e}"))?
            .sf(f)
    } else {
        0.0
    };
    // Coefficients in covariate order.
    let mut beta = vec![beta_s[0]];
    for (j, c) in covs.iter().enumerate() {
        if Some(j) == wide {
            beta.extend_from_slice(&beta_w);
        } else if base[j] != NONE {
            if pos[base[j] as usize] != usize::MAX {
                beta.push(beta_s[pos[base[j] as usize]]);
            }
        } else if let Covariate::Categorical { .. } = c {
            for &k in &col_of[j] {
                if k > 0 && pos[(k - 1) as usize] != usize::MAX {
                    beta.push(beta_s[pos[(k - 1) as usize]]);
                }
            }
        }
    }
    Ok(FTest {
        beta,
        f_statistic: f,
        numerator_df: q as u64,
        denominator_df: n as u64 - rk as u64,
        p_value: p,
        n: n as u64,
    })
}

/// For design columns `0 … m−1` laid out by `base` (a numeric covariate's column, [`NONE`] for
/// others): each column's index in a cell's z of [`Moments`] (0 for the intercept and dummies,
/// k + 1 for the k-th numeric covariate in covariate order), and the width of z.
fn numeric_locations<'a, C: std::borrow::Borrow<Covariate<'a>>>(
    covs: &[C],
    base: &[u32],
    m: usize,
) -> (Vec<usize>, usize) {
    let mut loc = vec![0usize; m];
    let mut k = 0;
    for (j, c) in covs.iter().enumerate() {
        if let Covariate::Numeric(_) = c.borrow() {
            k += 1;
            if base[j] != NONE && (base[j] as usize) < m {
                loc[base[j] as usize] = k;
            }
        }
    }
    (loc, k + 1)
}

fn symmetrize_lower(a: &mut [f64], k: usize) {
    for i in 0..k {
        for j in 0..i {
            a[j * k + i] = a[i * k + j];
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// a += s·u u'.
fn add_outer(a: &mut [f64], u: &[f64], s: f64) {
    let k = u.len();
    for i in 0..k {
        if u[i] != 0.0 {
            let ui = s * u[i];
            for j in 0..k {
                a[i * k + j] += ui * u[j];
            }
        }
    }
}

/// (r×k)·(k×c), row-major.
fn mat_mul(a: &[f64], r: usize, k: usize, b: &[f64], c: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for t in 0..k {
            let x = a[i * k + t];
            if x != 0.0 {
                for j in 0..c {
                    out[i * c + j] += x * b[t * c + j];
                }
            }
        }
    }
    out
}

fn mat_vec(a: &[f64], r: usize, c: usize, x: &[f64]) -> Vec<f64> {
    (0..r).map(|i| dot(&a[i * c..(i + 1) * c], x)).collect()
}

fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut t = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = a[i * c + j];
        }
    }
    t
}

pub(crate) mod dense {
    use super::*;

    /// The dense computation (k×k matrices, a Jacobi pseudo-inverse): the test oracle for
    /// [`f_test_grouped`]. Columns: the intercept, the dummies of the categorical covariate with
    /// the most present levels, then the other covariates in order (coefficients in that order).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn f_test_dense(
        sample: &Sample,
        covs: &[&Covariate],
        cells: Option<(&[u32], u32)>,
    ) -> Result<FTest, NoTest> {
        let n = match sample {
            Sample::Rows { rows, .. } => rows.len(),
            Sample::Arms { n, .. } => *n,
        };
        // Groups of rows with identical covariates: (representative row, count, Σy, Σy²).
        let grouped: Option<Vec<(u32, f64, f64, f64)>> = cells.map(|(cell, n_cells)| {
            let mut g: Vec<(u32, f64, f64, f64)> =
                vec![(u32::MAX, 0.0, 0.0, 0.0); n_cells as usize];
            sample.for_each(&mut |r, yr| {
                let e = &mut g[cell[r] as usize];
                if e.0 == u32::MAX {
                    e.0 = r as u32;
                }
                e.1 += 1.0;
                e.2 += yr;
                e.3 += yr * yr;
            });
            g.retain(|e| e.0 != u32::MAX);
            g
        });
        f_test_dense_groups(sample, n, covs, grouped.as_deref())
    }

    /// [`f_test_dense`] with the groups already summed (`None`: row by row over `sample`).
    pub fn f_test_dense_groups(
        sample: &Sample,
        n: usize,
        covs: &[&Covariate],
        grouped: Option<&[(u32, f64, f64, f64)]>,
    ) -> Result<FTest, NoTest> {
        dense_impl(sample, n, covs, grouped, None)
    }

    /// Moments and the slot for the fitted values they need.
    type WithNeed<'m, 'n> = (&'m Moments, Option<&'n mut Option<Fitted>>);

    /// [`f_test_dense`] from the moments of [`super::f_test_moments`]: without their dense
    /// residual sums, the fitted values to sum them for (in `need`).
    pub fn f_test_dense_moments(
        mo: &Moments,
        n: usize,
        covs: &[&Covariate],
        need: Option<&mut Option<Fitted>>,
    ) -> Result<FTest, NoTest> {
        let none = Sample::Rows { rows: &[], y: &[] };
        dense_impl(&none, n, covs, Some(&mo.cells), Some((mo, need)))
    }

    fn dense_impl(
        sample: &Sample,
        n: usize,
        covs: &[&Covariate],
        grouped: Option<&[(u32, f64, f64, f64)]>,
        moments: Option<WithNeed>,
    ) -> Result<FTest, NoTest> {
        let (moments, need) = match moments {
            Some((m, need)) => (Some(m), need),
            None => (None, None),
        };
        // f(unit, row, count, Σy, Σy²).
        let each_unit = |f: &mut dyn FnMut(usize, usize, f64, f64, f64)| match grouped {
            Some(g) => {
                for (u, &(r, c, sy, syy)) in g.iter().enumerate() {
                    f(u, r as usize, c, sy, syy)
                }
            }
            None => sample.for_each(&mut |r, yr| f(r, r, 1.0, yr, yr * yr)),
        };
        let each = |f: &mut dyn FnMut(usize, f64, f64, f64)| {
            each_unit(&mut |_, r, c, sy, syy| f(r, c, sy, syy))
        };
        // Layout: column 0 the intercept; numeric covariates one column; categorical one column per
        // present level except the first present one.
        let mut col_of: Vec<Vec<u32>> = vec![Vec::new(); covs.len()]; // categorical: level -> col+1 (0 = none)
        let mut base: Vec<u32> = vec![0; covs.len()];
        let mut k: usize = 1;
        let mut npres = vec![0usize; covs.len()];
        let mut presents: Vec<Vec<bool>> = vec![Vec::new(); covs.len()];
        for (j, c) in covs.iter().enumerate() {
            if let Covariate::Categorical { codes, levels } = **c {
                let mut present = vec![false; levels as usize];
                each(&mut |r, _, _, _| present[codes.get(r) as usize] = true);
                npres[j] = present.iter().filter(|p| **p).count();
                presents[j] = present;
            }
        }
        let wide = widest(covs, &npres, &vec![true; covs.len()]);
        let order: Vec<usize> = wide
            .into_iter()
            .chain((0..covs.len()).filter(|j| Some(*j) != wide))
            .collect();
        for j in order {
            match *covs[j] {
                Covariate::Numeric(_) => {
                    base[j] = k as u32;
                    k += 1;
                }
                Covariate::Categorical { levels, .. } => {
                    let mut map = vec![0u32; levels as usize];
                    let mut first = true;
                    for (l, p) in presents[j].iter().enumerate() {
                        if *p {
                            if first {
                                first = false;
                            } else {
                                map[l] = k as u32 + 1;
                                k += 1;
                            }
                        }
                    }
                    col_of[j] = map;
                }
            }
        }
        let nz = 1 + covs.len();
        let row_entries = |r: usize, buf: &mut Vec<(usize, f64)>| {
            buf.clear();
            buf.push((0, 1.0));
            for (j, c) in covs.iter().enumerate() {
                match c {
                    Covariate::Numeric(v) => buf.push((base[j] as usize, v[r])),
                    Covariate::Categorical { codes, .. } => {
                        let m = col_of[j][codes.get(r) as usize];
                        if m > 0 {
                            buf.push(((m - 1) as usize, 1.0));
                        }
                    }
                }
            }
        };
        // X'X and X'y.
        let mut xtx = vec![0.0f64; k * k];
        let mut xty = vec![0.0f64; k];
        let mut buf: Vec<(usize, f64)> = Vec::with_capacity(nz);
        let (loc, zw) = numeric_locations(covs, &base, k);
        each_unit(&mut |u, r, c, sy, _| {
            row_entries(r, &mut buf);
            if let Some(mo) = moments {
                let (zz, zy) = (&mo.zz[u], &mo.zy[u]);
                for &(a, _) in &buf {
                    xty[a] += zy[loc[a]];
                    for &(b, _) in &buf {
                        if b <= a {
                            xtx[a * k + b] += zz[loc[a] * zw + loc[b]];
                        }
                    }
                }
                return;
            }
            for &(a, va) in &buf {
                xty[a] += va * sy;
                for &(b, vb) in &buf {
                    if b <= a {
                        xtx[a * k + b] += c * va * vb;
                    }
                }
            }
        });
        for a in 0..k {
            for b in 0..a {
                xtx[b * k + a] = xtx[a * k + b];
            }
        }
        // Columns kept by a rank-revealing Cholesky in column order.
        let diag: Vec<f64> = (0..k).map(|i| xtx[i * k + i]).collect();
        let keep = independent_columns(&xtx, k, &diag);
        let rk = keep.len();
        if rk < 2 {
            return Err("no covariate varies among the compared participants".into());
        }
        if n <= rk {
            return Err(format!(
                "too few participants ({n}) for {rk} regression terms"
            ));
        }
        let sub = |m: &[f64]| -> Vec<f64> {
            let mut s = vec![0.0; rk * rk];
            for (i, &a) in keep.iter().enumerate() {
                for (j, &b) in keep.iter().enumerate() {
                    s[i * rk + j] = m[a * k + b];
                }
            }
            s
        };
        let a = sub(&xtx);
        let ainv = spd_inverse(&a, rk).ok_or("the covariates are collinear")?;
        let xty_k: Vec<f64> = keep.iter().map(|&c| xty[c]).collect();
        let beta: Vec<f64> = (0..rk)
            .map(|i| (0..rk).map(|j| ainv[i * rk + j] * xty_k[j]).sum())
            .collect();
        // Position of each full column in the kept list (usize::MAX: dropped).
        let mut pos = vec![usize::MAX; k];
        for (i, &c) in keep.iter().enumerate() {
            pos[c] = i;
        }
        if let Some(mo) = moments
            && mo.dense_ezz.is_none()
        {
            // The fitted values of this fit, for the residual sums.
            let mut constant = vec![0.0f64; mo.cells.len()];
            let mut slopes = vec![0.0f64; zw - 1];
            for (u, &(r, ..)) in mo.cells.iter().enumerate() {
                row_entries(r as usize, &mut buf);
                for &(col, _) in &buf {
                    if pos[col] == usize::MAX {
                        continue;
                    }
                    if loc[col] == 0 {
                        constant[u] += beta[pos[col]];
                    } else {
                        slopes[loc[col] - 1] = beta[pos[col]];
                    }
                }
            }
            if let Some(need) = need {
                *need = Some((constant, slopes, true));
            }
            return Err(NEEDS_RESIDUALS.into());
        }
        // Meat: Σ e² x x' over kept columns.
        let mut meat = vec![0.0f64; rk * rk];
        let mut kb: Vec<(usize, f64)> = Vec::with_capacity(nz);
        each_unit(&mut |u, r, c, sy, syy| {
            row_entries(r, &mut buf);
            kb.clear();
            if let Some(ezz) = moments.and_then(|mo| mo.dense_ezz.as_ref()).map(|e| &e[u]) {
                for &(a, _) in &buf {
                    for &(b, _) in &buf {
                        if pos[a] != usize::MAX && pos[b] != usize::MAX && pos[b] <= pos[a] {
                            meat[pos[a] * rk + pos[b]] += ezz[loc[a] * zw + loc[b]];
                        }
                    }
                }
                return;
            }
            kb.extend(
                buf.iter()
                    .filter(|(col, _)| pos[*col] != usize::MAX)
                    .map(|(col, v)| (pos[*col], *v)),
            );
            let fitted: f64 = kb.iter().map(|(i, v)| beta[*i] * v).sum();
            // Σ over the group of (y − fitted)².
            let e2 = unit_e2(c, sy, syy, fitted);
            for &(i, vi) in &kb {
                for &(j, vj) in &kb {
                    if j <= i {
                        meat[i * rk + j] += e2 * vi * vj;
                    }
                }
            }
        });
        for i in 0..rk {
            for j in 0..i {
                meat[j * rk + i] = meat[i * rk + j];
            }
        }
        if meat.iter().all(|x| *x == 0.0) {
            return Err(ALL_FIT.into());
        }
        let scale = n as f64 / (n - rk) as f64;
        let v = matmul(&matmul(&ainv, &meat, rk), &ainv, rk);
        let q = rk - 1;
        let mut w = vec![0.0; q * q];
        for i in 0..q {
            for j in 0..q {
                w[i * q + j] = scale * v[(i + 1) * rk + (j + 1)];
            }
        }
        let b = &beta[1..];
        let winv = pinv_sym(&w, q);
        let mut quad = 0.0;
        for i in 0..q {
            for j in 0..q {
                quad += b[i] * winv[i * q + j] * b[j];
            }
        }
        let f = quad / q as f64;
        let df2 = (n - rk) as f64;
        let p = if f.is_finite() {
            FisherSnedecor::new(q as f64, df2)
                .map_err(|e| format!("F distribution: {e}"))?
                .sf(f)
        } else {
            0.0
        };
        Ok(FTest {
            beta,
            f_statistic: f,
            numerator_df: q as u64,
            denominator_df: n as u64 - rk as u64,
            p_value: p,
            n: n as u64,
        })
    }
}

/// Indices of a maximal set of linearly independent columns of the Gram matrix `a`, taken in
/// order: a column is dependent when its residual sum of squares (after the kept columns
/// before it) is at most 1e-10 of `reference[j]`, its own sum of squares. (With `a` a Schur
/// complement the reference is the column's sum of squares in the full design.)
pub(crate) fn independent_columns(a: &[f64], k: usize, reference: &[f64]) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    // l: rows of the Cholesky factor of the kept columns, l[i][m] for m < i (kept index space).
    let mut l: Vec<Vec<f64>> = Vec::new();
    for j in 0..k {
        let ajj = a[j * k + j];
        if ajj <= 0.0 || reference[j] <= 0.0 {
            continue;
        }
        let mut row: Vec<f64> = Vec::with_capacity(keep.len() + 1);
        for (m, &c) in keep.iter().enumerate() {
            let s: f64 = a[j * k + c] - (0..m).map(|t| row[t] * l[m][t]).sum::<f64>();
            row.push(s / l[m][m]);
        }
        let d = ajj - row.iter().map(|x| x * x).sum::<f64>();
        if d > 1e-10 * reference[j] {
            row.push(d.sqrt());
            l.push(row);
            keep.push(j);
        }
    }
    keep
}

/// Inverse of a symmetric positive-definite matrix through its Cholesky factor.
pub fn spd_inverse(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = a[i * k + j] - (0..j).map(|t| l[i * k + t] * l[j * k + t]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    // inv(L) by forward substitution, then inv(A) = inv(L)' inv(L).
    let mut li = vec![0.0f64; k * k];
    for i in 0..k {
        li[i * k + i] = 1.0 / l[i * k + i];
        for j in 0..i {
            let s: f64 = (j..i).map(|t| l[i * k + t] * li[t * k + j]).sum();
            li[i * k + j] = -s / l[i * k + i];
        }
    }
    let mut inv = vec![0.0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (i..k).map(|t| li[t * k + i] * li[t * k + j]).sum();
            inv[i * k + j] = s;
            inv[j * k + i] = s;
        }
    }
    Some(inv)
}

pub(crate) fn matmul(a: &[f64], b: &[f64], k: usize) -> Vec<f64> {
    let mut c = vec![0.0; k * k];
    for i in 0..k {
        for t in 0..k {
            let x = a[i * k + t];
            if x != 0.0 {
                for j in 0..k {
                    c[i * k + j] += x * b[t * k + j];
                }
            }
        }
    }
    c
}

/// Eigenvalues and eigenvectors of a symmetric matrix (cyclic Jacobi): `(λ, V)` with the
/// eigenvector of λ[e] in column e of V (`V[i·k + e]`).
pub fn sym_eigen(a: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0f64; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * k + j].powi(2))
            .sum();
        let diag: f64 = (0..k).map(|i| m[i * k + i].powi(2)).sum();
        if off <= 1e-30 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = m[p * k + q];
                if apq == 0.0 {
                    continue;
                }
                let app = m[p * k + p];
                let aqq = m[q * k + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..k {
                    let mrp = m[r * k + p];
                    let mrq = m[r * k + q];
                    m[r * k + p] = c * mrp - s * mrq;
                    m[r * k + q] = s * mrp + c * mrq;
                }
                for r in 0..k {
                    let mpr = m[p * k + r];
                    let mqr = m[q * k + r];
                    m[p * k + r] = c * mpr - s * mqr;
                    m[q * k + r] = s * mpr + c * mqr;
                }
                for r in 0..k {
                    let vrp = v[r * k + p];
                    let vrq = v[r * k + q];
                    v[r * k + p] = c * vrp - s * vrq;
                    v[r * k + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..k).map(|i| m[i * k + i]).collect(), v)
}

/// Moore–Penrose pseudo-inverse of a symmetric matrix (eigenvalues below 1e-12 of the largest
/// are treated as zero).
pub fn pinv_sym(a: &[f64], k: usize) -> Vec<f64> {
    let (eig, v) = sym_eigen(a, k);
    let max = eig.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let mut out = vec![0.0; k * k];
    for (e, &lam) in eig.iter().enumerate() {
        if lam.abs() > 1e-12 * max && lam != 0.0 {
            for i in 0..k {
                for j in 0..k {
                    out[i * k + j] += v[i * k + e] * v[j * k + e] / lam;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vector_6_8() {
        // The reference tool's balance vector (statsmodels OLS, cov_type HC1; docs/statistics.md).
        let gender = ["M", "F", "M", "F", "M", "F", "M", "F", "M", "M", "F", "F"];
        let income = [
            10.0, 12.0, 9.0, 15.0, 11.0, 13.0, 8.0, 14.0, 10.5, 9.5, 12.5, 16.0,
        ];
        let treat = [0., 1., 0., 1., 1., 0., 0., 1., 1., 0., 1., 0.];
        let codes = Codes::Owned(
            gender
                .iter()
                .map(|g| if *g == "F" { 0 } else { 1 })
                .collect(),
        );
        let rows: Vec<u32> = (0..12).collect();
        let t = f_test(
            &rows,
            &treat,
            &[
                Covariate::Numeric(&income),
                Covariate::Categorical {
                    codes: &codes,
                    levels: 2,
                },
            ],
        )
        .unwrap();
        let want_beta = [0.14901961, 0.03764706, -0.17960784];
        for (b, w) in t.beta.iter().zip(want_beta) {
            assert!((b - w).abs() < 1e-8, "beta {:?}", t.beta);
        }
        assert!(
            (t.f_statistic - 0.6036754869).abs() < 1e-8,
            "F {}",
            t.f_statistic
        );
        assert!((t.p_value - 0.5675218365).abs() < 1e-8, "p {}", t.p_value);
        assert_eq!((t.numerator_df, t.denominator_df), (2, 9));
    }

    #[test]
    fn grouped_sums_give_the_same_test() {
        let a: Vec<u32> = (0..200).map(|i| ((i * 7) % 5) as u32).collect();
        let b: Vec<u32> = (0..200).map(|i| ((i * 3) % 4) as u32).collect();
        let cell: Vec<u32> = a.iter().zip(&b).map(|(x, y)| x * 4 + y).collect();
        let (a, b) = (Codes::Owned(a), Codes::Owned(b));
        let y: Vec<f64> = (0..200).map(|i| ((i * 13 + i / 7) % 2) as f64).collect();
        let rows: Vec<u32> = (0..200).filter(|i| i % 9 != 0).collect();
        let covs = [
            Covariate::Categorical {
                codes: &a,
                levels: 5,
            },
            Covariate::Categorical {
                codes: &b,
                levels: 4,
            },
        ];
        let one = f_test(&rows, &y, &covs).unwrap();
        let two = f_test_grouped(
            &Sample::Rows { rows: &rows, y: &y },
            &covs,
            Some((&cell, 20)),
        )
        .test
        .unwrap();
        // The same through the arms view (arm 1 = treatment, arm 0 = control, arm 2 left out).
        let arm: Vec<u32> = (0..200)
            .map(|i| if i % 9 == 0 { 2 } else { y[i] as u32 })
            .collect();
        let order: Vec<u32> = (0..200).collect();
        let three = f_test_grouped(
            &Sample::Arms {
                order: &order,
                arm: &arm,
                control: 0,
                treatment: 1,
                n: rows.len(),
            },
            &covs,
            None,
        )
        .test
        .unwrap();
        assert!((one.f_statistic - three.f_statistic).abs() < 1e-10 * one.f_statistic.max(1.0));
        assert_eq!(one.n, three.n);
        assert_eq!(
            (one.numerator_df, one.denominator_df),
            (two.numerator_df, two.denominator_df)
        );
        assert!((one.f_statistic - two.f_statistic).abs() < 1e-10 * one.f_statistic.max(1.0));
        assert!((one.p_value - two.p_value).abs() < 1e-10);
        // From per-cell sums computed elsewhere (in a warehouse): the cells' codes indexed by
        // cell id, (cell, count, Σy, Σy²) in cell order. Bit for bit the grouped test.
        let (ca, cb): (Vec<u32>, Vec<u32>) = (0..20u32).map(|c| (c / 4, c % 4)).unzip();
        let (ca, cb) = (Codes::Owned(ca), Codes::Owned(cb));
        let mut sums = vec![(0u32, 0.0f64, 0.0f64, 0.0f64); 20];
        for &r in &rows {
            let c = cell[r as usize] as usize;
            sums[c] = (
                c as u32,
                sums[c].1 + 1.0,
                sums[c].2 + y[r as usize],
                sums[c].3 + y[r as usize],
            );
        }
        sums.retain(|s| s.1 > 0.0);
        let cell_covs = [
            Covariate::Categorical {
                codes: &ca,
                levels: 5,
            },
            Covariate::Categorical {
                codes: &cb,
                levels: 4,
            },
        ];
        let four = f_test_cells(sums, rows.len(), &cell_covs).test.unwrap();
        assert_eq!(four, two);
    }

    #[test]
    fn collinear_dummies_are_dropped() {
        // b duplicates a (nested strata): same fit as a alone, rank 3 -> df (2, n-3)... here a
        // has 3 levels, b is a relabelling of a.
        let a: Vec<u32> = (0..30).map(|i| (i % 3) as u32).collect();
        let b: Vec<u32> = a.iter().map(|x| 2 - x).collect();
        let (a, b) = (Codes::Owned(a), Codes::Owned(b));
        let y: Vec<f64> = (0..30).map(|i| ((i * 7 + i / 4) % 2) as f64).collect();
        let rows: Vec<u32> = (0..30).collect();
        let one = f_test(
            &rows,
            &y,
            &[Covariate::Categorical {
                codes: &a,
                levels: 3,
            }],
        )
        .unwrap();
        let two = f_test(
            &rows,
            &y,
            &[
                Covariate::Categorical {
                    codes: &a,
                    levels: 3,
                },
                Covariate::Categorical {
                    codes: &b,
                    levels: 3,
                },
            ],
        )
        .unwrap();
        assert_eq!((two.numerator_df, two.denominator_df), (2, 27));
        assert!((one.f_statistic - two.f_statistic).abs() < 1e-9);
        assert!((one.p_value - two.p_value).abs() < 1e-9);
    }

    #[test]
    fn pinv_of_singular_matrix() {
        // [[1,1],[1,1]]^+ = [[.25,.25],[.25,.25]]
        let p = pinv_sym(&[1.0, 1.0, 1.0, 1.0], 2);
        for x in p {
            assert!((x - 0.25).abs() < 1e-12);
        }
        let inv = spd_inverse(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let want = [0.375, -0.25, -0.25, 0.5];
        for (x, w) in inv.iter().zip(want) {
            assert!((x - w).abs() < 1e-12);
        }
    }

    /// Compare the fast test with the dense oracle (F, p, dfs; 1e-9 relative).
    fn agree(sample: &Sample, covs: &[Covariate], cells: Option<(&[u32], u32)>) -> Option<FTest> {
        // The fast path alone: equal to the dense computation, or declining (ill-conditioned).
        let fast = grouped(sample, covs, cells, false);
        assert!(fast.left_out.is_empty());
        if fast.test.as_ref().is_err_and(|e| e == FALLBACK) {
            return None;
        }
        let refs: Vec<&Covariate> = covs.iter().collect();
        let dense = dense::f_test_dense(sample, &refs, cells);
        match (&fast.test, &dense) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.numerator_df, a.denominator_df, a.n),
                    (b.numerator_df, b.denominator_df, b.n)
                );
                let tol = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
                assert!(
                    tol(a.f_statistic, b.f_statistic),
                    "F fast {} dense {}",
                    a.f_statistic,
                    b.f_statistic
                );
                assert!(
                    tol(a.p_value, b.p_value),
                    "p fast {} dense {}",
                    a.p_value,
                    b.p_value
                );
                Some(a.clone())
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b);
                None
            }
            (a, b) => panic!("fast {a:?} dense {b:?}"),
        }
    }

    #[test]
    fn fast_equals_dense_with_strata_all_in_one_arm_and_nested_strata() {
        // Wide covariate a (12 levels, several with one participant or all in one arm, the
        // first level too), b nested in a (a's level / 4), and a numeric covariate.
        let n = 60usize;
        let a: Vec<u32> = (0..n as u32)
            .map(|i| if i < 2 { 0 } else { 1 + (i * 7) % 11 })
            .collect();
        let b: Vec<u32> = a.iter().map(|x| x / 4).collect();
        let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 17) as f64 / 3.0).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| match a[i] {
                0 | 3 => 1.0,
                5 => 0.0,
                _ => ((i * 13 + i / 5) % 2) as f64,
            })
            .collect();
        let (ac, bc) = (Codes::Owned(a.clone()), Codes::Owned(b));
        let rows: Vec<u32> = (0..n as u32).collect();
        let sample = Sample::Rows { rows: &rows, y: &y };
        let cat = |c| Covariate::Categorical {
            codes: c,
            levels: 12,
        };
        // (unwrap: the fast path computed these itself; with the numeric covariate the levels
        // all in one arm have tiny, not zero, residual variances, and the dense path is used.)
        agree(&sample, &[cat(&ac)], None).unwrap();
        agree(&sample, &[cat(&bc), cat(&ac)], None).unwrap();
        agree(&sample, &[Covariate::Numeric(&x), cat(&ac), cat(&bc)], None);
        // Every level of the wide covariate in one arm: W has a large null space.
        let y1: Vec<f64> = a.iter().map(|l| (l % 2) as f64).collect();
        let s1 = Sample::Rows {
            rows: &rows,
            y: &y1,
        };
        agree(&s1, &[cat(&ac), Covariate::Numeric(&x)], None);
        agree(&s1, &[cat(&ac)], None);
    }

    #[test]
    fn stratum_with_many_levels_is_tested_in_linear_time() {
        // 30,000 levels (ten participants each, plus a second stratum and a numeric
        // covariate): the dense test needed 30,000² matrices and hours. Here a few passes.
        let levels = 30_000u32;
        let n = 10 * levels as usize + 10;
        let a: Vec<u32> = (0..n as u32).map(|i| i % levels).collect();
        let b: Vec<u32> = (0..n as u32).map(|i| (i / 7) % 5).collect();
        let x: Vec<f64> = (0..n).map(|i| ((i * 31) % 101) as f64).collect();
        let y: Vec<f64> = (0..n as u64)
            .map(|i| ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % 2) as f64)
            .collect();
        let (ac, bc) = (Codes::Owned(a), Codes::Owned(b));
        let rows: Vec<u32> = (0..n as u32).collect();
        let t0 = std::time::Instant::now();
        let got = f_test_grouped(
            &Sample::Rows { rows: &rows, y: &y },
            &[
                Covariate::Categorical { codes: &ac, levels },
                Covariate::Categorical {
                    codes: &bc,
                    levels: 5,
                },
                Covariate::Numeric(&x),
            ],
            None,
        );
        assert!(got.left_out.is_empty());
        let t = got.test.unwrap();
        assert_eq!(t.numerator_df, (levels - 1 + 4 + 1) as u64);
        assert!(t.p_value.is_finite() && (0.0..=1.0).contains(&t.p_value));
        assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
    }

    #[test]
    fn stratum_with_fewer_than_ten_participants_per_level_is_left_out() {
        let n = 500usize;
        let fine: Vec<u32> = (0..n as u32).map(|i| i % 60).collect();
        let coarse: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let y: Vec<f64> = (0..n).map(|i| ((i * 13 + i / 7) % 2) as f64).collect();
        let (fc, cc) = (Codes::Owned(fine), Codes::Owned(coarse));
        let rows: Vec<u32> = (0..n as u32).collect();
        let got = f_test_grouped(
            &Sample::Rows { rows: &rows, y: &y },
            &[
                Covariate::Categorical {
                    codes: &cc,
                    levels: 3,
                },
                Covariate::Categorical {
                    codes: &fc,
                    levels: 60,
                },
            ],
            None,
        );
        assert_eq!(got.left_out.len(), 1);
        assert_eq!(got.left_out[0].covariate, 1);
        assert!(
            got.left_out[0].why.contains("60 levels among 500"),
            "{:?}",
            got.left_out
        );
        let alone = f_test(
            &rows,
            &y,
            &[Covariate::Categorical {
                codes: &cc,
                levels: 3,
            }],
        )
        .unwrap();
        assert_eq!(got.test.unwrap(), alone);
    }

    #[test]
    fn many_columns_besides_the_widest_stratum_leave_out_the_next_widest() {
        let n = 10_000usize;
        let a: Vec<u32> = (0..n as u32).map(|i| i % 1000).collect();
        let b: Vec<u32> = (0..n as u32).map(|i| (i / 7) % 300).collect();
        let c: Vec<u32> = (0..n as u32).map(|i| (i / 11) % 4).collect();
        let y: Vec<f64> = (0..n).map(|i| ((i * 7 + i / 3) % 2) as f64).collect();
        let (ac, bc, cc) = (Codes::Owned(a), Codes::Owned(b), Codes::Owned(c));
        let rows: Vec<u32> = (0..n as u32).collect();
        let got = f_test_grouped(
            &Sample::Rows { rows: &rows, y: &y },
            &[
                Covariate::Categorical {
                    codes: &ac,
                    levels: 1000,
                },
                Covariate::Categorical {
                    codes: &bc,
                    levels: 300,
                },
                Covariate::Categorical {
                    codes: &cc,
                    levels: 4,
                },
            ],
            None,
        );
        assert_eq!(got.left_out.len(), 1, "{:?}", got.left_out);
        assert_eq!(got.left_out[0].covariate, 1);
        assert_eq!(got.test.unwrap().numerator_df, 999 + 3);
    }

    type Generated = (Vec<(Vec<u32>, u32, bool)>, Vec<Vec<f64>>, Vec<f64>);

    /// A small deterministic generator for test designs (SplitMix64).
    struct SplitMix(u64);

    impl SplitMix {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    /// A random small design for the property test.
    fn generate(n: usize, spec: &[(u32, u8)], p_treat: f64, skew: u32, seed: u64) -> Generated {
        let mut rng = SplitMix(seed ^ 5);
        let mut cols: Vec<(Vec<u32>, u32, bool)> = Vec::new();
        for (j, &(levels, kind)) in spec.iter().enumerate() {
            let levels = levels.max(1);
            let codes: Vec<u32> = match (kind, j) {
                // nested in the previous covariate
                (1, j) if j > 0 => cols[j - 1].0.iter().map(|c| c / 2).collect(),
                // skewed: many small levels
                _ => (0..n)
                    .map(|_| {
                        let c = rng.below(levels as u64) as u32;
                        if skew > 0 && rng.below(4) < skew as u64 {
                            c
                        } else {
                            c.min(1)
                        }
                    })
                    .collect(),
            };
            let lv = codes.iter().max().copied().unwrap_or(0) + 1;
            cols.push((codes, lv, kind == 2));
        }
        let numeric: Vec<Vec<f64>> = cols
            .iter()
            .map(|(c, _, _)| {
                c.iter()
                    .map(|&x| x as f64 * 1.5 + (rng.below(1000) as f64) / 250.0)
                    .collect()
            })
            .collect();
        let y: Vec<f64> = cols[0]
            .0
            .iter()
            .map(|&c| {
                // level 0 of the first covariate sometimes all in one arm
                let treated =
                    (c == 0 && skew == 3) || (rng.below(1_000_000) as f64) < p_treat * 1e6;
                f64::from(u8::from(treated))
            })
            .collect();
        (cols, numeric, y)
    }

    /// The balance test of `y` over all rows from per-cell moments ([`f_test_moments`], both
    /// passes), the cells being the rows' tuples of categorical codes.
    fn by_moments(cols: &[(Vec<u32>, u32, bool)], numeric: &[Vec<f64>], y: &[f64]) -> Balance {
        let n = y.len();
        let cat: Vec<usize> = (0..cols.len()).filter(|&j| !cols[j].2).collect();
        let num: Vec<usize> = (0..cols.len()).filter(|&j| cols[j].2).collect();
        let key = |i: usize| -> Vec<u32> { cat.iter().map(|&j| cols[j].0[i]).collect() };
        let mut keys: Vec<Vec<u32>> = (0..n).map(key).collect();
        keys.sort();
        keys.dedup();
        let cell_of: Vec<usize> = (0..n)
            .map(|i| keys.binary_search(&key(i)).unwrap())
            .collect();
        let nz = num.len() + 1;
        let z = |i: usize| -> Vec<f64> {
            std::iter::once(1.0)
                .chain(num.iter().map(|&j| numeric[j][i]))
                .collect()
        };
        let mut mo = Moments {
            cells: (0..keys.len()).map(|c| (c as u32, 0.0, 0.0, 0.0)).collect(),
            zz: vec![vec![0.0; nz * nz]; keys.len()],
            zy: vec![vec![0.0; nz]; keys.len()],
            ezz: None,
            dense_ezz: None,
        };
        for i in 0..n {
            let c = cell_of[i];
            let zi = z(i);
            mo.cells[c].1 += 1.0;
            mo.cells[c].2 += y[i];
            mo.cells[c].3 += y[i] * y[i];
            for a in 0..nz {
                mo.zy[c][a] += zi[a] * y[i];
                for b in 0..nz {
                    mo.zz[c][a * nz + b] += zi[a] * zi[b];
                }
            }
        }
        let codes: Vec<Codes> = cols
            .iter()
            .map(|(_, _, _)| Codes::Owned(Vec::new()))
            .collect();
        let codes: Vec<Codes> = codes
            .into_iter()
            .enumerate()
            .map(|(j, c)| match cat.iter().position(|&k| k == j) {
                Some(p) => Codes::Owned(keys.iter().map(|k| k[p]).collect()),
                None => c,
            })
            .collect();
        let placeholder = vec![0.0; keys.len()];
        let covs: Vec<Covariate> = cols
            .iter()
            .enumerate()
            .map(|(j, (_, lv, is_num))| {
                if *is_num {
                    Covariate::Numeric(&placeholder)
                } else {
                    Covariate::Categorical {
                        codes: &codes[j],
                        levels: *lv,
                    }
                }
            })
            .collect();
        for _ in 0..3 {
            let (constant, slopes, dense) = match f_test_moments(&mo, n, &covs) {
                MomentTest::Done(b) => return b,
                MomentTest::Residuals {
                    constant,
                    slopes,
                    dense,
                } => (constant, slopes, dense),
            };
            let mut ezz = vec![vec![0.0; nz * nz]; keys.len()];
            for i in 0..n {
                let c = cell_of[i];
                let zi = z(i);
                let fitted =
                    constant[c] + slopes.iter().zip(&zi[1..]).map(|(b, x)| b * x).sum::<f64>();
                let e2 = zero_small((y[i] - fitted).powi(2), 1.0);
                for a in 0..nz {
                    for b in 0..nz {
                        ezz[c][a * nz + b] += e2 * zi[a] * zi[b];
                    }
                }
            }
            if dense {
                mo.dense_ezz = Some(ezz);
            } else {
                mo.ezz = Some(ezz);
            }
        }
        panic!("residuals asked for more than twice")
    }

    /// Within 1e-9, relative for values above 1 (the tolerance of the fast-versus-dense test).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn moments_give_the_test_of_the_rows_with_a_large_numeric_covariate() {
        let (cols, mut numeric, y) = generate(400, &[(5, 0), (3, 2), (4, 0), (2, 2)], 0.4, 1, 7);
        // Incomes around 30 000 and ages around 40.
        numeric[1] = numeric[1].iter().map(|x| 30_000.0 + 900.0 * x).collect();
        numeric[3] = numeric[3].iter().map(|x| 40.0 + 3.0 * x).collect();
        let codes: Vec<Codes> = cols
            .iter()
            .map(|(c, _, _)| Codes::Owned(c.clone()))
            .collect();
        let covs: Vec<Covariate> = cols
            .iter()
            .enumerate()
            .map(|(j, (_, lv, num))| {
                if *num {
                    Covariate::Numeric(&numeric[j])
                } else {
                    Covariate::Categorical {
                        codes: &codes[j],
                        levels: *lv,
                    }
                }
            })
            .collect();
        let rows: Vec<u32> = (0..400).collect();
        let want = f_test_grouped(&Sample::Rows { rows: &rows, y: &y }, &covs, None);
        let got = by_moments(&cols, &numeric, &y);
        let (w, g) = (want.test.unwrap(), got.test.unwrap());
        assert!(close(w.f_statistic, g.f_statistic), "{w:?} {g:?}");
        assert!(close(w.p_value, g.p_value), "{w:?} {g:?}");
        assert_eq!(
            (w.numerator_df, w.denominator_df),
            (g.numerator_df, g.denominator_df)
        );
        assert_eq!(want.left_out, got.left_out);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Per-cell moments in passes give the test of the rows (F and p to 1e-9), including
        /// the ill-conditioned designs computed densely.
        #[test]
        fn moments_balance_test_equals_the_rows(
            n in 4usize..90,
            spec in proptest::collection::vec((0u32..9, 0u8..3), 1..4),
            p_treat in 0.05f64..0.95,
            skew in 0u32..4,
            seed in 0u64..u64::MAX,
        ) {
            let (cols, numeric, y) = generate(n, &spec, p_treat, skew, seed);
            let codes: Vec<Codes> = cols.iter().map(|(c, _, _)| Codes::Owned(c.clone())).collect();
            let covs: Vec<Covariate> = cols.iter().enumerate().map(|(j, (_, lv, num))| {
                if *num { Covariate::Numeric(&numeric[j]) } else { Covariate::Categorical { codes: &codes[j], levels: *lv } }
            }).collect();
            let rows: Vec<u32> = (0..n as u32).collect();
            let want = f_test_grouped(&Sample::Rows { rows: &rows, y: &y }, &covs, None);
            let got = by_moments(&cols, &numeric, &y);
            proptest::prop_assert_eq!(&want.left_out, &got.left_out);
            match (&want.test, &got.test) {
                (Ok(w), Ok(g)) => {
                    // Near-exact fits (F beyond 1e6: residuals near rounding noise) carry the
                    // rounding of the sums' order in their digits; the others agree to 1e-9.
                    proptest::prop_assert!(w.f_statistic > 1e6 || (close(w.f_statistic, g.f_statistic) && close(w.p_value, g.p_value)), "{:?} {:?}", w, g);
                    proptest::prop_assert_eq!((w.numerator_df, w.denominator_df), (g.numerator_df, g.denominator_df));
                }
                (w, g) => proptest::prop_assert_eq!(w, g),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// On small random designs (1–3 covariates, categorical with 1–8 levels, some levels
        /// all in one arm or with one participant, nested strata, a numeric covariate) the fast
        /// test gives the dense computation's F, p and dfs.
        #[test]
        fn fast_balance_test_equals_dense(
            n in 4usize..90,
            spec in proptest::collection::vec((0u32..9, 0u8..3), 1..4),
            p_treat in 0.05f64..0.95,
            skew in 0u32..4,
            seed in 0u64..u64::MAX,
            grouped in proptest::bool::ANY,
        ) {
            let (cols, numeric, y) = generate(n, &spec, p_treat, skew, seed);
            let codes: Vec<Codes> = cols.iter().map(|(c, _, _)| Codes::Owned(c.clone())).collect();
            let covs: Vec<Covariate> = cols.iter().enumerate().map(|(j, (_, lv, num))| {
                if *num { Covariate::Numeric(&numeric[j]) } else { Covariate::Categorical { codes: &codes[j], levels: *lv } }
            }).collect();
            let rows: Vec<u32> = (0..n as u32).collect();
            let sample = Sample::Rows { rows: &rows, y: &y };
            let all_cat = cols.iter().all(|c| !c.2);
            let cell: Vec<u32> = (0..n).map(|i| cols.iter().fold(0u32, |acc, (c, lv, _)| acc * lv + c[i])).collect();
            let n_cells = cols.iter().fold(1u32, |acc, (_, lv, _)| acc * lv);
            let cells = if grouped && all_cat { Some((cell.as_slice(), n_cells)) } else { None };
            agree(&sample, &covs, cells);
        }
    }
}
