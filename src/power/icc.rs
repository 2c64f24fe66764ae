//! The intraclass correlation (ICC) of a metric from its clusters (docs/cluster.md): the one-way
//! ANOVA estimator with the unequal-cluster-size correction (Donner & Koval 1980; Searle, Casella
//! & McCulloch 1992, ch. 3), plus the average cluster size and the coefficient of variation of the
//! cluster sizes that the cluster power design takes.
//!
//! With k clusters of sizes n_i (N units), cluster means ȳ_i and grand mean ȳ:
//!
//! * SSB = Σ n_i (ȳ_i − ȳ)², SSW = Σ_i Σ_j (y_ij − ȳ_i)²; MSB = SSB/(k−1), MSW = SSW/(N−k);
//! * n0 = (N − Σn_i²/N)/(k−1) (n0 = n when every cluster has n units);
//! * ICC = (MSB − MSW)/(MSB + (n0 − 1)·MSW). It is negative when the clusters differ less than
//!   chance would make them; [`IccEstimate::icc_for_power`] clamps it to [0, 1] for a design.
//! * average cluster size m = N/k; CV = sd(n_i)/m with the population sd (divisor k), so that
//!   m(1 + CV²) = Σn_i²/N exactly, the size moment the design effect 1 + ICC((m−1) + m·CV²) uses.
//!
//! Numerics: both sums of squares are taken about means (two-pass), never as Σy² − (Σy)²/n,
//! which cancels catastrophically when the mean is large against the spread (a metric around
//! 1e9 with unit spread would lose every digit in f64). In SQL ([`anova_sql`]) the cluster
//! means come from a window `AVG(..) OVER (PARTITION BY cluster)` and the grand mean from a
//! window over the cluster rows, so the one statement is two-pass too. [`ClusterAgg::from_sums`]
//! accepts raw (n, Σy, Σy²) for callers that have only those; they should be sums of y − s for
//! a shift s near the mean (the ICC does not depend on s). Sizes are integers and n0 and CV are
//! computed from them in exact integer arithmetic.

use crate::input::names::*;
use serde::Serialize;

use super::analysis::{ClusterSpec, MetricType};
use crate::error::{Error, Result};
use crate::filters::{self, Filter};
use crate::sheet::ConfigWorksheet;
use crate::warehouse::SqlDialect;
use crate::warehouse::{Value, Warehouse};

