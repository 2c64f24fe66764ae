//! `${secret:NAME}` substitution (docs/compatibility.md#settings).
//!
//! * A reference is the literal `${secret:` + NAME + `}` with NAME matching `[a-zA-Z0-9_]+`;
//!   any number may appear inside any string value (keys are never touched), at any depth.
//! * `XNGIN_SECRETS_SOURCE` must be unset or `environ`, checked on every substitution, even when
//!   there is no reference; each NAME is then read from the process environment.
//! * All unique references are collected and resolved first (every missing one is reported), then
//!   each occurrence is replaced textually; substituted text is not scanned again.
//! * In a network DSN URL (a string starting `postgres://`, `mysql://`, `mariadb://`, ... with
//!   references after the `://`), each value is one URL component and is percent-encoded, so a
//!   password holding `@`, `/`, `?` or `:` stays the password (the DSN parser decodes it). A
//!   whole URL from one secret (`"${secret:DWH_URL}"`) is taken as written.
//!
//! Resolved values are secrets: strings that received one are flagged ([`Node::secret`]) so
//! that no message ever echoes them, and every value is registered with
//! [`crate::dsn::register_secret`] so that nothing the binary prints shows it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::locate::{Kind, Node};
use super::validate::Problem;

static SECRET_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{secret:([a-zA-Z0-9_]+)\}").expect("valid regex"));

/// A network DSN URL written out up to its `://` (the references come after it).
static NET_DSN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?i:postgres|postgresql|redshift|mysql|mariadb|bigquery)(\+[A-Za-z0-9_]+)?://")
        .expect("valid regex")
});

/// `s` with every reference replaced by its value: percent-encoded in a network DSN URL.
fn fill(s: &str, values: &BTreeMap<String, String>) -> String {
    let url = NET_DSN_RE.is_match(s);
    SECRET_RE
        .replace_all(s, |c: &regex::Captures| {
            let v = &values[&c[1]];
            match url {
                true => crate::dsn::encode_component(v),
                false => v.clone(),
            }
        })
        .into_owned()
}

/// A secret source: NAME -> value.
pub type Lookup = dyn Fn(&str) -> Option<String>;

/// The environment variable that selects the secret source.
pub const SOURCE_VAR: &str = "XNGIN_SECRETS_SOURCE";

/// True when `s` holds at least one `${secret:NAME}` reference.
pub fn has_reference(s: &str) -> bool {
    SECRET_RE.is_match(s)
}

/// The NAMEs referenced in `s`, in order of appearance.
pub fn references(s: &str) -> Vec<String> {
    SECRET_RE
        .captures_iter(s)
        .map(|c| c[1].to_string())
        .collect()
}

/// Check `XNGIN_SECRETS_SOURCE` (unset or `environ`).
pub fn check_source() -> Result<(), String> {
    match std::env::var_os(SOURCE_VAR) {
        None => Ok(()),
        Some(v) if v == "environ" => Ok(()),
        Some(_) => Err(format!(
            "{SOURCE_VAR} is misconfigured. (Unset it, or set it to 'environ'.)"
        )),
    }
}

/// The values substituted into a tree, to be masked in anything printed.
#[derive(Default, Clone)]
pub struct Resolved {
    values: Vec<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resolved({} secret(s))", self.values.len())
    }
}

impl Resolved {
    /// `text` with every known secret masked (these values are registered when resolved; see
    /// [`crate::dsn::scrub_secrets`]).
    pub fn scrub(&self, text: &str) -> String {
        crate::dsn::scrub_secrets(text)
    }

    /// How many distinct values were substituted.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Substitute every reference in the string values of `root` from `lookup` (the process
/// environment in production). Problems carry the position of the string naming the secret.
pub fn substitute(
    root: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, Vec<Problem>> {
    if let Err(msg) = check_source() {
        return Err(vec![Problem {
            pos: 0,
            path: String::new(),
            message: msg,
        }]);
    }
    // 1. collect all unique references (with the first place each appears).
    let mut first_seen: BTreeMap<String, (usize, String)> = BTreeMap::new();
    walk(root, "", &mut |node, path| {
        if let Kind::Str(s) = &node.kind {
            for name in references(s) {
                first_seen
                    .entry(name)
                    .or_insert_with(|| (node.pos, path.to_string()));
            }
        }
    });
    // 2. resolve them all.
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, (pos, path)) in &first_seen {
        match lookup(name) {
            Some(v) => {
                crate::dsn::register_secret(&v);
                values.insert(name.clone(), v);
            }
            None => problems.push(Problem {
                pos: *pos,
                path: path.clone(),
                message: format!(
                    "Secret \"{name}\" could not be found. (Set the environment variable {name}.)"
                ),
            }),
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.pos);
        return Err(problems);
    }
    // 3. replace textually, without re-scanning substituted text.
    replace(root, &values);
    let mut resolved: Vec<String> = values.into_values().collect();
    resolved.sort_by_key(|v| std::cmp::Reverse(v.len()));
    Ok(Resolved { values: resolved })
}

/// The process environment as a secret source.
pub fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn walk(node: &Node, path: &str, f: &mut dyn FnMut(&Node, &str)) {
    f(node, path);
    match &node.kind {
        Kind::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &join(path, &i.to_string()), f);
            }
        }
        Kind::Object(entries) => {
            for e in entries {
                walk(&e.value, &join(path, &e.key), f);
            }
        }
        _ => {}
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

