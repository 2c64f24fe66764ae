//! Validation of a settings tree; every problem is collected, each with the position of the
//! offending value (or key) and its dotted path.
//!
//! Structural problems come from validating the tree against the JSON Schema derived from the
//! model ([`super::schema`]): the schema's errors are reworded here and located in the file.
//! Where the model is a union (the datasource `type`, the warehouse `driver`, the participants
//! `type`), the branch the file chose by its tag is the one reported. The rules a schema cannot
//! express are checked by hand: duplicate keys, unique datasource ids and participant types, DSN
//! URLs and the Redshift rules they carry, webhook URLs, BigQuery service-account content, and
//! the sheet rules for inline `schema` participants. Strings that still hold an unresolved
//! `${secret:NAME}` are only type-checked (their content is unknown until `--deep` resolves
//! them). Messages never echo a value that came from a secret, nor a password.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use base64::Engine;
use jsonschema::error::{TypeKind, ValidationErrorKind as K};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

use super::locate::{Kind, LineIndex, Node};
use super::secrets::has_reference;

/// One problem: byte position in the source, dotted path, message.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub pos: usize,
    pub path: String,
    pub message: String,
}

/// The settings schema (as derived, properties in declaration order) and its validator.
static SCHEMA: LazyLock<(Value, jsonschema::Validator)> = LazyLock::new(|| {
    let schema = super::schema::settings_schema();
    let validator =
        jsonschema::draft202012::new(&schema).expect("the schema derived from the model compiles");
    (schema, validator)
});

/// Validate the whole settings tree.
pub fn validate(root: &Node, lines: &LineIndex<'_>) -> Vec<Problem> {
    let (schema, validator) = &*SCHEMA;
    let mut v = V {
        out: Vec::new(),
        lines,
        root,
        schema,
    };
    for e in validator.iter_errors(&root.to_json()) {
        for leaf in flatten(schema, e) {
            v.leaf(leaf);
        }
    }
    v.semantic();
    v.out
        .sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.path.cmp(&b.path)));
    v.out.dedup();
    v.out
}

/// A schema error after unions are resolved: where in the instance, which schema keyword.
struct Leaf {
    path: Vec<String>,
    schema: String,
    kind: K,
}

fn leaf_of(e: ValidationError<'_>) -> Leaf {
    let parts = e.into_parts();
    Leaf {
        path: (parts.instance_path.iter())
            .map(|s| match s {
                LocationSegment::Property(p) => p.into_owned(),
                LocationSegment::Index(i) => i.to_string(),
            })
            .collect(),
        schema: parts.schema_path.as_str().to_string(),
        kind: parts.kind,
    }
}