/// One cluster's aggregates about its own mean: size, mean, Σ(y − mean)².
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterAgg {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl ClusterAgg {
    /// Two-pass aggregates of one cluster's values.
    pub fn from_values(values: &[f64]) -> ClusterAgg {
        let n = values.len();
        if n == 0 {
            return ClusterAgg {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let m2 = values.iter().map(|y| (y - mean) * (y - mean)).sum();
        ClusterAgg {
            n: n as u64,
            mean,
            m2,
        }
    }

    /// From n, Σy and Σy² (of values shifted near their mean; see the module notes).
    pub fn from_sums(n: u64, sum: f64, sum_sq: f64) -> ClusterAgg {
        if n == 0 {
            return ClusterAgg {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            };
        }
        let mean = sum / n as f64;
        ClusterAgg {
            n,
            mean,
            m2: (sum_sq - sum * mean).max(0.0),
        }
    }
}

/// The sufficient statistics of the one-way ANOVA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anova {
    /// Clusters with at least one value.
    pub clusters: u64,
    /// Units with a value.
    pub units: u64,
    /// Σ n_i².
    pub sum_sq_sizes: u128,
    pub ss_between: f64,
    pub ss_within: f64,
}

impl Anova {
    /// Pool per-cluster aggregates (empty clusters are ignored).
    pub fn from_clusters(clusters: &[ClusterAgg]) -> Anova {
        let used = clusters.iter().filter(|c| c.n > 0);
        let units: u64 = used.clone().map(|c| c.n).sum();
        let grand = if units == 0 {
            0.0
        } else {
            used.clone().map(|c| c.n as f64 * c.mean).sum::<f64>() / units as f64
        };
        Anova {
            clusters: used.clone().count() as u64,
            units,
            sum_sq_sizes: used
                .clone()
                .map(|c| u128::from(c.n) * u128::from(c.n))
                .sum(),
            ss_between: used
                .clone()
                .map(|c| c.n as f64 * (c.mean - grand) * (c.mean - grand))
                .sum(),
            ss_within: used.map(|c| c.m2).sum(),
        }
    }

    /// Group `(cluster, value)` pairs by cluster (any order) and pool them.
    pub fn from_pairs<C: Ord + Clone>(pairs: &[(C, f64)]) -> Anova {
        let mut by: std::collections::BTreeMap<C, Vec<f64>> = std::collections::BTreeMap::new();
        for (c, y) in pairs {
            by.entry(c.clone()).or_default().push(*y);
        }
        let aggs: Vec<ClusterAgg> = by.values().map(|v| ClusterAgg::from_values(v)).collect();
        Anova::from_clusters(&aggs)
    }
}

/// The estimate and the cluster-size summaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IccEstimate {
    /// The ANOVA estimate (may be negative, at least −1/(n0 − 1)).
    pub icc: f64,
    pub clusters: u64,
    pub units: u64,
    /// N / k.
    pub avg_cluster_size: f64,
    /// Population sd of the cluster sizes over their mean.
    pub cv: f64,
    pub n0: f64,
    pub msb: f64,
    pub msw: f64,
}

impl IccEstimate {
    /// The estimate as a design input: negative estimates (no detectable clustering) read as 0.
    pub fn icc_for_power(&self) -> f64 {
        self.icc.clamp(0.0, 1.0)
    }
}

/// The ICC from the ANOVA statistics, or why it cannot be estimated.
pub fn estimate(a: &Anova) -> std::result::Result<IccEstimate, String> {
    let (k, n) = (a.clusters, a.units);
    if k < 2 {
        return Err(format!(
            "the values fall in {k} cluster(s); the ICC needs at least 2"
        ));
    }
    if n <= k {
        return Err(
            "every cluster has a single value; the ICC needs clusters with at least 2".into(),
        );
    }
    let (kf, nf) = (k as f64, n as f64);
    let (k128, n128) = (u128::from(k), u128::from(n));
    // N² − Σn² = Σ_{i≠j} n_i n_j and k·Σn² − N² = k²·var(n), exactly in integers when they fit.
    let n2 = n128 * n128;
    let (pairs, spread) = match a.sum_sq_sizes.checked_mul(k128) {
        Some(ks) => (
            n2.saturating_sub(a.sum_sq_sizes) as f64,
            ks.saturating_sub(n2) as f64,
        ),
        None => {
            let s = a.sum_sq_sizes as f64;
            ((nf * nf - s).max(0.0), (kf * s - nf * nf).max(0.0))
        }
    };
    let n0 = pairs / (nf * (kf - 1.0));
    let cv = spread.sqrt() / nf;
    let msb = a.ss_between / (kf - 1.0);
    let msw = a.ss_within / (nf - kf);
    if !msb.is_finite() || !msw.is_finite() {
        return Err("the metric has values that are not finite numbers (NaN or infinity)".into());
    }
    let den = msb + (n0 - 1.0) * msw;
    if !den.is_finite() || den <= 0.0 {
        return Err("the metric does not vary".into());
    }
    Ok(IccEstimate {
        icc: (msb - msw) / den,
        clusters: k,
        units: n,
        avg_cluster_size: nf / kf,
        cv,
        n0,
        msb,
        msw,
    })
}

/// [`estimate`] with the one-line error the CLI shows (exit 3).
pub fn estimate_for(metric: &str, cluster_column: &str, a: &Anova) -> Result<IccEstimate> {
    estimate(a).map_err(|why| {
        Error::invalid(format!(
            "{CLUSTER_COLUMN} {cluster_column}: cannot estimate the ICC of {metric}: {why}; give {ICC} and {AVG_CLUSTER_SIZE} instead"
        ))
    })
}

/// What the aggregate query returns: the ANOVA over rows with a cluster id, and how many rows
/// with a value have no cluster id (NULL) and were left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterQuery {
    pub anova: Anova,
    pub units_without_cluster: u64,
}

