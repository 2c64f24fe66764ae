//! The Python tool's power messages (docs/statistics.md#messages-and-rounding): types, templates
//! with `{name}` placeholders, and Python-compatible number formatting.

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// `MetricPowerAnalysisMessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MessageType {
    #[serde(rename = "sufficient")]
    Sufficient,
    #[serde(rename = "insufficient")]
    Insufficient,
    #[serde(rename = "no baseline")]
    NoBaseline,
    #[serde(rename = "no available n")]
    NoAvailableN,
    #[serde(rename = "zero effect size")]
    ZeroEffectSize,
    #[serde(rename = "zero variation")]
    ZeroVariation,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Sufficient => "sufficient",
            MessageType::Insufficient => "insufficient",
            MessageType::NoBaseline => "no baseline",
            MessageType::NoAvailableN => "no available n",
            MessageType::ZeroEffectSize => "zero effect size",
            MessageType::ZeroVariation => "zero variation",
        }
    }
}

/// A message: its type (None only when the check could not be judged: no `available_n` was
/// given), the text with values substituted, and the values (None for message-only results).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: Option<MessageType>,
    pub msg: String,
    pub values: Option<Map<String, Json>>,
}

impl Message {
    /// A message-only result (`values = null`).
    pub fn plain(kind: MessageType, text: &str) -> Message {
        Message {
            kind: Some(kind),
            msg: text.to_string(),
            values: None,
        }
    }

    /// Render `template` with `values` (Python's `str.format_map`).
    pub fn render(kind: Option<MessageType>, template: &str, values: Map<String, Json>) -> Message {
        Message {
            kind,
            msg: format_map(template, &values),
            values: Some(values),
        }
    }
}

pub const NO_AVAILABLE_N: &str =
    "You have no available units to run your experiment. Adjust your filters to target more units.";
pub const NO_NONNULL: &str = "You have no units with non-null values for this metric. Adjust your filters to target units with non-null values.";
pub const NO_BASELINE: &str = "Could not calculate metric baseline with given specification. Provide a metric baseline or adjust filters.";
pub const ZERO_VARIATION: &str = "There is no variation in the metric with the given filters. Standard deviation must be positive to do a sample size calculation.";
pub const ZERO_EFFECT: &str = "Cannot detect an effect-size of 0. Try changing your effect-size.";

pub const BASE_STATS: &str = "There are {available_n} units available to run your experiment and a minimum of {target_n} units are needed to meet your experimental design specs.";
pub const SUFFICIENT_BODY: &str = "There are enough units available.";
pub const INSUFFICIENT_BODY: &str = "There are not enough non-null valued units available. You need {additional_n_needed} more units to meet your specified metric target of {metric_target}. Alternatively, with the available {available_nonnull_n} non-null units and a metric baseline of {metric_baseline}, your metric target should be {target_possible} or further from the baseline. ";
pub const NULL_WARNING: &str = "WARNING: There are {available_nonnull_n} units with a non-null value out of the {available_n} available.  The power calculation was done with only units with a value present, but random assignment is performed over all available units meeting your filters, including those with a missing value. If you do not want that, add a filter on this metric to exclude nulls.";
pub const MDE_BODY: &str = "With a desired sample size of {desired_n} units and a metric baseline of {metric_baseline}, the minimum detectable effect (MDE) is {target_possible}.";
/// Our additions for an effect together with a desired sample size.
pub const DESIRED_ENOUGH: &str = "A desired sample size of {desired_n} units is enough for the metric target of {metric_target}; with it the minimum detectable effect (MDE) is {desired_target_possible}.";
pub const DESIRED_SHORT: &str = "A desired sample size of {desired_n} units is not enough for the metric target of {metric_target} ({desired_additional_n_needed} more units needed); with it the minimum detectable effect (MDE) is {desired_target_possible}.";
pub const DESIRED_ENOUGH_NO_MDE: &str = "A desired sample size of {desired_n} units is enough for the metric target of {metric_target}.";
pub const DESIRED_SHORT_NO_MDE: &str = "A desired sample size of {desired_n} units is not enough for the metric target of {metric_target} ({desired_additional_n_needed} more units needed) and too small to detect any effect.";
/// Our addition for offline checks without `--available-n` (the reference has no such case).
pub const NO_AVAILABLE_GIVEN: &str = "A minimum of {target_n} units are needed to meet your experimental design specs. Give the number of available units to check whether you have enough.";

