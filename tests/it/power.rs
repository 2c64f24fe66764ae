//! Power checks: the statistics core against independent values, the worked examples of
//! docs/statistics.md#worked-examples, invariants (proptest), and the `xngin power` command.
//!
//! Where expected values come from: "mpmath" values are the noncentral t CDF computed as the
//! integral P(T ≤ t) = ∫ Φ(t·√(s/ν) − δ) χ²_ν(s) ds with mpmath.quad at 40 digits (independent
//! of our series); "scipy" values are exact roots found with scipy.optimize.brentq
//! (xtol 1e-14) on power functions built from scipy.stats.nct / scipy.stats.norm (Boost's
//! noncentral t, an independent implementation):
//!   power_t(d, n1, r, α) = nct.sf(c, ν, λ) + nct.cdf(−c, ν, λ), ν = n1(1 + r) − 2,
//!     λ = |d|·√(n1·r·n1 / (n1 + r·n1)), c = t.isf(α/2, ν);
//!   power_z(h, n1, r, α) = norm.cdf(s − z) + norm.cdf(−z − s), s = |h|·√(n1·r/(1 + r)),
//!     z = norm.isf(α/2);
//!   roots: brentq(lambda x: power(x) − π, lo, hi, xtol=1e-14, rtol=1e-15).

// Expected values are pasted with all the digits the reference computation printed.
#![allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]

use xngin::power::nct::{nct_cdf, nct_sf, norm_isf, t_cdf, t_isf};
use xngin::power::solve::{
    cohens_h, solve_effect_ttest, solve_effect_ztest, solve_n1_ttest, solve_n1_ztest, ttest_power,
    ztest_power,
};
use xngin::power::{ClusterSpec, Design, MessageType, MetricSpec, MetricType, analyze};

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

macro_rules! assert_close {
    ($a:expr, $b:expr, $rel:expr) => {{
        let (a, b) = ($a, $b);
        assert!(
            close(a, b, $rel),
            "{} = {a:e}, expected {b:e} (rel {:e})",
            stringify!($a),
            ((a - b) / b).abs()
        );
    }};
}

// ---------------------------------------------------------------- noncentral t

#[test]
fn nct_cdf_matches_high_precision_integral() {
    // (t, ν, δ, P(T ≤ t)) — mpmath values (40 digits, rounded to 20 significant).
    let cases: &[(f64, f64, f64, f64)] = &[
        (1.0, 10.0, 0.5, 0.678_630_638_691_129_394_97),
        (-1.0, 10.0, 0.5, 0.074_775_445_882_578_504_485),
        (2.0, 5.0, 1.0, 0.778_074_662_616_214_871_47),
        (-2.0, 5.0, -1.0, 0.221_925_337_383_785_128_53),
        (
            1.9788,
            126.0,
            2.828_427_124_746_190_3,
            0.198_493_977_295_687_232_39,
        ),
        (3.0, 20.0, 5.0, 0.033_043_121_847_021_801_414),
        (0.5, 1.0, 2.0, 0.063_276_887_479_946_749_033),
        (-0.5, 3.5, -3.0, 0.993_634_049_136_691_685_55),
        (1.96, 25449.0, 2.8017, 0.199_981_450_858_867_069_16),
        (10.0, 30.0, 8.0, 0.881_213_492_377_882_962_46),
        (-1.5, 100.0, 1.0, 0.006_524_357_938_488_288_492_7),
        (2.5, 2.0, 0.0, 0.935_194_139_889_244_595_44),
        // Large experiments: ν in the hundreds of thousands.
        (1.96, 1e6, 2.8, 0.200_454_282_055_179_638_12),
        (-1.96, 250_000.0, 2.8, 9.680_618_984_574_027_830_2e-7),
        (2.5, 40_000.0, 0.1, 0.991_800_014_546_452_235_9),
    ];
    for &(t, df, nc, want) in cases {
        let got = nct_cdf(t, df, nc);
        assert!(
            (got - want).abs() < 1e-13,
            "F({t}; {df}, {nc}) = {got:e}, want {want:e}"
        );
        assert!((nct_sf(t, df, nc) - (1.0 - want)).abs() < 1e-13);
    }
}

#[test]
fn nct_reduces_to_central_t_and_normal() {
    // δ = 0 is Student's t; t(1) is Cauchy: F(1) = 3/4, F(-1) = 1/4.
    assert!((nct_cdf(1.0, 1.0, 0.0) - 0.75).abs() < 2e-15);
    assert!((t_cdf(-1.0, 1.0) - 0.25).abs() < 2e-15);
    // t(2): F(t) = 1/2 + t / (2 √(t² + 2)).
    for t in [-3.0, -0.7, 0.4, 2.5, 9.0] {
        let exact = 0.5 + t / (2.0 * (t * t + 2.0_f64).sqrt());
        assert!((nct_cdf(t, 2.0, 0.0) - exact).abs() < 1e-15, "t={t}");
    }
    // Huge ν: T → N(δ, 1), so F(t) → Φ(t − δ); the difference is O(1/ν).
    let z = xngin::power::nct::norm_cdf(1.0 - 0.5);
    assert!((nct_cdf(1.0, 1e7, 0.5) - z).abs() < 1e-6);
}

#[test]
fn quantiles_invert_the_cdfs() {
    // The familiar two-sided 5% critical values.
    assert!((norm_isf(0.025) - 1.959_963_984_540_054).abs() < 1e-14);
    assert!((t_isf(0.025, 10.0) - 2.228_138_851_986_275_3).abs() < 1e-12); // scipy
    assert!((t_isf(0.025, 126.0) - 1.978_970_601_990_628_8).abs() < 1e-12); // scipy
    for df in [1.0, 3.3, 30.0, 2000.0, 1e6] {
        let c = t_isf(0.025, df);
        assert!((1.0 - t_cdf(c, df) - 0.025).abs() < 1e-15, "df={df}");
    }
}

// ---------------------------------------------------------------- power functions

#[test]
fn raw_power_vectors() {
    // Raw power of the worked examples (also scipy: 0.8014595579222543 and 0.6087794846454566).
    assert_close!(
        ttest_power(0.5, 64.0, 1.0, 0.05),
        0.801_459_557_922_254_3,
        1e-12
    );
    assert_close!(
        ztest_power(0.1, 1000.0, 1.0, 0.05),
        0.608_779_484_645_456_6,
        1e-12
    );
    // Power at zero effect is alpha exactly.
    assert!((ttest_power(0.0, 50.0, 1.0, 0.05) - 0.05).abs() < 1e-14);
    assert!((ztest_power(0.0, 50.0, 2.0, 0.1) - 0.1).abs() < 1e-14);
}

#[test]
fn solved_sizes_are_exact_roots() {
    // scipy roots (xtol 1e-14).
    assert_close!(
        solve_n1_ttest(0.5, 1.0, 0.05, 0.8).unwrap(),
        63.765_610_190_952_28,
        1e-10
    );
    assert_close!(
        solve_n1_ttest(0.5, 4.0, 0.05, 0.8).unwrap(),
        39.632_129_946_627_02,
        1e-10
    );
    assert_close!(
        solve_n1_ttest(0.035_122_924_332_058_04, 1.0, 0.05, 0.8).unwrap(),
        12_725.886_580_121_32,
        1e-10
    );
    let h = cohens_h(0.5, 0.55);
    assert_close!(h, -0.100_167_421_161_559_74, 1e-14);
    assert_close!(
        solve_n1_ztest(h, 1.0, 0.05, 0.8).unwrap(),
        1564.529_011_227_546,
        1e-10
    );
    assert_close!(
        solve_n1_ttest(h, 1.0, 0.05, 0.8).unwrap(),
        1565.489_954_308_143_3,
        1e-10
    );
    assert_close!(
        solve_effect_ttest(197.0, 1.0, 0.05, 0.8).unwrap(),
        0.282_977_215_252_369_2,
        1e-10
    );
    assert_close!(
        solve_effect_ztest(500.0, 1.0, 0.05, 0.8).unwrap(),
        0.177_187_589_964_152_96,
        1e-10
    );
    // Zero effect and tiny samples are errors with the reference's texts.
    assert_eq!(
        solve_n1_ttest(0.0, 1.0, 0.05, 0.8).unwrap_err().to_string(),
        "Cannot detect an effect-size of 0. Try changing your effect-size."
    );
    assert!(
        solve_effect_ttest(1.0, 1.0, 0.05, 0.8)
            .unwrap_err()
            .to_string()
            .starts_with("Your sample size is too small")
    );
}

