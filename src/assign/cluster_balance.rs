//! Cluster-robust balance check (docs/cluster.md): the balance regression of
//! [`super::balance`] — OLS of the 0/1 arm indicator on an intercept, the numeric covariates and
//! the one-hot encoded categorical covariates (first level present in the compared rows
//! dropped) — with the covariance clustered by a cluster id, as statsmodels'
//! `OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g})` computes it (CR1, Cameron &
//! Miller 2015).
//!
//! * Coefficients and residuals: the same full-rank fit as the HC1 check (columns collinear with
//!   earlier ones dropped; same column space, so the same residuals as statsmodels' pseudo-inverse
//!   fit).
//! * Meat: Σ_g s_g s_g' with s_g = Σ_{i∈g} e_i x_i the score sum of cluster g.
//! * CR1: V = G/(G−1) · (N−1)/(N−K) · (X'X)⁻¹ (Σ_g s_g s_g') (X'X)⁻¹ with G the clusters among
//!   the compared rows, N the rows and K the number of design columns *including* columns
//!   dropped for collinearity — statsmodels' `cov_cluster` takes K from the width of the design
//!   matrix, not its rank (the HC1 check uses the rank, as statsmodels' HC1 does).
//! * Wald F of all slopes zero: F = b'W⁺b / J with W the slopes' block of V and J its rank. The
//!   meat has rank at most G − 1 (the scores sum to zero with an intercept), so with fewer
//!   clusters than slopes W is singular and J < number of slopes, as statsmodels reduces the
//!   numerator df to `matrix_rank` of the constraint covariance. Our rank counts the eigenvalues
//!   the pseudo-inverse keeps (above 1e-12 of the largest).
//! * p = upper tail of F(J, G − 1): statsmodels' `df_resid_inference` for cluster covariances.

use std::collections::HashMap;

use statrs::distribution::{ContinuousCDF, FisherSnedecor};

use super::balance::{
    Covariate, FTest, NoTest, Sample, independent_columns, matmul, pinv_sym, spd_inverse,
};

/// A clustered balance test: the test (its `denominator_df` is `clusters − 1`) and the number
/// of clusters among the compared rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFTest {
    pub test: FTest,
    pub clusters: u64,
}

/// The design-matrix layout of the balance regression: column 0 the intercept, one column per
/// numeric covariate, one per categorical level present in the compared rows except the first.
struct Layout {
    /// Numeric covariate j: its column; categorical: unused.
    base: Vec<usize>,
    /// Categorical covariate j: level -> column + 1 (0: the dropped first level / absent).
    col_of: Vec<Vec<usize>>,
    /// Number of columns, intercept included.
    k: usize,
}

impl Layout {
    fn new(sample: &Sample, covs: &[Covariate]) -> Result<Layout, NoTest> {
        let mut base = Vec::with_capacity(covs.len());
        let mut col_of = Vec::with_capacity(covs.len());
        let mut k = 1usize;
        for c in covs {
            match c {
                Covariate::Numeric(_) => {
                    base.push(k);
                    col_of.push(Vec::new());
                    k += 1;
                }
                Covariate::Categorical { codes, levels } => {
                    let mut present = vec![false; *levels as usize];
                    let mut bad = None;
                    sample.for_each(&mut |r, _| match present.get_mut(codes.get(r) as usize) {
                        Some(p) => *p = true,
                        None => bad = Some(codes.get(r)),
                    });
                    if let Some(code) = bad {
                        return Err(format!(
                            "level code {code} out of range for a covariate with {levels} levels"
                        ));
                    }
                    let mut map = vec![0usize; *levels as usize];
                    let mut first = true;
                    for (l, p) in present.iter().enumerate() {
                        if *p {
                            if first {
                                first = false;
                            } else {
                                map[l] = k + 1;
                                k += 1;
                            }
                        }
                    }
                    base.push(0);
                    col_of.push(map);
                }
            }
        }
        Ok(Layout { base, col_of, k })
    }

    /// The non-zero entries (column, value) of row `r`.
    fn row(&self, covs: &[Covariate], r: usize, buf: &mut Vec<(usize, f64)>) {
        buf.clear();
        buf.push((0, 1.0));
        for (j, c) in covs.iter().enumerate() {
            match c {
                Covariate::Numeric(v) => buf.push((self.base[j], v[r])),
                Covariate::Categorical { codes, .. } => {
                    let m = self.col_of[j][codes.get(r) as usize];
                    if m > 0 {
                        buf.push((m - 1, 1.0));
                    }
                }
            }
        }
    }
}