/// The one aggregate statement over `qualified` (already quoted) filtered by `clause` (a
/// `WHERE` fragment with its placeholders, e.g. from `filters::where_clause_resolved`):
/// `metric` and `cluster` are column names, quoted here. Rows with a NULL metric are left out;
/// rows with a NULL cluster id are counted apart. It returns one row: clusters, units, Σn²,
/// SSW, SSB, units without a cluster id (sums NULL when there are no rows). Valid on
/// PostgreSQL, MySQL 8 / MariaDB 10.2 and SQLite 3.25 (window functions) and later.
pub fn anova_sql(
    dialect: &dyn SqlDialect,
    qualified: &str,
    metric: &str,
    metric_type: MetricType,
    cluster: &str,
    clause: &str,
) -> String {
    let q = |s: &str| dialect.quote_ident(s);
    // The same casts as the baseline query: booleans via integers, MySQL by `* 1e0`.
    let y = match metric_type {
        MetricType::Binary => dialect.bool_to_float(&q(metric)),
        _ => dialect.float_cast(&q(metric)),
    };
    let count = dialect.float_cast("COUNT(*)");
    format!(
        "WITH s AS (SELECT {c} AS xc, {y} AS xy FROM {qualified} WHERE ({clause}) AND {m} IS NOT NULL), \
         w AS (SELECT xc, xy, AVG(xy) OVER (PARTITION BY xc) AS xm FROM s), \
         g AS (SELECT CASE WHEN xc IS NULL THEN 1 ELSE 0 END AS xnull, {count} AS xn, AVG(xy) AS xmean, \
         SUM((xy - xm) * (xy - xm)) AS xssw FROM w GROUP BY xc), \
         h AS (SELECT xnull, xn, xmean, xssw, \
         SUM(xn * xmean) OVER (PARTITION BY xnull) / SUM(xn) OVER (PARTITION BY xnull) AS xgm FROM g) \
         SELECT COUNT(CASE WHEN xnull = 0 THEN 1 END), \
         SUM(CASE WHEN xnull = 0 THEN xn END), \
         SUM(CASE WHEN xnull = 0 THEN xn * xn END), \
         SUM(CASE WHEN xnull = 0 THEN xssw END), \
         SUM(CASE WHEN xnull = 0 THEN xn * (xmean - xgm) * (xmean - xgm) END), \
         SUM(CASE WHEN xnull = 1 THEN xn END) \
         FROM h",
        c = q(cluster),
        m = q(metric),
    )
}