#[test]
fn huge_experiments_are_fast_and_exact() {
    // ν = 3e7: statrs' t inverse stalls there; ours starts from Cornish–Fisher (scipy 1.959964063615765).
    assert!((t_isf(0.025, 3e7) - 1.959_964_063_615_765).abs() < 1e-13);
    // d = 0.001 needs 15.7 million per arm (scipy root 15697721.979017163).
    let start = std::time::Instant::now();
    assert_close!(
        solve_n1_ttest(0.001, 1.0, 0.05, 0.8).unwrap(),
        15_697_721.979_017_163,
        1e-10
    );
    assert!(start.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn gpower_total_172() {
    // G*Power 3.1, t tests, difference between two independent means, a priori:
    // d = 0.5, α = .05 two-tailed, power .90, allocation 1 → 86 per group, total 172.
    let n1 = solve_n1_ttest(0.5, 1.0, 0.05, 0.9).unwrap();
    assert_close!(n1, 85.031_284_137_346_1, 1e-10); // scipy root
    let design = Design::new(0.05, 0.9, Some(2), None).unwrap();
    let a = analyze(
        &numeric("m", 100.0, Some(110.0), None, Some(20.0), None),
        &design,
        None,
        None,
    )
    .unwrap();
    assert_eq!(a.control_n, Some(86));
    assert_eq!(a.target_n, Some(172));
}

// ---------------------------------------------------------------- worked examples

fn numeric(
    name: &str,
    b: f64,
    t: Option<f64>,
    pct: Option<f64>,
    sd: Option<f64>,
    avail: Option<i64>,
) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        metric_type: MetricType::Numeric,
        baseline: Some(b),
        target: t,
        pct_change: pct,
        stddev: sd,
        available_n: avail,
        available_nonnull_n: None,
    }
}

fn binary(name: &str, b: f64, t: Option<f64>, avail: Option<i64>) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        metric_type: MetricType::Binary,
        baseline: Some(b),
        target: t,
        pct_change: None,
        stddev: None,
        available_n: avail,
        available_nonnull_n: None,
    }
}

fn design(k: usize, w: Option<Vec<f64>>) -> Design {
    Design::new(0.05, 0.8, Some(k), w).unwrap()
}

#[test]
fn vector_numeric_row1() {
    let a = analyze(
        &numeric("m", 100.0, Some(110.0), None, Some(20.0), Some(1000)),
        &design(2, None),
        None,
        None,
    )
    .unwrap();
    assert_eq!(a.effect_size, Some(0.5));
    assert_close!(a.control_n_raw.unwrap(), 63.765_610_190_952_28, 1e-10);
    assert_eq!(a.control_n, Some(64));
    assert_eq!(a.target_n, Some(128));
    assert_eq!(a.sufficient_n, Some(true));
    assert_eq!(a.msg.kind, Some(MessageType::Sufficient));
    assert_eq!(
        a.msg.msg,
        "There are 1000 units available to run your experiment and a minimum of 128 units are needed to meet \
         your experimental design specs. There are enough units available. "
    );
    assert_eq!(
        serde_json::to_string(&a.msg.values).unwrap(),
        r#"{"available_n":1000,"target_n":128,"available_nonnull_n":1000}"#
    );
}

#[test]
fn vector_numeric_insufficient() {
    let mut m = numeric(
        "income",
        13.206_590_621_039_297,
        Some(14.527_249_683_143_227),
        None,
        Some(37.601_056_495_700_554),
        Some(789),
    );
    m.available_nonnull_n = Some(789);
    let a = analyze(&m, &design(4, None), None, None).unwrap();
    assert_close!(a.effect_size.unwrap(), 0.035_122_9, 1e-6);
    assert_eq!(a.control_n, Some(12726));
    assert_eq!(a.target_n, Some(50904));
    assert_eq!(a.sufficient_n, Some(false));
    let mde = a.mde.as_ref().unwrap();
    assert_eq!(mde.control_n, 197); // ⌊789 / 4⌋
    // scipy: 23.846832878739647, pct 0.8056766930254868.
    assert_close!(mde.target_possible_upper, 23.846_832_878_739_647, 1e-10);
    assert_close!(
        mde.pct_change_possible_upper.unwrap(),
        0.805_676_693_025_486_8,
        1e-9
    );
    assert_eq!(a.msg.kind, Some(MessageType::Insufficient));
    assert_eq!(
        a.msg.msg,
        "There are 789 units available to run your experiment and a minimum of 50904 units are needed to meet your \
         experimental design specs. There are not enough non-null valued units available. You need 50115 more units \
         to meet your specified metric target of 14.5272. Alternatively, with the available 789 non-null units and \
         a metric baseline of 13.2066, your metric target should be 23.8468 or further from the baseline.  "
    );
    assert_eq!(
        serde_json::to_string(&a.msg.values).unwrap(),
        r#"{"available_n":789,"target_n":50904,"available_nonnull_n":789,"additional_n_needed":50115,"metric_baseline":13.2066,"target_possible":23.8468,"metric_target":14.5272}"#
    );
    // With only 104 non-null units (⌊104/4⌋ = 26 per arm): scipy 42.99966392695724; the
    // null warning is appended.
    m.available_nonnull_n = Some(104);
    let a = analyze(&m, &design(4, None), None, None).unwrap();
    assert_close!(
        a.mde.as_ref().unwrap().target_possible_upper,
        42.999_663_926_957_24,
        1e-10
    );
    assert!(a.msg.msg.ends_with(
        "further from the baseline.  WARNING: There are 104 units with a non-null value out of the 789 available.  \
         The power calculation was done with only units with a value present, but random assignment is performed \
         over all available units meeting your filters, including those with a missing value. If you do not want \
         that, add a filter on this metric to exclude nulls."
    ));
    assert!(a.msg.msg.contains("You need 50800 more units"));
}

#[test]
fn vector_binary() {
    // docs/compatibility.md#power: binary sizes use the z-test, so the reference's 3132 (t-test,
    // n1 = 1565.49) becomes 3130 (z-test, scipy root n1 = 1564.529011227546).
    let a = analyze(
        &binary("b", 0.5, Some(0.55), Some(1000)),
        &design(2, None),
        None,
        None,
    )
    .unwrap();
    assert_close!(a.effect_size.unwrap(), -0.100_167_421_161_559_74, 1e-13);
    assert_close!(a.control_n_raw.unwrap(), 1564.529_011_227_546, 1e-10);
    assert_eq!(a.target_n, Some(3130));
    assert_eq!(a.sufficient_n, Some(false));
    let mde = a.mde.as_ref().unwrap();
    assert_eq!(mde.control_n, 500);
    assert_close!(mde.effect_size, 0.177_187_589_964_152_96, 1e-10);
    // Reference 0.411869 (pct −0.176262) is the lower bound; we also report the upper one.
    assert_close!(mde.target_possible_lower, 0.411_869_051_416_017_2, 1e-10);
    assert_close!(
        mde.pct_change_possible_lower.unwrap(),
        -0.176_261_897_167_965_6,
        1e-9
    );
    assert_close!(mde.target_possible_upper, 0.588_130_948_583_983, 1e-10);
    // The message quotes the bound in the requested direction (target above the baseline).
    assert!(
        a.msg
            .msg
            .contains("your metric target should be 0.5881 or further"),
        "{}",
        a.msg.msg
    );
}