/// Regress the sample's 0/1 outcome on the covariates; CR1 joint F test of the slopes with the
/// covariance clustered by `cluster[row]` (any code: rows with equal codes share a cluster).
/// Memory is bounded by the rows and the clusters present, whatever the codes.
pub fn f_test_clustered(
    sample: &Sample,
    covs: &[Covariate],
    cluster: &[u32],
) -> Result<ClusterFTest, NoTest> {
    // Compact indices of the clusters present among the compared rows, and the row count.
    let mut slot: HashMap<u32, usize> = HashMap::new();
    let mut n = 0usize;
    let mut bad: Option<u32> = None;
    sample.for_each(&mut |r, _| {
        n += 1;
        match cluster.get(r) {
            Some(&c) => {
                let next = slot.len();
                slot.entry(c).or_insert(next);
            }
            None => {
                bad.get_or_insert(r as u32);
            }
        }
    });
    if let Some(r) = bad {
        return Err(format!(
            "row {r} has no cluster id; every compared row needs a cluster"
        ));
    }
    let g = slot.len();
    let groups = g;
    if groups < 2 {
        return Err(format!(
            "the compared participants are in {groups} cluster(s); a clustered test needs at least 2"
        ));
    }
    let layout = Layout::new(sample, covs)?;
    let k = layout.k;
    let mut buf: Vec<(usize, f64)> = Vec::with_capacity(1 + covs.len());
    // X'X and X'y.
    let mut xtx = vec![0.0f64; k * k];
    let mut xty = vec![0.0f64; k];
    sample.for_each(&mut |r, y| {
        layout.row(covs, r, &mut buf);
        for &(a, va) in &buf {
            xty[a] += va * y;
            for &(b, vb) in &buf {
                if b <= a {
                    xtx[a * k + b] += va * vb;
                }
            }
        }
    });
    for a in 0..k {
        for b in 0..a {
            xtx[b * k + a] = xtx[a * k + b];
        }
    }
    let diag: Vec<f64> = (0..k).map(|i| xtx[i * k + i]).collect();
    let keep = independent_columns(&xtx, k, &diag);
    let rk = keep.len();
    if rk < 2 {
        return Err("no covariate varies among the compared participants".into());
    }
    if n <= k {
        return Err(format!(
            "too few participants ({n}) for {k} regression terms"
        ));
    }
    let mut a = vec![0.0; rk * rk];
    for (i, &ci) in keep.iter().enumerate() {
        for (j, &cj) in keep.iter().enumerate() {
            a[i * rk + j] = xtx[ci * k + cj];
        }
    }
    let ainv = spd_inverse(&a, rk).ok_or("the covariates are collinear")?;
    let beta: Vec<f64> = (0..rk)
        .map(|i| (0..rk).map(|j| ainv[i * rk + j] * xty[keep[j]]).sum())
        .collect();
    let mut pos = vec![usize::MAX; k];
    for (i, &c) in keep.iter().enumerate() {
        pos[c] = i;
    }
    // Score sums per cluster over the kept columns.
    let mut scores = vec![0.0f64; groups * rk];
    let mut kb: Vec<(usize, f64)> = Vec::with_capacity(1 + covs.len());
    sample.for_each(&mut |r, y| {
        layout.row(covs, r, &mut buf);
        kb.clear();
        kb.extend(
            buf.iter()
                .filter(|(col, _)| pos[*col] != usize::MAX)
                .map(|(col, v)| (pos[*col], *v)),
        );
        let e = y - kb.iter().map(|(i, v)| beta[*i] * v).sum::<f64>();
        let s = slot[&cluster[r]] * rk;
        for &(i, v) in &kb {
            scores[s + i] += e * v;
        }
    });
    let mut meat = vec![0.0f64; rk * rk];
    for sg in scores.chunks_exact(rk) {
        for i in 0..rk {
            if sg[i] != 0.0 {
                for j in 0..=i {
                    meat[i * rk + j] += sg[i] * sg[j];
                }
            }
        }
    }
    for i in 0..rk {
        for j in 0..i {
            meat[j * rk + i] = meat[i * rk + j];
        }
    }
    let (gf, nf) = (groups as f64, n as f64);
    let scale = gf / (gf - 1.0) * ((nf - 1.0) / (nf - k as f64));
    let v = matmul(&matmul(&ainv, &meat, rk), &ainv, rk);
    let q = rk - 1;
    let mut w = vec![0.0; q * q];
    for i in 0..q {
        for j in 0..q {
            w[i * q + j] = scale * v[(i + 1) * rk + (j + 1)];
        }
    }
    let winv = pinv_sym(&w, q);
    // rank(W) = trace(W W⁺): W W⁺ projects onto the eigenvectors the pseudo-inverse kept.
    let trace: f64 = (0..q)
        .map(|i| (0..q).map(|t| w[i * q + t] * winv[t * q + i]).sum::<f64>())
        .sum();
    let j = trace.round().max(0.0) as usize;
    if j == 0 {
        return Err("the clustered covariance of the slopes is zero".into());
    }
    let b = &beta[1..];
    let mut quad = 0.0;
    for i in 0..q {
        for t in 0..q {
            quad += b[i] * winv[i * q + t] * b[t];
        }
    }
    let f = quad / j as f64;
    let df2 = gf - 1.0;
    let p = if f.is_finite() {
        FisherSnedecor::new(j as f64, df2)
            .map_err(|e| format!("F distribution: {e}"))?
            .sf(f)
    } else {
        0.0
    };
    Ok(ClusterFTest {
        test: FTest {
            beta,
            f_statistic: f,
            numerator_df: j as u64,
            denominator_df: groups as u64 - 1,
            p_value: p,
            n: n as u64,
        },
        clusters: groups as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::balance::f_test;
    use super::super::preprocess::Codes;
    use super::*;

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want.abs().max(1.0)
    }

    /// fixtures/cluster_balance/data.csv read with the csv crate.
    struct Data {
        cluster: Vec<String>,
        treat: Vec<f64>,
        income: Vec<f64>,
        text: Vec<(String, Vec<String>)>,
    }

    fn data() -> Data {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cluster_balance/data.csv"
        );
        let mut rd = csv::Reader::from_path(path).unwrap();
        let headers = rd.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (ci, ti, ii) = (col("cluster"), col("treat"), col("income"));
        let names = ["region", "district", "gender"];
        let mut d = Data {
            cluster: Vec::new(),
            treat: Vec::new(),
            income: Vec::new(),
            text: names.iter().map(|n| (n.to_string(), Vec::new())).collect(),
        };
        for rec in rd.records() {
            let rec = rec.unwrap();
            d.cluster.push(rec[ci].to_string());
            d.treat.push(rec[ti].parse().unwrap());
            d.income.push(rec[ii].parse().unwrap());
            for (name, v) in d.text.iter_mut() {
                v.push(rec[col(name)].to_string());
            }
        }
        d
    }

    /// Codes of a text column: index of the value among the sorted distinct values.
    fn codes(values: &[String]) -> (Codes<'static>, u32) {
        let mut levels: Vec<&String> = values.iter().collect();
        levels.sort();
        levels.dedup();
        let c = values
            .iter()
            .map(|v| levels.binary_search(&v).unwrap() as u32)
            .collect();
        (Codes::Owned(c), levels.len() as u32)
    }

    #[test]
    fn equals_statsmodels_cluster_covariance_on_the_shipped_vectors() {
        let d = data();
        let (cluster, _) = codes(&d.cluster);
        let cluster: Vec<u32> = (0..d.cluster.len()).map(|i| cluster.get(i)).collect();
        let coded: Vec<(String, Codes, u32)> = d
            .text
            .iter()
            .map(|(n, v)| {
                let (c, l) = codes(v);
                (n.clone(), c, l)
            })
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cluster_balance/expected.json"
        );
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vectors = expected["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 4);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let rows: Vec<u32> = match v["clusters"].as_array() {
                Some(keep) => {
                    let keep: Vec<&str> = keep.iter().map(|c| c.as_str().unwrap()).collect();
                    (0..d.cluster.len() as u32)
                        .filter(|&r| keep.contains(&d.cluster[r as usize].as_str()))
                        .collect()
                }
                None => (0..d.cluster.len() as u32).collect(),
            };
            let covs: Vec<Covariate> = v["covariates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| match c.as_str().unwrap() {
                    "income" => Covariate::Numeric(&d.income),
                    other => {
                        let (_, codes, levels) = coded.iter().find(|(n, ..)| n == other).unwrap();
                        Covariate::Categorical {
                            codes,
                            levels: *levels,
                        }
                    }
                })
                .collect();
            let sample = Sample::Rows {
                rows: &rows,
                y: &d.treat,
            };
            let t = f_test_clustered(&sample, &covs, &cluster).unwrap();
            let want_f = v["f_statistic"].as_f64().unwrap();
            let want_p = v["p_value"].as_f64().unwrap();
            assert!(
                close(t.test.f_statistic, want_f, 1e-8),
                "{name}: F {} want {want_f}",
                t.test.f_statistic
            );
            assert!(
                close(t.test.p_value, want_p, 1e-8),
                "{name}: p {} want {want_p}",
                t.test.p_value
            );
            assert_eq!(
                (t.test.numerator_df, t.test.denominator_df),
                (
                    v["numerator_df"].as_u64().unwrap(),
                    v["denominator_df"].as_u64().unwrap()
                ),
                "{name}"
            );
            assert_eq!(t.test.n, v["nobs"].as_u64().unwrap(), "{name}");
            assert_eq!(t.clusters, v["groups"].as_u64().unwrap(), "{name}");
        }
    }

    #[test]
    fn singleton_clusters_reproduce_hc1() {
        // G = N: G/(G−1)·(N−1)/(N−K) = N/(N−K), the HC1 factor, and the meat is HC1's.
        let gender = ["M", "F", "M", "F", "M", "F", "M", "F", "M", "M", "F", "F"];
        let income = [
            10.0, 12.0, 9.0, 15.0, 11.0, 13.0, 8.0, 14.0, 10.5, 9.5, 12.5, 16.0,
        ];
        let treat = [0., 1., 0., 1., 1., 0., 0., 1., 1., 0., 1., 0.];
        let codes = Codes::Owned(gender.iter().map(|g| u32::from(*g == "M")).collect());
        let covs = [
            Covariate::Numeric(&income),
            Covariate::Categorical {
                codes: &codes,
                levels: 2,
            },
        ];
        let rows: Vec<u32> = (0..12).collect();
        let hc1 = f_test(&rows, &treat, &covs).unwrap();
        // Sparse codes near u32::MAX: codes are only labels, and nothing is sized by them.
        let cluster: Vec<u32> = (0..12).map(|i| u32::MAX - 7 * i).collect();
        let cr1 = f_test_clustered(
            &Sample::Rows {
                rows: &rows,
                y: &treat,
            },
            &covs,
            &cluster,
        )
        .unwrap();
        assert!(close(cr1.test.f_statistic, hc1.f_statistic, 1e-10));
        assert!(close(cr1.test.f_statistic, 0.6036754869, 1e-9));
        assert_eq!(cr1.test.beta.len(), hc1.beta.len());
        for (a, b) in cr1.test.beta.iter().zip(&hc1.beta) {
            assert!(close(*a, *b, 1e-12));
        }
        // Only the denominator df differs: G − 1 = 11 instead of N − K = 9.
        assert_eq!((cr1.test.numerator_df, cr1.test.denominator_df), (2, 11));
        assert_eq!(cr1.clusters, 12);
    }

    #[test]
    fn arms_view_equals_rows_view_and_ignores_other_arms() {
        let n = 120usize;
        let codes = Codes::Owned((0..n).map(|i| (i % 4) as u32).collect());
        let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 3.0).collect();
        let cluster: Vec<u32> = (0..n).map(|i| (i / 5) as u32).collect();
        // Whole clusters share an arm: 0 control, 1 treatment, 2 another arm left out.
        let arm: Vec<u32> = cluster.iter().map(|c| c * 7 % 3).collect();
        let y: Vec<f64> = arm.iter().map(|&a| f64::from(a == 1)).collect();
        let covs = [
            Covariate::Numeric(&x),
            Covariate::Categorical {
                codes: &codes,
                levels: 4,
            },
        ];
        let rows: Vec<u32> = (0..n as u32).filter(|&r| arm[r as usize] != 2).collect();
        let order: Vec<u32> = (0..n as u32).rev().collect();
        let one = f_test_clustered(&Sample::Rows { rows: &rows, y: &y }, &covs, &cluster).unwrap();
        let two = f_test_clustered(
            &Sample::Arms {
                order: &order,
                arm: &arm,
                control: 0,
                treatment: 1,
                n: rows.len(),
            },
            &covs,
            &cluster,
        )
        .unwrap();
        assert!(close(one.test.f_statistic, two.test.f_statistic, 1e-10));
        assert!(close(one.test.p_value, two.test.p_value, 1e-10));
        assert_eq!(one.clusters, two.clusters);
        assert_eq!(one.clusters, 16);
        assert_eq!(one.test.denominator_df, 15);
    }

    #[test]
    fn one_cluster_or_a_row_without_a_cluster_is_no_test() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = (0..10).map(|i| f64::from(i % 2)).collect();
        let rows: Vec<u32> = (0..10).collect();
        let covs = [Covariate::Numeric(&x)];
        let sample = Sample::Rows { rows: &rows, y: &y };
        let one = f_test_clustered(&sample, &covs, &[4; 10]).unwrap_err();
        assert!(one.contains("1 cluster(s)"), "{one}");
        let short = f_test_clustered(&sample, &covs, &[0, 1]).unwrap_err();
        assert!(short.contains("row 2"), "{short}");
        // Two clusters of five: a test, on F(1, 1).
        let two: Vec<u32> = (0..10).map(|i| i / 5).collect();
        let t = f_test_clustered(&sample, &covs, &two).unwrap();
        assert_eq!((t.test.numerator_df, t.test.denominator_df), (1, 1));
    }
}