/// Run [`anova_sql`] on `wh` with the clause's bound `params`.
pub async fn cluster_anova(
    wh: &Warehouse,
    qualified: &str,
    metric: &str,
    metric_type: MetricType,
    cluster: &str,
    clause: &str,
    params: &[Value],
) -> Result<ClusterQuery> {
    let sql = anova_sql(
        wh.dialect(),
        qualified,
        metric,
        metric_type,
        cluster,
        clause,
    );
    let rows = wh.fetch_all(&sql, params).await?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| Error::runtime("the cluster aggregate query returned no row"))?;
    let num = |i: usize| row.get(i).and_then(Value::as_f64).unwrap_or(0.0);
    let count = |i: usize| {
        let x = num(i);
        if x.is_finite() && x > 0.0 {
            x.round() as u64
        } else {
            0
        }
    };
    let sum_sq_sizes = {
        let x = num(2);
        if x.is_finite() && x > 0.0 {
            x.round() as u128
        } else {
            0
        }
    };
    Ok(ClusterQuery {
        anova: Anova {
            clusters: count(0),
            units: count(1),
            sum_sq_sizes,
            ss_within: num(3).max(0.0),
            ss_between: num(4).max(0.0),
        },
        units_without_cluster: count(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want.abs().max(f64::MIN_POSITIVE)
    }

    /// The fixed data: 5 clusters of sizes 3, 6, 1, 4, 2.
    fn fixed() -> Vec<(u32, f64)> {
        let clusters: [&[f64]; 5] = [
            &[12.0, 14.5, 13.1],
            &[9.2, 11.0, 10.4, 8.8, 10.0, 9.9],
            &[15.3],
            &[13.0, 12.2, 14.8, 13.9],
            &[7.5, 9.1],
        ];
        clusters
            .iter()
            .enumerate()
            .flat_map(|(c, v)| v.iter().map(move |y| (c as u32, *y)))
            .collect()
    }

    /// The reference: SSB as SST − SSW, n0 from the pairs Σ_{i≠j} n_i n_j, all from the raw
    /// values.
    fn reference(pairs: &[(u32, f64)]) -> (f64, f64, f64) {
        let k = 1 + pairs.iter().map(|p| p.0).max().unwrap() as usize;
        let n = pairs.len() as f64;
        let size = |c: usize| pairs.iter().filter(|p| p.0 as usize == c).count() as f64;
        let mean_of = |c: usize| {
            pairs
                .iter()
                .filter(|p| p.0 as usize == c)
                .map(|p| p.1)
                .sum::<f64>()
                / size(c)
        };
        let grand = pairs.iter().map(|p| p.1).sum::<f64>() / n;
        let sst: f64 = pairs.iter().map(|p| (p.1 - grand).powi(2)).sum();
        let ssw: f64 = pairs
            .iter()
            .map(|p| (p.1 - mean_of(p.0 as usize)).powi(2))
            .sum();
        let ssb = sst - ssw;
        let mut cross = 0.0;
        for i in 0..k {
            for j in 0..k {
                if i != j {
                    cross += size(i) * size(j);
                }
            }
        }
        let n0 = cross / (n * (k as f64 - 1.0));
        let msb = ssb / (k as f64 - 1.0);
        let msw = ssw / (n - k as f64);
        let icc = (msb - msw) / (msb + (n0 - 1.0) * msw);
        let m = n / k as f64;
        let var = (0..k).map(|c| (size(c) - m).powi(2)).sum::<f64>() / k as f64;
        (icc, n0, var.sqrt() / m)
    }

    #[test]
    fn equals_the_anova_formula_on_fixed_data() {
        let pairs = fixed();
        let e = estimate(&Anova::from_pairs(&pairs)).unwrap();
        let (icc, n0, cv) = reference(&pairs);
        assert!(close(e.icc, icc, 1e-9), "{} vs {icc}", e.icc);
        assert!(close(e.n0, n0, 1e-12), "{} vs {n0}", e.n0);
        assert!(close(e.cv, cv, 1e-12), "{} vs {cv}", e.cv);
        assert_eq!((e.clusters, e.units), (5, 16));
        assert!(close(e.avg_cluster_size, 3.2, 1e-15));
        // The clusters differ clearly here: a large positive ICC.
        assert!(e.icc > 0.5 && e.icc < 1.0, "{}", e.icc);
    }

    #[test]
    fn equals_the_statsmodels_anova_vector() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/icc");
        let mut rd = csv::Reader::from_path(format!("{dir}/data.csv")).unwrap();
        let pairs: Vec<(String, f64)> = rd
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[1].parse().unwrap())
            })
            .collect();
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/expected.json")).unwrap())
                .unwrap();
        let f = |k: &str| want[k].as_f64().unwrap();
        let a = Anova::from_pairs(&pairs);
        assert!(close(a.ss_between, f("ss_between"), 1e-9));
        assert!(close(a.ss_within, f("ss_within"), 1e-9));
        let e = estimate(&a).unwrap();
        assert_eq!(e.clusters, want["clusters"].as_u64().unwrap());
        assert_eq!(e.units, want["units"].as_u64().unwrap());
        for (got, key) in [
            (e.icc, "icc"),
            (e.msb, "msb"),
            (e.msw, "msw"),
            (e.n0, "n0"),
            (e.avg_cluster_size, "avg_cluster_size"),
            (e.cv, "cv"),
        ] {
            assert!(close(got, f(key), 1e-9), "{key}: {got} vs {}", f(key));
        }
    }

    #[test]
    fn a_large_offset_does_not_change_the_estimate() {
        let pairs = fixed();
        let base = estimate(&Anova::from_pairs(&pairs)).unwrap();
        for offset in [1e6, 1e9, -3e9] {
            let shifted: Vec<(u32, f64)> = pairs.iter().map(|(c, y)| (*c, y + offset)).collect();
            let e = estimate(&Anova::from_pairs(&shifted)).unwrap();
            // Values near 1e9 keep ~7 of their digits below the unit: 1e-6 relative is what the
            // inputs themselves carry; a Σy² − (Σy)²/n computation would be off by orders of
            // magnitude here.
            assert!(
                close(e.icc, base.icc, 1e-6),
                "{offset}: {} vs {}",
                e.icc,
                base.icc
            );
        }
    }

    #[test]
    fn shifted_sums_equal_the_two_pass_aggregates() {
        let pairs = fixed();
        let shift = 11.0;
        let aggs: Vec<ClusterAgg> = (0..5u32)
            .map(|c| {
                let v: Vec<f64> = pairs
                    .iter()
                    .filter(|p| p.0 == c)
                    .map(|p| p.1 - shift)
                    .collect();
                ClusterAgg::from_sums(
                    v.len() as u64,
                    v.iter().sum(),
                    v.iter().map(|y| y * y).sum(),
                )
            })
            .collect();
        let one = estimate(&Anova::from_clusters(&aggs)).unwrap();
        let two = estimate(&Anova::from_pairs(&pairs)).unwrap();
        assert!(close(one.icc, two.icc, 1e-12));
        assert!(close(one.msw, two.msw, 1e-12));
    }

    #[test]
    fn equal_sizes_give_n0_equal_to_the_size_and_cv_zero() {
        let pairs: Vec<(u32, f64)> = (0..40)
            .map(|i| ((i / 8) as u32, ((i * 7) % 5) as f64 + (i / 8) as f64))
            .collect();
        let e = estimate(&Anova::from_pairs(&pairs)).unwrap();
        assert_eq!(e.n0, 8.0);
        assert_eq!(e.cv, 0.0);
        assert_eq!(e.avg_cluster_size, 8.0);
        // Balanced: ICC = (MSB − MSW)/(MSB + 7 MSW).
        assert!(close(e.icc, (e.msb - e.msw) / (e.msb + 7.0 * e.msw), 1e-15));
    }

    #[test]
    fn no_clustering_gives_a_negative_estimate_and_zero_for_power() {
        // Identical cluster means, spread within: MSB = 0, ICC = −1/(n0 − 1).
        let pairs: Vec<(u32, f64)> = (0..12)
            .map(|i| ((i / 4) as u32, [1.0, 3.0, 2.0, 2.0][i % 4]))
            .collect();
        let e = estimate(&Anova::from_pairs(&pairs)).unwrap();
        assert!(close(e.icc, -1.0 / 3.0, 1e-12), "{}", e.icc);
        assert_eq!(e.icc_for_power(), 0.0);
    }

    #[test]
    fn too_few_clusters_singletons_or_a_constant_cannot_be_estimated() {
        let one = Anova::from_pairs(&[(0, 1.0), (0, 2.0)]);
        assert!(estimate(&one).unwrap_err().contains("1 cluster(s)"));
        let singles = Anova::from_pairs(&[(0, 1.0), (1, 2.0), (2, 4.0)]);
        assert!(estimate(&singles).unwrap_err().contains("single value"));
        let flat = Anova::from_pairs(&[(0, 5.0), (0, 5.0), (1, 5.0), (1, 5.0)]);
        assert!(estimate(&flat).unwrap_err().contains("does not vary"));
        let e = estimate_for("income", "school_id", &flat).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert_eq!(
            e.to_string(),
            format!(
                "{CLUSTER_COLUMN} school_id: cannot estimate the ICC of income: the metric does not vary; give {ICC} and {AVG_CLUSTER_SIZE} instead"
            )
        );
        let nan = Anova::from_pairs(&[(0, 1.0), (0, f64::NAN), (1, 2.0), (1, 3.0)]);
        assert!(estimate(&nan).unwrap_err().contains("not finite"));
        let empty = Anova::from_clusters(&[]);
        assert!(estimate(&empty).is_err());
    }

    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        // Box–Muller on two uniforms in (0, 1].
        let u = |r: &mut ChaCha8Rng| ((r.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let (a, b) = (u(rng), u(rng));
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }

    /// Data with a known ICC: y = μ + b_c + e, b_c ~ N(0, σb²), e ~ N(0, σw²).
    fn generate(seed: u64, k: usize, rho: f64, sw: f64, mu: f64) -> (Vec<(u32, f64)>, u64, u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sb = sw * (rho / (1.0 - rho)).sqrt();
        let mut pairs = Vec::new();
        let (mut lo, mut hi) = (u64::MAX, 0);
        for c in 0..k {
            let size = 2 + rng.next_u64() % 39;
            lo = lo.min(size);
            hi = hi.max(size);
            let b = sb * normal(&mut rng);
            for _ in 0..size {
                pairs.push((c as u32, mu + b + sw * normal(&mut rng)));
            }
        }
        (pairs, lo, hi)
    }

    /// Large-sample sd of the ANOVA ICC estimator (Donner 1986; Fisher's variance for k
    /// clusters of n units), with n the size-weighted n0 of the unequal clusters.
    fn sampling_sd(rho: f64, k: u64, n0: f64) -> f64 {
        (2.0 * (1.0 - rho).powi(2) * (1.0 + (n0 - 1.0) * rho).powi(2)
            / (n0 * (n0 - 1.0) * (k as f64 - 1.0)))
            .sqrt()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn recovers_a_known_icc_within_sampling_error(
            seed in any::<u64>(),
            k in 40usize..120,
            rho in 0.0f64..0.6,
            sw in 0.5f64..50.0,
            mu in -1e6f64..1e6,
        ) {
            let (pairs, lo, hi) = generate(seed, k, rho, sw, mu);
            let e = estimate(&Anova::from_pairs(&pairs)).unwrap();
            let sd = sampling_sd(rho, e.clusters, e.n0);
            // Six standard errors. Checked over 20 000 seeded cases: the standardised error has
            // sd 1.09 (the unequal sizes add a little to Fisher's variance) and never exceeded
            // 4.6, so a false alarm is far below one in a million runs.
            prop_assert!(
                (e.icc - rho).abs() <= 6.0 * sd,
                "ICC {} for true {rho} (sd {sd}, k {k}, sizes {lo}..{hi})", e.icc
            );
        }
    }

    #[test]
    fn sql_quotes_identifiers_and_keeps_the_clause() {
        let sql = anova_sql(
            &crate::warehouse::mysql::Mysql,
            "`t`",
            "a`b",
            MetricType::Binary,
            "school id",
            "`x` = ?",
        );
        assert!(sql.contains("`a``b`"), "{sql}");
        assert!(sql.contains("`school id` AS xc"), "{sql}");
        assert!(
            sql.contains("WHERE (`x` = ?) AND `a``b` IS NOT NULL"),
            "{sql}"
        );
        let pg = anova_sql(
            &crate::warehouse::postgres::Postgres { redshift: false },
            "\"t\"",
            "flag",
            MetricType::Binary,
            "c",
            "1=1",
        );
        assert!(
            pg.contains("CAST(CAST(\"flag\" AS INTEGER) AS DOUBLE PRECISION)"),
            "{pg}"
        );
    }
}