#[test]
fn vector_weights() {
    let m = numeric("m", 100.0, Some(110.0), None, Some(20.0), None);
    let a = analyze(&m, &design(2, Some(vec![20.0, 80.0])), None, None).unwrap();
    assert_eq!(a.design.arm_ratio, 4.0);
    assert_eq!(a.design.control_share, 0.2);
    assert_close!(a.control_n_raw.unwrap(), 39.632_129_946_627_02, 1e-10);
    assert_eq!(a.control_n, Some(40));
    assert_eq!(a.target_n, Some(200));
    let a = analyze(&m, &design(3, Some(vec![20.0, 20.0, 60.0])), None, None).unwrap();
    assert_eq!(a.design.arm_ratio, 1.0);
    assert_eq!(a.control_n, Some(64));
    assert_eq!(a.target_n, Some(320));
    // Binary with weights, z-test (reference t-test values 3526 and 4895 change):
    // 33.3/66.7: n1 = 1172.81 → 1173, ⌈1173 / 0.333⌉ = 3523; 20/80: n1 = 977.83 → 978 → 4890.
    let b = binary("b", 0.5, Some(0.55), None);
    let a = analyze(&b, &design(2, Some(vec![33.3, 66.7])), None, None).unwrap();
    assert_close!(a.control_n_raw.unwrap(), 1172.810_353_244_037_7, 1e-10);
    assert_eq!(a.target_n, Some(3523));
    let a = analyze(&b, &design(2, Some(vec![20.0, 80.0])), None, None).unwrap();
    assert_close!(a.control_n_raw.unwrap(), 977.830_632_017_216_5, 1e-10);
    assert_eq!(a.target_n, Some(4890));
}

#[test]
fn vector_mde() {
    let m = numeric("m", 100.0, None, None, Some(20.0), None);
    let a = analyze(&m, &design(2, None), Some(20000), None).unwrap();
    let mde = a.mde.as_ref().unwrap();
    assert_eq!(mde.control_n, 10000);
    assert_close!(mde.target_possible_upper, 100.792_445_048_171_07, 1e-12); // reference 100.7925
    assert_close!(
        mde.pct_change_possible_upper.unwrap(),
        0.007_924_450_481_710_7,
        1e-9
    );
    assert_close!(
        mde.target_possible_lower,
        100.0 - 0.792_445_048_171_07,
        1e-12
    );
    assert_eq!(a.target_n, Some(20000));
    assert_eq!(a.sufficient_n, None);
    assert_eq!(
        a.msg.msg,
        "With a desired sample size of 20000 units and a metric baseline of 100.0, the minimum detectable effect \
         (MDE) is 100.7924."
    );
    let a = analyze(&m, &design(2, Some(vec![20.0, 80.0])), Some(20000), None).unwrap();
    assert_close!(
        a.mde.as_ref().unwrap().target_possible_upper,
        100.990_556_310_213_85,
        1e-12
    );
    // Binary, z-test: scipy 0.48019500770671036; the reference's 0.480194 (pct −0.039612)
    // carries statsmodels' 1e-5 solver tolerance.
    let b = binary("b", 0.5, None, None);
    let a = analyze(&b, &design(2, None), Some(20000), None).unwrap();
    assert_close!(
        a.mde.as_ref().unwrap().target_possible_lower,
        0.480_195_007_706_710_36,
        1e-10
    );
    assert_close!(
        a.mde.as_ref().unwrap().pct_change_possible_lower.unwrap(),
        -0.039_609_984_586_579_3,
        1e-8
    );
    // MDE mode: numeric desired 500 → 105.0213 (pct 0.0502); binary p0 = 0.05, desired 1000 →
    // 0.018630 (pct −0.6274).
    let a = analyze(&m, &design(2, None), Some(500), None).unwrap();
    assert_close!(
        a.mde.as_ref().unwrap().target_possible_upper,
        105.021_312_253_137_75,
        1e-12
    );
    let a = analyze(
        &binary("b", 0.05, None, None),
        &design(2, None),
        Some(1000),
        None,
    )
    .unwrap();
    let mde = a.mde.as_ref().unwrap();
    assert_close!(mde.target_possible_lower, 0.018_630_122_537_609_674, 1e-9);
    assert_close!(
        mde.pct_change_possible_lower.unwrap(),
        0.018_630_122_537_609_674 / 0.05 - 1.0,
        1e-9
    );
    assert_close!(mde.target_possible_upper, 0.095_460_902_272_801_74, 1e-9);
    assert!(a.msg.msg.ends_with("is 0.0186."), "{}", a.msg.msg);
}

#[test]
fn vector_testing_dwh_income() {
    // current_income for Asian participants: b = 26333.6287, +10 %, σ = 6752.8505 → n1 = 104.195 → 210.
    let m = numeric(
        "current_income",
        26333.6287,
        None,
        Some(0.1),
        Some(6752.8505),
        Some(5000),
    );
    let a = analyze(&m, &design(2, None), None, None).unwrap();
    assert_close!(a.metric.target.unwrap(), 26333.6287 * 1.1, 1e-15);
    assert_close!(a.control_n_raw.unwrap(), 104.195_199_530_675_25, 1e-9);
    assert_eq!(a.target_n, Some(210));
}

#[test]
fn vector_clusters() {
    let m = numeric("m", 100.0, Some(110.0), None, Some(20.0), Some(2000));
    let c = ClusterSpec::new(0.15, 30.0, 0.0).unwrap();
    let a = analyze(&m, &design(2, None), None, Some(&c)).unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_eq!(cl.design_effect, 5.35);
    assert_eq!(cl.clusters_per_arm, Some(vec![12, 12]));
    assert_eq!(cl.num_clusters_total, Some(24));
    assert_eq!(cl.n_per_arm, Some(vec![360, 360]));
    assert_eq!(a.target_n, Some(720));
    assert_eq!(cl.effective_sample_size, Some(134));
    assert_eq!(
        a.msg.msg,
        "There are 2000 units available. You need at least 720 units across 24 clusters to satisfy your design \
         specs. There are enough non-null valued units available."
    );
    let a = analyze(&m, &design(2, Some(vec![20.0, 80.0])), None, Some(&c)).unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_eq!(cl.clusters_per_arm, Some(vec![8, 29]));
    assert_eq!(cl.n_per_arm, Some(vec![240, 870]));
    // Binary .10 → .15, ICC .05, m = 50: DEFF 3.45. The reference's [48, 48] / [2400, 2400]
    // come from the t-test (n1 = 681.31 → 682 → 1364 individuals); with the z-test
    // (docs/compatibility.md#power, scipy root n1 = 680.3526619128046 → 681 → 1362) each arm needs
    // ⌈681/50 · 3.45⌉ = ⌈46.989⌉ = 47 clusters.
    let c = ClusterSpec::new(0.05, 50.0, 0.0).unwrap();
    let a = analyze(
        &binary("b", 0.10, Some(0.15), Some(5000)),
        &design(2, None),
        None,
        Some(&c),
    )
    .unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_eq!(cl.design_effect, 3.45);
    assert_close!(a.control_n_raw.unwrap(), 680.352_661_912_804_6, 1e-10);
    assert_eq!(cl.clusters_per_arm, Some(vec![47, 47]));
    assert_eq!(cl.n_per_arm, Some(vec![2350, 2350]));
    // DEFF with CV: 1 + .15·(29 + 30·2.25) = 15.475, and the CV warning.
    let c = ClusterSpec::new(0.15, 30.0, 1.5).unwrap();
    assert_eq!(c.design_effect(), 15.475);
    let a = analyze(&m, &design(2, None), None, Some(&c)).unwrap();
    assert!(a.msg.msg.ends_with(
        "Warning: High cluster size variation (CV=1.50).  Number of clusters estimates are approximate."
    ));
    // The reference's own test: 3 arms, CV 1.2 → DEFF 11.83, [26, 26, 26] clusters, 780 units each.
    let c = ClusterSpec::new(0.15, 30.0, 1.2).unwrap();
    let a = analyze(
        &numeric("m", 100.0, Some(110.0), None, Some(20.0), Some(5000)),
        &design(3, None),
        None,
        Some(&c),
    )
    .unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_close!(cl.design_effect, 11.83, 1e-14);
    assert_eq!(cl.clusters_per_arm, Some(vec![26, 26, 26]));
    assert_eq!(cl.n_per_arm, Some(vec![780, 780, 780]));
    assert_eq!(a.target_n, Some(2340));
}

#[test]
fn cluster_insufficient_uses_effective_n() {
    let m = numeric("m", 100.0, Some(110.0), None, Some(20.0), Some(500));
    let c = ClusterSpec::new(0.15, 30.0, 0.0).unwrap();
    let a = analyze(&m, &design(2, None), None, Some(&c)).unwrap();
    assert_eq!(a.sufficient_n, Some(false));
    // MDE on ⌊500 / 5.35⌋ = 93 units → ⌊93/2⌋ = 46 control units.
    let mde = a.mde.as_ref().unwrap();
    assert_eq!(mde.control_n, 46);
    let d = solve_effect_ttest(46.0, 1.0, 0.05, 0.8).unwrap();
    assert_close!(mde.target_possible_upper, 100.0 + 20.0 * d, 1e-14);
    assert!(
        a.msg
            .msg
            .contains("after accounting for clustering. You need 220 more units"),
        "{}",
        a.msg.msg
    );
}

