//! One metric's power analysis: sample-size mode, MDE mode and the MDE core, cluster designs
//! (docs/statistics.md#power), with the reference's messages.
//!
//! See docs/compatibility.md#power: numeric metrics use the t-test, binary ones the z-test for
//! both the sample size and the MDE; ratio = smallest treatment share / control share; exact
//! roots; the MDE is reported in both directions.

use crate::input::names::*;
use serde::Serialize;
use serde_json::Map;

use num_rational::BigRational;
use num_traits::ToPrimitive;

use super::exact::{self, Allocation};
use super::messages::{self as m, Message, MessageType, jf, round4};
use super::solve::{self, SolveError};
use crate::error::{Error, Result};

/// `numeric` (t-test on Cohen's d) or `binary` (z-test on Cohen's h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Numeric,
    Binary,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Numeric => "numeric",
            MetricType::Binary => "binary",
        }
    }
}

/// The metric as analysed (`target` is filled in from `pct_change` and vice versa).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSpec {
    pub name: String,
    pub metric_type: MetricType,
    pub baseline: Option<f64>,
    pub target: Option<f64>,
    pub pct_change: Option<f64>,
    pub stddev: Option<f64>,
    pub available_n: Option<i64>,
    pub available_nonnull_n: Option<i64>,
}

/// Significance, power and arms, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub alpha: f64,
    pub power: f64,
    pub n_arms: usize,
    /// The weights as given (their values as numbers, for the report).
    pub arm_weights: Option<Vec<f64>>,
    allocation: Allocation,
}

impl Design {
    /// Validate the design; errors name the CLI flag (`--alpha`, `--power`, `--arms`,
    /// `--arm-weights`). `n_arms` may be None when weights are given (one arm per weight).
    /// Each weight is read as the decimal it shows.
    pub fn new(
        alpha: f64,
        power: f64,
        n_arms: Option<usize>,
        arm_weights: Option<Vec<f64>>,
    ) -> Result<Design> {
        let texts = arm_weights.map(|w| w.iter().map(|x| format!("{x}")).collect::<Vec<_>>());
        Design::from_weight_texts(alpha, power, n_arms, texts.as_deref())
    }

    /// [`Design::new`] with the weights as written: decimals (`20`, `33.333333333333336`) or
    /// fractions (`1/3`), each the closest fraction with denominator at most 10⁶
    /// ([`crate::weights`]), normalised exactly.
    pub fn from_weight_texts(
        alpha: f64,
        power: f64,
        n_arms: Option<usize>,
        arm_weights: Option<&[String]>,
    ) -> Result<Design> {
        let errors = design_problems(alpha, power, n_arms, arm_weights);
        let k = n_arms.or(arm_weights.map(<[String]>::len)).unwrap_or(2);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let allocation = match arm_weights {
            None => Allocation::equal(k),
            Some(w) => {
                let exact = w
                    .iter()
                    .map(|t| crate::weights::parse_weight(t))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::invalid(format!("{ARM_WEIGHTS}: {e}")))?;
                Allocation::from_exact_weights(&exact)
                    .map_err(|e| Error::invalid(format!("{ARM_WEIGHTS} {}: {e}", w.join(","))))?
            }
        };
        let shown = arm_weights.map(|w| {
            w.iter()
                .map(|t| {
                    crate::weights::parse_exact(t)
                        .map(|q| exact::to_f64(&q))
                        .unwrap_or(f64::NAN)
                })
                .collect()
        });
        Ok(Design {
            alpha,
            power,
            n_arms: k,
            arm_weights: shown,
            allocation,
        })
    }

    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    pub fn control_share(&self) -> f64 {
        self.allocation.control_share()
    }

    pub fn arm_ratio(&self) -> f64 {
        self.allocation.arm_ratio()
    }

    fn summary(&self) -> DesignSummary {
        DesignSummary {
            alpha: self.alpha,
            power: self.power,
            n_arms: self.n_arms,
            arm_weights: self.arm_weights.clone(),
            control_share: self.control_share(),
            arm_ratio: self.arm_ratio(),
        }
    }
}