fn replace(node: &mut Node, values: &BTreeMap<String, String>) {
    match &mut node.kind {
        Kind::Str(s) if has_reference(s) => {
            *s = fill(s, values);
            node.secret = true;
        }
        Kind::Array(items) => items.iter_mut().for_each(|n| replace(n, values)),
        Kind::Object(entries) => entries
            .iter_mut()
            .for_each(|e| replace(&mut e.value, values)),
        _ => {}
    }
}

/// Substitute references in one string (used for strings outside a settings tree).
pub fn substitute_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    check_source()?;
    let mut missing = Vec::new();
    let mut values = BTreeMap::new();
    for name in references(s) {
        match lookup(&name) {
            Some(v) => {
                crate::dsn::register_secret(&v);
                values.insert(name, v);
            }
            None if !missing.contains(&name) => missing.push(name),
            None => {}
        }
    }
    if let Some(name) = missing.first() {
        return Err(format!(
            "Secret \"{name}\" could not be found. (Set the environment variable {name}.)"
        ));
    }
    Ok(fill(s, &values))
}

#[cfg(test)]
mod tests {
    use super::super::locate::parse_json;
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn substitutes_everywhere_but_keys_and_does_not_rescan() {
        let mut root = parse_json(
            r#"{"${secret:K}": "a${secret:A}b${secret:A}", "n": 5, "l": [{"x": "${secret:B}"}], "y": "${secret:bad-name}"}"#,
        )
        .unwrap();
        let lookup = env(&[("A", "sub-a-7Qx"), ("B", "${secret:A}"), ("K", "sub-k-7Qx")]);
        let r = substitute(&mut root, &lookup).unwrap();
        let j = root.to_json();
        assert_eq!(j["${secret:K}"], "asub-a-7Qxbsub-a-7Qx");
        assert_eq!(j["l"][0]["x"], "${secret:A}");
        assert_eq!(j["y"], "${secret:bad-name}");
        assert_eq!(j["n"], 5);
        assert_eq!(r.len(), 2);
        assert_eq!(r.scrub("x ${secret:A} y sub-a-7Qx"), "x *** y ***");
    }

    /// In a network DSN URL a value is one percent-encoded component: a password holding
    /// `/`, `@`, `:` and `?` stays the password and the host stays the host. A whole URL from
    /// one secret, and any other string, get the value as written.
    #[test]
    fn secrets_in_a_dsn_url_are_one_component() {
        let mut root = parse_json(
            r#"{"dwh": "postgres://u:${secret:P}@h:5432/db", "whole": "${secret:W}", "other": "x${secret:P}"}"#,
        )
        .unwrap();
        let lookup = env(&[
            ("P", "ur-unit/zz@evil:1/x?y"),
            ("W", "mysql://r:ur-unit-w@h2/db"),
        ]);
        substitute(&mut root, &lookup).unwrap();
        let j = root.to_json();
        assert_eq!(
            j["dwh"],
            "postgres://u:ur-unit%2Fzz%40evil%3A1%2Fx%3Fy@h:5432/db"
        );
        assert_eq!(j["whole"], "mysql://r:ur-unit-w@h2/db");
        assert_eq!(j["other"], "xur-unit/zz@evil:1/x?y");
        let dsn = crate::dsn::Dsn::parse(j["dwh"].as_str().unwrap()).unwrap();
        assert_eq!(dsn.host.as_deref(), Some("h"));
        assert_eq!(dsn.port, Some(5432));
        assert_eq!(dsn.password(), Some("ur-unit/zz@evil:1/x?y"));
        // Registered: masked as written and as encoded.
        assert_eq!(
            crate::dsn::scrub_secrets("a ur-unit/zz@evil:1/x?y b ur-unit%2Fzz%40evil%3A1%2Fx%3Fy"),
            "a *** b ***"
        );
    }

    #[test]
    fn all_missing_secrets_are_reported_with_positions() {
        let text = "{\"a\": \"${secret:M1}\",\n \"b\": [\"${secret:M2}\", \"${secret:M1}\"]}";
        let mut root = parse_json(text).unwrap();
        let errs = substitute(&mut root, &env(&[])).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "a");
        assert_eq!(
            errs[0].message,
            "Secret \"M1\" could not be found. (Set the environment variable M1.)"
        );
        assert_eq!(errs[1].path, "b.0");
        assert_eq!(errs[1].pos, text.find("\"${secret:M2}").unwrap());
        assert_eq!(
            substitute_str("x${secret:Q}", &env(&[("Q", "sub-q-7Qx")])).unwrap(),
            "xsub-q-7Qx"
        );
        assert!(
            substitute_str("x${secret:Q}", &env(&[]))
                .unwrap_err()
                .contains("\"Q\"")
        );
    }
}