// ---------------------------------------------------------------- messages and validation

#[test]
fn message_only_results() {
    let d = design(2, None);
    let mut m = numeric("m", 100.0, Some(110.0), None, Some(20.0), Some(0));
    let a = analyze(&m, &d, None, None).unwrap();
    assert_eq!(a.msg.kind, Some(MessageType::NoAvailableN));
    assert_eq!(a.msg.values, None);
    assert_eq!(
        a.msg.msg,
        "You have no available units to run your experiment. Adjust your filters to target more units."
    );
    m.available_n = Some(10);
    m.available_nonnull_n = Some(0);
    let a = analyze(&m, &d, None, None).unwrap();
    assert_eq!(a.msg.kind, Some(MessageType::Insufficient));
    assert!(
        a.msg
            .msg
            .starts_with("You have no units with non-null values")
    );
    m.available_nonnull_n = None;
    m.stddev = Some(0.0);
    let a = analyze(&m, &d, None, None).unwrap();
    assert_eq!(a.msg.kind, Some(MessageType::ZeroVariation));
    m.stddev = Some(20.0);
    m.target = Some(100.0);
    let a = analyze(&m, &d, None, None).unwrap();
    assert_eq!(a.msg.kind, Some(MessageType::ZeroEffectSize));
    assert_eq!(
        a.msg.msg,
        "Cannot detect an effect-size of 0. Try changing your effect-size."
    );
    m.baseline = None;
    let a = analyze(&m, &d, None, None).unwrap();
    assert_eq!(a.msg.kind, Some(MessageType::NoBaseline));
    assert_eq!(a.target_n, None);
}

#[test]
fn invalid_inputs_name_the_flag() {
    crate::common::cli_names();
    let err = |r: xngin::Result<Design>| r.unwrap_err().lines().join("\n");
    assert!(err(Design::new(1.5, 0.8, Some(2), None)).starts_with("--alpha"));
    assert!(err(Design::new(0.05, 0.0, Some(2), None)).starts_with("--power"));
    assert!(err(Design::new(0.05, 0.8, Some(1), None)).starts_with("--arms"));
    assert!(
        err(Design::new(0.05, 0.8, Some(3), Some(vec![50.0, 50.0])))
            .contains("Number of arm weights (2) must match number of arms (3)")
    );
    assert!(err(Design::new(0.05, 0.8, Some(2), Some(vec![50.0, -1.0]))).contains("positive"));
    assert!(
        ClusterSpec::new(1.5, 30.0, 0.0)
            .unwrap_err()
            .to_string()
            .contains("ICC must be between 0 and 1, got 1.5")
    );
    assert!(
        ClusterSpec::new(0.1, 0.5, 0.0)
            .unwrap_err()
            .to_string()
            .contains("Cluster size must be >= 1, got 0.5")
    );
    assert!(
        ClusterSpec::new(0.1, 5.0, -1.0)
            .unwrap_err()
            .to_string()
            .contains("CV must be >= 0, got -1.0")
    );
    let e = analyze(
        &binary("b", 1.5, Some(0.5), None),
        &design(2, None),
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string().contains("--baseline 1.5 is not a proportion"),
        "{e}"
    );
}

// ---------------------------------------------------------------- invariants

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn ttest_power_is_monotone(d in 0.05f64..2.0, n in 3.0f64..5000.0, r in 0.25f64..4.0) {
            let p = ttest_power(d, n, r, 0.05);
            prop_assert!(p > 0.05 && p <= 1.0);
            prop_assert!(ttest_power(d, n * 1.1, r, 0.05) >= p - 1e-14);
            prop_assert!(ttest_power(d * 1.1, n, r, 0.05) >= p - 1e-14);
        }

        #[test]
        fn ztest_power_is_monotone(h in 0.01f64..2.0, n in 1.0f64..50000.0, r in 0.25f64..4.0) {
            let p = ztest_power(h, n, r, 0.05);
            prop_assert!(ztest_power(h, n * 1.1, r, 0.05) >= p - 1e-14);
            prop_assert!(ztest_power(h * 1.1, n, r, 0.05) >= p - 1e-14);
        }

        #[test]
        fn solved_control_n_is_the_smallest_sufficient_integer(
            d in 0.05f64..1.5,
            r in prop::sample::select(vec![0.25, 0.5, 1.0, 2.0, 4.0]),
            power in 0.6f64..0.95,
            binary in any::<bool>(),
        ) {
            let kind = if binary { MetricType::Binary } else { MetricType::Numeric };
            let pw = |n: f64| if binary { ztest_power(d, n, r, 0.05) } else { ttest_power(d, n, r, 0.05) };
            let (b, t, sd) = if binary {
                // choose proportions with h = d: baseline 0.5, target sin²(asin √0.5 + d/2)
                let t = ((0.5f64).sqrt().asin() + d / 2.0).sin().powi(2);
                (0.5, t, None)
            } else {
                (10.0, 10.0 + d * 3.0, Some(3.0))
            };
            prop_assume!(t < 1.0);
            let weights = vec![1.0, r];
            let design = Design::new(0.05, power, Some(2), Some(weights)).unwrap();
            let m = MetricSpec { name: "m".into(), metric_type: kind, baseline: Some(b), target: Some(t),
                pct_change: None, stddev: sd, available_n: None, available_nonnull_n: None };
            let a = analyze(&m, &design, None, None).unwrap();
            let k = a.control_n.unwrap() as f64;
            prop_assert!(pw(k) >= power, "power({k}) = {} < {power}", pw(k));
            if k - 1.0 > 2.0 / (1.0 + r) {
                prop_assert!(pw(k - 1.0) < power, "power({}) = {} >= {power}", k - 1.0, pw(k - 1.0));
            }
            let raw = a.control_n_raw.unwrap();
            prop_assert!((pw(raw) - power).abs() < 1e-9);
        }

        #[test]
        fn mde_gives_the_target_power(n in 10i64..100000, binary in any::<bool>()) {
            let design = Design::new(0.05, 0.8, Some(2), None).unwrap();
            let m = if binary { super::binary("b", 0.3, None, None) } else { super::numeric("m", 5.0, None, None, Some(2.0), None) };
            let a = analyze(&m, &design, Some(n), None).unwrap();
            let mde = a.mde.unwrap();
            let n1 = mde.control_n as f64;
            let p = if binary { ztest_power(mde.effect_size, n1, 1.0, 0.05) } else { ttest_power(mde.effect_size, n1, 1.0, 0.05) };
            prop_assert!((p - 0.8).abs() < 1e-10);
        }
    }
}

// ---------------------------------------------------------------- the command