/// Every problem with the design flags, each naming its flag.
fn design_problems(
    alpha: f64,
    power: f64,
    n_arms: Option<usize>,
    arm_weights: Option<&[String]>,
) -> Vec<String> {
    let mut errors = Vec::new();
    if !(alpha > 0.0 && alpha < 1.0) {
        errors.push(format!(
            "{ALPHA} must be between 0 and 1 (exclusive), got {}",
            m::py_repr(alpha)
        ));
    }
    if !(power > 0.0 && power < 1.0) {
        errors.push(format!(
            "{POWER} must be between 0 and 1 (exclusive), got {}",
            m::py_repr(power)
        ));
    } else if alpha > 0.0 && alpha < 1.0 && power <= alpha {
        errors.push(format!(
            "{POWER} ({}) must be greater than {ALPHA} ({}): no sample size can reach a power at or below the significance level",
            m::py_repr(power),
            m::py_repr(alpha)
        ));
    }
    let k = n_arms.or(arm_weights.map(<[String]>::len)).unwrap_or(2);
    if k < 2 {
        errors.push(format!(
            "{ARMS} must be at least 2 (a control and a treatment), got {k}"
        ));
    }
    if k > exact::MAX_ARMS {
        errors.push(format!(
            "{ARMS} {k} is more than a power check takes: at most {} arms",
            exact::MAX_ARMS
        ));
    }
    if let Some(w) = arm_weights {
        if w.len() != k {
            errors.push(format!(
                "{ARM_WEIGHTS}: Number of arm weights ({}) must match number of arms ({k})",
                w.len()
            ));
        }
        for t in w {
            if let Err(e) = crate::weights::parse_weight(t) {
                errors.push(format!("{ARM_WEIGHTS}: {e}, got {}", t.trim()));
            }
        }
    }
    errors
}

/// The design and cluster flags of one power check, validated together: every problem is
/// reported at once, each naming its flag. `cluster` is `(icc, avg_cluster_size, cv)`.
pub fn resolve_design(
    alpha: f64,
    power: f64,
    n_arms: Option<usize>,
    arm_weights: Option<&[String]>,
    desired_n: Option<i64>,
    cluster: Option<(f64, f64, f64)>,
) -> Result<(Design, Option<ClusterSpec>)> {
    let mut problems = design_problems(alpha, power, n_arms, arm_weights);
    let cluster = cluster.map(|(icc, m, cv)| ClusterSpec::new(icc, m, cv));
    if let Some(Err(Error::Invalid(e))) = &cluster {
        problems.extend(e.iter().cloned());
    }
    if let Some(n) = desired_n {
        let k = n_arms.or(arm_weights.map(<[String]>::len)).unwrap_or(2);
        if n <= 0 {
            problems.push(format!(
                "{DESIRED_N} must be a positive number of units, got {n}"
            ));
        } else if n > exact::MAX_UNITS {
            problems.push(format!(
                "{DESIRED_N} {n} is more than the {} units a power check sizes",
                exact::MAX_UNITS
            ));
        } else if (n as u64) < k as u64 {
            problems.push(format!(
                "{DESIRED_N} {n} gives fewer than one unit to each of the {k} arms"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let design = Design::from_weight_texts(alpha, power, n_arms, arm_weights)?;
    Ok((design, cluster.transpose()?))
}

/// Cluster-randomized design parameters (§5.7), validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterSpec {
    pub icc: f64,
    pub avg_cluster_size: f64,
    pub cv: f64,
}

impl ClusterSpec {
    /// Validate with the reference's texts, prefixed by the flag.
    pub fn new(icc: f64, avg_cluster_size: f64, cv: f64) -> Result<ClusterSpec> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&icc) {
            errors.push(format!(
                "{ICC}: ICC must be between 0 and 1, got {}",
                m::py_repr(icc)
            ));
        }
        if avg_cluster_size.is_nan() || avg_cluster_size < 1.0 || !avg_cluster_size.is_finite() {
            errors.push(format!(
                "{AVG_CLUSTER_SIZE}: Cluster size must be >= 1, got {}",
                m::py_repr(avg_cluster_size)
            ));
        }
        if cv.is_nan() || cv < 0.0 || !cv.is_finite() {
            errors.push(format!("{CV}: CV must be >= 0, got {}", m::py_repr(cv)));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let c = ClusterSpec {
            icc,
            avg_cluster_size,
            cv,
        };
        // The design effect multiplies every size: beyond MAX_UNITS no design can be sized.
        if c.design_effect_exact() > BigRational::from_integer(exact::MAX_UNITS.into()) {
            return Err(Error::invalid(format!(
                "{ICC} {}, {AVG_CLUSTER_SIZE} {}, {CV} {}: clustering inflates the required sample size by a \
                 design effect of {}, more than the {} units a power check sizes: fewer, larger clusters \
                 cannot reach the power; use smaller clusters or lower the ICC",
                m::py_repr(icc),
                m::py_repr(avg_cluster_size),
                m::py_repr(cv),
                match c.design_effect() {
                    d if d.is_finite() => m::py_repr(d),
                    _ => "over 1e+308".to_string(),
                },
                exact::MAX_UNITS
            )));
        }
        Ok(c)
    }

    /// `1 + ICC·((m − 1) + m·CV²)` (Eldridge 2006).
    pub fn design_effect(&self) -> f64 {
        exact::to_f64(&self.design_effect_exact())
    }

    /// The design effect on the decimals the inputs show, exactly.
    fn design_effect_exact(&self) -> BigRational {
        let d = |x: f64| exact::decimal(x).unwrap_or_else(|| BigRational::from_integer(0.into()));
        let one = BigRational::from_integer(1.into());
        let (icc, m, cv) = (d(self.icc), d(self.avg_cluster_size), d(self.cv));
        let inner = (&m - &one) + &m * &cv * &cv;
        one + icc * inner
    }

    /// `⌊n / DEFF⌋`.
    pub fn effective_n(&self, n: i64) -> i64 {
        let q = BigRational::from_integer(n.into()) / self.design_effect_exact();
        exact::floor(&q).to_i64().unwrap_or(0)
    }

    /// Clusters per arm `⌈(N·p_a / m)·DEFF⌉` and units per arm `⌈J_a·m⌉` for an individual
    /// target of `n_individual` units; None when a count exceeds [`exact::MAX_UNITS`].
    pub fn per_arm(
        &self,
        n_individual: i64,
        allocation: &Allocation,
    ) -> Option<(Vec<i64>, Vec<i64>)> {
        let deff = self.design_effect_exact();
        let m = exact::decimal(self.avg_cluster_size)?;
        let n = BigRational::from_integer(n_individual.into());
        let mut clusters = Vec::new();
        let mut units = Vec::new();
        for p in allocation.exact_shares() {
            let j = exact::ceil(&(&n * exact::big(p) / &m * &deff));
            units.push(exact::units(&exact::ceil(
                &(BigRational::from_integer(j.clone()) * &m),
            ))?);
            clusters.push(exact::units(&j)?);
        }
        let total: i64 = units.iter().sum();
        (total <= exact::MAX_UNITS).then_some((clusters, units))
    }

    /// A sample of `desired_n` units in clusters: units per arm split exactly by the shares
    /// (largest remainder, as the assignment splits them) and clusters per arm `⌈n_a / m⌉`.
    pub fn split(&self, desired_n: i64, allocation: &Allocation) -> (Vec<i64>, Vec<i64>) {
        let units = allocation.split(desired_n);
        let m = exact::decimal(self.avg_cluster_size)
            .unwrap_or_else(|| BigRational::from_integer(1.into()));
        let clusters = units
            .iter()
            .map(|u| {
                exact::ceil(&(BigRational::from_integer((*u).into()) / &m))
                    .to_i64()
                    .unwrap_or(*u)
            })
            .collect();
        (clusters, units)
    }
}

/// The design as reported in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesignSummary {
    pub alpha: f64,
    pub power: f64,
    pub n_arms: usize,
    pub arm_weights: Option<Vec<f64>>,
    pub control_share: f64,
    pub arm_ratio: f64,
}

/// The minimum detectable effect at a sample size, both directions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mde {
    /// `⌊desired_n · c⌋` control units the MDE was solved for.
    pub control_n: i64,
    /// The positive standardized effect (d for numeric, h for binary).
    pub effect_size: f64,
    pub target_possible_lower: f64,
    pub target_possible_upper: f64,
    pub pct_change_possible_lower: Option<f64>,
    pub pct_change_possible_upper: Option<f64>,
}