/// The cluster design's inputs for one metric and where each came from: `"given"` (a flag) or
/// `"estimated"` (from the warehouse, `estimate` then says from what).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterInputs {
    pub icc: f64,
    pub icc_source: String,
    pub avg_cluster_size: f64,
    pub avg_cluster_size_source: String,
    pub cv: f64,
    pub cv_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<EstimateRecord>,
}

/// What the warehouse estimate was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateRecord {
    pub cluster_column: String,
    pub clusters: u64,
    /// Units with a value of the metric and a cluster id.
    pub units: u64,
    /// Units with a value but no cluster id, left out of the estimate.
    pub units_without_cluster: u64,
    /// The ANOVA estimate as computed (negative values are used as 0).
    pub icc_estimate: f64,
}

impl ClusterInputs {
    /// The inputs from an estimate, each replaced by its flag when given.
    pub fn from_estimate(
        cluster_column: &str,
        q: &ClusterQuery,
        e: &IccEstimate,
        icc: Option<f64>,
        avg_cluster_size: Option<f64>,
        cv: Option<f64>,
    ) -> ClusterInputs {
        let pick = |flag: Option<f64>, est: f64| match flag {
            Some(v) => (v, "given".to_string()),
            None => (est, "estimated".to_string()),
        };
        let (icc, icc_source) = pick(icc, e.icc_for_power());
        let (avg_cluster_size, avg_cluster_size_source) =
            pick(avg_cluster_size, e.avg_cluster_size);
        let (cv, cv_source) = pick(cv, e.cv);
        ClusterInputs {
            icc,
            icc_source,
            avg_cluster_size,
            avg_cluster_size_source,
            cv,
            cv_source,
            estimate: Some(EstimateRecord {
                cluster_column: cluster_column.to_string(),
                clusters: e.clusters,
                units: e.units,
                units_without_cluster: q.units_without_cluster,
                icc_estimate: e.icc,
            }),
        }
    }