fn xngin() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("xngin").unwrap();
    // No settings file: run where there is none.
    c.current_dir(std::env::temp_dir());
    c.env_remove("XNGIN_SETTINGS")
        .env_remove("XNGIN_DATASOURCE")
        .env_remove("XNGIN_ECHO_SQL");
    c
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn cli_json_has_exactly_the_documented_shape() {
    let out = xngin()
        .args([
            "power",
            "--metric-type",
            "numeric",
            "--baseline",
            "100",
            "--target",
            "110",
            "--stddev",
            "20",
        ])
        .args([
            "--arm-weights",
            "20,80",
            "--available-n",
            "150",
            "--icc",
            "0.15",
            "--avg-cluster-size",
            "30",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    let a = &v["analyses"][0];
    let keys = |o: &serde_json::Value| o.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), ["analyses"]);
    assert_eq!(
        keys(a),
        [
            "metric",
            "design",
            "effect_size",
            "control_n_raw",
            "control_n",
            "target_n",
            "sufficient_n",
            "mde",
            "cluster",
            "msg"
        ]
    );
    assert_eq!(
        keys(&a["metric"]),
        [
            "name",
            "metric_type",
            "baseline",
            "target",
            "pct_change",
            "stddev",
            "available_n",
            "available_nonnull_n"
        ]
    );
    assert_eq!(
        keys(&a["design"]),
        [
            "alpha",
            "power",
            "n_arms",
            "arm_weights",
            "control_share",
            "arm_ratio"
        ]
    );
    assert_eq!(
        keys(&a["mde"]),
        [
            "control_n",
            "effect_size",
            "target_possible_lower",
            "target_possible_upper",
            "pct_change_possible_lower",
            "pct_change_possible_upper"
        ]
    );
    assert_eq!(
        keys(&a["cluster"]),
        [
            "design_effect",
            "clusters_per_arm",
            "n_per_arm",
            "num_clusters_total",
            "effective_sample_size"
        ]
    );
    assert_eq!(keys(&a["msg"]), ["type", "msg", "values"]);
    assert_eq!(a["design"]["arm_weights"], serde_json::json!([20.0, 80.0]));
    assert_eq!(a["design"]["arm_ratio"], 4.0);
    assert_eq!(a["cluster"]["clusters_per_arm"], serde_json::json!([8, 29]));
    assert_eq!(a["target_n"], 1110);
    assert_eq!(a["sufficient_n"], false);
    assert_eq!(a["msg"]["type"], "insufficient");
    // MDE on ⌊150 / 5.35⌋ = 28 units, 20 % control: ⌊28 · 0.2⌋ = 5.
    assert_eq!(a["mde"]["control_n"], 5);
}