/// Cluster-design results (docs/statistics.md#cluster-designs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterResult {
    pub design_effect: f64,
    pub clusters_per_arm: Option<Vec<i64>>,
    pub n_per_arm: Option<Vec<i64>>,
    pub num_clusters_total: Option<i64>,
    pub effective_sample_size: Option<i64>,
    /// The ICC, average cluster size and CV used, and where each came from (given as flags or
    /// estimated from the warehouse with `--cluster-column`); absent for offline checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<super::icc::ClusterInputs>,
}

/// One metric's analysis; serializes to the JSON shape of issue 5.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub metric: MetricSpec,
    pub design: DesignSummary,
    /// Signed: Cohen's d = (target − baseline)/σ, or Cohen's h = 2 asin √baseline − 2 asin √target.
    pub effect_size: Option<f64>,
    /// The unrounded control-arm size from the solver.
    pub control_n_raw: Option<f64>,
    /// The smallest integer control-arm size reaching the power.
    pub control_n: Option<i64>,
    pub target_n: Option<i64>,
    pub sufficient_n: Option<bool>,
    pub mde: Option<Mde>,
    pub cluster: Option<ClusterResult>,
    pub msg: Message,
    /// With both an effect and a desired sample size: what the desired size gives (absent
    /// otherwise, so the shape of other results is unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_desired_n: Option<DesiredN>,
}

/// What a desired sample size gives when an effect is also asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredN {
    pub desired_n: i64,
    /// Whether `desired_n` reaches `target_n`, the size the effect needs.
    pub sufficient: bool,
    /// `max(0, target_n − desired_n)`.
    pub additional_n_needed: i64,
    /// Cluster designs: `⌊desired_n / DEFF⌋`.
    pub effective_sample_size: Option<i64>,
    /// The MDE at `desired_n` (null when `desired_n` is too small for any effect).
    pub mde: Option<Mde>,
}

impl Analysis {
    /// The MDE bound in the direction of the requested target (the reference's default when no
    /// direction is known: upper for numeric, lower for binary).
    pub fn target_possible(&self) -> Option<f64> {
        self.mde.as_ref().map(|mde| chosen_bound(&self.metric, mde))
    }
}

