//! Power checks: sample size or minimum detectable effect (docs/statistics.md#power,
//! docs/compatibility.md#power).
//!
//! * [`nct`]: special functions, normal / t / noncentral t distributions.
//! * [`solve`]: t-test and z-test power and their exact inverses (Brent).
//! * [`exact`]: exact arm shares and cluster counts.
//! * [`analysis`]: one metric's analysis with the reference's messages; [`check_power`].
//! * [`messages`]: message types, texts and Python-compatible number formatting.
//! * [`baseline`]: baselines from the warehouse (one aggregate query over the filtered audience).

pub mod analysis;
pub mod baseline;
pub mod exact;
pub mod icc;
pub mod messages;
pub mod nct;
pub mod solve;

pub use analysis::{
    Analysis, ClusterResult, ClusterSpec, Design, DesignSummary, DesiredN, Mde, MetricSpec,
    MetricType, analyze, check_cluster_flags, check_power, check_power_clustered, mde_core,
    resolve_design,
};
pub use messages::{Message, MessageType};

/// The `--format json` document: `{"analyses": [...]}`.
pub fn to_json(analyses: &[Analysis]) -> serde_json::Value {
    serde_json::json!({ "analyses": analyses })
}

/// The human table: one row per metric (type, baseline, target, units needed, available,
/// verdict, detectable targets when an MDE was computed), then each metric's message below.
pub fn render_table(analyses: &[Analysis]) -> String {
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
    let int = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    let mut t = crate::output::table();
    t.set_header(vec![
        "metric",
        "type",
        "baseline",
        "target",
        "n needed",
        "available",
        "verdict",
        "detectable",
    ]);
    for a in analyses {
        let available = match (a.metric.available_n, a.metric.available_nonnull_n) {
            (Some(n), Some(nn)) if nn != n => format!("{nn} of {n}"),
            (n, _) => int(n),
        };
        let verdict = match (a.sufficient_n, a.msg.kind) {
            (Some(true), _) => "sufficient".to_string(),
            (Some(false), _) => "INSUFFICIENT".to_string(),
            (None, _) if a.at_desired_n.is_some() => match &a.at_desired_n {
                Some(d) if d.sufficient => format!("desired {} enough", d.desired_n),
                Some(d) => format!("desired {} SHORT", d.desired_n),
                None => "-".to_string(),
            },
            (None, Some(_)) if a.mde.is_some() => "MDE".to_string(),
            (None, Some(k)) => k.as_str().to_string(),
            (None, None) => "-".to_string(),
        };
        let mde = a
            .mde
            .as_ref()
            .or(a.at_desired_n.as_ref().and_then(|d| d.mde.as_ref()));
        let detectable = match mde {
            Some(m) => format!(
                "<= {} or >= {}",
                fmt_num(m.target_possible_lower),
                fmt_num(m.target_possible_upper)
            ),
            None => "-".into(),
        };
        t.add_row(vec![
            a.metric.name.clone(),
            a.metric.metric_type.as_str().to_string(),
            num(a.metric.baseline),
            num(a.metric.target),
            int(a.target_n),
            available,
            verdict,
            detectable,
        ]);
    }
    let mut out = format!("{t}\n");
    for a in analyses {
        if let Some(i) = a.cluster.as_ref().and_then(|c| c.inputs.as_ref()) {
            out.push_str(&format!("{}: {}\n", a.metric.name, i.describe()));
        }
        out.push_str(&format!("{}: {}\n", a.metric.name, a.msg.msg.trim_end()));
    }
    out
}

/// A number for the table: up to 6 significant decimals, no trailing zeros.
fn fmt_num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// True when any analysis found too few units.
pub fn any_insufficient(analyses: &[Analysis]) -> bool {
    analyses.iter().any(is_insufficient)
}

fn is_insufficient(a: &Analysis) -> bool {
    a.sufficient_n == Some(false)
        || a.msg.kind == Some(MessageType::Insufficient)
        || (a.sufficient_n.is_none() && a.at_desired_n.as_ref().is_some_and(|d| !d.sufficient))
}

/// The `--fail-on-insufficient` error (exit 4) naming each metric without enough units and
/// what it needs, or `None` when every metric has enough.
pub fn insufficient_error(analyses: &[Analysis]) -> Option<crate::Error> {
    let short: Vec<String> = analyses
        .iter()
        .filter(|a| is_insufficient(a))
        .map(|a| {
            let desired = a.at_desired_n.as_ref().map(|d| d.desired_n);
            match (
                a.target_n,
                a.metric.available_nonnull_n.or(a.metric.available_n),
            ) {
                (Some(need), Some(have)) => format!("{} (needs {need}, has {have})", a.metric.name),
                (Some(need), None) if desired.is_some() => format!(
                    "{} (needs {need}, desired {})",
                    a.metric.name,
                    desired.unwrap_or(0)
                ),
                _ => a.metric.name.clone(),
            }
        })
        .collect();
    if short.is_empty() {
        None
    } else {
        Some(crate::Error::Insufficient(format!(
            "not enough units for: {}",
            short.join(", ")
        )))
    }
}

#[cfg(test)]
mod insufficient_tests {
    use super::*;

    #[test]
    fn names_each_metric_without_enough_units() {
        let design = Design::new(0.05, 0.8, Some(2), None).unwrap();
        let m = |name: &str, n| MetricSpec {
            name: name.into(),
            metric_type: MetricType::Binary,
            baseline: Some(0.5),
            target: Some(0.55),
            pct_change: None,
            stddev: None,
            available_n: Some(n),
            available_nonnull_n: None,
        };
        let a = check_power(&[m("short", 1000), m("plenty", 5000)], &design, None, None).unwrap();
        let e = insufficient_error(&a).unwrap();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.to_string(),
            "not enough units for: short (needs 3130, has 1000)"
        );
        let b = check_power(&[m("plenty", 5000)], &design, None, None).unwrap();
        assert!(insufficient_error(&b).is_none());
        assert!(!any_insufficient(&b));
    }
}