#[test]
fn cli_exit_codes() {
    // Insufficient with --fail-on-insufficient: the report is printed, then exit 4.
    let out = xngin()
        .args([
            "power",
            "--metric-type",
            "binary",
            "--baseline",
            "0.5",
            "--target",
            "0.55",
            "--available-n",
            "1000",
        ])
        .args(["--fail-on-insufficient", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json_of(&out)["analyses"][0]["target_n"], 3130);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not enough units for: metric (needs 3130, has 1000)")
    );
    // The same without the flag is fine.
    let out = xngin()
        .args([
            "power",
            "--metric-type",
            "binary",
            "--baseline",
            "0.5",
            "--target",
            "0.55",
            "--available-n",
            "1000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INSUFFICIENT"));
    // Invalid input: exit 3, naming each flag.
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--metric-type",
                "binary",
                "--baseline",
                "1.2",
                "--target",
                "0.5",
            ],
            "--baseline 1.2 is not a proportion",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--alpha",
                "1",
            ],
            "--alpha",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--power",
                "0",
            ],
            "--power",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--arms",
                "1",
            ],
            "--arms must be at least 2",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--arms",
                "3",
                "--arm-weights",
                "50,50",
            ],
            "--arm-weights: Number of arm weights (2) must match number of arms (3)",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--arm-weights",
                "50,-50",
            ],
            "--arm-weights: every weight must be a positive number",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--icc",
                "2",
                "--avg-cluster-size",
                "10",
            ],
            "--icc: ICC must be between 0 and 1, got 2.0",
        ),
        (
            &[
                "--metric-type",
                "numeric",
                "--baseline",
                "1",
                "--target",
                "2",
                "--stddev",
                "1",
                "--icc",
                "0.1",
                "--avg-cluster-size",
                "0.5",
            ],
            "--avg-cluster-size: Cluster size must be >= 1, got 0.5",
        ),
    ];
    for (args, want) in cases {
        let out = xngin().arg("power").args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Usage errors: exit 2.
    let out = xngin()
        .args(["power", "--baseline", "1", "--target", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = xngin()
        .args(["power", "--metric-type", "numeric", "--baseline", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target or --pct-change"));
}

#[test]
fn cli_mde_mode_and_tables() {
    let out = xngin()
        .args([
            "power",
            "--metric-type",
            "numeric",
            "--baseline",
            "100",
            "--stddev",
            "20",
            "--desired-n",
            "500",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let a = &json_of(&out)["analyses"][0];
    assert_eq!(a["target_n"], 500);
    assert_eq!(a["sufficient_n"], serde_json::Value::Null);
    assert_eq!(a["control_n_raw"], serde_json::Value::Null);
    let up = a["mde"]["target_possible_upper"].as_f64().unwrap();
    assert!((up - 105.021_312_253_137_75).abs() < 1e-9, "{up}");
    assert_eq!(
        a["msg"]["msg"],
        "With a desired sample size of 500 units and a metric baseline of 100.0, the minimum detectable effect (MDE) is 105.0213."
    );
    let out = xngin()
        .args([
            "power",
            "--metric-type",
            "numeric",
            "--baseline",
            "100",
            "--target",
            "110",
            "--stddev",
            "20",
            "--available-n",
            "1000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sufficient") && text.contains("128"),
        "{text}"
    );
    assert!(
        text.contains("metric: There are 1000 units available"),
        "{text}"
    );
}

// ---------------------------------------------------------------- warehouse baselines

/// Mean, population stddev and count of the non-null values, computed here in two passes.
fn moments(xs: &[f64]) -> (f64, f64, usize) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt(), xs.len())
}

#[tokio::test]
async fn warehouse_mode_matches_an_aggregate_computed_here() {
    use xngin::warehouse::Warehouse;
    // The embedded testing warehouse that the built-in default resolves to.
    let dsn = xngin::testing_dwh::default_warehouse().await.unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let rows = wh
        .fetch_all(
            "SELECT ethnicity, current_income, is_recruited FROM test_participant_type",
            &[],
        )
        .await
        .unwrap();
    wh.close().await;
    let asian: Vec<&Vec<xngin::warehouse::Value>> = rows
        .rows
        .iter()
        .filter(|r| r[0].to_text().as_deref() == Some("Asian"))
        .collect();
    let incomes: Vec<f64> = asian.iter().filter_map(|r| r[1].as_f64()).collect();
    let recruited: Vec<f64> = asian.iter().filter_map(|r| r[2].as_f64()).collect();
    let (mean, sd, nonnull) = moments(&incomes);
    let (p, _, rec_nonnull) = moments(&recruited);

    let out = xngin()
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "current_income=pct:0.1",
        ])
        .args([
            "--metric",
            "is_recruited=target:0.5",
            "--filter",
            "ethnicity includes Asian",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    let inc = &v["analyses"][0];
    assert_eq!(inc["metric"]["available_n"], asian.len() as i64);
    assert_eq!(inc["metric"]["available_nonnull_n"], nonnull as i64);
    assert_close!(inc["metric"]["baseline"].as_f64().unwrap(), mean, 1e-12);
    assert_close!(inc["metric"]["stddev"].as_f64().unwrap(), sd, 1e-10);
    assert_eq!(inc["metric"]["metric_type"], "numeric");
    // The analysis on the numbers computed here gives the same sizes.
    let m = MetricSpec {
        name: "current_income".into(),
        metric_type: MetricType::Numeric,
        baseline: Some(mean),
        target: None,
        pct_change: Some(0.1),
        stddev: Some(sd),
        available_n: Some(asian.len() as i64),
        available_nonnull_n: Some(nonnull as i64),
    };
    let a = analyze(&m, &design(2, None), None, None).unwrap();
    assert_eq!(inc["target_n"], a.target_n.unwrap());
    assert_eq!(inc["sufficient_n"], a.sufficient_n.unwrap());
    let rec = &v["analyses"][1];
    assert_eq!(rec["metric"]["metric_type"], "binary");
    assert_eq!(rec["metric"]["stddev"], serde_json::Value::Null);
    assert_eq!(rec["metric"]["available_nonnull_n"], rec_nonnull as i64);
    assert_close!(rec["metric"]["baseline"].as_f64().unwrap(), p, 1e-12);
}

/// `audience_stats` on a small table with NULLs, in each database, against moments computed here.
async fn check_audience_stats(wh: &xngin::warehouse::Warehouse, table: &str) {
    use std::collections::BTreeMap;
    use xngin::datatype::DataType;
    use xngin::power::baseline::audience_stats;
    use xngin::sheet::{ColumnDescriptor, ConfigWorksheet};
    use xngin::warehouse::Value;
    use xngin::warehouse::load::{ColumnDef, create_table_sql};
    let cols = [
        ("id", DataType::Integer),
        ("grp", DataType::CharacterVarying),
        ("x", DataType::DoublePrecision),
        ("ok", DataType::Boolean),
        ("big", DataType::Numeric),
    ];
    let defs: Vec<ColumnDef> = cols.iter().map(|(n, t)| ColumnDef::new(n, *t)).collect();
    let _ = wh
        .execute(&format!("DROP TABLE IF EXISTS {}", wh.quote(table)), &[])
        .await;
    wh.execute(
        &create_table_sql(wh.dialect(), &wh.quote(table), &defs),
        &[],
    )
    .await
    .unwrap();
    let mut xs = Vec::new();
    let mut oks = Vec::new();
    let mut bigs = Vec::new();
    for i in 0..40i64 {
        let grp = if i % 4 == 0 {
            Value::Null
        } else {
            Value::Text(if i % 2 == 0 { "a".into() } else { "b".into() })
        };
        let x = if i % 5 == 0 {
            Value::Null
        } else {
            Value::Float(1e6 + (i as f64) * 0.25)
        };
        let ok = if i % 7 == 0 {
            Value::Null
        } else {
            Value::Bool(i % 3 == 0)
        };
        let big = Value::Int(1000 + i * i);
        if !grp.is_null() {
            if let Value::Float(f) = x {
                xs.push(f)
            }
            if let Value::Bool(b) = ok {
                oks.push(if b { 1.0 } else { 0.0 })
            }
            bigs.push((1000 + i * i) as f64);
        }
        // NULLs as literals: PostgreSQL will not take an untyped NULL parameter for a double column.
        let mut params = Vec::new();
        let mut slots = Vec::new();
        for v in [Value::Int(i), grp, x, ok, big] {
            if v.is_null() {
                slots.push("NULL".to_string());
            } else {
                params.push(v);
                slots.push(wh.placeholder(params.len()));
            }
        }
        let sql = format!(
            "INSERT INTO {} VALUES ({})",
            wh.quote(table),
            slots.join(", ")
        );
        wh.execute(&sql, &params).await.unwrap();
    }
    let sheet = ConfigWorksheet {
        table_name: table.into(),
        columns: cols
            .iter()
            .map(|(n, t)| ColumnDescriptor {
                column_name: n.to_string(),
                data_type: *t,
                column_group: String::new(),
                description: String::new(),
                is_unique_id: *n == "id",
                is_strata: false,
                is_filter: *n == "grp",
                is_metric: matches!(*n, "x" | "ok" | "big"),
                extra: BTreeMap::new(),
            })
            .collect(),
    };
    let filters = vec![xngin::filters::parse_cli_filter("grp excludes null").unwrap()];
    let names = vec!["x".to_string(), "ok".to_string(), "big".to_string()];
    let s = audience_stats(wh, None, table, &sheet, &names, &filters)
        .await
        .unwrap();
    assert_eq!(s.available_n, 30);
    let (mx, sx, nx) = moments(&xs);
    assert_eq!(s.metrics[0].nonnull_n, nx as i64);
    assert_close!(s.metrics[0].mean.unwrap(), mx, 1e-13);
    // A large mean with a small spread: one-pass sums would lose most digits here.
    assert_close!(s.metrics[0].stddev.unwrap(), sx, 1e-8);
    let (mo, _, no) = moments(&oks);
    assert_eq!(s.metrics[1].metric_type, MetricType::Binary);
    assert_eq!(s.metrics[1].nonnull_n, no as i64);
    assert_close!(s.metrics[1].mean.unwrap(), mo, 1e-13);
    assert_eq!(s.metrics[1].stddev, None);
    let (mb, sb, _) = moments(&bigs);
    assert_close!(s.metrics[2].mean.unwrap(), mb, 1e-13);
    assert_close!(s.metrics[2].stddev.unwrap(), sb, 1e-10);
    // Unknown and non-metric columns are reported together.
    let e = audience_stats(wh, None, table, &sheet, &["nope".into(), "grp".into()], &[])
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert_eq!(e.lines().len(), 2, "{e}");
    let _ = wh
        .execute(&format!("DROP TABLE {}", wh.quote(table)), &[])
        .await;
}

#[tokio::test]
async fn audience_stats_sqlite() {
    let wh =
        xngin::warehouse::Warehouse::connect(&xngin::dsn::Dsn::parse("sqlite::memory:").unwrap())
            .await
            .unwrap();
    check_audience_stats(&wh, "power_stats").await;
}

#[tokio::test]
async fn audience_stats_postgres() {
    let Ok(url) = std::env::var("XNGIN_TEST_POSTGRES_URL") else {
        eprintln!("skipped: XNGIN_TEST_POSTGRES_URL not set");
        return;
    };
    let wh = xngin::warehouse::Warehouse::connect(&xngin::dsn::Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_audience_stats(&wh, "xngin_power_stats_pg").await;
}

#[tokio::test]
async fn audience_stats_mysql() {
    let Ok(url) = std::env::var("XNGIN_TEST_MYSQL_URL") else {
        eprintln!("skipped: XNGIN_TEST_MYSQL_URL not set");
        return;
    };
    let wh = xngin::warehouse::Warehouse::connect(&xngin::dsn::Dsn::parse(&url).unwrap())
        .await
        .unwrap();
    check_audience_stats(&wh, "xngin_power_stats_my").await;
}

#[tokio::test]
async fn warehouse_mode_filters_file_and_errors() {
    use xngin::warehouse::Warehouse;
    let dsn = xngin::testing_dwh::default_warehouse().await.unwrap();
    let wh = Warehouse::connect(&dsn).await.unwrap();
    let rows = wh
        .fetch_all(
            "SELECT gender, sample_date, income FROM test_participant_type",
            &[],
        )
        .await
        .unwrap();
    wh.close().await;
    let picked: Vec<&Vec<xngin::warehouse::Value>> = rows
        .rows
        .iter()
        .filter(|r| {
            let d = r[1].to_text().unwrap_or_default();
            r[0].to_text().as_deref() == Some("Female")
                && d.as_str() >= "2024-03-01"
                && d.as_str() <= "2024-06-30"
        })
        .collect();
    let nonnull = picked.iter().filter(|r| !r[2].is_null()).count();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audience.json");
    std::fs::write(&file, r#"[{"field_name": "sample_date", "relation": "between", "value": ["2024-03-01", "2024-06-30"]}]"#)
        .unwrap();
    let out = xngin()
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "income=target:30000",
        ])
        .args(["--filter", "gender includes Female", "--filters-file"])
        .arg(&file)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(
        v["analyses"][0]["metric"]["available_n"],
        picked.len() as i64
    );
    assert_eq!(
        v["analyses"][0]["metric"]["available_nonnull_n"],
        nonnull as i64
    );
    // Every problem at once, exit 3: a column that is not a filter, one that is not a metric,
    // and a value of the wrong type.
    let out = xngin()
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "first_name=pct:0.1",
        ])
        .args([
            "--filter",
            "last_name includes x",
            "--filter",
            "current_income between low,high",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(
        err.contains("--metric first_name: column type character varying cannot be a metric"),
        "{err}"
    );
    assert!(
        err.contains(
            r#"--filter "last_name includes x": column "last_name" is not marked is_filter"#
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"value "low" does not fit column type double precision: expected a number"#),
        "{err}"
    );
    // A metric given without an effect, outside MDE mode, is a usage error.
    let out = xngin()
        .args([
            "power",
            "--participant-type",
            "test_participant_type",
            "--metric",
            "income",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------- hostile inputs (issue 9)

/// Runs `xngin power ARGS`: (exit code, stdout, stderr), and asserts it returned within 20 s.
fn power_run(args: &[&str]) -> (i32, String, String) {
    let start = std::time::Instant::now();
    let out = xngin().arg("power").args(args).output().unwrap();
    assert!(
        start.elapsed().as_secs_f64() < 20.0,
        "{args:?} took {:?}",
        start.elapsed()
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

/// `--metric-type numeric --baseline 100 --target 110 --stddev 20` followed by `extra`.
fn numeric_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--target",
        "110",
        "--stddev",
        "20",
    ];
    v.extend_from_slice(extra);
    v
}

const TOO_SMALL_TO_DETECT: &str = "metric \"metric\": The effect is too small to detect with any sample size this tool \
represents (more than 10^15 units per arm); choose a larger effect.";

#[test]
fn power_arms_4294967296_is_refused_before_allocating() {
    let (code, _, err) = power_run(&numeric_args(&["--arms", "4294967296"]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "--arms 4294967296 is more than a power check takes: at most 1000 arms"
    );
}

#[test]
fn power_desired_n_below_one_unit_per_arm_is_refused() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--stddev",
        "20",
        "--arms",
        "5",
        "--desired-n",
        "4",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "--desired-n 4 gives fewer than one unit to each of the 5 arms"
    );
}

#[test]
fn power_stddev_1e_minus_10_answers_with_the_smallest_design() {
    // d = 10¹¹: the power is 1 from the first degree of freedom; 1 + 1 units have none.
    let (code, out, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--target",
        "110",
        "--stddev",
        "1e-10",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["analyses"][0]["control_n"], 2);
    assert_eq!(v["analyses"][0]["target_n"], 4);
}

#[test]
fn power_pct_change_1e308_is_refused() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--pct-change",
        "1e308",
        "--stddev",
        "20",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": --pct-change 1e+308 on a baseline of 100.0 gives a target too large to compute; give a smaller change"
    );
}

#[test]
fn power_baseline_1e308_pct_change_10_is_refused() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "1e308",
        "--pct-change",
        "10",
        "--stddev",
        "20",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": --pct-change 10.0 on a baseline of 1e+308 gives a target too large to compute; give a smaller change"
    );
}

#[test]
fn power_effect_overflowing_a_double_is_refused() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline=-1e308",
        "--target",
        "1e308",
        "--stddev",
        "0.5",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": the effect (target − baseline) / stddev = (1e+308 − -1e+308) / 0.5 is too large to compute"
    );
}

#[test]
fn power_target_100_0000000001_stddev_1e300_is_too_small_to_detect() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--target",
        "100.0000000001",
        "--stddev",
        "1e300",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err, TOO_SMALL_TO_DETECT);
}