/// The errors to report for one schema error: a union (`oneOf` / `anyOf`) is replaced by the
/// errors of the branch the value meant.
fn flatten(schema: &Value, e: ValidationError<'_>) -> Vec<Leaf> {
    let mut leaf = leaf_of(e);
    let context = match &mut leaf.kind {
        K::AnyOf { context } | K::OneOfNotValid { context } => std::mem::take(context),
        _ => return vec![leaf],
    };
    let branches: Vec<Vec<Leaf>> = (context.into_iter())
        .map(|b| b.into_iter().flat_map(|e| flatten(schema, e)).collect())
        .collect();
    let at = |l: &Leaf, depth: usize| {
        l.path.len() == leaf.path.len() + depth && l.path.starts_with(&leaf.path)
    };
    // 1. Branches of another JSON type than the value (a string where an object is expected).
    let typed: Vec<&Vec<Leaf>> = (branches.iter())
        .filter(|b| {
            !b.iter()
                .any(|l| at(l, 0) && matches!(l.kind, K::Type { .. }))
        })
        .collect();
    if typed.is_empty() {
        let mut types = Vec::new();
        for l in branches.iter().flatten() {
            if let K::Type { kind } = &l.kind {
                for t in type_names(kind) {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
            }
        }
        return vec![custom(leaf.path, "x-type", types.join(" or "))];
    }
    // 2. The tag: a key whose value a branch rejects as not its constant (a Redshift rule,
    // under `then`, is not a tag).
    let is_tag = |l: &Leaf, key: Option<&String>| {
        at(l, 1)
            && key.is_none_or(|k| l.path.last() == Some(k))
            && matches!(l.kind, K::Constant { .. } | K::Enum { .. })
            && !l.schema.contains("/then/")
    };
    let tag = (typed.iter().copied().flatten())
        .find(|l| is_tag(l, None))
        .and_then(|l| l.path.last().cloned());
    let mut candidates = typed.clone();
    if let Some(key) = &tag {
        let unexpected = |l: &Leaf| {
            at(l, 0)
                && matches!(&l.kind, K::AdditionalProperties { unexpected } if unexpected.contains(key))
        };
        candidates.retain(|b| !b.iter().any(|l| is_tag(l, Some(key)) || unexpected(l)));
        let rejecting = typed
            .iter()
            .filter(|b| b.iter().any(|l| is_tag(l, Some(key))))
            .count();
        if candidates.is_empty() && rejecting >= 2 {
            let mut values: Vec<Value> = Vec::new();
            for l in typed
                .iter()
                .copied()
                .flatten()
                .filter(|l| is_tag(l, Some(key)))
            {
                let found: Vec<Value> = match &l.kind {
                    K::Constant { expected_value } => vec![(**expected_value).clone()],
                    K::Enum { options } => options.as_array().cloned().unwrap_or_default(),
                    _ => vec![],
                };
                for v in found {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
            }
            let mut path = leaf.path;
            path.push(key.clone());
            let options = Arc::new(Value::Array(values));
            return vec![Leaf {
                path,
                schema: leaf.schema,
                kind: K::Enum { options },
            }];
        }
        if candidates.is_empty() {
            candidates = typed.clone();
        }
    }
    // 3. A tag that is missing: every branch requires the same key.
    let missing: Vec<Option<&Leaf>> = (candidates.iter())
        .map(|b| {
            b.iter()
                .find(|l| at(l, 0) && matches!(l.kind, K::Required { .. }))
        })
        .collect();
    if candidates.len() >= 2
        && let Some(Some(first)) = missing.first()
        && let K::Required { property } = &first.kind
        && let Some(key) = property.as_str()
        && missing.iter().all(|m| {
            m.is_some_and(|l| matches!(&l.kind, K::Required { property: p } if p == property))
        })
    {
        let mut values: Vec<String> = Vec::new();
        for l in missing.iter().flatten() {
            let owner = l.schema.rsplit_once('/').map_or("", |(o, _)| o);
            let sub = schema
                .pointer(owner)
                .and_then(|o| o.pointer(&format!("/properties/{key}")));
            for v in sub.map(|s| allowed_values(schema, s)).unwrap_or_default() {
                if !values.contains(&v) {
                    values.push(v);
                }
            }
        }
        if !values.is_empty() {
            let message = format!(
                "missing required key '{key}' (one of: {})",
                values.join(", ")
            );
            let mut path = leaf.path;
            path.push(key.to_string());
            return vec![custom(path, "x-at-parent", message)];
        }
    }
    // 4. An alias pair (`datasources` / `client_configs`) that is missing altogether.
    let required = |b: &Vec<Leaf>| match b.as_slice() {
        [l] if at(l, 0) => match &l.kind {
            K::Required { property } => property.as_str().map(str::to_string),
            _ => None,
        },
        _ => None,
    };
    if let [a, b] = candidates.as_slice()
        && let (Some(name), Some(alias)) = (required(a), required(b))
    {
        let message = format!("missing required key '{name}' (or its older name '{alias}')");
        let mut path = leaf.path;
        path.push(name);
        return vec![custom(path, "x-at-parent", message)];
    }
    // 5. Otherwise the branch the value comes closest to.
    let fewest = candidates.iter().map(|b| b.len()).min().unwrap_or(0);
    let best = candidates
        .iter()
        .position(|b| b.len() == fewest)
        .unwrap_or(0);
    let keep = branches
        .iter()
        .position(|b| std::ptr::eq(b, candidates[best]))
        .unwrap_or(0);
    branches.into_iter().nth(keep).unwrap_or_default()
}

/// The constant values a property schema allows (through `$ref` and `anyOf`).
fn allowed_values(root: &Value, sub: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(c) = sub.get("const").and_then(Value::as_str) {
        out.push(c.to_string());
    }
    if let Some(e) = sub.get("enum").and_then(Value::as_array) {
        out.extend(e.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if let Some(r) = sub.get("$ref").and_then(Value::as_str)
        && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
    {
        out.extend(allowed_values(root, target));
    }
    for alt in sub
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(allowed_values(root, alt));
    }
    out
}

fn custom(path: Vec<String>, keyword: &str, message: String) -> Leaf {
    Leaf {
        path,
        schema: String::new(),
        kind: K::Custom {
            keyword: keyword.to_string(),
            message,
        },
    }
}

fn type_names(kind: &TypeKind) -> Vec<&'static str> {
    let name = |t: JsonType| match t {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "an array",
        JsonType::Object => "an object",
    };
    let mut names: Vec<&str> = match kind {
        TypeKind::Single(t) => vec![name(*t)],
        TypeKind::Multiple(set) => set.iter().map(name).collect(),
    };
    // An optional key may be null too; say what it is meant to hold.
    if names.len() > 1 {
        names.retain(|n| *n != "null");
    }
    names
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

/// Edit distance with adjacent transpositions (optimal string alignment), for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `word` if it is a plausible typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let lw = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lw, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The value for a message: quoted when shown, withheld when it came from a secret.
fn shown(node: &Node, s: &str) -> String {
    if node.secret {
        "the value (from a secret)".to_string()
    } else {
        format!("'{s}'")
    }
}

/// Hints for a key written in the wrong kind of object: (key, a key of the object it was
/// written in, hint).
const MISPLACED: [(&str, &str, &str); 7] = [
    (
        "sqlite_filename",
        "dwh",
        "(sqlite_filename belongs to type = \"sqlite_local\")",
    ),
    (
        "dwh",
        "sqlite_filename",
        "(dwh belongs to type = \"remote\"; a sqlite_local datasource names its sqlite_filename)",
    ),
    (
        "project_id",
        "host",
        "(project_id belongs to driver = \"bigquery\")",
    ),
    (
        "dataset_id",
        "host",
        "(dataset_id belongs to driver = \"bigquery\")",
    ),
    (
        "credentials",
        "host",
        "(credentials belongs to driver = \"bigquery\")",
    ),
    (
        "fields",
        "sheet",
        "(inline fields need type = \"schema\" instead of a sheet)",
    ),
    (
        "sheet",
        "fields",
        "(type = \"schema\" carries its fields inline; use type = \"sheet\" to reference a sheet)",
    ),
];

/// What an enumerated value is called in messages, by its key (and its parent's key).
fn noun(path: &[String]) -> &'static str {
    let parent = path
        .len()
        .checked_sub(2)
        .and_then(|i| path.get(i))
        .map(String::as_str);
    match (path.last().map(String::as_str), parent) {
        (Some("type"), Some("config")) => "datasource type",
        (Some("type"), Some("credentials")) => "credentials type",
        (Some("type"), _) => "participants type",
        (Some("method"), _) => "HTTP method",
        (Some("data_type"), _) => "DataType",
        (Some("sslmode"), _) => "sslmode",
        (Some("driver"), _) => "driver",
        _ => "value",
    }
}

struct V<'a> {
    out: Vec<Problem>,
    lines: &'a LineIndex<'a>,
    root: &'a Node,
    schema: &'a Value,
}

impl<'a> V<'a> {
    fn push(&mut self, pos: usize, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem {
            pos,
            path: path.into(),
            message: message.into(),
        });
    }

    /// The node at `path`, or its nearest existing ancestor.
    fn node(&self, path: &[String]) -> &'a Node {
        let mut node: &'a Node = self.root;
        for seg in path {
            let next = match &node.kind {
                Kind::Object(es) => es.iter().find(|e| &e.key == seg).map(|e| &e.value),
                Kind::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// The schema object that holds the keyword at `schema_path` (a JSON pointer).
    fn keyword_owner(&self, schema_path: &str) -> Option<&Value> {
        let owner = schema_path.rsplit_once('/').map_or("", |(o, _)| o);
        self.schema.pointer(owner)
    }

    fn leaf(&mut self, l: Leaf) {
        // With both names, only `datasources` is read (and "not both" reported).
        if l.path.first().is_some_and(|k| k == "client_configs")
            && self.root.get("datasources").is_some()
        {
            return;
        }
        let node = self.node(&l.path);
        let pos = node.pos;
        let dotted = l.path.join(".");
        let key = l.path.last().cloned().unwrap_or_default();
        let secret_ref = node.as_str().is_some_and(has_reference);
        let redshift = l.schema.contains("/then/");
        let number = |n: &Node| match n.kind {
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            _ => String::new(),
        };
        let message = match l.kind {
            K::Custom { keyword, message } if keyword == "x-type" => {
                format!("expected {message}, found {}", node.type_name())
            }
            K::Custom { keyword, message } if keyword == "x-at-parent" => {
                let parent = self.node(&l.path[..l.path.len().saturating_sub(1)]).pos;
                self.push(parent, dotted, message);
                return;
            }
            K::Custom { message, .. } => message,
            K::Type { .. } if l.path.is_empty() => {
                format!("the settings must be an object, found {}", node.type_name())
            }
            K::Type { kind } => {
                let types = type_names(&kind);
                let found = node.type_name();
                match node.as_str().map(str::trim) {
                    Some(s)
                        if types.contains(&"a boolean")
                            && matches!(s.to_lowercase().as_str(), "true" | "false") =>
                    {
                        format!(
                            "expected a boolean, found a string; write {} without quotes",
                            s.to_lowercase()
                        )
                    }
                    Some(s) if types.contains(&"an integer") && s.parse::<i64>().is_ok() => {
                        format!("expected an integer, found a string; write {s} without quotes")
                    }
                    _ => format!("expected {}, found {found}", types.join(" or ")),
                }
            }
            K::Required { property } if redshift => {
                let p = property.as_str().unwrap_or_default();
                self.push(pos, join(&dotted, p), "Redshift connections must use sslmode=verify-full (add sslmode = \"verify-full\")");
                return;
            }
            K::Required { property } => {
                let p = property.as_str().unwrap_or_default();
                self.push(pos, join(&dotted, p), format!("missing required key '{p}'"));
                return;
            }
            K::AdditionalProperties { unexpected } => {
                let props = (self.keyword_owner(&l.schema))
                    .and_then(|o| o.get("properties"))
                    .and_then(Value::as_object);
                let allowed: Vec<String> = props
                    .map(|p| p.keys().filter(|k| !k.starts_with('$')).cloned().collect())
                    .unwrap_or_default();
                let Kind::Object(entries) = &node.kind else {
                    return;
                };
                for k in unexpected {
                    let kp = entries
                        .iter()
                        .find(|e| e.key == k)
                        .map_or(pos, |e| e.key_pos);
                    let hint = MISPLACED
                        .iter()
                        .find(|(m, near, _)| *m == k && allowed.iter().any(|a| a == near));
                    let message = match (hint, suggest(&k, allowed.iter().map(String::as_str))) {
                        (Some((_, _, hint)), _) => format!("unknown key '{k}' {hint}"),
                        (None, Some(s)) => format!("unknown key '{k}' (did you mean '{s}'?)"),
                        (None, None) => {
                            format!("unknown key '{k}'; allowed keys: {}", allowed.join(", "))
                        }
                    };
                    self.push(kp, join(&dotted, &k), message);
                }
                return;
            }
            K::Constant { .. } if redshift && key == "driver" => {
                "Redshift connections must use the postgresql+psycopg2 driver".to_string()
            }
            K::Constant { .. } if redshift => {
                // An sslmode that is not valid at all is reported as such, once.
                if node
                    .as_str()
                    .is_some_and(|s| !crate::dsn::SSLMODES.contains(&s))
                {
                    return;
                }
                "Redshift connections must use sslmode=verify-full".to_string()
            }
            K::Constant { expected_value } => {
                self.not_one_of(node, &l.path, &[(*expected_value).clone()])
            }
            K::Enum { options } => self.not_one_of(
                node,
                &l.path,
                options.as_array().map_or(&[][..], Vec::as_slice),
            ),
            K::Minimum { .. } | K::Maximum { .. } => {
                let owner = self.keyword_owner(&l.schema);
                let bound = |k: &str| owner.and_then(|o| o.get(k)).map(Value::to_string);
                match (bound("minimum"), bound("maximum")) {
                    (Some(lo), Some(hi)) => format!(
                        "{key} must be between {lo} and {hi}, found {}",
                        number(node)
                    ),
                    (Some(lo), None) => {
                        format!("{key} must be at least {lo}, found {}", number(node))
                    }
                    (_, hi) => format!(
                        "{key} must be at most {}, found {}",
                        hi.unwrap_or_default(),
                        number(node)
                    ),
                }
            }
            K::MinLength { .. } | K::MaxLength { .. } | K::Pattern { .. } if secret_ref => return,
            K::MinLength { limit: 1 } => "must not be empty".to_string(),
            K::MinLength { .. } | K::MaxLength { .. } => {
                let owner = self.keyword_owner(&l.schema);
                let bound = |k: &str| {
                    owner
                        .and_then(|o| o.get(k))
                        .map_or("?".into(), Value::to_string)
                };
                let n = node.as_str().map_or(0, |s| s.chars().count());
                format!(
                    "{key} must be {} to {} characters long, found {n}",
                    bound("minLength"),
                    bound("maxLength")
                )
            }
            K::Pattern { pattern } => match key.as_str() {
                "project_id" => format!(
                    "project_id may only contain lower-case letters, digits and '-' (pattern {pattern})"
                ),
                "dataset_id" => format!(
                    "dataset_id may only contain letters, digits and '_' (pattern {pattern})"
                ),
                "sqlite_filename" => {
                    "sqlite_filename is a file path, not a URL: drop the 'sqlite://' prefix"
                        .to_string()
                }
                // DSN and webhook URLs: checked below with their own, more precise, messages.
                _ => return,
            },
            K::MinItems { .. } if key == "fields" => "must contain at least one field".to_string(),
            K::MinItems { .. } => "must list at least one datasource".to_string(),
            // The unique-id rule of inline fields: checked below with the sheet's wording.
            K::Contains => return,
            K::OneOfMultipleValid { .. } => {
                let pair = (self.schema.pointer(&l.schema))
                    .and_then(Value::as_array)
                    .map(|alts| {
                        alts.iter()
                            .filter_map(|a| a.pointer("/required/0").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                match pair.as_slice() {
                    // Not an object (reported as such), or not both after all.
                    [name, alias] if node.get(name).is_none() || node.get(alias).is_none() => {}
                    [name, alias] if name == "datasources" => {
                        let at = self.root.get(alias).map_or(pos, |n| n.pos);
                        self.push(
                            at,
                            alias.clone(),
                            format!("use either '{name}' or '{alias}' (its older name), not both"),
                        );
                    }
                    [name, alias] => {
                        let at = node.get(name).map_or(pos, |n| n.pos);
                        self.push(
                            at,
                            join(&dotted, name),
                            format!("give either {alias} or {name}, not both"),
                        );
                    }
                    _ => self.push(pos, dotted, "matches more than one of the allowed forms"),
                }
                return;
            }
            other => {
                let e = format!("{other:?}");
                format!(
                    "is not valid ({})",
                    e.split([' ', '{']).next().unwrap_or_default()
                )
            }
        };
        self.push(pos, dotted, message);
    }

    /// "'x' is not a valid sslmode (did you mean ...); expected one of: ..."
    fn not_one_of(&self, node: &Node, path: &[String], options: &[Value]) -> String {
        let what = noun(path);
        let allowed: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        let Some(s) = node.as_str() else {
            return format!(
                "expected one of: {}, found {}",
                allowed.join(", "),
                node.type_name()
            );
        };
        if has_reference(s) {
            return format!(
                "{what} cannot come from a secret; write one of: {}",
                allowed.join(", ")
            );
        }
        let hint = match allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s) || a.replace('-', "_") == s)
        {
            Some(a) if what == "DataType" => format!(" (write it in lower case: '{a}')"),
            Some(a) => format!(" (did you mean '{a}'?)"),
            None => match suggest(s, allowed.iter().copied()) {
                Some(a) if !node.secret && what != "DataType" => format!(" (did you mean '{a}'?)"),
                _ => String::new(),
            },
        };
        format!(
            "{} is not a valid {what}{hint}; expected one of: {}",
            shown(node, s),
            allowed.join(", ")
        )
    }

    // -----------------------------------------------------------------------------------------
    // The rules a JSON Schema cannot express.

    fn semantic(&mut self) {
        let root = self.root;
        self.keys_and_dates(root, "");
        let Some((name, list)) = ["datasources", "client_configs"]
            .into_iter()
            .find_map(|k| root.get(k).map(|l| (k, l)))
        else {
            return;
        };
        let Kind::Array(items) = &list.kind else {
            return;
        };
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, ds) in items.iter().enumerate() {
            let path = join(name, &i.to_string());
            if let Some(idn) = ds.get("id")
                && let Some(id) = idn.as_str().filter(|s| !s.is_empty())
            {
                if let Some(first) = ids.get(id) {
                    let (l, _) = self.lines.line_col(*first);
                    self.push(
                        idn.pos,
                        join(&path, "id"),
                        format!(
                            "datasource id '{id}' is already used (line {l}); ids must be unique"
                        ),
                    );
                } else {
                    ids.insert(id, idn.pos);
                }
            }
            if let Some(c) = ds.get("config") {
                self.config(c, &join(&path, "config"));
            }
        }
    }

    /// Duplicate keys (JSON keeps them; TOML rejects them while parsing), TOML date/times where
    /// the model has a string and whole floats where it has an integer (elsewhere the schema
    /// reports the type).
    fn keys_and_dates(&mut self, node: &Node, path: &str) {
        match &node.kind {
            Kind::Object(entries) => {
                let mut first: HashMap<&str, usize> = HashMap::new();
                for e in entries {
                    let kp = join(path, &e.key);
                    if let Some(f) = first.get(e.key.as_str()) {
                        let (l, _) = self.lines.line_col(*f);
                        self.push(
                            e.key_pos,
                            kp,
                            format!("duplicate key '{}' (first defined on line {l})", e.key),
                        );
                        continue;
                    }
                    first.insert(&e.key, e.key_pos);
                    self.keys_and_dates(&e.value, &kp);
                }
            }
            Kind::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    self.keys_and_dates(it, &join(path, &i.to_string()));
                }
            }
            Kind::Datetime(_) if !self.out.iter().any(|p| p.path == path) => {
                self.push(node.pos, path, "expected a string, found a date/time");
            }
            // JSON Schema counts 5432.0 as an integer; the model (serde) does not, and has no
            // floats anywhere, so a float the schema let through stood for an integer.
            Kind::Float(_) if !self.out.iter().any(|p| p.path == path) => {
                self.push(node.pos, path, "expected an integer, found a float");
            }
            _ => {}
        }
    }

    fn config(&mut self, node: &Node, path: &str) {
        match node.get("dwh") {
            Some(
                d @ Node {
                    kind: Kind::Str(s), ..
                },
            ) => self.dwh_url(d, s, &join(path, "dwh")),
            Some(d) => {
                if let Some(u) = d.get("url")
                    && let Some(s) = u.as_str()
                {
                    self.dwh_url(u, s, &join(path, "dwh.url"));
                }
                // One host name or address (a secret's value is checked once resolved; the
                // message never shows the value).
                if let Some(h) = d.get("host")
                    && let Some(hs) = h.as_str().filter(|s| !s.is_empty() && !has_reference(s))
                    && let Err(e) = crate::dsn::check_host(hs)
                {
                    self.push(h.pos, join(path, "dwh.host"), e.to_string());
                }
                if let Some(c) = d.get("credentials").and_then(|c| c.get("content_base64")) {
                    self.service_account(c, &join(path, "dwh.credentials.content_base64"));
                }
            }
            None => {}
        }
        if let Some(Kind::Object(actions)) = node
            .get("webhook_config")
            .and_then(|w| w.get("actions"))
            .map(|a| &a.kind)
        {
            for a in actions {
                if let Some(u) = a.value.get("url") {
                    self.webhook_url(
                        u,
                        &join(path, &format!("webhook_config.actions.{}.url", a.key)),
                    );
                }
            }
        }
        let Some(Kind::Array(items)) = node.get("participants").map(|p| &p.kind) else {
            return;
        };
        let ppath = join(path, "participants");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let ip = join(&ppath, &i.to_string());
            if let Some(pn) = item.get("participant_type")
                && let Some(pt) = pn.as_str().filter(|s| !s.is_empty())
            {
                if let Some(first) = seen.get(pt) {
                    let (l, _) = self.lines.line_col(*first);
                    self.push(
                        pn.pos,
                        join(&ip, "participant_type"),
                        format!("Participants with conflicting identifiers found: participant type '{pt}' is already defined on line {l}"),
                    );
                } else {
                    seen.insert(pt, pn.pos);
                }
            }
            if item.get("type").and_then(Node::as_str) == Some("schema")
                && let Some(f) = item.get("fields")
            {
                self.fields(f, &join(&ip, "fields"));
            }
        }
    }

    fn dwh_url(&mut self, node: &Node, s: &str, path: &str) {
        if has_reference(s) || s.is_empty() {
            return; // checked once --deep resolves the secrets; empty: reported by the schema
        }
        match crate::dsn::Dsn::parse(s) {
            Err(e) => {
                // Dsn::parse shows the DSN redacted; a secret-derived DSN is not shown at all.
                let msg = if node.secret {
                    "the DSN (from a secret) is not valid".to_string()
                } else {
                    e.to_string()
                };
                self.push(node.pos, path, msg);
            }
            Ok(dsn) if dsn.redshift => {
                if dsn.scheme != "postgresql+psycopg2" {
                    self.push(
                        node.pos,
                        path,
                        "Redshift connections must use the postgresql+psycopg2 driver (scheme)",
                    );
                }
                if dsn.sslmode.as_deref() != Some("verify-full") {
                    self.push(
                        node.pos,
                        path,
                        "Redshift connections must use sslmode=verify-full",
                    );
                }
            }
            Ok(_) => {}
        }
    }

    fn webhook_url(&mut self, un: &Node, path: &str) {
        let Some(s) = un.as_str().filter(|s| !s.is_empty() && !has_reference(s)) else {
            return;
        };
        let ok = url::Url::parse(s)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            self.push(
                un.pos,
                path,
                format!("{} is not an http:// or https:// URL", shown(un, s)),
            );
        }
    }

    fn service_account(&mut self, b: &Node, path: &str) {
        let Some(s) = b.as_str().filter(|s| !has_reference(s)) else {
            return;
        };
        if !(4..=8000).contains(&s.chars().count()) {
            return; // reported by the schema
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.trim()) else {
            self.push(b.pos, path, "Invalid base64 content");
            return;
        };
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) else {
            self.push(b.pos, path, "Invalid JSON in service account credentials");
            return;
        };
        let missing: Vec<&str> = [
            "type",
            "project_id",
            "private_key_id",
            "private_key",
            "client_email",
        ]
        .into_iter()
        .filter(|k| !m.contains_key(*k))
        .collect();
        if !missing.is_empty() {
            self.push(
                b.pos,
                path,
                format!(
                    "Missing required fields in service account JSON: {}",
                    missing.join(", ")
                ),
            );
        } else if m.get("type").and_then(|t| t.as_str()) != Some("service_account") {
            self.push(
                b.pos,
                path,
                "Service account JSON must have type=\"service_account\"",
            );
        }
    }

    /// Inline sheet rows: unique names, exactly one unique id, then the sheet's own rules.
    fn fields(&mut self, node: &Node, path: &str) {
        let Kind::Array(items) = &node.kind else {
            return;
        };
        let before = self.out.len();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut uniques: Vec<(&str, usize, String)> = Vec::new();
        let mut unique_unknown = false; // an is_unique_id of the wrong type: do not count
        for (i, it) in items.iter().enumerate() {
            let ip = join(path, &i.to_string());
            let name = match (it.get("field_name"), it.get("column_name")) {
                (Some(n), None) => n.as_str().map(|s| (s, n.pos, "field_name")),
                (None, Some(n)) => n.as_str().map(|s| (s, n.pos, "column_name")),
                _ => None,
            };
            let name = name.filter(|(s, _, _)| !s.is_empty());
            match it.get("is_unique_id") {
                Some(Node {
                    kind: Kind::Bool(true),
                    pos,
                    ..
                }) => uniques.push((name.map_or("", |n| n.0), *pos, join(&ip, "is_unique_id"))),
                Some(Node {
                    kind: Kind::Bool(false),
                    ..
                })
                | None => {}
                Some(_) => unique_unknown = true,
            }
            if let Some((name, pos, key)) = name {
                if let Some(first) = names.get(name) {
                    let (l, _) = self.lines.line_col(*first);
                    self.push(
                        pos,
                        join(&ip, key),
                        format!("Duplicate field name '{name}' (first defined on line {l})"),
                    );
                } else {
                    names.insert(name, pos);
                }
            }
        }
        match uniques.len() {
            0 if unique_unknown || items.is_empty() => {}
            0 => self.push(
                node.pos,
                path,
                "There are no fields marked as unique ID; set is_unique_id = true on exactly one field",
            ),
            1 => {}
            k => {
                let mut all: Vec<&str> = uniques.iter().map(|u| u.0).collect();
                all.sort();
                let message = format!(
                    "There are {k} fields marked as the unique ID, but there should only be one: {}",
                    all.join(", ")
                );
                for (_, pos, p) in uniques.iter().skip(1) {
                    self.push(*pos, p.clone(), message.clone());
                }
            }
        }
        let clean = !self
            .out
            .iter()
            .any(|p| p.path == path || p.path.starts_with(&format!("{path}.")));
        if self.out.len() == before && clean {
            self.sheet_rules(node, items, path);
        }
    }

    /// The sheet module's worksheet rules, for any rule beyond those checked above (which
    /// locate their problems precisely); reported at the field they name, else at `fields`.
    fn sheet_rules(&mut self, node: &Node, items: &[Node], path: &str) {
        let columns: Option<Vec<crate::sheet::ColumnDescriptor>> = items
            .iter()
            .map(|it| serde_json::from_value(it.to_json()).ok())
            .collect();
        let Some(columns) = columns else { return };
        let ws = crate::sheet::ConfigWorksheet {
            table_name: String::new(),
            columns,
        };
        for p in crate::sheet::worksheet_problems(&ws) {
            match p.index.and_then(|i| items.get(i).map(|it| (i, it))) {
                Some((i, it)) => {
                    let key = match p.field {
                        Some("column_name") if it.get("field_name").is_some() => Some("field_name"),
                        other => other,
                    };
                    let ip = join(path, &i.to_string());
                    match key.and_then(|k| it.get(k).map(|n| (k, n))) {
                        Some((k, n)) => self.push(n.pos, join(&ip, k), p.message),
                        None => self.push(it.pos, ip, p.message),
                    }
                }
                None => self.push(node.pos, path, p.message),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("prot", "port"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(suggest("prot", ["port", "host"]), Some("port"));
        assert_eq!(suggest("hots", ["port", "host"]), Some("host"));
        assert_eq!(suggest("Port", ["port"]), Some("port"));
        assert_eq!(suggest("colour", ["port", "host"]), None);
    }

    #[test]
    fn the_derived_schema_compiles() {
        assert!(
            SCHEMA
                .1
                .is_valid(&serde_json::json!({"datasources": [{"id": "a", "config": {
            "type": "sqlite_local", "sqlite_filename": "a.db", "participants": []}}]}))
        );
    }
}