fn chosen_bound(metric: &MetricSpec, mde: &Mde) -> f64 {
    let upper = match (metric.baseline, metric.target) {
        (Some(b), Some(t)) if t != b => t > b,
        _ => metric.metric_type == MetricType::Numeric,
    };
    let (preferred, other) = if upper {
        (mde.target_possible_upper, mde.target_possible_lower)
    } else {
        (mde.target_possible_lower, mde.target_possible_upper)
    };
    // A proportion's bound clipped at 0 or 1 detects nothing in that direction: report the
    // other direction rather than an MDE of 0.0 or 1.0.
    let clipped = |t: f64| metric.metric_type == MetricType::Binary && (t <= 0.0 || t >= 1.0);
    if clipped(preferred) && !clipped(other) {
        other
    } else {
        preferred
    }
}

fn metric_err(metric: &MetricSpec, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("metric {:?}: {e}", metric.name))
}

/// Check the metric's inputs (errors name the CLI flag or the metric).
pub fn validate_metric(metric: &MetricSpec) -> Result<()> {
    let mut errors = Vec::new();
    let name = &metric.name;
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    if !finite(metric.baseline)
        || !finite(metric.target)
        || !finite(metric.pct_change)
        || !finite(metric.stddev)
    {
        errors.push(format!(
            "metric {name:?}: baseline, target, pct-change and stddev must be finite numbers"
        ));
    }
    if let Some(sd) = metric.stddev
        && sd < 0.0
    {
        errors.push(format!(
            "metric {name:?}: {STDDEV} must not be negative, got {}",
            m::py_repr(sd)
        ));
    }
    if let (Some(b), Some(p), None) = (metric.baseline, metric.pct_change, metric.target)
        && b.is_finite()
        && p.is_finite()
        && !(b * (1.0 + p)).is_finite()
    {
        errors.push(format!(
            "metric {name:?}: {PCT_CHANGE} {} on a baseline of {} gives a target too large to compute; give a smaller change",
            m::py_repr(p),
            m::py_repr(b)
        ));
    } else if metric.metric_type == MetricType::Numeric
        && let (Some(b), Some(t), Some(sd)) = (
            metric.baseline,
            metric
                .target
                .or_else(|| Some(metric.baseline? * (1.0 + metric.pct_change?))),
            metric.stddev,
        )
        && sd > 0.0
        && [b, t, sd].iter().all(|v| v.is_finite())
        && !solve::cohens_d(b, t, sd).is_finite()
    {
        errors.push(format!(
            "metric {name:?}: the effect (target − baseline) / stddev = ({} − {}) / {} is too large to compute",
            m::py_repr(t),
            m::py_repr(b),
            m::py_repr(sd)
        ));
    }
    if metric.target.is_some() && metric.pct_change.is_some() {
        errors.push(format!("metric {name:?}: Cannot set both metric_pct_change and metric_target (give {TARGET} or {PCT_CHANGE})"));
    }
    if metric.metric_type == MetricType::Binary {
        for (flag, v) in [
            (format!("{BASELINE}"), metric.baseline),
            (format!("{TARGET}"), metric.target),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                errors.push(format!(
                    "metric {name:?}: {flag} {} is not a proportion: a binary metric needs a value between 0 and 1",
                    m::py_repr(v)
                ));
            }
        }
        if let (Some(b), Some(p), None) = (metric.baseline, metric.pct_change, metric.target) {
            let t = b * (1.0 + p);
            if !(0.0..=1.0).contains(&t) {
                errors.push(format!(
                    "metric {name:?}: {PCT_CHANGE} {} gives a target of {} outside [0, 1] for a binary metric",
                    m::py_repr(p),
                    m::py_repr(t)
                ));
            }
        }
        if metric.stddev.is_some() {
            errors.push(format!(
                "metric {name:?}: {STDDEV}: a binary metric should not have stddev"
            ));
        }
    }
    for (flag, v) in [
        (format!("{AVAILABLE_N}"), metric.available_n),
        (format!("{AVAILABLE_NONNULL_N}"), metric.available_nonnull_n),
    ] {
        if let Some(v) = v
            && v < 0
        {
            errors.push(format!(
                "metric {name:?}: {flag} must not be negative, got {v}"
            ));
        }
    }
    if let (Some(a), Some(nn)) = (metric.available_n, metric.available_nonnull_n)
        && nn > a
    {
        errors.push(format!(
            "metric {name:?}: {AVAILABLE_NONNULL_N} ({nn}) cannot exceed {AVAILABLE_N} ({a})"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}

/// Analyse one metric. `desired_n` switches to MDE mode; `cluster` to a cluster design.
/// Errors: invalid inputs, and the reference's StatsPowerError cases (a sample too small, no
/// root), each naming the metric.
pub fn analyze(
    metric: &MetricSpec,
    design: &Design,
    desired_n: Option<i64>,
    cluster: Option<&ClusterSpec>,
) -> Result<Analysis> {
    validate_metric(metric)?;
    let mut metric = metric.clone();
    // Fill target from pct_change (the reference writes it back), and pct_change from target.
    if let (None, Some(b), Some(p)) = (metric.target, metric.baseline, metric.pct_change) {
        metric.target = Some(b * (1.0 + p));
    } else if let (Some(t), Some(b), None) = (metric.target, metric.baseline, metric.pct_change)
        && b != 0.0
    {
        metric.pct_change = Some(t / b - 1.0);
    }
    let mut a = Analysis {
        metric,
        design: design.summary(),
        effect_size: None,
        control_n_raw: None,
        control_n: None,
        target_n: None,
        sufficient_n: None,
        mde: None,
        cluster: None,
        msg: Message::plain(MessageType::Sufficient, ""),
        at_desired_n: None,
    };
    match desired_n {
        // An effect and a desired size: the size the effect needs, and what the desired size
        // gives (whether it suffices, and its MDE).
        Some(n) if a.metric.baseline.is_some() && a.metric.target.is_some() => {
            sample_size_mode(&mut a, design, cluster)?;
            if a.target_n.is_some() {
                desired_n_check(&mut a, design, n, cluster)?;
            }
        }
        Some(n) => mde_mode(&mut a, design, n, cluster)?,
        None => sample_size_mode(&mut a, design, cluster)?,
    }
    Ok(a)
}

/// The standardized effect for the metric, or the message that stops the analysis.
fn effect_size(metric: &MetricSpec) -> std::result::Result<Option<f64>, Message> {
    let (Some(b), Some(t)) = (metric.baseline, metric.target) else {
        return Ok(None);
    };
    Ok(Some(match metric.metric_type {
        MetricType::Numeric => match metric.stddev {
            Some(s) if s > 0.0 => solve::cohens_d(b, t, s),
            _ => {
                return Err(Message::plain(
                    MessageType::ZeroVariation,
                    m::ZERO_VARIATION,
                ));
            }
        },
        MetricType::Binary => solve::cohens_h(b, t),
    }))
}

/// The MDE core (`calculate_mde_with_desired_n`), both directions.
pub fn mde_core(metric: &MetricSpec, design: &Design, desired_n: i64) -> Result<Mde> {
    if desired_n <= 0 {
        return Err(metric_err(metric, "Chosen sample size must be positive."));
    }
    let Some(b) = metric.baseline else {
        return Err(metric_err(
            metric,
            "metric_baseline is required for MDE calculation.",
        ));
    };
    let alloc = design.allocation();
    let n1 = alloc.control_from_total(desired_n);
    let r = alloc.arm_ratio();
    let solved = |e: SolveError| metric_err(metric, e);
    let (effect, lower, upper) = match metric.metric_type {
        MetricType::Numeric => {
            let Some(sd) = metric.stddev else {
                return Err(metric_err(
                    metric,
                    "metric_stddev is required for NUMERIC metrics.",
                ));
            };
            let d = solve::solve_effect_ttest(n1 as f64, r, design.alpha, design.power)
                .map_err(solved)?;
            (d, b - d * sd, b + d * sd)
        }
        MetricType::Binary => {
            let h = solve::solve_effect_ztest(n1 as f64, r, design.alpha, design.power)
                .map_err(solved)?;
            let phi = 2.0 * b.sqrt().asin();
            if phi - h <= 0.0 && phi + h >= std::f64::consts::PI {
                return Err(metric_err(
                    metric,
                    format!(
                        "with {desired_n} units no proportion can be told apart from the baseline {} at this \
                         power: the minimum detectable effect (Cohen's h {}) reaches past both 0 and 1; use more units",
                        m::py_repr(b),
                        m::py_repr(round4(h))
                    ),
                ));
            }
            let lower = ((phi - h).max(0.0) / 2.0).sin().powi(2);
            let upper = ((phi + h).min(std::f64::consts::PI) / 2.0).sin().powi(2);
            (h, lower, upper)
        }
    };
    let pct = |t: f64| if b != 0.0 { Some(t / b - 1.0) } else { None };
    Ok(Mde {
        control_n: n1,
        effect_size: effect,
        target_possible_lower: lower,
        target_possible_upper: upper,
        pct_change_possible_lower: pct(lower),
        pct_change_possible_upper: pct(upper),
    })
}

fn mde_mode(
    a: &mut Analysis,
    design: &Design,
    desired_n: i64,
    cluster: Option<&ClusterSpec>,
) -> Result<()> {
    let Some(baseline) = a.metric.baseline else {
        a.msg = Message::plain(MessageType::NoBaseline, m::NO_BASELINE);
        return Ok(());
    };
    if a.metric.metric_type == MetricType::Numeric && !a.metric.stddev.is_some_and(|s| s > 0.0) {
        a.msg = Message::plain(MessageType::ZeroVariation, m::ZERO_VARIATION);
        return Ok(());
    }
    a.effect_size = effect_size(&a.metric).ok().flatten();
    let mde = match cluster {
        Some(c) => {
            let eff = c.effective_n(desired_n);
            let (clusters, units) = c.split(desired_n, design.allocation());
            a.cluster = Some(ClusterResult {
                design_effect: c.design_effect(),
                num_clusters_total: Some(clusters.iter().sum()),
                clusters_per_arm: Some(clusters),
                n_per_arm: Some(units),
                effective_sample_size: Some(eff),
                inputs: None,
            });
            cluster_mde(&a.metric, design, c, desired_n)?
        }
        None => mde_core(&a.metric, design, desired_n)?,
    };
    let tp = chosen_bound(&a.metric, &mde);
    a.target_n = Some(desired_n);
    a.mde = Some(mde);
    let mut values = Map::new();
    values.insert("desired_n".into(), desired_n.into());
    values.insert("metric_baseline".into(), jf(round4(baseline)));
    values.insert("target_possible".into(), jf(round4(tp)));
    a.msg = Message::render(Some(MessageType::Sufficient), m::MDE_BODY, values);
    Ok(())
}

/// The MDE of `n` clustered units, on their effective size `⌊n / DEFF⌋`. When clustering leaves
/// too few independent units for any effect, the error says that clustering is the cause.
fn cluster_mde(metric: &MetricSpec, design: &Design, c: &ClusterSpec, n: i64) -> Result<Mde> {
    let eff = c.effective_n(n);
    mde_core(metric, design, eff).map_err(|_| {
        // Clustering is the cause only when the same units, randomized one by one, would do;
        // otherwise the units are too few whatever the design, and that error says so.
        if let Err(unclustered) = mde_core(metric, design, n) {
            return unclustered;
        }
        metric_err(
            metric,
            format!(
                "clustering inflates the required sample size by a design effect of {}: {n} units in clusters of {} \
                 are worth {eff} independent units, too few to detect any effect at this power: fewer, larger \
                 clusters cannot reach the power; add clusters or lower the ICC",
                m::py_repr(c.design_effect()),
                m::py_repr(c.avg_cluster_size)
            ),
        )
    })
}

/// With both an effect and `desired_n`: whether `desired_n` units reach the size the effect
/// needs, and the MDE they give (clusters: on their effective size). Appends a sentence to
/// the message.
fn desired_n_check(
    a: &mut Analysis,
    design: &Design,
    desired_n: i64,
    cluster: Option<&ClusterSpec>,
) -> Result<()> {
    let Some(target_n) = a.target_n else {
        return Ok(());
    };
    let mde = match cluster {
        Some(c) => cluster_mde(&a.metric, design, c, desired_n).ok(),
        None => mde_core(&a.metric, design, desired_n).ok(),
    };
    let sufficient = target_n <= desired_n;
    let additional = (target_n - desired_n).max(0);
    let tp = mde.as_ref().map(|mde| chosen_bound(&a.metric, mde));
    let mut values = a.msg.values.clone().unwrap_or_default();
    values.insert("desired_n".into(), desired_n.into());
    values.insert(
        "metric_target".into(),
        jf(round4(a.metric.target.unwrap_or(f64::NAN))),
    );
    values.insert("desired_additional_n_needed".into(), additional.into());
    let template = match (sufficient, tp) {
        (true, Some(tp)) => {
            values.insert("desired_target_possible".into(), jf(round4(tp)));
            m::DESIRED_ENOUGH
        }
        (false, Some(tp)) => {
            values.insert("desired_target_possible".into(), jf(round4(tp)));
            m::DESIRED_SHORT
        }
        (true, None) => m::DESIRED_ENOUGH_NO_MDE,
        (false, None) => m::DESIRED_SHORT_NO_MDE,
    };
    let sentence = m::format_map(template, &values);
    let mut text = a.msg.msg.clone();
    if !text.is_empty() && !text.ends_with(' ') {
        text.push(' ');
    }
    text.push_str(&sentence);
    a.msg = Message {
        kind: a.msg.kind,
        msg: text,
        values: Some(values),
    };
    a.at_desired_n = Some(DesiredN {
        desired_n,
        sufficient,
        additional_n_needed: additional,
        effective_sample_size: cluster.map(|c| c.effective_n(desired_n)),
        mde,
    });
    Ok(())
}

/// The smallest integer control size reaching the power, from the real root: `⌈n⌉`, checked
/// against the power function so rounding noise at an integer cannot cost or gain a unit.
fn integer_control_n(raw: f64, power_at: impl Fn(f64) -> f64, target: f64) -> i64 {
    let mut k = raw.ceil().max(1.0);
    if k - 1.0 >= 1.0 && power_at(k - 1.0) >= target {
        k -= 1.0;
    } else if power_at(k).is_nan() || power_at(k) < target {
        k += 1.0;
    }
    k as i64
}

fn sample_size_mode(
    a: &mut Analysis,
    design: &Design,
    cluster: Option<&ClusterSpec>,
) -> Result<()> {
    let metric = &a.metric;
    if let Some(avail) = metric.available_n
        && avail <= 0
    {
        a.msg = Message::plain(MessageType::NoAvailableN, m::NO_AVAILABLE_N);
        return Ok(());
    }
    let n_e = metric.available_nonnull_n.or(metric.available_n);
    if let Some(ne) = n_e
        && ne <= 0
    {
        a.msg = Message::plain(MessageType::Insufficient, m::NO_NONNULL);
        return Ok(());
    }
    let effect = match effect_size(metric) {
        Ok(Some(e)) => e,
        Ok(None) => {
            a.msg = Message::plain(MessageType::NoBaseline, m::NO_BASELINE);
            return Ok(());
        }
        Err(msg) => {
            a.msg = msg;
            return Ok(());
        }
    };
    a.effect_size = Some(effect);
    if effect == 0.0 {
        a.msg = Message::plain(MessageType::ZeroEffectSize, m::ZERO_EFFECT);
        return Ok(());
    }
    let alloc = design.allocation();
    let r = alloc.arm_ratio();
    let (alpha, power) = (design.alpha, design.power);
    let kind = metric.metric_type;
    let raw = match kind {
        MetricType::Numeric => solve::solve_n1_ttest(effect, r, alpha, power),
        MetricType::Binary => solve::solve_n1_ztest(effect, r, alpha, power),
    }
    .map_err(|e| metric_err(metric, e))?;
    let power_at = |n1: f64| match kind {
        MetricType::Numeric => solve::ttest_power(effect, n1, r, alpha),
        MetricType::Binary => solve::ztest_power(effect, n1, r, alpha),
    };
    let control_n = integer_control_n(raw, power_at, power);
    let Some(individual_n) = alloc.total_from_control(control_n) else {
        return Err(metric_err(
            metric,
            format!(
                "with a control share of {} the design needs more than {} units in total ({control_n} control units); \
                 use less uneven {ARM_WEIGHTS}",
                m::py_repr(alloc.control_share()),
                exact::MAX_UNITS
            ),
        ));
    };
    a.control_n_raw = Some(raw);
    a.control_n = Some(control_n);

    let (target_n, clusters) = match cluster {
        Some(c) => {
            let Some((cl, units)) = c.per_arm(individual_n, alloc) else {
                return Err(metric_err(
                    &a.metric,
                    format!(
                        "clustering inflates the required sample size beyond {} units (design effect {}, \
                         clusters of {}): fewer, larger clusters cannot reach the power; use smaller clusters \
                         or lower the ICC",
                        exact::MAX_UNITS,
                        m::py_repr(c.design_effect()),
                        m::py_repr(c.avg_cluster_size)
                    ),
                ));
            };
            let total: i64 = units.iter().sum();
            let res = ClusterResult {
                design_effect: c.design_effect(),
                num_clusters_total: Some(cl.iter().sum()),
                clusters_per_arm: Some(cl),
                n_per_arm: Some(units),
                effective_sample_size: Some(c.effective_n(total)),
                inputs: None,
            };
            (total, Some(res))
        }
        None => (individual_n, None),
    };
    a.target_n = Some(target_n);
    a.cluster = clusters;

    let (Some(available_n), Some(n_e)) = (a.metric.available_n, n_e) else {
        // Offline without --available-n: the size is known, sufficiency is not.
        let mut values = Map::new();
        values.insert("target_n".into(), target_n.into());
        a.msg = Message::render(None, m::NO_AVAILABLE_GIVEN, values);
        return Ok(());
    };
    let sufficient = target_n <= n_e;
    a.sufficient_n = Some(sufficient);
    if !sufficient {
        a.mde = Some(match cluster {
            Some(c) => cluster_mde(&a.metric, design, c, n_e)?,
            None => mde_core(&a.metric, design, n_e)?,
        });
    }
    let has_nulls = a
        .metric
        .available_nonnull_n
        .is_some_and(|nn| nn != available_n);
    let mut values = Map::new();
    let template = match (&a.cluster, cluster) {
        (Some(res), Some(c)) => {
            values.insert("available_n".into(), available_n.into());
            values.insert("available_nonnull_n".into(), n_e.into());
            values.insert("target_n".into(), target_n.into());
            values.insert(
                "num_clusters_total".into(),
                res.num_clusters_total.unwrap_or(0).into(),
            );
            let high_cv = c.cv > 1.0;
            if high_cv {
                values.insert("cluster_size_cv".into(), jf(c.cv));
            }
            let body = if sufficient {
                m::CLUSTER_SUFFICIENT
            } else {
                m::CLUSTER_INSUFFICIENT
            };
            let parts = [
                m::CLUSTER_BASE,
                body,
                if has_nulls {
                    m::CLUSTER_NULL_WARNING
                } else {
                    ""
                },
                if high_cv { m::CLUSTER_CV_WARNING } else { "" },
            ];
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        }
        _ => {
            values.insert("available_n".into(), available_n.into());
            values.insert("target_n".into(), target_n.into());
            values.insert("available_nonnull_n".into(), n_e.into());
            let body = if sufficient {
                m::SUFFICIENT_BODY
            } else {
                m::INSUFFICIENT_BODY
            };
            [
                m::BASE_STATS,
                body,
                if has_nulls { m::NULL_WARNING } else { "" },
            ]
            .join(" ")
        }
    };
    if let (false, Some(mde)) = (sufficient, &a.mde) {
        let tp = chosen_bound(&a.metric, mde);
        values.insert("additional_n_needed".into(), (target_n - n_e).into());
        values.insert(
            "metric_baseline".into(),
            jf(round4(a.metric.baseline.unwrap_or(f64::NAN))),
        );
        values.insert("target_possible".into(), jf(round4(tp)));
        values.insert(
            "metric_target".into(),
            jf(round4(a.metric.target.unwrap_or(f64::NAN))),
        );
    }
    let kind = if sufficient {
        MessageType::Sufficient
    } else {
        MessageType::Insufficient
    };
    a.msg = Message::render(Some(kind), &template, values);
    Ok(())
}

/// Analyse several metrics with one design (`check_power`), in order.
pub fn check_power(
    metrics: &[MetricSpec],
    design: &Design,
    desired_n: Option<i64>,
    cluster: Option<&ClusterSpec>,
) -> Result<Vec<Analysis>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for metric in metrics {
        match analyze(metric, design, desired_n, cluster) {
            Ok(a) => out.push(a),
            Err(Error::Invalid(e)) => errors.extend(e),
            Err(other) => return Err(other),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invalid(errors))
    }
}

/// The cluster flags without `--cluster-column`: `--icc` and `--avg-cluster-size` go together
/// and `--cv` needs them (usage errors). With a cluster column each flag replaces its own
/// estimate, so any subset is fine.
pub fn check_cluster_flags(
    icc: Option<f64>,
    avg_cluster_size: Option<f64>,
    cv: Option<f64>,
    cluster_column: bool,
) -> Result<()> {
    if cluster_column {
        return Ok(());
    }
    let why = match (icc, avg_cluster_size, cv) {
        (Some(_), None, _) => format!("{ICC} needs {AVG_CLUSTER_SIZE}"),
        (None, Some(_), _) => format!("{AVG_CLUSTER_SIZE} needs {ICC}"),
        (None, None, Some(_)) => format!("{CV} needs {ICC} and {AVG_CLUSTER_SIZE}"),
        _ => return Ok(()),
    };
    Err(Error::usage(format!(
        "{why} (or {PARTICIPANT_TYPE} with {CLUSTER_COLUMN} to estimate them from the warehouse)"
    )))
}

/// [`check_power`] with each metric's own cluster design (`power --cluster-column`: the ICC
/// is estimated per metric); each analysis records its inputs in `cluster.inputs`.
pub fn check_power_clustered(
    metrics: &[MetricSpec],
    inputs: &[super::icc::ClusterInputs],
    design: &Design,
    desired_n: Option<i64>,
) -> Result<Vec<Analysis>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (m, i) in metrics.iter().zip(inputs) {
        let res = i
            .spec()
            .and_then(|spec| analyze(m, design, desired_n, Some(&spec)));
        match res {
            Ok(mut a) => {
                if let Some(c) = &mut a.cluster {
                    c.inputs = Some(i.clone());
                }
                out.push(a);
            }
            Err(Error::Invalid(e)) => errors.extend(e),
            Err(other) => return Err(other),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invalid(errors))
    }
}

/// Check an offline metric (no warehouse) for what a power check needs: its type and baseline,
/// and an effect unless `desired_n` asks for the minimum detectable effect. Returns the type.
pub fn check_offline_metric(
    metric_type: Option<MetricType>,
    baseline: Option<f64>,
    has_effect: bool,
    desired_n: Option<i64>,
) -> Result<MetricType> {
    let Some(metric_type) = metric_type else {
        return Err(Error::usage(format!(
            "give {METRIC_TYPE} (numeric or binary) with {BASELINE} and {TARGET}/{PCT_CHANGE}, \
             or {PARTICIPANT_TYPE} with {METRIC} to read baselines from the warehouse"
        )));
    };
    if baseline.is_none() {
        return Err(Error::usage(format!(
            "{BASELINE} is required for an offline power check"
        )));
    }
    if !has_effect && desired_n.is_none() {
        return Err(Error::usage(format!(
            "give the effect to detect with {TARGET} or {PCT_CHANGE} (or {DESIRED_N} for the minimum detectable effect)"
        )));
    }
    Ok(metric_type)
}