    /// The validated design parameters.
    pub fn spec(&self) -> Result<ClusterSpec> {
        ClusterSpec::new(self.icc, self.avg_cluster_size, self.cv)
    }

    /// One line for the operator: the values and where they came from.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "cluster design with ICC {} ({}), average cluster size {} ({}), CV {} ({})",
            fmt6(self.icc),
            self.icc_source,
            fmt6(self.avg_cluster_size),
            self.avg_cluster_size_source,
            fmt6(self.cv),
            self.cv_source
        );
        if let Some(e) = &self.estimate {
            s.push_str(&format!(
                "; estimated from {} over {} clusters and {} units",
                e.cluster_column, e.clusters, e.units
            ));
            if e.icc_estimate < 0.0 && self.icc_source == "estimated" {
                s.push_str(&format!(
                    " (the ICC estimate {} is negative: no clustering detected, used as 0)",
                    fmt6(e.icc_estimate)
                ));
            }
            if e.units_without_cluster > 0 {
                s.push_str(&format!(
                    "; {} unit(s) without a cluster id left out",
                    e.units_without_cluster
                ));
            }
        }
        s
    }
}

fn fmt6(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// The ICC estimate of `metric` by `cluster_column` over `table` filtered by `filters`, from one
/// aggregate query ([`anova_sql`]). The metric must be a number or boolean of the sheet and the
/// cluster column a field of the sheet; an estimate that cannot be made is an error suggesting
/// `--icc` and `--avg-cluster-size`.
pub async fn warehouse_estimate(
    wh: &Warehouse,
    schema: Option<&str>,
    table: &str,
    sheet: &ConfigWorksheet,
    metric: &str,
    cluster_column: &str,
    filters: &[Filter],
) -> Result<(ClusterQuery, IccEstimate)> {
    let mut errors = Vec::new();
    let metric_type = match sheet.column(metric) {
        Some(c) => super::baseline::metric_type_of(c.data_type),
        None => None,
    };
    if sheet.column(cluster_column).is_none() {
        let names: Vec<&str> = sheet
            .columns
            .iter()
            .map(|c| c.column_name.as_str())
            .collect();
        errors.push(format!(
            "{CLUSTER_COLUMN} {cluster_column}: no column {cluster_column:?} in the sheet for {} (fields: {})",
            sheet.table_name,
            names.join(", ")
        ));
    }
    let resolved = filters::resolve_into(filters, sheet, &mut errors)?;
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    // The metric itself was checked by the baseline query.
    let metric_type = metric_type.unwrap_or(MetricType::Numeric);
    let (clause, params) = filters::where_clause_resolved(wh.dialect(), &resolved, 1);
    let q = cluster_anova(
        wh,
        &wh.qualified(schema, table),
        metric,
        metric_type,
        cluster_column,
        &clause,
        &params,
    )
    .await?;
    let e = estimate_for(metric, cluster_column, &q.anova)?;
    Ok((q, e))
}

/// [`warehouse_estimate`] for each metric, then the inputs of its cluster design: the flags
/// `given` (`--icc`, `--avg-cluster-size`, `--cv`) where present, the estimates elsewhere.
#[allow(clippy::too_many_arguments)]
pub async fn warehouse_inputs(
    wh: &Warehouse,
    schema: Option<&str>,
    table: &str,
    sheet: &ConfigWorksheet,
    metrics: &[String],
    cluster_column: &str,
    filters: &[Filter],
    given: (Option<f64>, Option<f64>, Option<f64>),
) -> Result<Vec<ClusterInputs>> {
    let mut out = Vec::with_capacity(metrics.len());
    for m in metrics {
        let res = warehouse_estimate(wh, schema, table, sheet, m, cluster_column, filters).await;
        // No estimate is needed when the flags give the design: use them.
        let (q, e) = match (res, given) {
            (Ok(x), _) => x,
            (Err(Error::Invalid(_)), (Some(icc), Some(m), cv)) => {
                out.push(ClusterInputs {
                    icc,
                    icc_source: "given".into(),
                    avg_cluster_size: m,
                    avg_cluster_size_source: "given".into(),
                    cv: cv.unwrap_or(0.0),
                    cv_source: if cv.is_some() { "given" } else { "default" }.into(),
                    estimate: None,
                });
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        out.push(ClusterInputs::from_estimate(
            cluster_column,
            &q,
            &e,
            given.0,
            given.1,
            given.2,
        ));
    }
    Ok(out)
}