pub const CLUSTER_BASE: &str = "There are {available_n} units available. You need at least {target_n} units across {num_clusters_total} clusters to satisfy your design specs.";
pub const CLUSTER_SUFFICIENT: &str = "There are enough non-null valued units available.";
pub const CLUSTER_INSUFFICIENT: &str = "There are not enough non-null valued units available after accounting for clustering. You need {additional_n_needed} more units to meet your specified metric target of {metric_target}. Alternatively, with the available {available_nonnull_n} non-null units and a metric baseline of {metric_baseline}, your metric target should be {target_possible} or further from the baseline. ";
pub const CLUSTER_NULL_WARNING: &str = "WARNING: Of the available units, {available_nonnull_n} have a non-null value. These calculations only used units with a real value present, but random assignment samples from *all* units that meet your filters, including those missing a value. If you do not want that, add a filter on this metric to exclude nulls.";
pub const CLUSTER_CV_WARNING: &str = "Warning: High cluster size variation (CV={cluster_size_cv:.2f}).  Number of clusters estimates are approximate.";

/// Python's `str.format_map` for `{name}` and `{name:.Nf}` placeholders.
pub fn format_map(template: &str, values: &Map<String, Json>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let field = &rest[start + 1..start + len];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        match values.get(name) {
            Some(v) => out.push_str(&format_value(v, spec)),
            None => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

fn format_value(v: &Json, spec: &str) -> String {
    match v {
        Json::Number(n) => {
            if let Some(prec) = spec
                .strip_prefix('.')
                .and_then(|s| s.strip_suffix('f'))
                .and_then(|s| s.parse().ok())
            {
                return format!("{:.*}", prec, n.as_f64().unwrap_or(f64::NAN));
            }
            if n.is_f64() {
                py_repr(n.as_f64().unwrap_or(f64::NAN))
            } else {
                n.to_string()
            }
        }
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on integral values, exponent form
/// below 1e-4 and from 1e16 (`1e-05`, `1.5e+16`).
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mant}e{sign}{digits:0>2}");
    }
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Python's `round(x, 4)` (correctly rounded, half-to-even on exact binary ties).
pub fn round4(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.4}").parse().unwrap_or(x)
}

/// A JSON number from a float (null if not finite).
pub fn jf(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        assert_eq!(py_repr(14.0), "14.0");
        assert_eq!(py_repr(13.2066), "13.2066");
        assert_eq!(py_repr(1e-5), "1e-05");
        assert_eq!(py_repr(0.0001), "0.0001");
        assert_eq!(py_repr(1.5e16), "1.5e+16");
        assert_eq!(py_repr(-2.5e-7), "-2.5e-07");
        assert_eq!(py_repr(0.0), "0.0");
    }

    #[test]
    fn python_round_is_half_even_on_exact_ties() {
        assert_eq!(round4(13.206590621039297), 13.2066);
        assert_eq!(round4(0.00005), 0.0001); // 0.00005 is slightly above the tie in binary
        assert_eq!(round4(2.00005), 2.0);
        assert_eq!(round4(0.03125), 0.0312); // exact tie: half to even
    }

    #[test]
    fn format_map_substitutes_like_python() {
        let mut m = Map::new();
        m.insert("a".into(), 789.into());
        m.insert("b".into(), jf(13.2066));
        m.insert("cv".into(), jf(1.5));
        assert_eq!(
            format_map("{a} x {b} {cv:.2f} {missing}", &m),
            "789 x 13.2066 1.50 {missing}"
        );
    }
}