#[test]
fn power_stddev_1e12_is_too_small_to_detect_not_negative() {
    let (code, out, err) = power_run(
        &numeric_args(&["--stddev", "1e12"])[..6]
            .iter()
            .copied()
            .chain(["--stddev", "1e12"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(err, TOO_SMALL_TO_DETECT);
    assert!(out.is_empty());
}

#[test]
fn power_binary_target_0_5000000000001_is_too_small_to_detect_not_negative() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "binary",
        "--baseline",
        "0.5",
        "--target",
        "0.5000000000001",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err, TOO_SMALL_TO_DETECT);
}

#[test]
fn power_arm_weights_0_000000001_and_999999999999_are_refused_not_negative() {
    let (code, _, err) = power_run(&numeric_args(&[
        "--arm-weights",
        "0.000000001,999999999999",
    ]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "--arm-weights: every weight must be at least 1/2000000 (weights are read as the closest fraction with \
         denominator at most 1000000), got 0.000000001"
    );
}

#[test]
fn power_arm_weights_so_uneven_the_total_passes_10_to_15_is_refused() {
    let (code, _, err) = power_run(&numeric_args(&["--arm-weights", "0.000001,999999999999"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with(
            "metric \"metric\": with a control share of 1.000000000001e-18 the design needs more than \
             1000000000000000 units in total (32 control units)"
        ) && err.ends_with("use less uneven --arm-weights"),
        "{err}"
    );
}

#[test]
fn power_avg_cluster_size_1e308_is_refused_not_negative() {
    let (code, _, err) = power_run(&numeric_args(&[
        "--icc",
        "0.1",
        "--avg-cluster-size",
        "1e308",
    ]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "--icc 0.1, --avg-cluster-size 1e+308, --cv 0.0: clustering inflates the required sample size by a design \
         effect of 1e+307, more than the 1000000000000000 units a power check sizes: fewer, larger clusters cannot \
         reach the power; use smaller clusters or lower the ICC"
    );
}

#[test]
fn power_cv_1e308_is_refused_not_negative() {
    let (code, _, err) = power_run(&numeric_args(&[
        "--icc",
        "0.1",
        "--avg-cluster-size",
        "10",
        "--cv",
        "1e308",
    ]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "--icc 0.1, --avg-cluster-size 10.0, --cv 1e+308: clustering inflates the required sample size by a design \
         effect of over 1e+308, more than the 1000000000000000 units a power check sizes: fewer, larger clusters \
         cannot reach the power; use smaller clusters or lower the ICC"
    );
}

#[test]
fn power_cluster_units_past_10_to_15_are_refused() {
    // DEFF 1 + 0.001·(10¹⁵ − 1) ≈ 10¹² is accepted, but each arm then needs a cluster of 10¹⁵
    // units.
    let (code, _, err) = power_run(&numeric_args(&[
        "--icc",
        "0.001",
        "--avg-cluster-size",
        "1e15",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with(
            "metric \"metric\": clustering inflates the required sample size beyond 1000000000000000 units"
        ),
        "{err}"
    );
}

#[test]
fn power_negative_stddev_is_refused() {
    let (code, _, err) = power_run(
        &numeric_args(&["--stddev=-5"])[..6]
            .iter()
            .copied()
            .chain(["--stddev=-5"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": --stddev must not be negative, got -5.0"
    );
}

#[test]
fn power_binary_desired_n_3_detects_nothing() {
    let (code, _, err) = power_run(&[
        "--metric-type",
        "binary",
        "--baseline",
        "0.5",
        "--desired-n",
        "3",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": with 3 units no proportion can be told apart from the baseline 0.5 at this power: the \
         minimum detectable effect (Cohen's h 3.962) reaches past both 0 and 1; use more units"
    );
}

#[test]
fn power_huge_effects_and_tiny_alpha_terminate() {
    // Each returns an answer or a one-line error, quickly.
    let cases: &[&[&str]] = &[
        &["--stddev", "1e-300"],
        &["--alpha", "1e-300"],
        &["--power", "0.999999999999"],
        &["--arm-weights", "1,999999999999"],
        &["--stddev", "1e-300", "--arm-weights", "1,1000000"],
    ];
    for extra in cases {
        let mut args = numeric_args(&[])[..6].to_vec();
        if !extra.contains(&"--stddev") {
            args.extend(["--stddev", "20"]);
        }
        args.extend_from_slice(extra);
        let (code, out, err) = power_run(&args);
        assert!(
            (code == 0 && err.is_empty() && !out.is_empty())
                || (code == 3 && err.lines().count() == 1),
            "{extra:?}: {code} {err}"
        );
    }
}

// ---------------------------------------------------------------- exact weights (issues 9, 10)

#[test]
fn power_weights_with_a_tiny_decimal_do_not_overflow() {
    // 0.0000012345678901234567 is read as 1/810000 (its closest fraction with denominator ≤ 10⁶).
    let (code, out, err) = power_run(&numeric_args(&[
        "--arm-weights",
        "1,0.0000012345678901234567,1",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let design = &v["analyses"][0]["design"];
    assert_eq!(design["arm_ratio"].as_f64().unwrap(), 1.0 / 810_000.0);
    let d = Design::new(0.05, 0.8, None, Some(vec![1.0, 1.0 / 810_000.0, 1.0])).unwrap();
    assert_eq!(design["control_share"].as_f64().unwrap(), d.control_share());
}

#[test]
fn power_weights_whose_denominators_overflow_128_bits_get_one_line() {
    let w = "1/999983,1/999979,1/999961,1/999959,1/999953,1/999931,1/999917";
    let (code, _, err) = power_run(&numeric_args(&["--arm-weights", w]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        format!(
            "--arm-weights {w}: the weights' denominators are too unlike to split units exactly; use simpler \
             weights such as whole percentages"
        )
    );
}

#[test]
fn power_accepts_the_python_tools_float_and_fraction_weights() {
    let target_n = |extra: &[&str]| {
        let (code, out, err) =
            power_run(&numeric_args(&[extra, &["--format", "json"][..]].concat()));
        assert_eq!(code, 0, "{extra:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["analyses"][0]["target_n"].as_i64().unwrap(),
            v["analyses"][0]["design"]["control_share"]
                .as_f64()
                .unwrap(),
        )
    };
    let equal = target_n(&["--arms", "3"]);
    assert_eq!(equal.0, 192);
    assert_eq!(
        target_n(&[
            "--arm-weights",
            "33.333333333333336,33.333333333333336,33.333333333333336"
        ]),
        equal
    );
    assert_eq!(target_n(&["--arm-weights", "1/3,1/3,1/3"]), equal);
    // 1/2, 1/6, 1/3 is 3 : 1 : 2.
    assert_eq!(
        target_n(&["--arm-weights", "1/2,1/6,1/3"]),
        target_n(&["--arm-weights", "3,1,2"])
    );
    assert_eq!(
        target_n(&[
            "--arm-weights",
            "0.5,0.16666666666666666,0.3333333333333333"
        ]),
        target_n(&["--arm-weights", "3,1,2"])
    );
    let (code, _, err) = power_run(&numeric_args(&["--arm-weights", "1/0,1"]));
    assert_eq!(code, 3);
    assert_eq!(err, "--arm-weights: the denominator is 0, got 1/0");
}

// ---------------------------------------------------------------- power answers (issue 13)

#[test]
fn desired_n_with_an_effect_returns_the_needed_size_and_the_mde() {
    let m = numeric("m", 100.0, Some(110.0), None, Some(20.0), None);
    let d = design(2, None);
    // The effect needs 128; 100 are 28 short, and their MDE is the MDE core at 100.
    let a = analyze(&m, &d, Some(100), None).unwrap();
    assert_eq!(a.target_n, Some(128));
    assert_eq!(a.control_n, Some(64));
    assert_eq!(a.sufficient_n, None);
    let at = a.at_desired_n.as_ref().unwrap();
    assert_eq!(
        (at.desired_n, at.sufficient, at.additional_n_needed),
        (100, false, 28)
    );
    let core = xngin::power::mde_core(&m, &d, 100).unwrap();
    assert_eq!(at.mde.as_ref(), Some(&core));
    let dd = solve_effect_ttest(50.0, 1.0, 0.05, 0.8).unwrap();
    assert_close!(core.target_possible_upper, 100.0 + 20.0 * dd, 1e-14);
    assert_eq!(
        a.msg.msg,
        "A minimum of 128 units are needed to meet your experimental design specs. Give the number of available \
         units to check whether you have enough. A desired sample size of 100 units is not enough for the metric \
         target of 110.0 (28 more units needed); with it the minimum detectable effect (MDE) is 111.3176."
    );
    // 200 suffice; with --available-n the reference's sufficiency is kept as it was.
    let mut m2 = m.clone();
    m2.available_n = Some(1000);
    let a = analyze(&m2, &d, Some(200), None).unwrap();
    assert_eq!(a.target_n, Some(128));
    assert_eq!(a.sufficient_n, Some(true));
    let at = a.at_desired_n.as_ref().unwrap();
    assert_eq!((at.sufficient, at.additional_n_needed), (true, 0));
    assert!(
        a.msg.msg.starts_with(
            "There are 1000 units available to run your experiment and a minimum of 128 units are needed"
        ) && a.msg.msg.contains(
            "A desired sample size of 200 units is enough for the metric target of 110.0; with it the minimum \
             detectable effect (MDE) is "
        ),
        "{}",
        a.msg.msg
    );
    // Without an effect, MDE mode as before (no at_desired_n).
    let a = analyze(
        &numeric("m", 100.0, None, None, Some(20.0), None),
        &d,
        Some(100),
        None,
    )
    .unwrap();
    assert!(a.at_desired_n.is_none());
    assert_eq!(a.target_n, Some(100));
}

#[test]
fn cli_desired_n_with_an_effect_adds_fields_and_keeps_the_shape() {
    let (code, out, err) = power_run(&numeric_args(&["--desired-n", "100", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = &v["analyses"][0];
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "metric",
            "design",
            "effect_size",
            "control_n_raw",
            "control_n",
            "target_n",
            "sufficient_n",
            "mde",
            "cluster",
            "msg",
            "at_desired_n"
        ]
    );
    assert_eq!(a["target_n"], 128);
    assert_eq!(a["at_desired_n"]["desired_n"], 100);
    assert_eq!(a["at_desired_n"]["sufficient"], false);
    assert_eq!(a["at_desired_n"]["additional_n_needed"], 28);
    assert_eq!(a["at_desired_n"]["mde"]["control_n"], 50);
    // --fail-on-insufficient counts a desired size that falls short.
    let (code, _, err) = power_run(&numeric_args(&[
        "--desired-n",
        "100",
        "--fail-on-insufficient",
    ]));
    assert_eq!(code, 4);
    assert_eq!(
        err,
        "xngin: not enough units for: metric (needs 128, desired 100)"
    );
    let (code, out, _) = power_run(&numeric_args(&[
        "--desired-n",
        "200",
        "--fail-on-insufficient",
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("desired 200 enough"), "{out}");
}

#[test]
fn cluster_mde_mode_fills_clusters_and_units_per_arm() {
    let m = numeric("m", 100.0, None, None, Some(20.0), None);
    let c = ClusterSpec::new(0.15, 30.0, 0.0).unwrap();
    let a = analyze(&m, &design(2, None), Some(600), Some(&c)).unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_eq!(cl.clusters_per_arm, Some(vec![10, 10]));
    assert_eq!(cl.n_per_arm, Some(vec![300, 300]));
    assert_eq!(cl.num_clusters_total, Some(20));
    assert_eq!(cl.effective_sample_size, Some(112)); // ⌊600 / 5.35⌋
    assert_eq!(a.mde.as_ref().unwrap().control_n, 56);
    let a = analyze(&m, &design(2, Some(vec![3.0, 1.0])), Some(800), Some(&c)).unwrap();
    let cl = a.cluster.as_ref().unwrap();
    assert_eq!(cl.clusters_per_arm, Some(vec![20, 7]));
    assert_eq!(cl.n_per_arm, Some(vec![600, 200]));
    assert_eq!(cl.num_clusters_total, Some(27));
}

#[test]
fn cluster_design_effect_too_large_says_clustering_is_the_cause() {
    // DEFF 1 + 0.9·299 = 270.1: 600 units are worth 2 independent units.
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--stddev",
        "20",
        "--desired-n",
        "600",
        "--icc",
        "0.9",
        "--avg-cluster-size",
        "300",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": clustering inflates the required sample size by a design effect of 270.1: 600 units in \
         clusters of 300.0 are worth 2 independent units, too few to detect any effect at this power: fewer, larger \
         clusters cannot reach the power; add clusters or lower the ICC"
    );
    // Sample-size mode, insufficient: the MDE on ⌊100 / 270.1⌋ = 0 units (once "Chosen sample
    // size must be positive").
    let (code, _, err) = power_run(&numeric_args(&[
        "--available-n",
        "100",
        "--icc",
        "0.9",
        "--avg-cluster-size",
        "300",
    ]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": clustering inflates the required sample size by a design effect of 270.1: 100 units in \
         clusters of 300.0 are worth 0 independent units, too few to detect any effect at this power: fewer, larger \
         clusters cannot reach the power; add clusters or lower the ICC"
    );
    // Too few units even without clustering: the reference's message stays.
    let (code, _, err) = power_run(&[
        "--metric-type",
        "numeric",
        "--baseline",
        "100",
        "--stddev",
        "20",
        "--desired-n",
        "2",
        "--icc",
        "0.9",
        "--avg-cluster-size",
        "300",
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        "metric \"metric\": Your sample size is too small for the power calculation. Increase it and try again."
    );
}

#[test]
fn binary_mde_clipped_at_zero_reports_the_other_direction() {
    // p0 = 0.05 with 100 units: no decrease is detectable (the lower bound clips at 0), so the
    // MDE reported is the increase, not "0.0".
    let a = analyze(
        &binary("b", 0.05, None, None),
        &design(2, None),
        Some(100),
        None,
    )
    .unwrap();
    let mde = a.mde.as_ref().unwrap();
    assert_eq!(mde.target_possible_lower, 0.0);
    assert!(mde.target_possible_upper > 0.05 && mde.target_possible_upper < 1.0);
    assert_eq!(a.target_possible(), Some(mde.target_possible_upper));
    let shown = xngin::power::messages::round4(mde.target_possible_upper);
    assert!(
        a.msg.msg.ends_with(&format!(
            "the minimum detectable effect (MDE) is {}.",
            xngin::power::messages::py_repr(shown)
        )),
        "{}",
        a.msg.msg
    );
}
