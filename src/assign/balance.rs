//! Balance check (docs/statistics.md#balance-test): OLS of the arm indicator on the covariates,
//! HC1 robust covariance, joint Wald F test that every slope is zero.
//!
//! * Design matrix: an intercept; numeric covariates (numeric strata without NULLs, original
//!   values) as they are; every other covariate (text, booleans, quantile bins incl.
//!   `__NULL__`) one-hot encoded with the first level present in the compared rows dropped.
//!   Rows are handled sparsely (one non-zero per categorical covariate), so millions of rows
//!   cost a few passes over small vectors.
//! * Rank deficiency (collinear dummies, e.g. nested strata): columns are taken in order and a
//!   column whose residual sum of squares after projection on the columns before it is below
//!   1e-10 of its own sum of squares is dropped (a Cholesky factorisation of X'X with rank
//!   detection). The fit then uses the full-rank design, which has the same column space and
//!   so the same fitted values and residuals as statsmodels' pseudo-inverse solution; q (the
//!   numerator df) is rank(X) − 1 and the denominator df n − rank(X), as statsmodels reports.
//! * HC1: V = n/(n−r)·(X'X)⁻¹ X' diag(e²) X (X'X)⁻¹; F = b'(W)⁺b / q with b the slopes and W
//!   their block of V (a pseudo-inverse through a symmetric eigen-decomposition, so a singular
//!   W — e.g. a stratum entirely in one arm — still gives a statistic); p = upper tail of
//!   F(q, n − r) (statrs).

use statrs::distribution::{ContinuousCDF, FisherSnedecor};

use super::preprocess::Codes;

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
}

/// A fitted regression and its joint test.
#[derive(Debug, Clone, PartialEq)]
pub struct FTest {
    /// Coefficients of the kept design columns (intercept first).
    pub beta: Vec<f64>,
    pub f_statistic: f64,
    pub numerator_df: u64,
    pub denominator_df: u64,
    pub p_value: f64,
    pub n: u64,
}

/// Why no test could be computed.
pub type NoTest = String;

/// Regress `y[row]` (0/1) on the covariates over `rows`; HC1 joint F test of the slopes.
pub fn f_test(rows: &[u32], y: &[f64], covs: &[Covariate]) -> Result<FTest, NoTest> {
    f_test_grouped(&Sample::Rows { rows, y }, covs, None)
}

/// [`f_test`], with `cells[row]` an id shared by rows whose covariates are identical (the
/// stratum id when every covariate is categorical): sums are then taken per cell, so the cost
/// is one pass over the rows plus a small one over the cells. The statistics are the same.
pub fn f_test_grouped(
    sample: &Sample,
    covs: &[Covariate],
    cells: Option<(&[u32], u32)>,
) -> Result<FTest, NoTest> {
    let n = match sample {
        Sample::Rows { rows, .. } => rows.len(),
        Sample::Arms { n, .. } => *n,
    };
    // Groups of rows with identical covariates: (representative row, count, Σy, Σy²).
    let grouped: Option<Vec<(u32, f64, f64, f64)>> = cells.map(|(cell, n_cells)| {
        let mut g: Vec<(u32, f64, f64, f64)> = vec![(u32::MAX, 0.0, 0.0, 0.0); n_cells as usize];
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
    let each = |f: &mut dyn FnMut(usize, f64, f64, f64)| match &grouped {
        Some(g) => {
            for &(r, c, sy, syy) in g {
                f(r as usize, c, sy, syy)
            }
        }
        None => sample.for_each(&mut |r, yr| f(r, 1.0, yr, yr * yr)),
    };
    // Layout: column 0 the intercept; numeric covariates one column; categorical one column per
    // present level except the first present one.
    let mut col_of: Vec<Vec<u32>> = Vec::with_capacity(covs.len()); // categorical: level -> col+1 (0 = none)
    let mut base: Vec<u32> = Vec::with_capacity(covs.len());
    let mut k: usize = 1;
    for c in covs {
        match c {
            Covariate::Numeric(_) => {
                base.push(k as u32);
                col_of.push(Vec::new());
                k += 1;
            }
            Covariate::Categorical { codes, levels } => {
                let mut present = vec![false; *levels as usize];
                each(&mut |r, _, _, _| present[codes.get(r) as usize] = true);
                let mut map = vec![0u32; *levels as usize];
                let mut first = true;
                for (l, p) in present.iter().enumerate() {
                    if *p {
                        if first {
                            first = false;
                        } else {
                            map[l] = k as u32 + 1;
                            k += 1;
                        }
                    }
                }
                base.push(0);
                col_of.push(map);
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
    each(&mut |r, c, sy, _| {
        row_entries(r, &mut buf);
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
    let keep = independent_columns(&xtx, k);
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
    // Meat: Σ e² x x' over kept columns.
    let mut meat = vec![0.0f64; rk * rk];
    let mut kb: Vec<(usize, f64)> = Vec::with_capacity(nz);
    each(&mut |r, c, sy, syy| {
        row_entries(r, &mut buf);
        kb.clear();
        kb.extend(
            buf.iter()
                .filter(|(col, _)| pos[*col] != usize::MAX)
                .map(|(col, v)| (pos[*col], *v)),
        );
        let fitted: f64 = kb.iter().map(|(i, v)| beta[*i] * v).sum();
        // Σ over the group of (y − fitted)².
        let e2 = (syy - 2.0 * fitted * sy + c * fitted * fitted).max(0.0);
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

/// Indices of a maximal set of linearly independent columns, taken in order.
pub(crate) fn independent_columns(a: &[f64], k: usize) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    // l: rows of the Cholesky factor of the kept columns, l[i][m] for m < i (kept index space).
    let mut l: Vec<Vec<f64>> = Vec::new();
    for j in 0..k {
        let ajj = a[j * k + j];
        if ajj <= 0.0 {
            continue;
        }
        let mut row: Vec<f64> = Vec::with_capacity(keep.len() + 1);
        for (m, &c) in keep.iter().enumerate() {
            let s: f64 = a[j * k + c] - (0..m).map(|t| row[t] * l[m][t]).sum::<f64>();
            row.push(s / l[m][m]);
        }
        let d = ajj - row.iter().map(|x| x * x).sum::<f64>();
        if d > 1e-10 * ajj {
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

/// Moore–Penrose pseudo-inverse of a symmetric matrix (cyclic Jacobi eigen-decomposition;
/// eigenvalues below 1e-12 of the largest are treated as zero).
pub fn pinv_sym(a: &[f64], k: usize) -> Vec<f64> {
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
    let eig: Vec<f64> = (0..k).map(|i| m[i * k + i]).collect();
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
        // The test vector of docs/statistics.md#balance-test (statsmodels OLS, cov_type HC1).
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
        .unwrap();
        assert!((one.f_statistic - three.f_statistic).abs() < 1e-10 * one.f_statistic.max(1.0));
        assert_eq!(one.n, three.n);
        assert_eq!(
            (one.numerator_df, one.denominator_df),
            (two.numerator_df, two.denominator_df)
        );
        assert!((one.f_statistic - two.f_statistic).abs() < 1e-10 * one.f_statistic.max(1.0));
        assert!((one.p_value - two.p_value).abs() < 1e-10);
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
}
